"""FULLY_CONNECTED (LiteRT's ``reference_integer_ops::FullyConnected`` with float scales).

int8: ``acc = sum((w - zp_w) * (x - zp_in)) + bias`` in int32, then
``round(double(acc) * (double(s_in) * double(s_w) / double(s_out)))`` (round half away
from zero) plus ``zp_out``, clamped to the fused activation range. Unlike conv, LiteRT's
reference FC rescales in double precision rather than with a fixed-point multiplier
(TFLite Micro uses the multiplier; the two can differ by one on exact ties).
Per-channel weights use their own scale per output unit and no weight zero point.
"""

from __future__ import annotations

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import with_defaults
from tinypatch.kernels.base import PreparedOp, activation_float, activation_range_quantized, register, saturate_int8
from tinypatch.kernels.fixedpoint import float_to_int32, round_double, wrap32
from tinypatch.kernels.onnxruntime import conv_scale, requantize_float, sgemm, U8S8Pairs, u8s8_saturates


@register("FULLY_CONNECTED")
class FullyConnected(PreparedOp):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        a = with_defaults(op.type, op.attrs)
        self.act = self.fused_activation()
        self.keep_num_dims = bool(a["keep_num_dims"])
        x, w = self.tensor(0), self.tensor(1)
        weights = self.const(1, "weights")
        self.units, self.depth = weights.shape
        bias = self.const(2, "bias") if self.tensor(2) is not None else np.zeros(self.units)
        if self.quantized:
            in_scale, self.in_zp = self.qparams(x)
            out_scale, self.out_zp = self.qparams(self.out)
            if w.quant is None:
                self.unsupported("int8 weights have no quantization parameters")
            w_scales = np.broadcast_to(w.quant.scale.astype(np.float64), (self.units,))
            self.effective_scale = np.float64(in_scale) * w_scales / np.float64(out_scale)
            w_zp = 0 if w.quant.per_channel else int(w.quant.zero_point[0])
            self.act_min, self.act_max = activation_range_quantized(self.act, out_scale, self.out_zp)
            self.w_mat = (weights.astype(np.float64) - w_zp).T.copy()
            self.bias = np.asarray(bias, np.int64)
            # |acc + bias| <= bound: no int32 wrap, and the rescaled value plus zero point stays an int32
            bound = np.abs(self.bias) + 255 * np.abs(self.w_mat).sum(axis=0)
            self.no_wrap = bool(np.all(bound < 2**31 - 1) and np.all(bound * self.effective_scale < 2**30))
            self.bias_f = self.bias.astype(np.float64)
            if self.ort:
                ws = np.broadcast_to(np.asarray(w.quant.scale, np.float32), (self.units,))
                self.ort_scale = conv_scale(in_scale, ws, out_scale)
                # onnxruntime left this Gemm in float: DQ -> float Gemm -> Q
                self.float_op = op.name in graph.meta.get("onnx", {}).get("float_ops", ())
                # onnxruntime runs it on uint8 activations, in int16 pairs on this CPU
                self.u8_pairs = U8S8Pairs(weights.astype(np.int64).T) if (
                    op.name in graph.meta.get("onnx", {}).get("u8_ops", ()) and u8s8_saturates()) else None
                self.float_w = ((weights.astype(np.int64) - w_zp).astype(np.float32) * ws[:, None]).astype(np.float64).T
                self.float_bias = (np.asarray(bias, np.int64).astype(np.float32) * (np.float32(in_scale) * ws)).astype(np.float64)
                self.scales = (in_scale, out_scale)
        else:
            self.in_zp = 0
            self.w_mat = weights.astype(np.float64).T.copy()
            self.bias = np.asarray(bias, np.float64)

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x = inputs[0]
        if self.ort and self.float_op:
            return self._run_float(x)
        rows = x.reshape(-1, self.depth).astype(np.float64) - self.in_zp
        acc = rows @ self.w_mat
        shape = (*x.shape[:-1], self.units) if self.keep_num_dims else (rows.shape[0], self.units)
        if not self.quantized:
            return activation_float((acc + self.bias).astype(np.float32), self.act).reshape(shape)
        if self.no_wrap and not self.ort:  # the general path's wraps and int32 casts change nothing
            scaled = round_double((acc + self.bias_f) * self.effective_scale)
            return np.clip(scaled + self.out_zp, self.act_min, self.act_max).astype(np.int8).reshape(shape)
        acc = acc.astype(np.int64)
        if self.ort and self.u8_pairs is not None:
            excess = self.u8_pairs.excess(rows, self.in_zp)
            if excess is not None:
                acc = acc + excess  # (the pairs saturate on the weights themselves, not w - zp_w)
        acc = wrap32(acc + self.bias)
        if self.ort:
            return requantize_float(acc, self.ort_scale, self.out_zp, self.act_min, self.act_max).reshape(shape)
        scaled = float_to_int32(round_double(acc.astype(np.float64) * self.effective_scale))
        return saturate_int8(wrap32(scaled + self.out_zp), self.act_min, self.act_max).reshape(shape)

    def _run_float(self, x: np.ndarray) -> np.ndarray:
        """onnxruntime's DQ -> float Gemm -> Q (products of dequantized values summed exactly)."""
        rows = ((x.reshape(-1, self.depth).astype(np.int64) - self.in_zp).astype(np.float32)
                * np.float32(self.scales[0])).astype(np.float64)
        bias = np.broadcast_to(self.float_bias.astype(np.float32), (rows.shape[0], self.units)).copy()
        y = sgemm(rows.astype(np.float32), self.float_w.astype(np.float32), bias)  # Gemm: C = bias, += A B
        q = np.clip(np.rint(y / np.float32(self.scales[1])) + self.out_zp, self.act_min, self.act_max).astype(np.int8)
        shape = (*x.shape[:-1], self.units) if self.keep_num_dims else (rows.shape[0], self.units)
        return q.reshape(shape)
