"""Quantization edge cases against LiteRT's reference kernels (BUILTIN_REF).

HARD_SWISH at every input scale (its int16 pipeline, gemmlowp's int16 ``RoundingDivideByPOT``
included) in numpy and in the generated C; the quantization parameters LiteRT refuses (fails to
prepare, or aborts) are refused at load, by the executor and by the C generator alike, naming
the op, the tensor and the value, and the parameters just inside the limits run exactly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_codegen import needs_cc
from test_kernels_litert_ops import act_t, litert_output, q, single_op

from tinypatch.backends import write_tflite
from tinypatch.cli import main
from tinypatch.codegen import generate
from tinypatch.codegen.toolchain import make, run_host
from tinypatch.errors import QuantizationError
from tinypatch.frontends.load import load_model
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
                assert diff.size == 0, (f"relu exponent {relu_exp}, {frac=}, {out_ratio=}, {zps=}: "
                                        f"x={X.ravel()[diff[:4]]} ours {ours.ravel()[diff[:4]]} "
                                        f"LiteRT {ref.ravel()[diff[:4]]}")
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


# --- parameters the reference kernels refuse ---------------------------------------------------
_LITERT_CHILD = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
it = Interpreter(model_path=sys.argv[1], experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
try:
    it.allocate_tensors()
except RuntimeError:
    print("refused"); sys.exit(0)
for d in it.get_input_details():
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
it.invoke()
print("ran")
"""


def litert_refuses(path: Path) -> bool:
    """Does LiteRT refuse the model (fail to prepare it, or abort: hence a child process)?"""
    r = subprocess.run([sys.executable, "-c", _LITERT_CHILD, str(path)], capture_output=True, text=True, timeout=120)
    return r.returncode != 0 or r.stdout.strip().endswith("refused")


S = (1, 2, 2, 8)


def softmax(in_scale: float, out_q=(1 / 256, -128), beta: float = 1.0):
    return single_op("SOFTMAX", [act_t("logits", S, "int8", q(np.float32(in_scale), 3))],
                     act_t("probs", S, "int8", q(np.float32(out_q[0]), out_q[1])), beta=beta)


def add(out_ratio: float):
    """ADD whose output multiplier 2 * max(input scales) / (2^20 * output scale) is ``out_ratio``."""
    a, b = act_t("a", S, "int8", q(0.05, 1)), act_t("b", S, "int8", q(0.1, -2))
    return single_op("ADD", [a, b], act_t("sum", S, "int8", q(np.float32(0.2 / (1 << 20) / out_ratio), 0)),
                     fused_activation_function="NONE")


REFUSED = {
    "softmax-input-scale-7.8e-9": (softmax(7.8e-9), "logits", "PreprocessSoftmaxScaling"),
    "softmax-input-scale-2^-26": (softmax(2.0**-26), "logits", "must exceed 1"),
    "softmax-output-zero-point": (softmax(0.1, (1 / 256, 0)), "probs", "zero point must be -128"),
    "softmax-output-scale": (softmax(0.1, (1 / 128, -128)), "probs", "1/256"),
    "logistic-output-scale": (single_op("LOGISTIC", [act_t("x", S, "int8", q(0.1, 0))],
                                        act_t("gate", S, "int8", q(1 / 255, -128))), "gate", "exactly 1/256"),
    "hard-swish-output-scale": (single_op("HARD_SWISH", [act_t("x", S, "int8", q(0.5, 0))],
                                          act_t("hs", S, "int8", q(0.5 / 200, 0))), "hs", "below 1"),
    "add-output-multiplier-1": (add(1.0), "sum", "below 1"),
    "add-output-multiplier-4": (add(4.0), "sum", "below 1"),
}
ACCEPTED = {
    "softmax-input-scale-just-above": softmax(float(np.nextafter(np.float32(2.0**-26), np.float32(1)))),
    "softmax-output-scale-within-0.1%": softmax(0.1, (1 / 256 * 1.0009, -128)),
    "add-output-multiplier-0.99": add(0.99),
    "hard-swish-output-multiplier-127-128ths": single_op("HARD_SWISH", [act_t("x", S, "int8", q(0.5, 0))],
                                                   act_t("hs", S, "int8", q(0.5 / 127, 0))),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_at_load_by_run_and_codegen_like_litert(case, tmp_path):
    g, tensor, why = REFUSED[case]
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(write_tflite(g))
    assert litert_refuses(path), "LiteRT accepts it: nothing to refuse"
    for attempt in (lambda: load_model(str(path)), lambda: run(g, [np.zeros(S, np.int8)] * len(g.inputs)),
                    lambda: generate(g, None, tmp_path / "c")):
        with pytest.raises(QuantizationError) as err:
            attempt()
        msg = str(err.value)
        assert g.ops[0].type in msg and repr(tensor) in msg and why in msg and "operator index 0" in msg, msg
        assert err.value.tensor == tensor
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


@pytest.mark.parametrize("case", ACCEPTED)
def test_parameters_at_the_limit_are_accepted_and_exact(case, tmp_path):
    g = ACCEPTED[case]
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(write_tflite(g))
    load_model(str(path))
    x = np.random.default_rng(1).integers(-128, 128, S).astype(np.int8)
    feeds = [x] * len(g.inputs)
    ref = litert_output(g, feeds)
    assert ref is not None
    assert run(g, feeds)[g.outputs[0]].tobytes() == ref.tobytes()


def test_cli_names_op_tensor_and_value(tmp_path, capsys):
    path = tmp_path / "softmax.tflite"
    path.write_bytes(write_tflite(REFUSED["softmax-input-scale-7.8e-9"][0]))
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "SOFTMAX" in err and "'logits'" in err and "7.8e-09" in err and "Traceback" not in err
