"""TFLite integer helpers against hand-checked values (each expectation worked out by hand)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinypatch.kernels.base import activation_range_quantized, conv_pads
from tinypatch.kernels.fixedpoint import (
    exp_on_negative_values,
    float_requantizer,
    get_reciprocal,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    requantize_float64,
    round_double,
    roundf,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

I32_MIN = -(2**31)


@pytest.mark.parametrize("real, expected", [
    (0.0, (0, 0)),
    (0.5, (2**30, 0)),  # 0.5 = 0.5 * 2^0
    (1.0, (2**30, 1)),  # 1.0 = 0.5 * 2^1
    (0.75, (3 * 2**29, 0)),
    (3.0, (3 * 2**29, 2)),  # 0.75 * 2^2
    # frexp gives q = 1 - 2^-33, q * 2^31 = 2^31 - 0.25 rounds up to 2^31: halve it, shift + 1
    ((1 - 2**-33) * 2**-3, (2**30, -2)),
    (2**-40, (0, 0)),  # shift -39 < -31 flushes to zero
])
def test_quantize_multiplier(real: float, expected: tuple[int, int]) -> None:
    assert quantize_multiplier(real) == expected


@pytest.mark.parametrize("a, b, expected", [
    (2**30, 2**30, 2**29),  # 0.5 * 0.5 = 0.25
    (1, 2**30, 1),  # 0.5 rounds up
    (-1, 2**30, 0),  # -0.5 rounds toward +inf (gemmlowp's nudge)
    (3, 2**30, 2),  # 1.5 -> 2
    (-3, 2**30, -1),  # -1.5 -> -1
    (I32_MIN, I32_MIN, 2**31 - 1),  # the one overflow saturates
])
def test_saturating_rounding_doubling_high_mul(a: int, b: int, expected: int) -> None:
    assert int(saturating_rounding_doubling_high_mul(a, b)) == expected


@pytest.mark.parametrize("x, exponent, expected", [
    (5, 1, 3), (-5, 1, -3), (4, 1, 2), (-3, 1, -2), (-1, 1, -1), (7, 0, 7), (6, 2, 2), (-6, 2, -2),
])
def test_rounding_divide_by_pot(x: int, exponent: int, expected: int) -> None:
    assert int(rounding_divide_by_pot(x, exponent)) == expected


@pytest.mark.parametrize("x, m, shift, expected", [
    (100, 2**30, 0, 50),
    (100, 2**30, 1, 100),
    (100, 2**30, -1, 25),
    (5, 2**30, -1, 2),  # double rounding: 2.5 -> 3, then 1.5 -> 2 (single rounding would give 1)
    (2**30, 2**30, 2, 0),  # 2^30 << 2 wraps to 0 in int32 before the multiply
])
def test_multiply_by_quantized_multiplier(x: int, m: int, shift: int, expected: int) -> None:
    assert int(multiply_by_quantized_multiplier(x, m, shift)) == expected


def test_multiply_by_quantized_multiplier_broadcasts_per_channel() -> None:
    out = multiply_by_quantized_multiplier(np.array([[8, 8]]), np.array([2**30, 2**30]), np.array([0, -2]))
    assert out.tolist() == [[4, 1]]


def test_round_half_away_from_zero() -> None:
    assert roundf(np.array([0.5, -0.5, 2.5, -2.5, 0.49999997, 1.4999999], np.float32)).tolist() == \
        [1, -1, 3, -3, 0, 1]
    assert round_double(np.array([0.49999999999999994, 2.5, -3.5])).tolist() == [0, 3, -4]


def test_activation_range_quantized() -> None:
    s = np.float32(6 / 255)
    assert activation_range_quantized("RELU6", s, -128) == (-128, 127)
    assert activation_range_quantized("RELU", np.float32(0.1), 10) == (10, 127)
    assert activation_range_quantized("RELU_N1_TO_1", np.float32(0.25), 0) == (-4, 4)
    assert activation_range_quantized("NONE", np.float32(0.1), 3) == (-128, 127)


def test_exp_on_negative_values_known_points() -> None:
    # Q5.26 inputs 0, -1, -2 -> Q0.31 outputs exp(0) saturated, exp(-1), exp(-2)
    raw = np.array([0, -(2**26), -(2**27)])
    out = exp_on_negative_values(raw, 5) / 2**31
    assert out[0] == pytest.approx(1.0, abs=1e-9)
    assert out[1:] == pytest.approx(np.exp([-1.0, -2.0]), abs=5e-7)


def test_get_reciprocal() -> None:
    # 1.25 in Q12.19 -> 1/1.25 = 0.8 with no bits over unit
    raw, bits = get_reciprocal(np.array([int(1.25 * 2**19)]), 12)
    assert int(bits[0]) == 0
    assert raw[0] / 2**31 == pytest.approx(0.8, abs=1e-8)


@settings(max_examples=200, deadline=None)
@given(x=st.integers(-(2**31), 2**31 - 1), real=st.floats(1e-6, 0.999))
def test_mbqm_is_within_one_of_exact(x: int, real: float) -> None:
    m, shift = quantize_multiplier(real)
    exact = x * m * 2.0 ** (shift - 31)
    assert abs(int(multiply_by_quantized_multiplier(x, m, shift)) - exact) <= 1.0


@pytest.mark.parametrize("n, k, s, d, padding, expected", [
    (5, 3, 1, 1, "SAME", (1, 1)),
    (6, 3, 2, 1, "SAME", (0, 1)),  # out 3 needs 7 rows: TFLite pads 0 before, 1 after
    (7, 3, 2, 1, "SAME", (1, 1)),
    (7, 3, 2, 1, "VALID", (0, 0)),
    (5, 3, 1, 2, "SAME", (2, 2)),  # dilated kernel spans 5
])
def test_conv_pads(n: int, k: int, s: int, d: int, padding: str, expected: tuple[int, int]) -> None:
    assert conv_pads((n, n), (k, k), (s, s), (d, d), padding) == (*expected, *expected)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(m=st.one_of(st.just(0), st.integers(2**30, 2**31 - 1)), shift=st.integers(-40, 8), seed=st.integers(0, 2**32 - 1))
def test_float64_requantization_is_multiply_by_quantized_multiplier(m, shift, seed) -> None:
    """Below :func:`float_requantizer`'s limit the float64 path equals the integer one (ties of
    both roundings included), and the limit is where float64 stops being exact or the pre-shift wraps."""
    got = float_requantizer(np.array([m]), np.array([shift]))
    if got is None:
        assert -shift > 62
        return
    scale, post, limit = got
    left = 2 ** max(shift, 0)
    assert limit == min(2.0**31 / left, 2.0**52 / (max(m, 1) * left))
    bound = min(int(np.ceil(limit)) - 1, 2**31 - 1)
    rng = np.random.default_rng(seed)
    x = rng.integers(-bound, bound + 1, 2000)
    half = 2 ** max(-shift - 1, 0)
    x = np.concatenate([x, np.clip([bound, -bound, 0, 1, -1, half, -half, 3 * half, -3 * half], -bound, bound)])
    want = multiply_by_quantized_multiplier(x, m, shift)
    assert np.array_equal(requantize_float64(x.astype(np.float64), scale, post).astype(np.int64), want)
