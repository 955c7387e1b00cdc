"""Quantization edge cases against LiteRT's reference kernels (BUILTIN_REF).

HARD_SWISH at every input scale (its int16 pipeline, gemmlowp's int16 ``RoundingDivideByPOT``
included) in numpy and in the generated C.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_codegen import needs_cc
from test_kernels_litert_ops import act_t, litert_output, q, single_op

from tinypatch.codegen import generate
from tinypatch.codegen.toolchain import make, run_host
from tinypatch.kernels import prepare
from tinypatch.kernels.fixedpoint import rounding_divide_by_pot
from tinypatch.runtime import run

X = np.arange(-128, 128, dtype=np.int8).reshape(1, 4, 4, 16)  # every int8 value


def hard_swish(relu_exp: int, frac: float, out_ratio: float, zps: tuple[int, int]):
    """A HARD_SWISH graph whose relu-ish multiplier is ``frac * 2^(relu_exp - 1)`` (frac in [1, 2))."""
    s_in = np.float32(frac * 2.0 ** (relu_exp - 1) * (3 / 32768) * 128)
    return single_op("HARD_SWISH", [act_t("x", X.shape, "int8", q(s_in, zps[0]))],
                     act_t("y", X.shape, "int8", q(np.float32(s_in * out_ratio), zps[1])))


def test_int16_rounding_divide_by_pot_keeps_the_int16_mask():
    """From exponent 16 on, the int16 mask is -1: x >= 0 gives 1, x < 0 gives -1 (not 0)."""
    x = np.array([-32768, -300, -1, 0, 1, 300, 32767])
    assert rounding_divide_by_pot(x, 16, bits=16).tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert rounding_divide_by_pot(x, 31, bits=16).tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert rounding_divide_by_pot(x, 16).tolist() == [-1, 0, 0, 0, 0, 0, 0]  # int32: rounds half away from 0
    assert rounding_divide_by_pot(x, 15, bits=16).tolist() == rounding_divide_by_pot(x, 15).tolist()


@pytest.mark.parametrize("relu_exp", range(2, -34, -1))
def test_hard_swish_matches_litert_at_every_scale(relu_exp):
    checked = 0
    for frac in (1.0, 1.61):
        for out_ratio in (0.02, 0.6, 3.0):
            for zps in ((0, 0), (-7, 9), (100, -100)):
                g = hard_swish(relu_exp, frac, out_ratio, zps)
                kern = prepare(g, g.ops[0])
                assert kern.relu_exp == (relu_exp if relu_exp >= -31 else 0)  # 2^-32 and below quantize to 0
                ref = litert_output(g, [X])
                assert ref is not None
                ours = run(g, [X])["y"]
                diff = np.flatnonzero(ours != ref)
                assert diff.size == 0, (f"relu exponent {relu_exp}, {frac=}, {out_ratio=}, {zps=}: x={X.ravel()[diff[:4]]}"
                                        f" ours {ours.ravel()[diff[:4]]} LiteRT {ref.ravel()[diff[:4]]}")
                checked += 1
    assert checked == 18


@needs_cc
def test_generated_hard_swish_lut_inherits_the_int16_arithmetic(tmp_path):
    g = hard_swish(-20, 1.3, 0.6, (-7, 9))
    ref = litert_output(g, [X])
    generate(g, None, tmp_path)
    make(tmp_path, "host-check")
    got = run_host(tmp_path, g, [X], "model_host_check")["y"]
    assert got.tobytes() == ref.tobytes()
