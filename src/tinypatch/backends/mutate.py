"""Structure-aware edits of ``.tflite`` bytes: find the scalar fields of a flatbuffer and rewrite one.

:func:`fields` lists, with their absolute byte offsets, the fields a hostile or corrupted model
may get wrong: tensor shapes, types and buffer indices, quantization scales, zero points and
axes, operator codes, operator input/output indices and option values, graph inputs/outputs
and buffer lengths. :func:`patch` writes a new value in place (same width), so a mutated model
is still a well-formed flatbuffer whose meaning changed in exactly one field. Used to build
the hostile-model tests and by ``benchmarks/fuzz.py``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import tflite


@dataclass(frozen=True)
class Field:
    """One scalar of the flatbuffer: what it is, whose it is, where it lives and its width."""

    kind: str  # e.g. "tensor.shape", "op.input", "op.option", "quant.scale", "buffer.length"
    owner: tuple[int, ...]  # (tensor,), (tensor, dim), (op, position), (op, option slot), ...
    offset: int  # absolute byte offset in the buffer
    fmt: str  # struct format of the value, little-endian

    def read(self, buf: bytes) -> Any:
        return struct.unpack_from(self.fmt, buf, self.offset)[0]


def patch(buf: bytes, field: Field, value: Any) -> bytes:
    """A copy of ``buf`` with ``field`` set to ``value`` (wrapped to the field's width)."""
    out = bytearray(buf)
    if field.fmt[-1] in "fd":
        struct.pack_into(field.fmt, out, field.offset, float(value))
    else:
        bits = 8 * struct.calcsize(field.fmt)
        v = int(value) & ((1 << bits) - 1)
        signed = field.fmt[-1].islower()
        if signed and v >= 1 << (bits - 1):
            v -= 1 << bits
        struct.pack_into(field.fmt, out, field.offset, v)
    return bytes(out)


def fields(buf: bytes) -> list[Field]:
    """Every mutable field of the model's first subgraph (raises on unreadable bytes)."""
    model = tflite.Model.GetRootAs(buf, 0)
    out: list[Field] = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        out += _scalar("opcode.deprecated_code", (i,), oc._tab, 4, "<b")
        out += _scalar("opcode.code", (i,), oc._tab, 10, "<i")
    for i in range(model.BuffersLength()):
        b = model.Buffers(i)
        out += _vector("buffer.length", (i,), b._tab, 4, "<I", length=True)
    if model.SubgraphsLength() == 0:
        return out
    sg = model.Subgraphs(0)
    for slot, what in ((4, "tensors"), (6, "inputs"), (8, "outputs"), (10, "operators")):
        out += _vector(f"graph.{what}.length", (), sg._tab, slot, "<I", length=True)
    out += _vector("graph.input", (), sg._tab, 6, "<i")
    out += _vector("graph.output", (), sg._tab, 8, "<i")
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        out += _vector("tensor.shape", (i,), t._tab, 4, "<i")
        out += _vector("tensor.rank", (i,), t._tab, 4, "<I", length=True)
        out += _scalar("tensor.type", (i,), t._tab, 6, "<b")
        out += _scalar("tensor.buffer", (i,), t._tab, 8, "<I")
        q = t.Quantization()
        if q is not None:
            out += _vector("quant.scale", (i,), q._tab, 8, "<f")
            out += _vector("quant.zero_point", (i,), q._tab, 10, "<q")
            out += _scalar("quant.axis", (i,), q._tab, 16, "<i")
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        out += _scalar("op.opcode", (i,), op._tab, 4, "<I")
        out += _vector("op.input", (i,), op._tab, 6, "<i")
        out += _vector("op.inputs.length", (i,), op._tab, 6, "<I", length=True)
        out += _vector("op.output", (i,), op._tab, 8, "<i")
        options = op.BuiltinOptions()
        if options is not None:
            out += _table_fields("op.option", (i,), options.Bytes, options.Pos)
    return out


def _scalar(kind: str, owner: tuple[int, ...], tab: Any, slot: int, fmt: str) -> list[Field]:
    o = tab.Offset(slot)
    return [Field(kind, owner, tab.Pos + o, fmt)] if o else []


def _vector(kind: str, owner: tuple[int, ...], tab: Any, slot: int, fmt: str, length: bool = False
            ) -> list[Field]:
    """The elements of a vector field (or, with ``length``, its element count)."""
    o = tab.Offset(slot)
    if not o:
        return []
    start = tab.Vector(o)
    if length:
        return [Field(kind, owner, start - 4, "<I")]
    size = struct.calcsize(fmt)
    n = min(tab.VectorLen(o), 4096)
    return [Field(kind, (*owner, j), start + j * size, fmt) for j in range(n)]


def _table_fields(kind: str, owner: tuple[int, ...], data: bytes, pos: int) -> list[Field]:
    """Every present field of an options table; widths guessed from the gaps between fields."""
    vtable = pos - struct.unpack_from("<i", data, pos)[0]
    vsize = struct.unpack_from("<H", data, vtable)[0]
    offs = sorted({struct.unpack_from("<H", data, vtable + 4 + 2 * s)[0] for s in range((vsize - 4) // 2)} - {0})
    out = []
    for j, off in enumerate(offs):
        gap = (offs[j + 1] - off) if j + 1 < len(offs) else 4
        width = 4 if gap >= 4 and off % 4 == 0 else 2 if gap >= 2 and off % 2 == 0 else 1
        out.append(Field(kind, (*owner, off), pos + off, {4: "<i", 2: "<h", 1: "<b"}[width]))
    return out


INTERESTING = (0, 1, -1, 2, 3, 5, 7, 127, 128, -128, 255, 256, 1000, 65535, 100_000, 2**31 - 1, -(2**31), -7)
FLOATS = (0.0, -0.0, -1.0, 1e-45, 1e-30, 1e30, float("inf"), float("-inf"), float("nan"), 3.4e38, 1.0, 0.5)


def mutate(buf: bytes, rng: np.random.Generator, table: list[Field] | None = None) -> tuple[bytes, Field, Any]:
    """One random field of ``buf`` set to a random boundary or nearby value: (bytes, field, value)."""
    table = fields(buf) if table is None else table
    f = table[int(rng.integers(len(table)))]
    old = f.read(buf)
    if f.fmt == "<f":
        value = FLOATS[int(rng.integers(len(FLOATS)))] if rng.random() < 0.7 else float(old) * float(
            rng.choice([0.5, 2.0, -1.0, 1e6, 1e-6]))
    else:
        r = rng.random()
        if r < 0.45:
            value = INTERESTING[int(rng.integers(len(INTERESTING)))]
        elif r < 0.85:
            value = int(old) + int(rng.integers(-3, 4))
        else:
            value = int(rng.integers(-(2**31), 2**31))
    return patch(buf, f, value), f, value
