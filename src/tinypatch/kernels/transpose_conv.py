"""TRANSPOSE_CONV, int8 per-channel (TFLite ``reference_integer_ops::TransposeConv``).

Inputs: output shape (constant), filter ``[cout, kh, kw, cin]``, input, optional int32 bias.
Every input pixel ``(i, j)`` scatters ``(x - zp_in) * w[:, ky, kx, :]`` onto output pixel
``(i * stride - pad + ky, j * stride - pad + kx)`` when it lies inside the output; ``pad`` is
the padding a conv with the same filter and stride would need on an input of the *output's*
size (SAME/VALID). Sums wrap in int32, then bias, per-channel requantization as in CONV_2D
(``double(s_in) * double(s_w[c]) / double(s_out)``), ``zp_out`` and the fused activation range.

A :class:`~tinypatch.kernels.base.GatherOp`: ``window`` computes any window of the output from the
input slice it reads, for patch-based execution.
"""

from __future__ import annotations

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import pad_before, with_defaults
from tinypatch.kernels.base import GatherOp, Tables, activation_range_quantized, register, saturate_int8
from tinypatch.kernels.conv import per_channel_multipliers
from tinypatch.kernels.fixedpoint import multiply_by_quantized_multiplier, wrap32

OUTPUT_SHAPE, FILTER, INPUT, BIAS = range(4)


def transpose_pad(out_size: int, kernel: int, stride: int, padding: str) -> int:
    """Rows (columns) the scatter origin sits before output row (column) 0."""
    return pad_before(out_size, kernel, stride, 1, padding)


@register("TRANSPOSE_CONV")
class TransposeConv(GatherOp):
    dtypes = ("int8",)

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        a = with_defaults(op.type, op.attrs)
        self.act = self.fused_activation()
        self.stride = (int(a["stride_h"]), int(a["stride_w"]))
        x, w = self.tensor(INPUT), self.tensor(FILTER)
        if x is None or x.is_const or w is None or len(w.shape) != 4 or len(x.shape) != 4:
            self.unsupported("needs a 4-D activation input and a constant [cout, kh, kw, cin] filter")
        shape = tuple(int(d) for d in self.const(OUTPUT_SHAPE, "output shape"))
        if shape != self.out.shape:
            self.unsupported(f"output shape tensor {shape} differs from the output tensor's {self.out.shape}")
        self.weights = self.const(FILTER, "filter")
        self.cout, kh, kw, self.cin = self.weights.shape
        self.kernel_hw = (kh, kw)
        if x.shape[3] != self.cin or self.out.shape[3] != self.cout or x.dtype != "int8" or w.dtype != "int8":
            self.unsupported(f"int8 input of {self.cin} channels and output of {self.cout} channels expected")
        self.in_hw = (x.shape[1], x.shape[2])
        self.out_hw = (self.out.shape[1], self.out.shape[2])
        self.pad = tuple(transpose_pad(o, k, s, a["padding"]) for o, k, s in zip(self.out_hw, self.kernel_hw,
                                                                                  self.stride))
        in_scale, self.in_zp = self.qparams(x)
        out_scale, self.out_zp = self.qparams(self.out)
        if w.quant is None:
            self.unsupported("int8 filter has no quantization parameters")
        self.multiplier, self.shift = per_channel_multipliers(in_scale, w.quant.scale, out_scale, self.cout)
        self.act_min, self.act_max = activation_range_quantized(self.act, out_scale, self.out_zp)
        bias_t = self.tensor(BIAS)
        self.bias = np.asarray(self.const(BIAS, "bias"), np.int64) if bias_t is not None else np.zeros(self.cout, np.int64)
        self.taps = self.weights.astype(np.float64).transpose(1, 2, 3, 0)  # [kh, kw, cin, cout]

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        return self.window(inputs[0], (0, 0), ((0, self.out_hw[0]), (0, self.out_hw[1])))

    def whole_tables(self, ax: int) -> Tables:
        """Per output index o and tap t: the input index ``(o + pad - t) / stride``, used where that
        divides and lies inside the input; no weights (the taps are the filter's)."""
        o = np.arange(self.out_hw[ax], dtype=np.int64)[:, None] + self.pad[ax] - np.arange(self.kernel_hw[ax])
        src, rest = np.divmod(o, self.stride[ax])
        return src, (rest == 0) & (src >= 0) & (src < self.in_hw[ax]), np.zeros((len(o), 0), np.int64)

    def gather(self, x: np.ndarray, rows: Tables, cols: Tables) -> np.ndarray:
        """Every used (input, tap) pair scattered onto its output pixel: per tap pair, the inputs of a
        run of sources times the tap, added to every stride-th output."""
        n = x.shape[0]
        xc = x.astype(np.float64) - np.float64(self.in_zp)
        acc = np.zeros((n, len(rows[0]), len(cols[0]), self.cout), np.float64)  # exact: |sum| < 2^53
        (sh, sw) = self.stride
        taps_h, taps_w = _tap_runs(rows), _tap_runs(cols)
        for ky, (oy, i0, i1) in enumerate(taps_h):
            if i0 >= i1:
                continue
            for kx, (ox, j0, j1) in enumerate(taps_w):
                if j0 >= j1:
                    continue
                part = xc[:, i0:i1, j0:j1] @ self.taps[ky, kx]
                acc[:, oy: oy + (i1 - i0 - 1) * sh + 1: sh, ox: ox + (j1 - j0 - 1) * sw + 1: sw] += part
        total = wrap32(wrap32(acc.astype(np.int64)) + self.bias)
        y = multiply_by_quantized_multiplier(total, self.multiplier, self.shift) + self.out_zp
        return saturate_int8(y, self.act_min, self.act_max)


def _tap_runs(tables: Tables) -> list[tuple[int, int, int]]:
    """Per tap along one axis: (first output index it reaches, its sources [lo, hi)); the outputs a
    tap reaches are every stride-th one, from consecutive sources."""
    src, used, _ = tables
    out = []
    for t in range(src.shape[1]):
        hit = np.flatnonzero(used[:, t])
        out.append((int(hit[0]), int(src[hit[0], t]), int(src[hit[-1], t]) + 1) if hit.size else (0, 0, 0))
    return out
