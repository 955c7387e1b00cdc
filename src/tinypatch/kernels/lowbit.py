"""Low-bit activations (b < 8 bits) defined in integers, so every executor agrees bit for bit.

An int8 value ``q`` of a tensor with zero point ``zp`` is stored in ``b`` bits as a code ``c``
on a power-of-two grid of step ``2**s`` around the zero point::

    d = q - zp                                        (int32)
    c = clamp((d + r) >> s, cmin, cmax)               r = 2**(s-1) if s > 0 else 0
    q' = clamp(zp + (c << s), -128, 127)              (the int8 value the consumer reads)

``>>`` is an arithmetic shift (floor), so ``(d + r) >> s`` rounds half up. Signed codes span
``[-2**(b-1), 2**(b-1) - 1]``, unsigned codes (maps that are never below their zero point,
e.g. after ReLU) ``[0, 2**b - 1]``. The real value of ``q'`` is ``scale * (q' - zp)``: the
low-bit map keeps the tensor's scale and zero point, its step is ``scale * 2**s``, and the
zero point maps to code 0 exactly (padding and ReLU zeros survive). ``b == 8`` is the identity.

The shift is either *static* (one per map, the least whose grid reaches the map's outlier
threshold) or chosen at run time per block from the block's own values (block floating point):
a block (the whole patch, or one pixel's channels of it) with ``m = max |q - zp|`` over it takes
the least ``s >= 0`` with ``top << s >= m`` (``top`` the largest code), so a block with a small
range keeps a fine step, down to lossless when ``m <= top``. In C::

    s = 0; while ((top << s) < m) s++;
"""

from __future__ import annotations

import numpy as np

BITWIDTHS = (8, 7, 6, 5, 4, 3, 2)  # any of these may be a map's width
DEFAULT_SET = (8, 6, 4, 2)  # the search's default steps
STEPS = ("static", "patch", "pixel")  # one shift per map, per patch, or per pixel of a patch (run time)


def code_range(bits: int, signed: bool) -> tuple[int, int]:
    """The smallest and largest code of a ``bits``-bit map."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def step_shift(bits: int, signed: bool, threshold: int) -> int:
    """The least shift ``s`` whose grid reaches ``threshold`` (largest |q - zp| of a non-outlier patch)."""
    top = code_range(bits, signed)[1]
    s = 0
    while top << s < threshold:
        s += 1
    return s


def block_shift(dev: np.ndarray | int, bits: int, signed: bool) -> np.ndarray:
    """The least shift ``s`` with ``top << s >= dev`` (elementwise): a block's run-time step."""
    top = code_range(bits, signed)[1]
    dev = np.asarray(dev, np.int32)
    s = np.zeros(dev.shape, np.int32)
    while True:
        short = (top << s) < dev
        if not short.any():
            return s
        s += short


def requantize(q: np.ndarray, zero_point: int, bits: int, shift: int | np.ndarray, signed: bool) -> np.ndarray:
    """``q'`` of the module formula: int8 values through a ``bits``-bit code and back (``shift``
    an int, or an int32 array broadcasting against ``q``: one shift per block)."""
    if bits >= 8:
        return q
    lo, hi = code_range(bits, signed)
    d = q.astype(np.int32) - zero_point
    r = (np.int32(1) << shift) >> 1  # 2**(s-1), 0 for s == 0
    c = np.clip((d + r) >> shift, lo, hi)
    return np.clip(zero_point + (c << shift), -128, 127).astype(q.dtype)


def requantize_blocks(q: np.ndarray, zero_point: int, bits: int, signed: bool, step: str) -> np.ndarray:
    """``q'`` with the shift chosen from the values (``step`` "patch": one for all of ``q``;
    "pixel": one per pixel, the last axis being the channels)."""
    if bits >= 8 or not q.size:
        return q
    dev = np.abs(q.astype(np.int32) - zero_point)
    m = dev.max() if step == "patch" else dev.max(axis=-1, keepdims=True)
    return requantize(q, zero_point, bits, block_shift(m, bits, signed), signed)


SHIFT_BITS = 3  # a run-time shift (0..7) stored beside its block's codes


def packed_bytes(elements: int, bits: int, blocks: int = 0) -> int:
    """Bytes of ``elements`` codes of ``bits`` bits packed back to back (6-bit: 4 codes in 3 bytes),
    with ``blocks`` run-time shifts of :data:`SHIFT_BITS` bits."""
    return (elements * bits + blocks * SHIFT_BITS + 7) // 8
