"""SLICE, STRIDED_SLICE, SPLIT and SPLIT_V: pure data movement (values copied unchanged).

Begin/end/stride resolution follows TFLite's ``strided_slice_logic.h``: negative indices count
from the end, indices are clamped to the axis, begin/end masks take the whole axis and a
shrink-axis bit keeps one element and drops the axis. Ellipsis and new-axis masks are refused.
"""

from __future__ import annotations

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import with_defaults
from tinypatch.kernels.base import PreparedOp, register

MOVE_DTYPES = ("int8", "float32", "int32")


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(v, hi))


def strided_bounds(begin: int, end: int, stride: int, size: int, begin_bit: bool, end_bit: bool,
                   shrink: bool, offset: bool) -> tuple[int, int]:
    """(start, stop) along one axis, TFLite's ``StridedSliceStartForAxis`` / ``EndForAxis``."""
    start = begin + size if begin < 0 else begin
    start = _clamp(start, 0, size) if stride > 0 else _clamp(start, -1, size - 1)
    if begin_bit:
        start = 0 if stride > 0 else size - 1
    if shrink:
        return start, start if start >= size else start + 1
    stop = end + start if offset else end
    stop = stop + size if stop < 0 else stop
    stop = _clamp(stop, 0, size) if stride > 0 else _clamp(stop, -1, size - 1)
    if end_bit:
        stop = size if stride > 0 else -1
    return start, stop


class _Slice(PreparedOp):
    dtypes = MOVE_DTYPES
    index: tuple[slice, ...]

    def check_shape(self, x_shape: tuple[int, ...]) -> None:
        got = np.empty(x_shape, np.int8)[self.index].shape
        if int(np.prod(got)) != self.out.size or (self.shrink_out(got) != self.out.shape):
            self.unsupported(f"slice of {x_shape} gives {got}, but the output tensor is {self.out.shape}")

    def shrink_out(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        """The slice (of a whole tensor, or of a tile when it keeps N, H and W whole)."""
        y = np.ascontiguousarray(inputs[0][self.index])
        return y.reshape(self.shrink_out(y.shape))

    def channel_range(self) -> tuple[int, int] | None:
        """(first, stop) of the channels a 4-D slice keeps when it keeps N, H and W whole, else None."""
        x = self.tensor(0)
        if len(x.shape) != 4 or len(self.out.shape) != 4:
            return None
        full = [s.indices(d) == (0, d, 1) for s, d in zip(self.index[:3], x.shape[:3])]
        c0, c1, step = self.index[3].indices(x.shape[3])
        return (c0, c1) if all(full) and step == 1 and c1 > c0 else None


@register("SLICE")
class Slice(_Slice):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        x = self.tensor(0)
        begin = [int(v) for v in self.const(1, "begin")]
        size = [int(v) for v in self.const(2, "size")]
        if len(begin) != len(x.shape) or len(size) != len(x.shape):
            self.unsupported(f"begin/size of length {len(begin)}/{len(size)} for a rank-{len(x.shape)} input")
        stops = [d if s == -1 else b + s for b, s, d in zip(begin, size, x.shape)]
        if any(b < 0 or e > d or e < b for b, e, d in zip(begin, stops, x.shape)):
            self.unsupported(f"begin {begin} and size {size} leave the input {x.shape}")
        self.index = tuple(slice(b, e) for b, e in zip(begin, stops))
        self.check_shape(x.shape)


@register("STRIDED_SLICE")
class StridedSlice(_Slice):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        a = with_defaults(op.type, op.attrs)
        if a["ellipsis_mask"] or a["new_axis_mask"]:
            self.unsupported("ellipsis_mask / new_axis_mask")
        x = self.tensor(0)
        begin, end, strides = (np.asarray(self.const(k, w)).astype(np.int64).tolist()
                               for k, w in ((1, "begin"), (2, "end"), (3, "strides")))
        rank = len(x.shape)
        if not len(begin) == len(end) == len(strides) <= rank or 0 in strides:
            self.unsupported(f"begin/end/strides {begin}/{end}/{strides} for a rank-{rank} input")
        n = len(begin)
        self.shrink = [bool(a["shrink_axis_mask"] >> i & 1) for i in range(n)] + [False] * (rank - n)
        if any(sh and sd < 0 for sh, sd in zip(self.shrink, strides)):
            self.unsupported("shrink_axis_mask on an axis with a negative stride (the reference writes nothing)")
        index = []
        for i in range(rank):
            if i >= n:
                index.append(slice(None))
                continue
            start, stop = strided_bounds(begin[i], end[i], strides[i], x.shape[i], bool(a["begin_mask"] >> i & 1),
                                         bool(a["end_mask"] >> i & 1), self.shrink[i], bool(a["offset"]))
            if self.shrink[i] and not 0 <= start < x.shape[i]:
                self.unsupported(f"shrink_axis_mask keeps index {begin[i]} of axis {i}, outside its {x.shape[i]}")
            step = strides[i] if not self.shrink[i] else 1
            index.append(slice(start, None if stop < 0 else stop, step))
        self.index = tuple(index)
        self.check_shape(x.shape)

    def shrink_out(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(d for d, s in zip(shape, self.shrink) if not s)

    def channel_range(self) -> tuple[int, int] | None:
        return None if any(self.shrink) else super().channel_range()


@register("SPLIT", "SPLIT_V")
class Split(PreparedOp):
    """SPLIT (axis, input; equal parts) and SPLIT_V (input, sizes, axis): one output per part."""

    dtypes = MOVE_DTYPES

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        x_pos, axis_pos = (1, 0) if op.type == "SPLIT" else (0, 2)
        x = self.tensor(x_pos)
        axis = int(np.asarray(self.const(axis_pos, "axis")).ravel()[0])
        if not -len(x.shape) <= axis < len(x.shape):
            self.unsupported(f"axis {axis} of a rank-{len(x.shape)} input")
        self.axis = axis % len(x.shape)
        outs = [graph.tensors[t] for t in op.outputs]
        sizes = [t.shape[self.axis] for t in outs]
        if sum(sizes) != x.shape[self.axis] or any(
                t.shape[:self.axis] + t.shape[self.axis + 1:] != x.shape[:self.axis] + x.shape[self.axis + 1:]
                for t in outs):
            self.unsupported(f"outputs {[t.shape for t in outs]} do not split {x.shape} along axis {self.axis}")
        self.bounds = np.cumsum([0, *sizes]).tolist()

    def run(self, inputs: list[np.ndarray], pads: object = None) -> list[np.ndarray]:
        x = inputs[0]
        return [np.ascontiguousarray(np.take(x, range(a, b), axis=self.axis))
                for a, b in zip(self.bounds[:-1], self.bounds[1:])]
