"""RESIZE_NEAREST_NEIGHBOR (TFLite ``reference_ops::ResizeNearestNeighbor``).

Source index of output row y: ``min(floor((y + o) * scale), in - 1)`` (``round`` with
align_corners), clamped at 0 with half_pixel_centers, everything in float32 like the C
code. :meth:`ResizeNearest.resize_window` computes any window of the output from the
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
