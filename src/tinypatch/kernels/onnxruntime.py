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

Two facts depend on the CPU, as MLAS picks its kernels by CPU (:func:`cpu_flags`):

* uint8 x int8 GEMMs (onnxruntime turns a QDQ model's int8 activations into uint8, plus 128, on
  x86) multiply with ``VPMADDUBSW`` on x86 with AVX2 or AVX-512 but no VNNI: the two products of
  each pair of K indices (2i, 2i + 1) are summed in int16, saturated, before the int32 sum
  (:func:`u8s8_saturates`, :class:`U8S8Pairs`); with VNNI (``VPDPBUSD``) the sum is exact;
* SGEMM's K block: 128 with AVX-512, 256 with AVX2/FMA3 (:func:`sgemm_block_k`; measured with a float
  MatMul against onnxruntime 1.32 on each).
"""

from __future__ import annotations

import functools
import os
import platform
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


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This x86 CPU's feature flags in /proc/cpuinfo's spelling (``avx2``, ``avx512f``, ``avx512_vnni``,
    ``avx_vnni``), from /proc/cpuinfo or else numpy's CPU dispatch table; empty on other machines.
    ``TINYPATCH_ORT_CPU`` (comma-separated flags) overrides it, to model onnxruntime on another CPU."""
    forced = os.environ.get("TINYPATCH_ORT_CPU")
    if forced is not None:
        return frozenset(f.strip().lower() for f in forced.split(",") if f.strip())
    if platform.machine().lower() not in ("x86_64", "amd64", "x86", "i386", "i686"):
        return frozenset()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats  # noqa: PLC0415
    except ImportError:
        return frozenset()
    names = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512VNNI": "avx512_vnni"}
    return frozenset(flag for name, flag in names.items() if feats.get(name))


def u8s8_saturates() -> bool:
    """Does MLAS's uint8 x int8 GEMM sum each pair of products in int16 with saturation here
    (``VPMADDUBSW``: x86 with AVX2 but neither AVX512-VNNI nor AVX-VNNI)?"""
    flags = cpu_flags()
    return "avx2" in flags and not flags & {"avx512_vnni", "avx_vnni"}


class U8S8Pairs:
    """What the int16 saturation of ``VPMADDUBSW`` adds to an exact int8 GEMM with int8 weights ``w``
    [K, N] (zero point 0, the kernel's operand): each pair of products of K indices (2i, 2i + 1) is
    clamped to [-32768, 32767] (an odd K pairs its last index with a zero). The pairs that can leave
    int16 (255 * (|w_2i| + |w_2i+1|) > 32767, per output column) are found once, from the weights."""

    def __init__(self, w: np.ndarray) -> None:
        k, n = w.shape
        wi = np.zeros((k + k % 2, n), np.int64)
        wi[:k] = w
        self.k, self.n, self.pairs = k, n, wi.reshape(-1, 2, n)
        risky = 255 * np.abs(self.pairs).sum(axis=1) > 32767  # [K / 2, N]
        self.risky = [(int(i), np.flatnonzero(risky[i])) for i in np.flatnonzero(risky.any(axis=1))]

    def excess(self, cols: np.ndarray, zero_point: int) -> np.ndarray | None:
        """The excess over ``cols @ w`` (None: no pair can saturate). ``cols`` [P, K]: int8 activations
        minus their zero point ``zero_point``, so the kernel's uint8 operand is ``cols + zero_point + 128``."""
        if not self.risky:
            return None
        a = np.zeros((cols.shape[0], self.k + self.k % 2), np.int64)
        a[:, :self.k] = cols
        a += zero_point + 128
        out = np.zeros((cols.shape[0], self.n), np.int64)
        for i, cs in self.risky:
            s = a[:, 2 * i, None] * self.pairs[i, 0, cs] + a[:, 2 * i + 1, None] * self.pairs[i, 1, cs]
            out[:, cs] += np.clip(s, -32768, 32767) - s
        return out


def sgemm_block_k() -> int:
    """MLAS SGEMM's K block on this CPU: 128 with AVX-512, else 256 (AVX2/FMA3)."""
    return 128 if "avx512f" in cpu_flags() else 256


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
    """MLAS SGEMM on x86: K in blocks (default :func:`sgemm_block_k`), each block an FMA chain from zero,
    added to C."""
    block = block or sgemm_block_k()
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
