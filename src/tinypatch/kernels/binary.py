"""ADD, MUL, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE and PRELU with numpy (= TFLite) broadcasting;
either operand may be a constant.

int8 ADD (``reference_integer_ops::Add``): both inputs are shifted left by 20 bits,
rescaled to twice the larger input scale, summed and rescaled to the output.
int8 MUL (``reference_integer_ops::Mul``): ``(x1 - zp1) * (x2 - zp2)`` times
``float(float(s1 * s2) / s2_out)`` (TFLite computes that multiplier in float).
"""

from __future__ import annotations

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.kernels.base import PreparedOp, activation_float, activation_range_quantized, register, saturate_int8
from tinypatch.kernels.fixedpoint import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from tinypatch.kernels.onnxruntime import float_binary, qlinear_add, qlinear_mul


class _Binary(PreparedOp):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        self.act = self.fused_activation()
        self.operands = [self.tensor(0), self.tensor(1)]
        self.consts = [t.data if t.is_const else None for t in self.operands]
        if self.quantized:
            out_scale, self.out_zp = self.qparams(self.out)
            self.ort_params = (*self.qparams(self.operands[0]), *self.qparams(self.operands[1]), out_scale, self.out_zp)
            # onnxruntime left this node in float (DQ -> op -> Q) rather than QLinearAdd/QLinearMul
            self.float_op = op.name in graph.meta.get("onnx", {}).get("float_ops", ())
            self.act_min, self.act_max = activation_range_quantized(self.act, out_scale, self.out_zp)

    def operand_arrays(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        it = iter(inputs)
        a, b = (c if c is not None else next(it) for c in self.consts)
        return a, b


class _Rescaled(_Binary):
    """Shared by ADD and SQUARED_DIFFERENCE: each input minus its zero point, shifted left by
    ``LEFT_SHIFT`` and rescaled to twice the larger input scale (``m1/sh1``, ``m2/sh2``)."""

    LEFT_SHIFT = 20

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        if not self.quantized:
            return
        (s1, self.zp1), (s2, self.zp2) = (self.qparams(t) for t in self.operands)
        self.twice_max = 2.0 * float(max(s1, s2))
        self.m1, self.sh1 = quantize_multiplier(float(s1) / self.twice_max)
        self.m2, self.sh2 = quantize_multiplier(float(s2) / self.twice_max)

    @staticmethod
    def _scale(x: np.ndarray, m: int, shift: int) -> np.ndarray:
        # MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0)
        return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, m), -shift)

    def rescaled(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both operands on the common scale (int64)."""
        x1 = (a.astype(np.int64) - self.zp1) << self.LEFT_SHIFT
        x2 = (b.astype(np.int64) - self.zp2) << self.LEFT_SHIFT
        return self._scale(x1, self.m1, self.sh1), self._scale(x2, self.m2, self.sh2)


@register("ADD")
class Add(_Rescaled):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        if not self.quantized:
            return
        out_scale, _ = self.qparams(self.out)
        self.mo, self.sho = quantize_multiplier(self.twice_max / (float(1 << self.LEFT_SHIFT) * float(out_scale)))

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        a, b = self.operand_arrays(inputs)
        if not self.quantized:
            return activation_float(a.astype(np.float32) + b.astype(np.float32), self.act)
        if self.ort:
            y = float_binary(np.add, a, b, *self.ort_params) if self.float_op else qlinear_add(a, b, *self.ort_params)
            return np.clip(y, self.act_min, self.act_max)
        r1, r2 = self.rescaled(a, b)
        y = self._scale(r1 + r2, self.mo, self.sho) + self.out_zp
        return saturate_int8(y, self.act_min, self.act_max)


@register("MUL")
class Mul(_Binary):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        if not self.quantized:
            return
        (s1, self.zp1), (s2, self.zp2) = (self.qparams(t) for t in self.operands)
        out_scale, _ = self.qparams(self.out)
        self.multiplier, self.shift = quantize_multiplier(float(np.float32(s1 * s2) / out_scale))

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        a, b = self.operand_arrays(inputs)
        if not self.quantized:
            return activation_float(a.astype(np.float32) * b.astype(np.float32), self.act)
        if self.ort:
            y = float_binary(np.multiply, a, b, *self.ort_params) if self.float_op else qlinear_mul(a, b, *self.ort_params)
            return np.clip(y, self.act_min, self.act_max)
        prod = (a.astype(np.int64) - self.zp1) * (b.astype(np.int64) - self.zp2)
        y = multiply_by_quantized_multiplier(prod, self.multiplier, self.shift) + self.out_zp
        return saturate_int8(y, self.act_min, self.act_max)


@register("MAXIMUM", "MINIMUM")
class MaximumMinimum(_Binary):
    """Element-wise max/min of the stored values (TFLite compares int8 values as they are)."""

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        a, b = self.operand_arrays(inputs)
        fn = np.maximum if self.op.type == "MAXIMUM" else np.minimum
        return fn(a, b).astype(self.out.np_dtype)


@register("SQUARED_DIFFERENCE")
class SquaredDifference(_Rescaled):
    """int8: both inputs shifted left by 7 and rescaled to twice the larger input scale (as in
    ADD), their difference squared in int32 and rescaled by ``(2 max(s1, s2))^2 / (2^14 s_out)``."""

    LEFT_SHIFT = 7

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        if not self.quantized:
            return
        out_scale, _ = self.qparams(self.out)
        denom = float(np.float32(1 << (2 * self.LEFT_SHIFT)) * out_scale)  # int * float: a float product
        self.mo, self.sho = quantize_multiplier(self.twice_max * self.twice_max / denom)

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        a, b = self.operand_arrays(inputs)
        if not self.quantized:
            d = a.astype(np.float32) - b.astype(np.float32)
            return (d * d).astype(np.float32)
        r1, r2 = self.rescaled(a, b)
        diff = r1 - r2
        y = multiply_by_quantized_multiplier(diff * diff, self.mo, self.sho) + self.out_zp
        return saturate_int8(y)


@register("PRELU")
class Prelu(_Binary):
    """int8: ``x - zp >= 0``: ``(x - zp) * s_in / s_out``; else ``(x - zp) * (alpha - zp_a)`` times
    ``s_in * s_alpha / s_out``; both multipliers quantized from doubles."""

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        if not self.quantized:
            return
        (s_in, self.zp1), (s_alpha, self.zp2) = (self.qparams(t) for t in self.operands)
        out_scale, _ = self.qparams(self.out)
        self.m_pos, self.sh_pos = quantize_multiplier(float(s_in) / float(out_scale))
        self.m_neg, self.sh_neg = quantize_multiplier(float(s_in) * float(s_alpha) / float(out_scale))

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x, alpha = self.operand_arrays(inputs)
        if not self.quantized:
            xf = x.astype(np.float32)
            return np.where(xf >= 0, xf, xf * alpha.astype(np.float32)).astype(np.float32)
        xc = x.astype(np.int64) - self.zp1
        ac = alpha.astype(np.int64) - self.zp2
        xc, ac = np.broadcast_arrays(xc, ac)
        pos = multiply_by_quantized_multiplier(xc, self.m_pos, self.sh_pos)
        neg = multiply_by_quantized_multiplier(xc * ac, self.m_neg, self.sh_neg)
        return saturate_int8(np.where(xc >= 0, pos, neg) + self.out_zp)
