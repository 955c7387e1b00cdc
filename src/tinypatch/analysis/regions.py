"""Region (receptive-field / halo) propagation for spatial operators, one axis at a time.

For an operator and an output interval ``[a, b)`` along H or W, :func:`input_span` gives the
input interval it reads, clipped to the real feature map, and the zero padding it needs at
each end. Padding is only ever non-zero where the interval touches a true image border, so
a tile computed from its span is bit-identical to the same pixels of whole-image inference.
H and W are independent, which keeps planning separable and fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import out_size, pad_before, with_defaults
from tinypatch.ir.optable import Reduce, Region, Window, op_def

Interval = tuple[int, int]  # half-open [start, stop)
# Kinds of AxisMap whose reads come from a per-output-index table (monotone first/last input index).
TABLE_KINDS = ("nearest", "bilinear", "transpose")


@dataclass(frozen=True)
class AxisMap:
    """How one operator maps output positions to input positions along one spatial axis.

    ``kind`` is "window" (conv, pool, pad: input span = [o*stride - pad, ...+ extent)),
    "identity" (point-wise), or a table kind: "nearest" (resize-nearest: a gather), "bilinear"
    (resize-bilinear: two source rows per output row) or "transpose" (transpose conv: output o
    gathers the inputs i with ``i*stride - pad + tap == o``), whose span of ``[a, b)`` is
    ``[first[a], last[b - 1] + 1)`` with the monotone tables of :meth:`read_table`.
    """

    kind: str
    in_size: int
    out_size: int
    kernel: int = 1
    stride: int = 1
    dilation: int = 1
    pad: int = 0  # zero rows/cols before input position 0
    align_corners: bool = False
    half_pixel_centers: bool = False

    @property
    def extent(self) -> int:
        return (self.kernel - 1) * self.dilation + 1

    def source_index(self, out_index: np.ndarray) -> np.ndarray:
        """Nearest-neighbour source index of each output index (the kernel's own rule)."""
        from tinypatch.kernels.resize import nearest_source_indices

        table = nearest_source_indices(self.out_size, self.in_size, self.align_corners, self.half_pixel_centers)
        return table[out_index].astype(np.int64)

    def read_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(first, last) input index each output index reads (table kinds; first > last: none)."""
        return _read_table(self.kind, self.in_size, self.out_size, self.kernel, self.stride, self.pad,
                           self.align_corners, self.half_pixel_centers)

    def table_span(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised span of output intervals ``[lo, hi)`` (non-empty) for a table kind."""
        first, last = self.read_table()
        s = np.minimum(first[np.clip(lo, 0, self.out_size - 1)], self.in_size)
        e = np.maximum(last[np.clip(hi - 1, 0, self.out_size - 1)] + 1, s)
        return s, e

    def input_span(self, out: Interval) -> tuple[Interval, int, int]:
        """Input interval read for output interval ``out``, and (pad_before, pad_after)."""
        a, b = out
        if a >= b:  # an empty output interval reads nothing (not a kernel-sized window)
            return (0, 0), 0, 0
        if self.kind == "identity":
            return (min(a, self.in_size - 1), min(b, self.in_size)) if self.in_size == 1 else (a, b), 0, 0
        if self.kind in TABLE_KINDS:  # table_span's formulas on one interval, in scalars (no arrays made)
            first, last = self.read_table()
            top = self.out_size - 1
            s = min(int(first[min(max(a, 0), top)]), self.in_size)
            return (s, max(int(last[min(max(b - 1, 0), top)]) + 1, s)), 0, 0
        n = self.in_size
        lo = a * self.stride - self.pad
        hi = (b - 1) * self.stride - self.pad + (self.kernel - 1) * self.dilation + 1  # + extent
        # conditional expressions for the min/max of the formulas (4x faster; planning and every run's
        # checks call this very often)
        start = n if lo > n else lo if lo > 0 else 0  # noqa: FURB136  min(max(lo, 0), n)
        stop = hi if hi < n else n  # noqa: FURB136
        stop = stop if stop > start else start  # noqa: FURB136  max(min(hi, n), start)
        # a window entirely outside the map (a tile inside a PAD border) reads nothing: all padding
        before = (hi if hi < 0 else 0) - lo  # noqa: FURB136  max(0, min(hi, 0) - lo)
        after = hi - (lo if lo > n else n)  # noqa: FURB136  max(0, hi - max(lo, n))
        return (start, stop), before if before > 0 else 0, after if after > 0 else 0  # noqa: FURB136


NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


@lru_cache(maxsize=256)
def _read_table(kind: str, in_size: int, out_size: int, kernel: int, stride: int, pad: int, align_corners: bool,
                half_pixel_centers: bool) -> tuple[np.ndarray, np.ndarray]:
    from tinypatch.kernels.resize import bilinear_axis, nearest_source_indices

    o = np.arange(out_size, dtype=np.int64)
    if kind == "nearest":
        src = nearest_source_indices(out_size, in_size, align_corners, half_pixel_centers).astype(np.int64)
        return src, src
    if kind == "bilinear":
        lower, upper, _ = bilinear_axis(out_size, in_size, align_corners, half_pixel_centers)
        return lower.astype(np.int64), upper.astype(np.int64)
    first = np.maximum(-((pad - kernel + 1 + o) // -stride), 0)  # ceil((o + pad - kernel + 1) / stride)
    last = np.minimum((o + pad) // stride, in_size - 1)
    return first, last


def _spatial_hw(graph: Graph, name: str) -> tuple[int, int] | None:
    shape = graph.tensors[name].shape
    return tuple(nhwc_shape(graph, name)[1:3]) if len(shape) == 4 else None  # type: ignore[return-value]


def _perm(graph: Graph, op: Op) -> tuple[int, ...] | None:
    """The constant permutation of a 4-D TRANSPOSE (None for any other op)."""
    if not op_def(op.type).permutes or len(op.inputs) < 2 or len(op.outputs) != 1:
        return None
    perm = graph.tensors[op.inputs[1]].data
    return tuple(int(p) for p in perm) if perm is not None and perm.shape == (4,) else None


def reads_nchw(graph: Graph, op: Op) -> bool:
    """Is ``op`` a TRANSPOSE of a 4-D NCHW graph input to NHWC (a PyTorch export's first op)? It
    then reads H and W at dims 2 and 3 of its input, and a patch stage may start with it."""
    return _perm(graph, op) == NCHW_TO_NHWC and op.inputs[0] in graph.inputs


def writes_nchw(graph: Graph, op: Op) -> bool:
    """Is ``op`` a TRANSPOSE of a 4-D NHWC map to an NCHW graph output that no op reads (a PyTorch
    export's last op)? It then writes H and W at dims 2 and 3 of its output, and a patch stage may
    end with it."""
    out = op.outputs[0] if op.outputs else None
    return (_perm(graph, op) == NHWC_TO_NCHW and out in graph.outputs
            and not any(out in other.inputs for other in graph.ops))


def nhwc_shape(graph: Graph, name: str) -> tuple[int, ...]:
    """``name``'s shape in NHWC order: an NCHW graph output that :func:`writes_nchw` makes reads as
    (N, H, W, C); any other tensor as it is."""
    shape = graph.tensors[name].shape
    if len(shape) == 4 and name in graph.outputs and any(
            op.outputs[:1] == [name] and writes_nchw(graph, op) for op in graph.ops):
        return shape[0], shape[2], shape[3], shape[1]
    return shape


def axis_maps(graph: Graph, op: Op) -> tuple[AxisMap, AxisMap] | None:
    """(H map, W map) of the op's first activation input, or None if the op is not spatially
    local (global pooling, FC, reshape, softmax, transpose other than :func:`reads_nchw` and
    :func:`writes_nchw`, concat along H/W...)."""
    if len(op.outputs) != 1:
        return None
    out_hw = _spatial_hw(graph, op.outputs[0])
    acts = [t for t in op.inputs if t and not graph.tensors[t].is_const]
    if out_hw is None or not acts:
        return None
    if reads_nchw(graph, op):  # output (y, x) reads input [:, :, y, x]
        _, _, h, w = graph.tensors[acts[0]].shape
        return AxisMap("identity", h, out_hw[0]), AxisMap("identity", w, out_hw[1])
    in_hw = _spatial_hw(graph, acts[0])
    if in_hw is None:
        return None
    if writes_nchw(graph, op):  # output [:, :, y, x] reads input (y, x)
        return AxisMap("identity", in_hw[0], out_hw[0]), AxisMap("identity", in_hw[1], out_hw[1])
    d = op_def(op.type)
    if d.region == Region.IDENTITY:
        if any(_spatial_hw(graph, x) is None for x in acts):
            return None
        return tuple(AxisMap("identity", i, o) for i, o in zip(in_hw, out_hw))  # type: ignore[return-value]
    if d.region == Region.CONCAT:
        axis = op.attrs.get("axis", -1) % 4
        if axis != 3 or any(_spatial_hw(graph, x) != out_hw for x in acts):
            return None
        return AxisMap("identity", in_hw[0], out_hw[0]), AxisMap("identity", in_hw[1], out_hw[1])
    if d.region == Region.WINDOW:
        assert d.window is not None, f"{op.type}: a window region needs window attributes"
        return _window_maps(graph, op, d.window, in_hw, out_hw)
    if d.region == Region.PAD:
        pads = graph.tensors[op.inputs[1]].data
        if pads is None or pads.shape[0] != 4 or pads[0].any() or pads[3].any():
            return None
        return (AxisMap("window", in_hw[0], out_hw[0], pad=int(pads[1][0])),
                AxisMap("window", in_hw[1], out_hw[1], pad=int(pads[2][0])))
    if d.region in (Region.NEAREST, Region.BILINEAR):
        a = with_defaults(op.type, op.attrs)
        kind = "nearest" if d.region == Region.NEAREST else "bilinear"
        return tuple(AxisMap(kind, i, o, align_corners=a["align_corners"],  # type: ignore[return-value]
                             half_pixel_centers=a["half_pixel_centers"]) for i, o in zip(in_hw, out_hw))
    if d.region == Region.TRANSPOSE:
        kernel, stride, padding = transpose_geometry(graph, op)
        return tuple(AxisMap("transpose", i, o, k, s, pad=pad_before(o, k, s, 1, padding))  # type: ignore[return-value]
                     for i, o, k, s in zip(in_hw, out_hw, kernel, stride))
    if d.region == Region.CHANNEL_SLICE and in_hw == out_hw and _keeps_pixels(graph, op):
        return AxisMap("identity", in_hw[0], out_hw[0]), AxisMap("identity", in_hw[1], out_hw[1])
    return None


def transpose_geometry(graph: Graph, op: Op) -> tuple[tuple[int, int], tuple[int, int], str]:
    """(kernel, stride, padding) of a transpose conv: filter [cout, kh, kw, cin] at input 1; the
    padding is a conv's with that filter and stride on an input of the *output's* size."""
    a = with_defaults(op.type, op.attrs)
    wshape = graph.tensors[op.inputs[1]].shape
    return (wshape[1], wshape[2]), (a["stride_h"], a["stride_w"]), a["padding"]


def _keeps_pixels(graph: Graph, op: Op) -> bool:
    """Does a channel slice keep N, H and W whole (a contiguous range of channels)?"""
    from tinypatch.kernels import prepare

    return prepare(graph, op).channel_range() is not None


def window_geometry(graph: Graph, op: Op, w: Window) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], str]:
    """(kernel, stride, dilation, padding) of a window operator, from the attributes its table row names."""
    a = with_defaults(op.type, op.attrs)
    if w.kernel is None:
        wshape = graph.tensors[op.inputs[1]].shape
        kernel = (wshape[1], wshape[2])
    else:
        kernel = (a[w.kernel[0]], a[w.kernel[1]])
    dilation = (a.get(w.dilation[0], 1), a.get(w.dilation[1], 1)) if w.dilation else (1, 1)
    return kernel, (a[w.stride[0]], a[w.stride[1]]), dilation, a[w.padding]


def _window_maps(graph: Graph, op: Op, w: Window, in_hw: tuple[int, int],
                 out_hw: tuple[int, int]) -> tuple[AxisMap, AxisMap]:
    kernel, stride, dilation, padding = window_geometry(graph, op, w)
    maps = []
    for ax, (k, s, dl) in enumerate(zip(kernel, stride, dilation)):
        assert out_size(in_hw[ax], k, s, dl, padding) == out_hw[ax], f"{op.name}: shape mismatch"
        maps.append(AxisMap("window", in_hw[ax], out_hw[ax], k, s, dl, pad_before(in_hw[ax], k, s, dl, padding)))
    return maps[0], maps[1]


def is_global_reduce(graph: Graph, op: Op) -> bool:
    """An int8 average over the whole H x W map (MEAN over axes 1, 2 or a global VALID average
    pool): it can end a patch stage by accumulating per-channel sums tile by tile."""
    if not op.inputs or len(graph.tensors[op.inputs[0]].shape) != 4 or graph.tensors[op.inputs[0]].dtype != "int8":
        return False
    _, h, w, _ = graph.tensors[op.inputs[0]].shape
    d = op_def(op.type)
    if d.reduce == Reduce.AXES:
        axes = graph.tensors[op.inputs[1]].data if len(op.inputs) > 1 and op.inputs[1] else None
        return axes is not None and {int(a) % 4 for a in np.atleast_1d(axes)} == {1, 2}
    if d.reduce == Reduce.FULL_WINDOW:
        assert d.window is not None
        kernel, _, _, padding = window_geometry(graph, op, d.window)
        return kernel == (h, w) and padding == "VALID"
    return False


def hull(a: Interval | None, b: Interval) -> Interval:
    """Smallest interval holding both (an empty interval adds nothing)."""
    if a is None or a[0] >= a[1]:
        return b if a is None or b[0] < b[1] else a
    if b[0] >= b[1]:
        return a
    return min(a[0], b[0]), max(a[1], b[1])


def split_even(size: int, n: int) -> list[int]:
    """Cut points splitting ``size`` into ``n`` near-equal parts (larger parts first)."""
    n = max(1, min(n, size))
    base, extra = divmod(size, n)
    cuts = [0]
    for i in range(n):
        cuts.append(cuts[-1] + base + (1 if i < extra else 0))
    return cuts
