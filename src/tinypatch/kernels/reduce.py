"""MEAN over any axes, with or without keep_dims (TFLite ``reference_ops::QuantizedMeanOrSum``).

int8: the int32 sum of the reduced values, minus ``zp_in * n``, is requantized with the
multiplier of ``double(s_in) / double(s_out)`` into which ``1/n`` has been folded by a
shift-and-divide (``multiplier << k // n``, ``k = min(floor(log2 n), 32, 31 + shift)``).
"""

from __future__ import annotations

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import with_defaults
from tinypatch.kernels.base import PreparedOp, register, saturate_int8
from tinypatch.kernels.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier, wrap32
from tinypatch.kernels.onnxruntime import dequantize, quantize, requantize_float


def mean_multiplier(multiplier: int, shift: int, count: int) -> tuple[int, int]:
    """Fold ``1/count`` into a quantized multiplier the way QuantizedMeanOrSum does."""
    k = min(count.bit_length() - 1, 32, 31 + shift)
    folded = (multiplier << k) // count
    return int(np.int64(folded).astype(np.int32)), shift - k


@register("MEAN")
class Mean(PreparedOp):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        src = self.tensor(0)
        rank = len(src.shape)
        axes = np.atleast_1d(self.const(1, "axis")).astype(np.int64)
        self.axes = tuple(sorted({int(a) % rank for a in axes}))
        self.keep_dims = bool(with_defaults(op.type, op.attrs)["keep_dims"])
        if self.quantized:
            in_scale, self.in_zp = self.qparams(src)
            out_scale, self.out_zp = self.qparams(self.out)
            self.base = quantize_multiplier(float(in_scale) / float(out_scale))
            self.scales = (in_scale, out_scale)
            # onnxruntime runs ReduceMean in float (DQ -> ReduceMean -> Q), GlobalAveragePool in int8
            self.float_mean = op.name in graph.meta.get("onnx", {}).get("float_ops", ())

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x = inputs[0]
        count = int(np.prod([x.shape[a] for a in self.axes], dtype=np.int64))
        if not self.quantized:
            total = x.astype(np.float32).sum(axis=self.axes, keepdims=self.keep_dims, dtype=np.float32)
            return (total / np.float32(count)).astype(np.float32)
        if self.ort and self.float_mean:
            return self._float_mean(x)
        return self._requantize(x.astype(np.int64).sum(axis=self.axes, keepdims=self.keep_dims), count)

    def _float_mean(self, x: np.ndarray) -> np.ndarray:
        """Dequantize, sum in float32 in memory order of the NCHW source (H then W), divide, quantize."""
        f = dequantize(x, self.scales[0], self.in_zp)
        moved = np.moveaxis(f, self.axes, tuple(range(-len(self.axes), 0)))
        flat = moved.reshape(*moved.shape[:-len(self.axes)], -1)
        total = np.zeros(flat.shape[:-1], np.float32)
        for k in range(flat.shape[-1]):
            total = (total + flat[..., k]).astype(np.float32)
        mean = total / np.float32(flat.shape[-1])
        if self.keep_dims:
            mean = mean.reshape(self.out.shape)
        return quantize(mean, self.scales[1], self.out_zp)

    def finish(self, sums: np.ndarray) -> np.ndarray:
        """The int8 output from per-channel sums over the whole H x W map (tile-accumulated)."""
        h, w = self.tensor(0).shape[1:3]
        if self.ort and self.float_mean:
            self.unsupported("onnxruntime's float ReduceMean cannot be computed from tile sums")
        return self._requantize(sums.astype(np.int64).reshape(self.out.shape), h * w)

    def _requantize(self, total: np.ndarray, count: int) -> np.ndarray:
        if self.ort:
            scale = np.float32(self.scales[0]) / (np.float32(self.scales[1]) * np.float32(count))
            return requantize_float(wrap32(total - self.in_zp * count), scale, self.out_zp)
        multiplier, shift = mean_multiplier(*self.base, count)
        y = multiply_by_quantized_multiplier(wrap32(wrap32(total) - self.in_zp * count), multiplier, shift)
        return saturate_int8(y + self.out_zp)
