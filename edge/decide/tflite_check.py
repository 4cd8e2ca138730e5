"""Bounds-check a .tflite flatbuffer in pure Python before any C++ runtime touches it.

``ai_edge_litert`` verifies flatbuffers itself, but ``tflite_runtime`` 2.14 builds the
interpreter from unverified bytes, so a truncated or corrupt file can crash the process. This
walks every table, vector and string of the model structure the interpreter reads (model,
operator codes, subgraphs, tensors, quantization, operators and their option tables, buffers,
metadata, signatures), checks each offset lies inside the file and each index points at an
existing tensor, buffer, operator code or subgraph, and refuses features the scorer does not
support (sparse tensors, external buffers, large custom options). It needs no schema package.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

IDENTIFIER = b"TFL3"


class FlatbufferError(ValueError):
    """The bytes are not a well-formed TFLite model; the message says where."""


@dataclass(frozen=True, slots=True)
class _Table:
    pos: int
    vtable: int
    vt_size: int
    obj_size: int


class _Reader:
    """Bounds-checked little-endian flatbuffer reads."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)

    def _need(self, pos: int, size: int, what: str) -> None:
        if pos < 0 or pos + size > self.n:
            raise FlatbufferError(f"{what} at byte {pos} (+{size}) lies outside {self.n} bytes")

    def u8(self, pos: int, what: str) -> int:
        self._need(pos, 1, what)
        return self.data[pos]

    def u16(self, pos: int, what: str) -> int:
        self._need(pos, 2, what)
        return int(struct.unpack_from("<H", self.data, pos)[0])

    def i32(self, pos: int, what: str) -> int:
        self._need(pos, 4, what)
        return int(struct.unpack_from("<i", self.data, pos)[0])

    def u32(self, pos: int, what: str) -> int:
        self._need(pos, 4, what)
        return int(struct.unpack_from("<I", self.data, pos)[0])

    def u64(self, pos: int, what: str) -> int:
        self._need(pos, 8, what)
        return int(struct.unpack_from("<Q", self.data, pos)[0])

    def table(self, pos: int, what: str) -> _Table:
        vtable = pos - self.i32(pos, what)
        vt_size = self.u16(vtable, f"{what} vtable")
        obj_size = self.u16(vtable + 2, f"{what} vtable")
        if vt_size < 4 or vt_size % 2:
            raise FlatbufferError(f"{what} has a malformed vtable (size {vt_size})")
        self._need(vtable, vt_size, f"{what} vtable")
        self._need(pos, max(obj_size, 4), what)
        return _Table(pos, vtable, vt_size, obj_size)

    def field(self, t: _Table, slot: int, size: int, what: str) -> int | None:
        """Absolute position of a present field, or None."""
        entry = 4 + 2 * slot
        if entry >= t.vt_size:
            return None
        off = self.u16(t.vtable + entry, what)
        if off == 0:
            return None
        if off + size > t.obj_size:
            raise FlatbufferError(f"{what} lies outside its table")
        self._need(t.pos + off, size, what)
        return t.pos + off

    def scalar(self, t: _Table, slot: int, fmt: str, default: int, what: str) -> int:
        size = struct.calcsize(fmt)
        p = self.field(t, slot, size, what)
        return default if p is None else int(struct.unpack_from(fmt, self.data, p)[0])

    def indirect(self, p: int, what: str) -> int:
        target = p + self.u32(p, what)
        self._need(target, 4, what)
        return target

    def vector(self, t: _Table, slot: int, elem: int, what: str) -> tuple[int, int] | None:
        """(start, length) of a present vector, bounds-checked."""
        p = self.field(t, slot, 4, what)
        if p is None:
            return None
        v = self.indirect(p, what)
        length = self.u32(v, what)
        self._need(v + 4, length * elem, what)
        return v + 4, length

    def ints(self, t: _Table, slot: int, what: str) -> list[int]:
        v = self.vector(t, slot, 4, what)
        return [] if v is None else [self.i32(v[0] + 4 * i, what) for i in range(v[1])]

    def string(self, t: _Table, slot: int, what: str) -> None:
        v = self.vector(t, slot, 1, what)
        if v is not None and self.u8(v[0] + v[1], f"{what} terminator") != 0:
            raise FlatbufferError(f"{what} is not NUL-terminated")

    def tables(self, t: _Table, slot: int, what: str) -> list[_Table]:
        v = self.vector(t, slot, 4, what)
        if v is None:
            return []
        return [self.table(self.indirect(v[0] + 4 * i, what), f"{what}[{i}]") for i in range(v[1])]

    def subtable(self, t: _Table, slot: int, what: str) -> _Table | None:
        p = self.field(t, slot, 4, what)
        return None if p is None else self.table(self.indirect(p, what), what)


def _in_range(values: list[int], n: int, what: str, optional: bool = False) -> None:
    lo = -1 if optional else 0
    for v in values:
        if not lo <= v < n:
            raise FlatbufferError(f"{what} refers to index {v}, only {n} exist")


def check_tflite(data: bytes) -> None:
    """Raise FlatbufferError unless ``data`` is a structurally sound TFLite model."""
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise FlatbufferError(f"file identifier {IDENTIFIER.decode()} missing ({len(data)} bytes)")
    r = _Reader(data)
    model = r.table(r.u32(0, "root offset"), "model")
    version = r.scalar(model, 0, "<I", 0, "model.version")
    if version != 3:
        raise FlatbufferError(f"schema version {version}, expected 3")
    for slot, what in ((8, "external buffer groups"), (9, "external buffers")):
        if r.field(model, slot, 4, what) is not None:
            raise FlatbufferError(f"unsupported: {what}")
    codes = r.tables(model, 1, "operator_codes")
    for i, code in enumerate(codes):
        r.string(code, 1, f"operator_codes[{i}].custom_code")
        r.scalar(code, 3, "<i", 0, f"operator_codes[{i}].builtin_code")
    buffers = r.tables(model, 4, "buffers")
    for i, buf in enumerate(buffers):
        r.vector(buf, 0, 1, f"buffers[{i}].data")
        offset = r.scalar(buf, 1, "<Q", 0, f"buffers[{i}].offset")
        size = r.scalar(buf, 2, "<Q", 0, f"buffers[{i}].size")
        if offset > 1 and offset + size > len(data):
            raise FlatbufferError(f"buffers[{i}] points past the end of the file")
    r.string(model, 3, "description")
    _in_range(r.ints(model, 5, "metadata_buffer"), len(buffers), "metadata_buffer")
    for i, meta in enumerate(r.tables(model, 6, "metadata")):
        r.string(meta, 0, f"metadata[{i}].name")
        _in_range([r.scalar(meta, 1, "<I", 0, "metadata")], len(buffers), f"metadata[{i}]")
    graphs = r.tables(model, 2, "subgraphs")
    if not graphs:
        raise FlatbufferError("model has no subgraph")
    n_tensors = [_check_graph(r, g, i, len(codes), len(buffers)) for i, g in enumerate(graphs)]
    for i, sig in enumerate(r.tables(model, 7, "signature_defs")):
        r.string(sig, 2, f"signature_defs[{i}].signature_key")
        graph = r.scalar(sig, 4, "<I", 0, f"signature_defs[{i}].subgraph_index")
        _in_range([graph], len(graphs), f"signature_defs[{i}].subgraph_index")
        for slot in (0, 1):
            for j, tm in enumerate(r.tables(sig, slot, f"signature_defs[{i}] tensor maps")):
                r.string(tm, 0, f"signature_defs[{i}] tensor map {j} name")
                idx = r.scalar(tm, 1, "<I", 0, "tensor map")
                _in_range([idx], n_tensors[graph], f"signature_defs[{i}] tensor map {j}")


def _check_graph(r: _Reader, g: _Table, gi: int, n_codes: int, n_buffers: int) -> int:
    """Check one subgraph; the number of its tensors."""
    where = f"subgraphs[{gi}]"
    tensors = r.tables(g, 0, f"{where}.tensors")
    for i, t in enumerate(tensors):
        tw = f"{where}.tensors[{i}]"
        r.ints(t, 0, f"{tw}.shape")
        r.ints(t, 7, f"{tw}.shape_signature")
        r.string(t, 3, f"{tw}.name")
        _in_range([r.scalar(t, 2, "<I", 0, f"{tw}.buffer")], n_buffers, f"{tw}.buffer")
        for slot, what in ((6, "sparsity"), (9, "variant_tensors"), (10, "external_buffer")):
            if r.field(t, slot, 4, f"{tw}.{what}") is not None:
                raise FlatbufferError(f"unsupported: {tw}.{what}")
        q = r.subtable(t, 4, f"{tw}.quantization")
        if q is not None:
            for slot, elem in ((0, 4), (1, 4), (2, 4), (3, 8)):
                r.vector(q, slot, elem, f"{tw}.quantization")
            r.subtable(q, 5, f"{tw}.quantization.details")
    n = len(tensors)
    _in_range(r.ints(g, 1, f"{where}.inputs"), n, f"{where}.inputs")
    _in_range(r.ints(g, 2, f"{where}.outputs"), n, f"{where}.outputs")
    r.string(g, 4, f"{where}.name")
    for i, op in enumerate(r.tables(g, 3, f"{where}.operators")):
        ow = f"{where}.operators[{i}]"
        _in_range([r.scalar(op, 0, "<I", 0, f"{ow}.opcode_index")], n_codes, f"{ow}.opcode")
        _in_range(r.ints(op, 1, f"{ow}.inputs"), n, f"{ow}.inputs", optional=True)
        _in_range(r.ints(op, 2, f"{ow}.outputs"), n, f"{ow}.outputs", optional=True)
        _in_range(r.ints(op, 8, f"{ow}.intermediates"), n, f"{ow}.intermediates", optional=True)
        r.vector(op, 5, 1, f"{ow}.custom_options")
        r.vector(op, 7, 1, f"{ow}.mutating_variable_inputs")
        for slot in (9, 10):
            if r.field(op, slot, 8, f"{ow}.large_custom_options") is not None:
                raise FlatbufferError(f"unsupported: {ow} large custom options")
        opts = r.subtable(op, 4, f"{ow}.builtin_options")
        if opts is not None and r.scalar(op, 3, "<B", 0, f"{ow}") == _FULLY_CONNECTED_OPTIONS:
            r.vector(opts, 5, 1, f"{ow}.builtin_options.quant_spec")
        r.subtable(op, 12, f"{ow}.builtin_options_2")
    return n


_FULLY_CONNECTED_OPTIONS = 8  # BuiltinOptions.FullyConnectedOptions in the LiteRT schema
