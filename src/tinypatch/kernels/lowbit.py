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
"""

from __future__ import annotations

import numpy as np

BITWIDTHS = (8, 7, 6, 5, 4, 3, 2)  # any of these may be a map's width
DEFAULT_SET = (8, 6, 4, 2)  # the search's default steps


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


def requantize(q: np.ndarray, zero_point: int, bits: int, shift: int, signed: bool) -> np.ndarray:
    """``q'`` of the module formula: int8 values through a ``bits``-bit code and back."""
    if bits >= 8:
        return q
    lo, hi = code_range(bits, signed)
    d = q.astype(np.int32) - zero_point
    r = (1 << (shift - 1)) if shift > 0 else 0
    c = np.clip((d + r) >> shift, lo, hi)
    return np.clip(zero_point + (c << shift), -128, 127).astype(q.dtype)


def packed_bytes(elements: int, bits: int) -> int:
    """Bytes of ``elements`` codes of ``bits`` bits packed back to back (6-bit: 4 codes in 3 bytes)."""
    return (elements * bits + 7) // 8
