"""Which input an operator may overwrite with its output, and how far below it the output must start.

A kernel that writes its output in raster order (pixel by pixel, row by row, all channels of a
pixel together) may run *in place*: its output starts ``shift`` bytes below the start of an
input it is the last reader of, and overwrites that input as it goes, provided no output byte
lands on an input byte some later output pixel still reads. The pair then needs
``max(shift + in, out)`` bytes instead of ``in + out`` (TinyEngine runs depthwise convs in
place; this covers every windowed op and point-wise op with one rule).

The bound is exact for the kernels' write order: our C kernels (reference, DSP, Helium) write
at most :data:`BLOCK` consecutive pixels of one output row before they have read every input
pixel those outputs need, and they read a pixel's window only from its first in-bounds row and
column on. So for every output pixel ``k`` (raster index), the bytes written up to the end of
its block must stay below the lowest input byte that pixel ``k`` or any later one reads::

    shift >= min(k + BLOCK, end of k's row) * out_pixel_bytes - lowest_read(k..) * in_pixel_bytes

Element-wise operators (ADD, MUL, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, PRELU, table lookups,
QUANTIZE) read element ``i`` before they write element ``i``: shift 0 for an input of the output's shape whose elements are at least as
wide as the output's (a float32 -> int8 QUANTIZE writes behind what it reads). PAD is a window
op with a 1x1 window (pixels in the border read nothing). A SLICE / STRIDED_SLICE keeping a
channel range of every pixel copies pixel ``p``'s channels to ``p * c_out``, at or below where
they are read (``p * c_in + c0``) and below every later pixel's: shift 0. The upsampling ops
(RESIZE_BILINEAR, TRANSPOSE_CONV) do not run in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinypatch.analysis.regions import AxisMap, axis_maps
from tinypatch.ir import DTYPE_BYTES, Graph
from tinypatch.ir.optable import InPlace as Rule
from tinypatch.ir.optable import op_def

BLOCK = 4  # output pixels of a row a C kernel may write before it has read all of their inputs


@dataclass(frozen=True)
class InPlace:
    """Op output written over ``tensor`` (an activation input), starting ``shift`` bytes below it."""

    tensor: str
    shift: int


def _first_read(m: AxisMap) -> np.ndarray:
    """Per output index along one axis: the first input index its window reads (-1 if none)."""
    o = np.arange(m.out_size)
    lo = o * m.stride - m.pad  # first tap, maybe in the padding
    skip = np.where(lo < 0, -(lo // m.dilation), 0)  # taps in the padding before the first real row
    first = lo + skip * m.dilation
    return np.where((skip < m.kernel) & (first < m.in_size), first, -1)


def window_shift(graph: Graph, k: int, block: int = BLOCK) -> int | None:
    """Least shift (bytes) for windowed op ``k`` to overwrite its input 0 in raster order."""
    op = graph.ops[k]
    maps = axis_maps(graph, op)
    if maps is None or maps[0].kind != "window":
        return None
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if x.shape[0] != 1 or y.shape[0] != 1:
        return None
    mh, mw = maps
    rows, cols = _first_read(mh), _first_read(mw)
    out_px = y.shape[3] * DTYPE_BYTES[y.dtype]
    in_px = x.shape[3] * DTYPE_BYTES[x.dtype]
    n = mh.out_size * mw.out_size
    reads = (rows[:, None] >= 0) & (cols[None, :] >= 0)
    never = n * out_px + 1  # a pixel that reads nothing constrains nothing: beyond every write
    lowest = np.where(reads, rows[:, None] * mw.in_size + cols[None, :], never).ravel()
    lowest = np.minimum.accumulate(lowest[::-1])[::-1]  # lowest pixel read by pixel k or any later one
    idx = np.arange(n)
    written = np.minimum(idx + block, (idx // mw.out_size + 1) * mw.out_size)
    return int(np.max(written * out_px - lowest * in_px))


def inplace_candidates(graph: Graph, k: int) -> list[InPlace]:
    """The inputs op ``k`` could overwrite (if it is their last reader), with their shifts."""
    op = graph.ops[k]
    out = graph.tensors[op.outputs[0]] if len(op.outputs) == 1 else None
    if out is None:
        return []
    rule = op_def(op.type).inplace
    if rule == Rule.WINDOW:
        shift = window_shift(graph, k)
        return [] if shift is None else [InPlace(op.inputs[0], shift)]
    if rule == Rule.CHANNELS and axis_maps(graph, op) is not None:  # pixel p's channels to p * c_out
        return [InPlace(op.inputs[0], 0)]
    if rule == Rule.ELEMENTWISE:
        return [InPlace(t, 0) for t in dict.fromkeys(op.inputs)
                if t and not graph.tensors[t].is_const and graph.tensors[t].shape == out.shape
                and DTYPE_BYTES[graph.tensors[t].dtype] >= DTYPE_BYTES[out.dtype]]
    return []
