"""TRANSPOSE_CONV, int8 per-channel (TFLite ``reference_integer_ops::TransposeConv``).

Inputs: output shape (constant), filter ``[cout, kh, kw, cin]``, input, optional int32 bias.
Every input pixel ``(i, j)`` scatters ``(x - zp_in) * w[:, ky, kx, :]`` onto output pixel
``(i * stride - pad + ky, j * stride - pad + kx)`` when it lies inside the output; ``pad`` is
the padding a conv with the same filter and stride would need on an input of the *output's*
size (SAME/VALID). Sums wrap in int32, then bias, per-channel requantization as in CONV_2D
(``double(s_in) * double(s_w[c]) / double(s_out)``), ``zp_out`` and the fused activation range.

:meth:`TransposeConv.window` computes any window of the output from the input slice it reads,
for patch-based execution.
"""

from __future__ import annotations

import numpy as np

from tinypatch.errors import InputError
from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import pad_before, with_defaults
from tinypatch.kernels.base import PreparedOp, activation_range_quantized, register, saturate_int8
from tinypatch.kernels.conv import per_channel_multipliers
from tinypatch.kernels.fixedpoint import multiply_by_quantized_multiplier, wrap32

OUTPUT_SHAPE, FILTER, INPUT, BIAS = range(4)


def transpose_pad(out_size: int, kernel: int, stride: int, padding: str) -> int:
    """Rows (columns) the scatter origin sits before output row (column) 0."""
    return pad_before(out_size, kernel, stride, 1, padding)


def source_range(a: int, b: int, tap: int, stride: int, pad: int) -> tuple[int, int]:
    """Input indices ``[lo, hi)`` whose tap ``tap`` lands in output interval ``[a, b)`` (may be empty)."""
    lo = -((pad - tap + a) // -stride)  # ceil((a + pad - tap) / stride)
    hi = (b - 1 + pad - tap) // stride + 1
    return lo, hi


def input_span(a: int, b: int, kernel: int, stride: int, pad: int, in_size: int) -> tuple[int, int]:
    """Input interval every tap of output interval ``[a, b)`` reads, clipped to the input."""
    if a >= b:
        return 0, 0
    lo = max(source_range(a, b, kernel - 1, stride, pad)[0], 0)
    hi = min(source_range(a, b, 0, stride, pad)[1], in_size)
    return (lo, hi) if lo < hi else (min(lo, in_size), min(lo, in_size))


@register("TRANSPOSE_CONV")
class TransposeConv(PreparedOp):
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

    def window(self, x_region: np.ndarray, in_origin: tuple[int, int],
               out_window: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
        """Output rows ``[y0, y1)`` x cols ``[x0, x1)`` from the input slice whose top-left pixel
        is ``in_origin`` (it must hold every input pixel that scatters into the window)."""
        (y0, y1), (x0, x1) = out_window
        r0, c0 = in_origin
        n, h, w, _ = x_region.shape
        for ax, (a, b), origin, size in ((0, (y0, y1), r0, h), (1, (x0, x1), c0, w)):
            lo, hi = input_span(a, b, self.kernel_hw[ax], self.stride[ax], self.pad[ax], self.in_hw[ax])
            if lo < hi and (lo < origin or hi > origin + size):
                raise InputError(f"{self.op.name}: input region at {in_origin} of size {(h, w)} does not cover "
                                 f"output window {out_window}")
        xc = x_region.astype(np.float64) - np.float64(self.in_zp)
        acc = np.zeros((n, y1 - y0, x1 - x0, self.cout), np.float64)  # exact: |sum| < 2^53
        (sh, sw), (ph, pw) = self.stride, self.pad
        for ky in range(self.kernel_hw[0]):
            i0, i1 = source_range(y0, y1, ky, sh, ph)
            i0, i1 = max(i0, r0), min(i1, r0 + h)
            if i0 >= i1:
                continue
            for kx in range(self.kernel_hw[1]):
                j0, j1 = source_range(x0, x1, kx, sw, pw)
                j0, j1 = max(j0, c0), min(j1, c0 + w)
                if j0 >= j1:
                    continue
                part = xc[:, i0 - r0: i1 - r0, j0 - c0: j1 - c0] @ self.taps[ky, kx]
                oy, ox = i0 * sh - ph + ky - y0, j0 * sw - pw + kx - x0
                acc[:, oy: oy + (i1 - i0 - 1) * sh + 1: sh, ox: ox + (j1 - j0 - 1) * sw + 1: sw] += part
        total = wrap32(wrap32(acc.astype(np.int64)) + self.bias)
        y = multiply_by_quantized_multiplier(total, self.multiplier, self.shift) + self.out_zp
        return saturate_int8(y, self.act_min, self.act_max)
