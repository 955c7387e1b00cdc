"""QUANTIZE (float32 -> int8, int8 -> int8 requantize) and DEQUANTIZE (int8 -> float32).

* float -> int8: ``round(x / float(scale)) + zp`` in float32 (``reference_ops::AffineQuantize``).
* int8 -> int8: ``MultiplyByQuantizedMultiplier(x - zp_in)`` with ``double(s_in)/double(s_out)``
  (``reference_ops::Requantize``).
* int8 -> float: ``float(scale * (x - zp))``.
"""

from __future__ import annotations

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.kernels.base import PreparedOp, register, saturate_int8
from tinypatch.kernels.onnxruntime import float_lut
from tinypatch.kernels.fixedpoint import (
    float_to_int32,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    roundf,
    wrap32,
)


def requantizer(in_scale: np.float32, out_scale: np.float32) -> tuple[int, int]:
    """Multiplier and shift of an int8 -> int8 requantization."""
    return quantize_multiplier(float(in_scale) / float(out_scale))


def requantize(x: np.ndarray, in_zp: int, out_zp: int, multiplier: int, shift: int) -> np.ndarray:
    """``reference_ops::Requantize`` for int8 -> int8."""
    y = multiply_by_quantized_multiplier(x.astype(np.int64) - in_zp, multiplier, shift) + out_zp
    return saturate_int8(y)


@register("QUANTIZE")
class Quantize(PreparedOp):
    dtypes = ("int8",)

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        src = self.tensor(0)
        self.src_dtype = src.dtype
        self.out_scale, self.out_zp = self.qparams(self.out)
        if self.out.quant.per_channel:
            self.unsupported("per-channel QUANTIZE output")
        if src.dtype == "int8":
            self.in_scale, self.in_zp = self.qparams(src)
            self.multiplier, self.shift = requantizer(self.in_scale, self.out_scale)
            # onnxruntime: DequantizeLinear then QuantizeLinear (float, round half to even)
            self.ort_table = (float_lut(self.in_scale, self.in_zp, self.out_scale, self.out_zp, lambda v: v)
                              if self.ort else None)
        elif src.dtype != "float32":
            self.unsupported(f"input dtype {src.dtype}")

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x = inputs[0]
        if self.src_dtype == "int8" and self.ort_table is not None:
            return self.ort_table[x.astype(np.int64) + 128]
        if self.src_dtype == "int8":
            return requantize(x, self.in_zp, self.out_zp, self.multiplier, self.shift)
        q = float_to_int32(roundf(x.astype(np.float32) / self.out_scale))
        return saturate_int8(wrap32(q + self.out_zp))


@register("DEQUANTIZE")
class Dequantize(PreparedOp):
    dtypes = ("float32",)

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        src = self.tensor(0)
        if src.dtype != "int8":
            self.unsupported(f"input dtype {src.dtype}")
        self.in_scale, self.in_zp = self.qparams(src)

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x = inputs[0]
        return (np.float64(self.in_scale) * (x.astype(np.float64) - self.in_zp)).astype(np.float32)
