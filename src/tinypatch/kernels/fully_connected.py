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
        else:
            self.in_zp = 0
            self.w_mat = weights.astype(np.float64).T.copy()
            self.bias = np.asarray(bias, np.float64)

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        x = inputs[0]
        rows = x.reshape(-1, self.depth).astype(np.float64) - self.in_zp
        acc = rows @ self.w_mat
        shape = (*x.shape[:-1], self.units) if self.keep_num_dims else (rows.shape[0], self.units)
        if not self.quantized:
            return activation_float((acc + self.bias).astype(np.float32), self.act).reshape(shape)
        acc = wrap32(acc.astype(np.int64) + self.bias)
        scaled = float_to_int32(round_double(acc.astype(np.float64) * self.effective_scale))
        return saturate_int8(wrap32(scaled + self.out_zp), self.act_min, self.act_max).reshape(shape)
