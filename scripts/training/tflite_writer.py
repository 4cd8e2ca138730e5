"""Write a dense network as a real .tflite flatbuffer, using the schema LiteRT ships.

No TensorFlow: the graph (``FULLY_CONNECTED`` layers, ReLU fused, then ``LOGISTIC``) is
serialised with ``ai_edge_litert.schema_py_generated`` and ``flatbuffers``. The output is a
pure function of the weights and strings passed in: same input, same bytes.
"""

from __future__ import annotations

import itertools
from typing import Any

import flatbuffers
import numpy as np

from scripts.training.numpy_forward import DenseLayer

INPUT_NAME = "features"
OUTPUT_NAME = "probability"
SIGNATURE_KEY = "serving_default"
_ALIGN = 16  # constant buffers start on 16-byte boundaries, like the TFLite converter's


def _vector(b: flatbuffers.Builder, values: list[int]) -> int:
    """An int32 vector."""
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependInt32(v)
    return int(b.EndVector())


def _offsets(b: flatbuffers.Builder, offsets: list[int]) -> int:
    """A vector of table offsets."""
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return int(b.EndVector())


def _bytes(b: flatbuffers.Builder, data: bytes) -> int:
    """An aligned ubyte vector."""
    b.StartVector(1, len(data), _ALIGN)
    b.head = b.head - len(data)
    b.Bytes[b.head : b.head + len(data)] = data
    return int(b.EndVector())


def dense_to_tflite(layers: list[DenseLayer], description: str = "") -> bytes:
    """Serialise ``x → dense… → logistic`` with input (1, in) and output (1, out), float32."""
    from ai_edge_litert import schema_py_generated as s

    if not layers:
        raise ValueError("need at least one dense layer")
    for first, second in itertools.pairwise(layers):
        if second.weights.shape[1] != first.weights.shape[0]:
            raise ValueError("layer sizes do not chain")
    n_in = int(layers[0].weights.shape[1])
    n_out = int(layers[-1].weights.shape[0])

    # Tensors: (name, shape, signature, buffer data or None).
    tensors: list[tuple[str, list[int], list[int], bytes | None]] = [
        (INPUT_NAME, [1, n_in], [-1, n_in], None)
    ]
    ops: list[tuple[int, list[int], list[int], int]] = []  # opcode index, ins, outs, act
    prev = 0
    for i, layer in enumerate(layers):
        w = np.ascontiguousarray(layer.weights, dtype="<f4")
        bias = np.ascontiguousarray(layer.bias, dtype="<f4")
        out_dim = int(w.shape[0])
        tensors.append((f"dense_{i}/weights", list(w.shape), list(w.shape), w.tobytes()))
        tensors.append((f"dense_{i}/bias", [out_dim], [out_dim], bias.tobytes()))
        last = i == len(layers) - 1
        name = "logits" if last else f"dense_{i}/out"
        tensors.append((name, [1, out_dim], [-1, out_dim], None))
        act = (
            s.ActivationFunctionType.RELU
            if layer.activation == "relu"
            else s.ActivationFunctionType.NONE
        )
        n = len(tensors)
        ops.append((0, [prev, n - 3, n - 2], [n - 1], act))
        prev = n - 1
    tensors.append((OUTPUT_NAME, [1, n_out], [-1, n_out], None))
    ops.append((1, [prev], [len(tensors) - 1], -1))
    output = len(tensors) - 1

    b = flatbuffers.Builder(4096)
    # Buffer 0 is the conventional empty buffer; each constant gets its own.
    buffer_data: list[bytes | None] = [None] + [t[3] for t in tensors if t[3] is not None]
    buffers = []
    for data in buffer_data:
        data_off = _bytes(b, data) if data is not None else None
        s.BufferStart(b)
        if data_off is not None:
            s.BufferAddData(b, data_off)
        buffers.append(s.BufferEnd(b))

    tensor_offs = []
    next_buffer = 1
    for name, shape, signature, data in tensors:
        name_off = b.CreateString(name)
        shape_off = _vector(b, shape)
        sig_off = _vector(b, signature)
        s.TensorStart(b)
        s.TensorAddShape(b, shape_off)
        s.TensorAddType(b, s.TensorType.FLOAT32)
        if data is not None:
            s.TensorAddBuffer(b, next_buffer)
            next_buffer += 1
        s.TensorAddName(b, name_off)
        s.TensorAddShapeSignature(b, sig_off)
        s.TensorAddHasRank(b, True)
        tensor_offs.append(s.TensorEnd(b))

    op_offs = []
    for opcode, ins, outs, act in ops:
        ins_off, outs_off = _vector(b, ins), _vector(b, outs)
        opts = None
        if act >= 0:
            s.FullyConnectedOptionsStart(b)
            s.FullyConnectedOptionsAddFusedActivationFunction(b, act)
            opts = s.FullyConnectedOptionsEnd(b)
        s.OperatorStart(b)
        s.OperatorAddOpcodeIndex(b, opcode)
        s.OperatorAddInputs(b, ins_off)
        s.OperatorAddOutputs(b, outs_off)
        if opts is not None:
            s.OperatorAddBuiltinOptionsType(b, s.BuiltinOptions.FullyConnectedOptions)
            s.OperatorAddBuiltinOptions(b, opts)
        op_offs.append(s.OperatorEnd(b))

    graph_name = b.CreateString("main")
    tensors_vec, ops_vec = _offsets(b, tensor_offs), _offsets(b, op_offs)
    inputs_vec, outputs_vec = _vector(b, [0]), _vector(b, [output])
    s.SubGraphStart(b)
    s.SubGraphAddTensors(b, tensors_vec)
    s.SubGraphAddInputs(b, inputs_vec)
    s.SubGraphAddOutputs(b, outputs_vec)
    s.SubGraphAddOperators(b, ops_vec)
    s.SubGraphAddName(b, graph_name)
    graph = s.SubGraphEnd(b)

    code_offs = []
    for code in (s.BuiltinOperator.FULLY_CONNECTED, s.BuiltinOperator.LOGISTIC):
        s.OperatorCodeStart(b)
        s.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        s.OperatorCodeAddVersion(b, 1)
        s.OperatorCodeAddBuiltinCode(b, code)
        code_offs.append(s.OperatorCodeEnd(b))

    sig_def = _signature(b, s, output)
    desc = b.CreateString(description)
    codes_vec, graphs_vec = _offsets(b, code_offs), _offsets(b, [graph])
    buffers_vec, sigs_vec = _offsets(b, buffers), _offsets(b, [sig_def])
    s.ModelStart(b)
    s.ModelAddVersion(b, 3)
    s.ModelAddOperatorCodes(b, codes_vec)
    s.ModelAddSubgraphs(b, graphs_vec)
    s.ModelAddDescription(b, desc)
    s.ModelAddBuffers(b, buffers_vec)
    s.ModelAddSignatureDefs(b, sigs_vec)
    b.Finish(s.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _signature(b: flatbuffers.Builder, s: Any, output: int) -> int:
    """The ``serving_default`` signature: features → probability."""
    maps = []
    for name, index in ((INPUT_NAME, 0), (OUTPUT_NAME, output)):
        name_off = b.CreateString(name)
        s.TensorMapStart(b)
        s.TensorMapAddName(b, name_off)
        s.TensorMapAddTensorIndex(b, index)
        maps.append(s.TensorMapEnd(b))
    ins, outs = _offsets(b, maps[:1]), _offsets(b, maps[1:])
    key = b.CreateString(SIGNATURE_KEY)
    s.SignatureDefStart(b)
    s.SignatureDefAddInputs(b, ins)
    s.SignatureDefAddOutputs(b, outs)
    s.SignatureDefAddSignatureKey(b, key)
    s.SignatureDefAddSubgraphIndex(b, 0)
    return int(s.SignatureDefEnd(b))
