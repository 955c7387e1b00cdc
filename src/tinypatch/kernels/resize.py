"""RESIZE_NEAREST_NEIGHBOR (TFLite ``reference_ops::ResizeNearestNeighbor``) and RESIZE_BILINEAR.

Source index of output row y: ``min(floor((y + o) * scale), in - 1)`` (``round`` with
align_corners), clamped at 0 with half_pixel_centers, everything in float32 like the C
code. Both are :class:`~tinypatch.kernels.base.GatherOp`: ``window`` computes any window of the output
from the slice of input rows/columns that window reads, for patch-based execution.
"""

from __future__ import annotations

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import with_defaults
from tinypatch.kernels.base import GatherOp, Tables, register
from tinypatch.kernels.fixedpoint import float_to_int32, roundf


def nearest_source_indices(out_size: int, in_size: int, align_corners: bool,
                           half_pixel_centers: bool) -> np.ndarray:
    """Input index read by every output index along one axis (TFLite ``GetNearestNeighbor``)."""
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    offset = np.float32(0.5 if half_pixel_centers else 0.0)
    pos = (np.arange(out_size).astype(np.float32) + offset) * scale
    idx = float_to_int32(roundf(pos) if align_corners else np.floor(pos))
    idx = np.minimum(idx, in_size - 1)
    if half_pixel_centers:
        idx = np.maximum(idx, 0)
    return idx


@register("RESIZE_NEAREST_NEIGHBOR")
class ResizeNearest(GatherOp):
    dtypes = ("int8", "float32")

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        a = with_defaults(op.type, op.attrs)
        self.align_corners = bool(a["align_corners"])
        self.half_pixel_centers = bool(a["half_pixel_centers"])
        size = self.const(1, "size")
        self.out_hw = (int(size[0]), int(size[1]))

    def source_indices(self, full_in_hw: tuple[int, int], full_out_hw: tuple[int, int] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols): the input row/column each output row/column copies."""
        oh, ow = full_out_hw or self.out_hw
        return (nearest_source_indices(oh, full_in_hw[0], self.align_corners, self.half_pixel_centers),
                nearest_source_indices(ow, full_in_hw[1], self.align_corners, self.half_pixel_centers))

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        return self.window(inputs[0], (0, 0), ((0, self.out_hw[0]), (0, self.out_hw[1])))

    def whole_tables(self, ax: int) -> Tables:
        """One source per output index, no weights."""
        src = self.source_indices(self.tensor(0).shape[1:3])[ax].astype(np.int64)[:, None]
        return src, np.ones(src.shape, bool), np.zeros((len(src), 0), np.int64)

    def gather(self, x: np.ndarray, rows: Tables, cols: Tables) -> np.ndarray:
        return x[:, rows[0][:, 0]][:, :, cols[0][:, 0]]


def bilinear_axis(out_size: int, in_size: int, align_corners: bool, half_pixel_centers: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, frac) along one axis for int8 RESIZE_BILINEAR (TFLite ``ResizeBilinearInteger``).

    The source position is in 1/1024 units: ``scale = round(1024 * in / out)`` (``in - 1`` over
    ``out - 1`` with align_corners), ``pos = o * scale`` (``+ scale / 2 - 512`` with half-pixel
    centers), ``lower = max(pos / 1024, 0)`` and ``upper = min(ceil(pos / 1024), in - 1)`` with C
    division; ``frac = pos - 1024 * lower`` weighs the upper sample, ``1024 - frac`` the lower one.
    """
    if align_corners and out_size > 1:
        scale = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale = ((1 << 10) * in_size + out_size // 2) // out_size
    o = np.arange(out_size, dtype=np.int64)
    pos = o * scale + (scale // 2 - (1 << 9) if half_pixel_centers else 0)
    lower = np.maximum(np.trunc(pos / 1024).astype(np.int64), 0)
    upper = np.minimum(np.trunc((pos + 1023) / 1024).astype(np.int64), in_size - 1)
    return lower, upper, pos - 1024 * lower


def bilinear_axis_float(out_size: int, in_size: int, align_corners: bool, half_pixel_centers: bool
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, position) along one axis for float RESIZE_BILINEAR, in float32 like the C code."""
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    o = np.arange(out_size).astype(np.float32)
    pos = (o + np.float32(0.5)) * scale - np.float32(0.5) if half_pixel_centers else o * scale
    lower = np.maximum(float_to_int32(np.floor(pos)), 0)
    upper = np.minimum(float_to_int32(np.ceil(pos)), in_size - 1)
    return lower, upper, pos.astype(np.float32)


@register("RESIZE_BILINEAR")
class ResizeBilinear(GatherOp):
    """int8: TFLite's integer path (weights in 1/1024, products summed in 64 bits, rounded half
    away from zero by 2^20); float32: TFLite's float expression evaluated in float32."""

    dtypes = ("int8", "float32")

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        a = with_defaults(op.type, op.attrs)
        self.align_corners = bool(a["align_corners"])
        self.half_pixel_centers = bool(a["half_pixel_centers"])
        if self.align_corners and self.half_pixel_centers:
            self.unsupported("align_corners and half_pixel_centers are both set (TFLite refuses it)")
        size = self.const(1, "size")
        self.out_hw = (int(size[0]), int(size[1]))
        x = self.tensor(0)
        if len(x.shape) != 4 or self.out.shape[1:3] != self.out_hw:
            self.unsupported(f"needs a 4-D input and an output of size {self.out_hw}")
        self.in_hw = (x.shape[1], x.shape[2])

    def axis(self, ax: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lower, upper, weight) per output index along H (0) or W (1) of the full resize."""
        fn = bilinear_axis if self.quantized else bilinear_axis_float
        return fn(self.out_hw[ax], self.in_hw[ax], self.align_corners, self.half_pixel_centers)

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        return self.window(inputs[0], (0, 0), ((0, self.out_hw[0]), (0, self.out_hw[1])))

    def whole_tables(self, ax: int) -> Tables:
        """Sources (lower, upper) per output index; weight: int8, the upper one's in 1/1024 (the lower
        one's is 1024 minus it); float32, the position past the lower source (float32, as the C code)."""
        lower, upper, frac = self.axis(ax)
        src = np.stack([lower, upper], 1).astype(np.int64)
        weight = frac if self.quantized else (frac - lower.astype(np.float32)).astype(np.float32)
        return src, np.ones(src.shape, bool), weight

    def gather(self, x: np.ndarray, rows: Tables, cols: Tables) -> np.ndarray:
        (sy, _, fy), (sx, _, fx) = rows, cols
        ly, uy, lx, ux = sy[:, 0], sy[:, 1], sx[:, 0], sx[:, 1]
        if not self.quantized:
            return self._float(x, ly, uy, fy, lx, ux, fx)
        x = x.astype(np.int64)
        wy1, wx1 = fy[None, :, None, None], fx[None, None, :, None]
        wy0, wx0 = 1024 - wy1, 1024 - wx1
        top, bottom = x[:, ly], x[:, uy]
        total = (top[:, :, lx] * wy0 * wx0 + bottom[:, :, lx] * wy1 * wx0
                 + top[:, :, ux] * wy0 * wx1 + bottom[:, :, ux] * wy1 * wx1)
        rounded = np.where(total > 0, total + (1 << 19), total - (1 << 19))
        return (np.sign(rounded) * (np.abs(rounded) >> 20)).astype(np.int8)  # C division truncates

    @staticmethod
    def _float(x: np.ndarray, ly, uy, fy, lx, ux, fx) -> np.ndarray:  # noqa: ANN001
        """TFLite's float expression; ``fy``, ``fx``: each output index's position past its lower source."""
        one = np.float32(1)
        dy, dx = fy[None, :, None, None], fx[None, None, :, None]
        top, bottom = x[:, ly], x[:, uy]
        out = top[:, :, lx] * (one - dy) * (one - dx)
        out = out + bottom[:, :, lx] * dy * (one - dx)
        out = out + top[:, :, ux] * (one - dy) * dx
        out = out + bottom[:, :, ux] * dy * dx
        return out.astype(np.float32)
