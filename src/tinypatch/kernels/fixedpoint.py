"""TFLite's integer arithmetic, vectorised over numpy int64 arrays.

Every function reproduces one C++ helper of TFLite's reference kernels bit for bit
(``tensorflow/lite/kernels/internal/common.h``, ``quantization_util.cc`` and gemmlowp's
``fixedpoint.h``), including C's truncating division and int32 wrap-around. Arrays hold
int32 (or int16) *values* in int64 storage so intermediate products cannot overflow.
LiteRT's pip build uses the default double-rounding ``MultiplyByQuantizedMultiplier``
(``TFLITE_SINGLE_ROUNDING`` off), which is what is implemented here.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1


# --- rounding of floats (C's round(): half away from zero) ------------------------------
def round_half_away(x: float) -> float:
    """``std::round`` on a double."""
    a = abs(x)
    r = math.floor(a)
    if a - r >= 0.5:
        r += 1.0
    return math.copysign(r, x)


def _round_away(x: np.ndarray, dtype: type) -> np.ndarray:
    x = np.asarray(x, dtype)
    a = np.abs(x)
    r = np.floor(a)
    r = r + (a - r >= dtype(0.5)).astype(dtype)  # a - floor(a) is exact
    return np.copysign(r, x).astype(dtype)


def roundf(x: np.ndarray | np.floating) -> np.ndarray:
    """``roundf`` (half away from zero) on float32 values, computed in float32."""
    return _round_away(x, np.float32)


def round_double(x: np.ndarray | float) -> np.ndarray:
    """``round`` (half away from zero) on float64 values."""
    return _round_away(x, np.float64)


def float_to_int32(x: np.ndarray) -> np.ndarray:
    """``static_cast<int32_t>(float)`` as x86 does it: truncation, INT32_MIN when out of range."""
    x = np.asarray(x)
    bad = ~np.isfinite(x) | (x >= 2.0**31) | (x < -(2.0**31))
    safe = np.where(bad, 0, x)
    return np.where(bad, INT32_MIN, np.trunc(safe).astype(np.int64)).astype(np.int64)


# --- integer helpers ---------------------------------------------------------------------
def wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values into int32 range (C's int32 overflow on x86)."""
    return np.asarray(x, np.int64).astype(np.int32).astype(np.int64)


def _trunc_div_pot(x: np.ndarray, bits: int) -> np.ndarray:
    """C's ``x / (1 << bits)`` (truncation toward zero) for int64 x: a negative x is raised by
    ``2**bits - 1`` before the arithmetic shift (which rounds down)."""
    return (x + ((x >> 63) & ((1 << bits) - 1))) >> bits


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray, bits: int = 32) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` for int32 (``bits=32``) or int16 values."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    lo = -(1 << (bits - 1))
    ab = a * b
    half = 1 << (bits - 2)
    out = _trunc_div_pot(ab + (half + ((ab >> 63) & (1 - 2 * half))), bits - 1)  # nudge: half, or 1 - half if < 0
    if not (b == lo).any():  # saturates only where both are the least value (b: usually the multipliers)
        return out
    return np.where((a == lo) & (b == lo), -lo - 1, out)


def saturating_doubling_high_mul16(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite's int16 ``SaturatingDoublingHighMul`` (like SQDMULH: truncates, no nudge)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    out = _trunc_div_pot(a * b, 15)
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX, out)


def wrap16(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of int64 values into int16 range (a C int result stored in ``int16_t``)."""
    return np.asarray(x, np.int64).astype(np.int16).astype(np.int64)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int, bits: int = 32) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: arithmetic right shift rounding half away from zero.

    ``bits=16`` is the ``int16_t`` instantiation, whose mask ``(1 << exponent) - 1`` is stored in
    an ``int16_t``: from exponent 16 on it is -1, so the threshold is -1 (0 for negative x) and
    every x >= 0 gives 1, every x < 0 gives -1 (TFLite's HARD_SWISH at tiny input scales).
    """
    x = np.asarray(x, np.int64)
    e = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << e) - 1
    if bits == 16:
        mask = wrap16(mask)
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    out = (x >> e) + (remainder > threshold)
    return wrap16(out) if bits == 16 else out


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier: np.ndarray | int,
                                     shift: np.ndarray | int, int32: bool = False) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier`` (double rounding); ``shift`` > 0 is a left shift.

    The pre-shift ``x * (1 << left_shift)`` wraps in int32 exactly like the C code does
    (``int32``: the caller guarantees x already holds int32 values, so with no left shift the
    wrap is skipped).
    """
    s = np.asarray(shift, np.int64)
    right = np.maximum(-s, 0)
    if int32 and (s <= 0).all():  # no left shift of int32 values: nothing to wrap
        shifted = np.asarray(x, np.int64)
    else:
        shifted = wrap32(np.asarray(x, np.int64) << np.maximum(s, 0))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def float_requantizer(multiplier: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Per-channel (scale, post) that make :func:`requantize_float64` equal
    :func:`multiply_by_quantized_multiplier` for every int32 ``x`` with ``|x| < limit``, and that
    limit (the third value): below it no left shift wraps and ``x * multiplier * 2^left`` stays
    under 2^52, so float64 holds every step exactly. None for right shifts past 62."""
    m = np.asarray(multiplier, np.int64)
    s = np.asarray(shift, np.int64)
    if np.any(-s > 62):
        return None
    left = np.exp2(np.maximum(s, 0).astype(np.float64))
    limit = float(np.min(np.minimum(2.0**31 / left, 2.0**52 / (np.maximum(m, 1) * left)), initial=2.0**31))
    return m.astype(np.float64) * left * 2.0**-31, np.exp2(np.minimum(s, 0).astype(np.float64)), limit


def requantize_float64(x: np.ndarray, scale: np.ndarray, post: np.ndarray) -> np.ndarray:
    """:func:`multiply_by_quantized_multiplier` in float64 (integer-valued float64 out), with
    (scale, post) from :func:`float_requantizer`. ``SaturatingRoundingDoublingHighMul`` by a
    non-negative multiplier is ``floor(x * m / 2^31 + 1/2)`` (its nudge rounds ties up for either
    sign; no saturation: m < 2^31), ``RoundingDivideByPOT`` rounds half away from zero; every
    step is exact in float64 below 2^52."""
    v = np.multiply(x, scale, dtype=np.float64)  # the same steps as floor(x * scale + 0.5) * post, ...
    v += 0.5
    np.floor(v, out=v)
    v *= post
    r = np.abs(v)  # ... then copysign(floor(|v| + 0.5), v), in place
    r += 0.5
    np.floor(r, out=r)
    return np.copysign(r, v, out=r)


def saturating_left_shift16(x: np.ndarray, amount: int) -> np.ndarray:
    """TFLite ``SaturatingLeftShift`` on int16 values."""
    return np.clip(np.asarray(x, np.int64) << amount, INT16_MIN, INT16_MAX)


# --- multiplier preparation --------------------------------------------------------------
def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: ``real ~= m * 2^(shift - 31)`` with m in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(round_half_away(q * float(1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantize_multiplier` over an array of doubles -> (multipliers, shifts) int64."""
    pairs = [quantize_multiplier(float(r)) for r in np.asarray(reals, np.float64).ravel()]
    return (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))


def downscale_multiplier_to_int16(m: int) -> int:
    """TFLite ``DownScaleInt32ToInt16Multiplier``."""
    if m >= INT32_MAX - (1 << 15):
        return INT16_MAX
    return (m + (1 << 15)) >> 16


def calculate_input_radius(integer_bits: int, left_shift: int, total_signed_bits: int = 31) -> int:
    """TFLite ``CalculateInputRadius``."""
    rescaled = 1.0 * ((1 << integer_bits) - 1) * (1 << (total_signed_bits - integer_bits)) / (1 << left_shift)
    return int(math.floor(rescaled))


# --- gemmlowp fixed-point transcendental functions (int32 raw values) ---------------------
def _fx_mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    return saturating_rounding_doubling_high_mul(a, b)


def _saturating_mul_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>`` on int32 values."""
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    if exponent == 0:
        return x
    threshold = (1 << (31 - exponent)) - 1
    out = wrap32(x << exponent)
    out = np.where(x > threshold, INT32_MAX, out)
    return np.where(x < -threshold, INT32_MIN, out)


def rescale(x: np.ndarray, src_int_bits: int, dst_int_bits: int) -> np.ndarray:
    """gemmlowp ``Rescale<dst>`` of a FixedPoint<int32, src>."""
    return _saturating_mul_pot(x, src_int_bits - dst_int_bits)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    constant_1_over_3 = 715827883
    x = wrap32(a + (1 << 28))
    x2 = _fx_mul(x, x)
    x3 = _fx_mul(x2, x)
    x4 = _fx_mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(wrap32(_fx_mul(wrap32(x4_over_4 + x3), constant_1_over_3) + x2), 1)
    return wrap32(constant_term + _fx_mul(constant_term, wrap32(x + poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """gemmlowp ``exp_on_negative_values`` of a FixedPoint<int32, integer_bits>; result Q0.31."""
    a = np.asarray(a, np.int64)
    frac_bits = 31 - integer_bits
    one_quarter = 1 << (frac_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = wrap32((a & mask) - one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = wrap32(a_mod_quarter_minus_one_quarter - a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (frac_bits + exponent)
            result = np.where((remainder & bit) != 0, _fx_mul(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _rounding_half_sum(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    s = np.asarray(a, np.int64) + b
    sign = np.where(s >= 0, 1, -1)
    t = s + sign
    return np.where(t >= 0, t // 2, -((-t) // 2))


def one_over_one_plus_x_for_x_in_0_1(a: np.ndarray) -> np.ndarray:
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1`` (Q0.31 in, Q0.31 out)."""
    half_denominator = _rounding_half_sum(a, INT32_MAX)
    constant_48_over_17 = 1515870810  # Q2.29
    constant_neg_32_over_17 = -1010580540
    one_q2 = 1 << 29
    x = wrap32(constant_48_over_17 + _fx_mul(half_denominator, constant_neg_32_over_17))
    for _ in range(3):
        half_denominator_times_x = _fx_mul(half_denominator, x)
        one_minus = wrap32(one_q2 - half_denominator_times_x)
        x = wrap32(x + rescale(_fx_mul(x, one_minus), 4, 2))
    return rescale(x, 1, 0)  # ExactMulByPot<-1> turns Q2 into Q1, then Rescale<0>


def count_leading_zeros32(x: np.ndarray) -> np.ndarray:
    """``CountLeadingZeros`` of uint32 values (32 for zero)."""
    x = np.asarray(x, np.int64) & 0xFFFFFFFF
    _, bit_length = np.frexp(x.astype(np.float64))  # exact: uint32 values fit a double
    return 32 - bit_length.astype(np.int64)


def get_reciprocal(x: np.ndarray, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite ``GetReciprocal``: (Q0.31 reciprocal, num_bits_over_unit)."""
    x = np.asarray(x, np.int64)
    headroom_plus_one = count_leading_zeros32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = ((x & 0xFFFFFFFF) << headroom_plus_one) & 0xFFFFFFFF
    shifted_sum_minus_one = wrap32(shifted - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit
