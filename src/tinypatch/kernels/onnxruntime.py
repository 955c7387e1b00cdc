"""onnxruntime's CPU integer arithmetic (MLAS), for ``graph.meta["arith"] == "onnxruntime"``.

Facts reproduced (read from onnxruntime's MLAS sources, written here from scratch):

* requantization (QLinearConv, QGemm, QLinearGlobalAveragePool): the int32 accumulator is
  converted to float32, multiplied by a float32 scale, clamped to the output range minus the
  zero point, rounded half to even (``cvtps2dq``) and offset by the zero point
  (``MlasRequantizeOutput``); conv/gemm scales are ``float32(s_x * s_w) / s_y``, the global
  average's is ``s_x / (s_y * float(image_size))`` with ``-zp_x * image_size`` as bias;
* QLinearAdd (x86): ``(zp_c - (r_a * zp_a + r_b * zp_b)) + a * r_a + b * r_b`` in float32 with
  ``r = s / s_c``, rounded half to even, saturated;
* QLinearMul (x86): ``float32((a - zp_a) * (b - zp_b)) * (s_a * s_b / s_c)``, rounded half to
  even, plus ``zp_c``, saturated;
* DequantizeLinear -> float operator -> QuantizeLinear (operators onnxruntime runs in float):
  ``float32(x - zp) * s``, the float function, ``/ s_out``, rounded half to even.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

F32 = np.float32


def requantize_float(acc: np.ndarray, scale: np.ndarray | np.float32, zero_point: int,
                     lo: int = -128, hi: int = 127) -> np.ndarray:
    """``MlasRequantizeOutput``: ``round_half_even(clamp(float(acc) * scale)) + zp``."""
    f = np.asarray(acc).astype(F32) * np.asarray(scale, F32)
    f = np.clip(f, F32(lo - zero_point), F32(hi - zero_point))
    return (np.rint(f).astype(np.int64) + zero_point).astype(np.int8)


def conv_scale(in_scale: np.float32, w_scales: np.ndarray, out_scale: np.float32) -> np.ndarray:
    """Per-output-channel float32 requantization scale of QLinearConv / QGemm."""
    return (F32(in_scale) * np.asarray(w_scales, F32)).astype(F32) / F32(out_scale)


def saturate_round(f: np.ndarray) -> np.ndarray:
    """``cvtps2dq`` then saturating packs to int8."""
    return np.clip(np.rint(f.astype(F32)), -128, 127).astype(np.int8)


def qlinear_add(a: np.ndarray, b: np.ndarray, sa: np.float32, za: int, sb: np.float32, zb: int,
                sc: np.float32, zc: int) -> np.ndarray:
    ra, rb = F32(sa) / F32(sc), F32(sb) / F32(sc)
    fixed = F32(zc) - (ra * F32(za) + rb * F32(zb))
    return saturate_round((fixed + a.astype(F32) * ra) + b.astype(F32) * rb)


def qlinear_mul(a: np.ndarray, b: np.ndarray, sa: np.float32, za: int, sb: np.float32, zb: int,
                sc: np.float32, zc: int) -> np.ndarray:
    ratio = F32(sa) * F32(sb) / F32(sc)
    prod = (a.astype(np.int64) - za) * (b.astype(np.int64) - zb)
    return np.clip(np.rint(prod.astype(F32) * ratio).astype(np.int64) + zc, -128, 127).astype(np.int8)


def dequantize(x: np.ndarray, scale: np.float32, zero_point: int) -> np.ndarray:
    return (x.astype(np.int64) - zero_point).astype(F32) * F32(scale)


def quantize(f: np.ndarray, scale: np.float32, zero_point: int) -> np.ndarray:
    """QuantizeLinear: ``round_half_even(f / scale) + zp``, saturated."""
    q = np.rint(np.asarray(f, F32) / F32(scale))
    return np.clip(q + zero_point, -128, 127).astype(np.int8)


SGEMM_BLOCK_K = 128


def fma_chain(a: np.ndarray, b: np.ndarray, acc: np.ndarray | None = None) -> np.ndarray:
    """``acc = fma(a[:, k], b[k], acc)`` for k in order, in float32 (``a`` [M, K], ``b`` [K, N])."""
    out = np.zeros((a.shape[0], b.shape[1]), F32) if acc is None else acc
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    for k in range(a.shape[1]):  # the product is exact in float64, the sum rounded once to float32
        out = (out.astype(np.float64) + np.outer(a64[:, k], b64[k])).astype(F32)
    return out


def im2col_block_k(pixels: int) -> int:
    """K block of MLAS's expand-then-GEMM convolution: it grows as the output has fewer pixels
    (fitted to onnxruntime 1.32 on x86: 81 pixels -> 256, 25 -> 512, 9 or 4 -> 1024)."""
    stride_n, stride_k = 128, 256
    while stride_n > 32 and stride_n // 4 >= pixels:
        stride_n, stride_k = stride_n // 2, stride_k * 2
    return stride_k


def sgemm(a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None, block: int | None = None) -> np.ndarray:
    """MLAS SGEMM on x86: K in blocks (default 128), each block an FMA chain from zero, added to C."""
    block = block or SGEMM_BLOCK_K
    for k0 in range(0, a.shape[1], block):
        part = fma_chain(a[:, k0:k0 + block], b[k0:k0 + block])
        c = part if c is None else (c + part).astype(F32)
    return c


def float_binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], a: np.ndarray, b: np.ndarray,
                 sa: np.float32, za: int, sb: np.float32, zb: int, sc: np.float32, zc: int) -> np.ndarray:
    """DequantizeLinear both operands, ``fn`` in float32, QuantizeLinear."""
    return quantize(fn(dequantize(a, sa, za), dequantize(b, sb, zb)).astype(F32), sc, zc)


def float_lut(in_scale: np.float32, in_zp: int, out_scale: np.float32, out_zp: int,
              fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The 256-entry table of DequantizeLinear -> ``fn`` (float32) -> QuantizeLinear."""
    x = np.arange(-128, 128, dtype=np.int64)
    return quantize(fn(dequantize(x, in_scale, in_zp)).astype(F32), out_scale, out_zp)
