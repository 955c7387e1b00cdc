"""RESIZE_NEAREST_NEIGHBOR (TFLite ``reference_ops::ResizeNearestNeighbor``) and RESIZE_BILINEAR.

Source index of output row y: ``min(floor((y + o) * scale), in - 1)`` (``round`` with
align_corners), clamped at 0 with half_pixel_centers, everything in float32 like the C
code. :meth:`ResizeNearest.window` (and :meth:`ResizeBilinear.window`) computes any window of the output from the
slice of input rows/columns that window reads, for patch-based execution.
"""

from __future__ import annotations

import numpy as np

from tinypatch.errors import InputError
from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import with_defaults
from tinypatch.kernels.base import PreparedOp, register
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
class ResizeNearest(PreparedOp):
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
        x = inputs[0]
        return self.resize_window(x, (0, 0), ((0, self.out_hw[0]), (0, self.out_hw[1])), x.shape[1:3])

    def window(self, x_region: np.ndarray, in_origin: tuple[int, int],
               out_window: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
        """Output window ``out_window`` of the full resize from the input slice at ``in_origin``."""
        return self.resize_window(x_region, in_origin, out_window, self.tensor(0).shape[1:3])

    def resize_window(self, x_region: np.ndarray, in_origin: tuple[int, int],
                      out_window: tuple[tuple[int, int], tuple[int, int]],
                      full_in_hw: tuple[int, int], full_out_hw: tuple[int, int] | None = None) -> np.ndarray:
        """Output rows ``[y0, y1)`` x cols ``[x0, x1)`` of the full-image resize.

        ``x_region`` is the input slice whose top-left pixel is ``in_origin`` in the full
        input of size ``full_in_hw``; it must cover every source pixel of the window.
        """
        rows, cols = self.source_indices(tuple(full_in_hw), full_out_hw)
        (y0, y1), (x0, x1) = out_window
        r = rows[y0:y1] - in_origin[0]
        c = cols[x0:x1] - in_origin[1]
        if r.size and (r.min() < 0 or r.max() >= x_region.shape[1]) or \
                c.size and (c.min() < 0 or c.max() >= x_region.shape[2]):
            raise InputError(f"{self.op.name}: input region at {in_origin} of size {x_region.shape[1:3]} "
                             f"does not cover output window {out_window}")
        return x_region[:, r][:, :, c]


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
class ResizeBilinear(PreparedOp):
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

    def window(self, x_region: np.ndarray, in_origin: tuple[int, int],
               out_window: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
        """Output rows ``[y0, y1)`` x cols ``[x0, x1)`` from the input slice whose top-left pixel is
        ``in_origin``; the slice must cover every source row and column of the window."""
        (y0, y1), (x0, x1) = out_window
        (ly, uy, fy), (lx, ux, fx) = self.axis(0), self.axis(1)
        ly, uy, fy = ly[y0:y1] - in_origin[0], uy[y0:y1] - in_origin[0], fy[y0:y1]
        lx, ux, fx = lx[x0:x1] - in_origin[1], ux[x0:x1] - in_origin[1], fx[x0:x1]
        for idx, size in ((np.concatenate([ly, uy]), x_region.shape[1]), (np.concatenate([lx, ux]), x_region.shape[2])):
            if idx.size and (idx.min() < 0 or idx.max() >= size):
                raise InputError(f"{self.op.name}: input region at {in_origin} of size {x_region.shape[1:3]} "
                                 f"does not cover output window {out_window}")
        if not self.quantized:
            return self._float(x_region, ly, uy, fy, lx, ux, fx)
        x = x_region.astype(np.int64)
        wy1, wx1 = fy[None, :, None, None], fx[None, None, :, None]
        wy0, wx0 = 1024 - wy1, 1024 - wx1
        top, bottom = x[:, ly], x[:, uy]
        total = (top[:, :, lx] * wy0 * wx0 + bottom[:, :, lx] * wy1 * wx0
                 + top[:, :, ux] * wy0 * wx1 + bottom[:, :, ux] * wy1 * wx1)
        rounded = np.where(total > 0, total + (1 << 19), total - (1 << 19))
        return (np.sign(rounded) * (np.abs(rounded) >> 20)).astype(np.int8)  # C division truncates

    @staticmethod
    def _float(x: np.ndarray, ly, uy, fy, lx, ux, fx) -> np.ndarray:  # noqa: ANN001
        one = np.float32(1)
        dy = (fy - ly.astype(np.float32))[None, :, None, None]
        dx = (fx - lx.astype(np.float32))[None, None, :, None]
        top, bottom = x[:, ly], x[:, uy]
        out = top[:, :, lx] * (one - dy) * (one - dx)
        out = out + bottom[:, :, lx] * dy * (one - dx)
        out = out + top[:, :, ux] * (one - dy) * dx
        out = out + bottom[:, :, ux] * dy * dx
        return out.astype(np.float32)
