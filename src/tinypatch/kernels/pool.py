"""AVERAGE_POOL_2D and MAX_POOL_2D (TFLite ``reference_integer_ops`` pooling).

Padded cells never take part: the average divides by the number of real cells under the
window (rounding half away from zero, as TFLite does) and the maximum ignores them. The
int8 kernels do not rescale: TFLite assumes input and output share their quantization.
"""

from __future__ import annotations

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import with_defaults
from tinypatch.kernels.base import (
    Pads,
    SpatialOp,
    activation_float,
    activation_range_quantized,
    pad_hw,
    register,
    saturate_int8,
    window_slices,
)


class _Pool(SpatialOp):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        a = with_defaults(op.type, op.attrs)
        self.kernel_hw = (a["filter_h"], a["filter_w"])
        self.stride = (a["stride_h"], a["stride_w"])
        self.padding = a["padding"]
        self.act = self.fused_activation()
        if self.quantized:
            scale, zp = self.qparams(self.out)
            self.act_min, self.act_max = activation_range_quantized(self.act, scale, zp)


@register("AVERAGE_POOL_2D")
class AveragePool2D(_Pool):
    def run(self, inputs: list[np.ndarray], pads: Pads | None) -> np.ndarray:
        x = inputs[0]
        pads, out_hw = self.geometry(x, pads)
        work = np.int64 if self.quantized else np.float32
        xp = pad_hw(x.astype(work), pads, 0)
        real = pad_hw(np.ones((1, x.shape[1], x.shape[2], 1), np.int64), pads, 0)
        acc = np.zeros((x.shape[0], *out_hw, x.shape[3]), work)
        count = np.zeros((1, *out_hw, 1), np.int64)
        for _, view in window_slices(xp, out_hw, self.kernel_hw, self.stride, self.dilation):
            acc += view
        for _, view in window_slices(real, out_hw, self.kernel_hw, self.stride, self.dilation):
            count += view
        if not self.quantized:
            return activation_float(acc / count.astype(np.float32), self.act)
        return self._average(acc, count)

    def finish(self, sums: np.ndarray) -> np.ndarray:
        """The int8 output of a global average pool from per-channel sums (tile-accumulated)."""
        h, w = self.tensor(0).shape[1:3]
        return self._average(sums.astype(np.int64).reshape(self.out.shape), np.int64(h * w))

    def _average(self, acc: np.ndarray, count: np.ndarray) -> np.ndarray:
        half = count // 2
        pos = (acc + half) // count
        neg = -((half - acc) // count)  # C division truncates toward zero
        return saturate_int8(np.where(acc > 0, pos, neg), self.act_min, self.act_max)


@register("MAX_POOL_2D")
class MaxPool2D(_Pool):
    def run(self, inputs: list[np.ndarray], pads: Pads | None) -> np.ndarray:
        x = inputs[0]
        pads, out_hw = self.geometry(x, pads)
        lowest = -128 if self.quantized else np.finfo(np.float32).min
        xp = pad_hw(x, pads, lowest)
        acc = np.full((x.shape[0], *out_hw, x.shape[3]), lowest, x.dtype)
        for _, view in window_slices(xp, out_hw, self.kernel_hw, self.stride, self.dilation):
            np.maximum(acc, view, out=acc)
        if not self.quantized:
            return activation_float(acc, self.act)
        return saturate_int8(acc, self.act_min, self.act_max)
