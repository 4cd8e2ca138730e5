"""Pure-NumPy forward pass of the coupon network, and a reader for the weights in a .tflite.

The shipped model is a stack of dense layers (``FULLY_CONNECTED``, optionally with a fused
ReLU) followed by ``LOGISTIC``. The training script uses ``forward`` for its own predictions,
``tflite_writer`` turns the same ``DenseLayer`` list into a flatbuffer, and
``read_dense_tflite`` turns the flatbuffer back into layers (for the benchmark's NumPy
baseline and for tests), without any TFLite runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Activation = Literal["relu", "none"]
FloatArray = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True, slots=True)
class DenseLayer:
    """One fully connected layer: ``act(x @ weights.T + bias)``; weights are (out, in)."""

    weights: FloatArray
    bias: FloatArray
    activation: Activation = "none"

    def __post_init__(self) -> None:
        if self.weights.ndim != 2 or self.bias.shape != (self.weights.shape[0],):
            raise ValueError(
                f"dense layer needs weights (out, in) and bias (out,), got "
                f"{self.weights.shape} and {self.bias.shape}"
            )


def logits(layers: list[DenseLayer], x: FloatArray) -> FloatArray:
    """Pre-sigmoid outputs, shape (n, out), in the dtype of the weights."""
    h = np.asarray(x, dtype=layers[0].weights.dtype)
    for layer in layers:
        h = h @ layer.weights.T + layer.bias
        if layer.activation == "relu":
            h = np.maximum(h, 0.0)
    return h


def forward(layers: list[DenseLayer], x: FloatArray) -> FloatArray:
    """Probabilities (sigmoid of the last layer), shape (n, out)."""
    z = logits(layers, x)
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic
    return out


def read_dense_tflite(data: bytes) -> list[DenseLayer]:
    """The dense layers of a FULLY_CONNECTED… + LOGISTIC model (ValueError otherwise)."""
    from ai_edge_litert import schema_py_generated as s  # the LiteRT schema, no runtime

    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (file identifier TFL3 missing)")
    model = s.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    codes = [model.OperatorCodes(i).BuiltinCode() for i in range(model.OperatorCodesLength())]
    layers: list[DenseLayer] = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = codes[op.OpcodeIndex()]
        if code == s.BuiltinOperator.LOGISTIC and i == graph.OperatorsLength() - 1:
            return layers
        if code != s.BuiltinOperator.FULLY_CONNECTED:
            raise ValueError(f"operator {i}: builtin code {code} is not FULLY_CONNECTED")
        w, b = (_const(model, graph.Tensors(op.Inputs(k))) for k in (1, 2))
        opts = s.FullyConnectedOptions()
        table = op.BuiltinOptions()
        if table is None:
            raise ValueError(f"operator {i}: FULLY_CONNECTED without options")
        opts.Init(table.Bytes, table.Pos)
        fused = opts.FusedActivationFunction()
        if fused not in (s.ActivationFunctionType.NONE, s.ActivationFunctionType.RELU):
            raise ValueError(f"operator {i}: unsupported fused activation {fused}")
        act: Activation = "relu" if fused == s.ActivationFunctionType.RELU else "none"
        layers.append(DenseLayer(w, b, act))
    raise ValueError("model does not end with LOGISTIC")


def _const(model: Any, tensor: Any) -> npt.NDArray[np.float32]:
    """A constant float32 tensor's value."""
    buf = model.Buffers(tensor.Buffer())
    raw = buf.DataAsNumpy()
    if isinstance(raw, int):  # flatbuffers returns 0 for an absent vector
        raise ValueError(f"tensor {tensor.Name()!r} has no constant data")
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy())
    return np.frombuffer(raw.tobytes(), dtype="<f4").reshape(shape).copy()
