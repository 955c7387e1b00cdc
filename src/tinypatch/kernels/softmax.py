"""SOFTMAX over the last axis (TFLite ``reference_ops::Softmax``).

int8 uses gemmlowp fixed point: input differences to the row maximum are scaled by
``beta * s_in * 2^26`` (``PreprocessSoftmaxScaling``) into Q5.26, exponentiated with
``exp_on_negative_values``, summed in Q12.19, inverted with ``GetReciprocal`` and the
output is Q0.8 shifted by -128. Differences below ``diff_min`` give -128.
"""

from __future__ import annotations

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import with_defaults
from tinypatch.kernels.base import PreparedOp, register, saturate_int8
from tinypatch.kernels.fixedpoint import (
    calculate_input_radius,
    exp_on_negative_values,
    get_reciprocal,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rescale,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    wrap32,
)

SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12


@register("SOFTMAX")
class Softmax(PreparedOp):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        self.beta = float(np.float32(with_defaults(op.type, op.attrs)["beta"]))
        if not self.quantized:
            return
        in_scale, _ = self.qparams(self.tensor(0))
        real = min(self.beta * float(in_scale) * float(1 << (31 - SCALED_DIFF_INTEGER_BITS)), float((1 << 31) - 1))
        self.multiplier, self.left_shift = quantize_multiplier(real)  # real > 1 (kernels.limits)
        self.diff_min = -calculate_input_radius(SCALED_DIFF_INTEGER_BITS, self.left_shift)

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x = inputs[0]
        if not self.quantized:
            xf = x.astype(np.float32)
            e = np.exp(((xf - xf.max(axis=-1, keepdims=True)) * np.float32(self.beta)).astype(np.float64))
            return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
        rows = x.reshape(-1, x.shape[-1]).astype(np.int64)
        diff = rows - rows.max(axis=1, keepdims=True)
        used = diff >= self.diff_min
        scaled = multiply_by_quantized_multiplier(diff, self.multiplier, self.left_shift)
        exps = exp_on_negative_values(scaled, SCALED_DIFF_INTEGER_BITS)
        terms = np.where(used, rescale(exps, 0, ACCUMULATION_INTEGER_BITS), 0)
        total = wrap32(terms.sum(axis=1))  # the C loop's int32 sum, wrap-around included
        shifted_scale, num_bits_over_unit = get_reciprocal(total, ACCUMULATION_INTEGER_BITS)
        exponent = (num_bits_over_unit + 31 - 8)[:, None]
        prob = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted_scale[:, None], exps), exponent)
        out = np.where(used, saturate_int8(prob - 128), -128)
        return out.astype(np.int8).reshape(x.shape)
