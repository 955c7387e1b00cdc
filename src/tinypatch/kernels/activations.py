"""RELU, RELU6, LEAKY_RELU, LOGISTIC and HARD_SWISH as TFLite's reference kernels compute them for int8.

* RELU/RELU6: requantize by ``float(s_in / s_out)`` and clamp (``QuantizedReluX``).
* LEAKY_RELU: ``x - zp`` times the identity (x >= zp) or the alpha multiplier, both quantized
  from float32 products (``QuantizeLeakyRelu``).
* LOGISTIC: a 256-entry table built in float32 from ``1 / (1 + exp(-x))`` (``LUTPopulate``).
* HARD_SWISH: the int16 fixed-point pipeline of ``reference_ops::HardSwish``, with its ``int16_t``
  wrap-arounds (gemmlowp's int16 ``RoundingDivideByPOT``, the zero point added in ``int16_t``).
* HARD_SIGMOID (ONNX's ``max(0, min(1, alpha * x + beta))``, no TFLite builtin): a 256-entry
  table built in float32 like LOGISTIC's.

With ``arith="onnxruntime"`` every one of them is onnxruntime's DequantizeLinear -> float
operator -> QuantizeLinear, tabulated over the 256 inputs (``kernels/onnxruntime.py``).
"""

from __future__ import annotations

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import with_defaults
from tinypatch.kernels.base import PreparedOp, register, saturate_int8
from tinypatch.kernels.fixedpoint import (
    downscale_multiplier_to_int16,
    float_to_int32,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    roundf,
    rounding_divide_by_pot,
    saturating_doubling_high_mul16,
    saturating_left_shift16,
    saturating_rounding_doubling_high_mul,
    wrap16,
)
from tinypatch.kernels.onnxruntime import float_lut


class _Unary(PreparedOp):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        if self.quantized:
            self.in_scale, self.in_zp = self.qparams(self.tensor(0))
            self.out_scale, self.out_zp = self.qparams(self.out)
        self.ort_table = (float_lut(self.in_scale, self.in_zp, self.out_scale, self.out_zp, self.float_fn)
                          if self.ort else None)

    def float_fn(self, x: np.ndarray) -> np.ndarray:
        """The operator on float32 values (onnxruntime's float kernel)."""
        self.unsupported("no onnxruntime arithmetic for this operator")
        raise AssertionError

    def __call__(self, inputs, pads=None):  # type: ignore[no-untyped-def]
        if self.ort_table is None:
            return super().__call__(inputs, pads)
        x = np.asarray(inputs[0])
        return [self.ort_table[x.astype(np.int64) + 128]]


class _ReluX(_Unary):
    LIMITS: tuple[float, float]

    def float_fn(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self.LIMITS
        return np.clip(x, np.float32(lo), np.float32(hi)).astype(np.float32)

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        if not self.quantized:
            return
        self.multiplier, self.shift = quantize_multiplier(float(self.in_scale / self.out_scale))
        lo, hi = self.LIMITS
        self.act_min = max(-128, self.out_zp + int(roundf(np.float32(lo) / self.out_scale)))
        self.act_max = 127 if np.isinf(hi) else min(127, self.out_zp + int(roundf(np.float32(hi) / self.out_scale)))

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x = inputs[0]
        lo, hi = self.LIMITS
        if not self.quantized:
            return np.clip(x, np.float32(lo), np.float32(hi)).astype(np.float32)
        y = multiply_by_quantized_multiplier(x.astype(np.int64) - self.in_zp, self.multiplier, self.shift)
        return saturate_int8(y + self.out_zp, self.act_min, self.act_max)


@register("RELU")
class Relu(_ReluX):
    LIMITS = (0.0, np.inf)


@register("RELU6")
class Relu6(_ReluX):
    LIMITS = (0.0, 6.0)


@register("LEAKY_RELU")
class LeakyRelu(_Unary):
    def __init__(self, graph: Graph, op: Op) -> None:
        self.alpha = np.float32(with_defaults(op.type, op.attrs)["alpha"])
        super().__init__(graph, op)
        if not self.quantized:
            return
        # float products, widened to double (LeakyReluPrepare)
        self.alpha_m = quantize_multiplier(float(self.in_scale * self.alpha / self.out_scale))
        self.identity_m = quantize_multiplier(float(self.in_scale / self.out_scale))

    def float_fn(self, x: np.ndarray) -> np.ndarray:
        return np.where(x >= 0, x, x * self.alpha).astype(np.float32)

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x = inputs[0]
        if not self.quantized:
            xf = x.astype(np.float32)
            return np.where(xf > 0, xf, xf * self.alpha).astype(np.float32)
        v = x.astype(np.int64) - self.in_zp
        y = np.where(v >= 0, multiply_by_quantized_multiplier(v, *self.identity_m),
                     multiply_by_quantized_multiplier(v, *self.alpha_m))
        return saturate_int8(y + self.out_zp)


def lut_int8(in_scale: np.float32, in_zp: int, out_scale: np.float32, out_zp: int, fn) -> np.ndarray:
    """TFLite ``LUTPopulate<int8_t>``: table indexed by ``value + 128``; ``fn`` maps float32."""
    vals = np.arange(-128, 128, dtype=np.int64)
    dequantized = np.float32(in_scale) * (vals - in_zp).astype(np.float32)
    transformed = fn(dequantized).astype(np.float32)
    inverse_scale = np.float32(1.0) / np.float32(out_scale)
    rescaled = roundf(transformed * inverse_scale)
    q = float_to_int32(rescaled + np.float32(out_zp))
    return np.clip(q, -128, 127).astype(np.int8)


def _sigmoid_f32(x: np.ndarray) -> np.ndarray:
    # expf is evaluated in double and rounded once: the correctly rounded float result
    with np.errstate(over="ignore"):  # exp overflows to inf, as expf does
        e = np.exp(-x.astype(np.float64)).astype(np.float32)
    return np.float32(1.0) / (np.float32(1.0) + e)


@register("LOGISTIC")
class Logistic(_Unary):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        if self.quantized:
            self.table = lut_int8(self.in_scale, self.in_zp, self.out_scale, self.out_zp, _sigmoid_f32)

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x = inputs[0]
        if not self.quantized:
            return _sigmoid_f32(x.astype(np.float32))
        return self.table[x.astype(np.int64) + 128]


@register("HARD_SWISH")
class HardSwish(_Unary):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        if not self.quantized:
            return
        hires_input_scale = np.float32(1.0 / 128.0) * self.in_scale
        reluish_scale = np.float32(3.0) / np.float32(32768.0)
        m, self.out_exp = quantize_multiplier(float(hires_input_scale / self.out_scale))
        self.out_m16 = downscale_multiplier_to_int16(m)  # out_exp <= 0 (kernels.limits)
        m, self.relu_exp = quantize_multiplier(float(hires_input_scale / reluish_scale))
        self.relu_m16 = downscale_multiplier_to_int16(m)

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x = inputs[0]
        if not self.quantized:
            xf = x.astype(np.float32)
            return (xf * np.clip(xf + np.float32(3), 0, 6) / np.float32(6)).astype(np.float32)
        v = x.astype(np.int64) - self.in_zp
        hires = v * 128
        preshift = saturating_rounding_doubling_high_mul(hires, self.out_m16, bits=16)
        reluish = hires
        if self.relu_exp > 0:
            reluish = saturating_left_shift16(reluish, self.relu_exp - 1)
        reluish = saturating_rounding_doubling_high_mul(reluish, self.relu_m16, bits=16)
        if self.relu_exp > 0:
            reluish = saturating_left_shift16(reluish, 1)
        if self.relu_exp < 0:
            reluish = rounding_divide_by_pot(reluish, -self.relu_exp, bits=16)
        reluish = (reluish + (1 << 15)) >> 1
        out = saturating_doubling_high_mul16(reluish, preshift)
        out = wrap16(rounding_divide_by_pot(out, -self.out_exp, bits=16) + self.out_zp)  # int16_t += zero point
        return saturate_int8(out)


@register("HARD_SIGMOID")
class HardSigmoid(_Unary):
    def __init__(self, graph: Graph, op: Op) -> None:
        a = with_defaults(op.type, op.attrs)
        self.alpha, self.beta = np.float32(a["alpha"]), np.float32(a["beta"])
        super().__init__(graph, op)
        if self.quantized and not self.ort:
            self.table = lut_int8(self.in_scale, self.in_zp, self.out_scale, self.out_zp, self.float_fn)

    def float_fn(self, x: np.ndarray) -> np.ndarray:
        return np.clip(self.alpha * x.astype(np.float32) + self.beta, np.float32(0), np.float32(1)).astype(np.float32)

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x = inputs[0]
        if not self.quantized:
            return self.float_fn(x)
        return self.table[x.astype(np.int64) + 128]
