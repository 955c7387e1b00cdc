"""Single operators in C against the Python executor where rounding decides: activation NONE
(nothing clamps negative results away), random per-channel scales and zero points, and real
multipliers that are powers of two so that many accumulators land exactly on a half (ties,
negative ones included). Every kernel path: reference (FAST=), the DSP kernels on the host
(portable intrinsics) and on an emulated Cortex-M7, the Helium kernels on an emulated Cortex-M55."""

from __future__ import annotations

import numpy as np
import pytest

from tinypatch.codegen import generate
from tinypatch.codegen.report import measure
from tinypatch.codegen.toolchain import make, missing_tools, read_outputs, run_host
from tinypatch.frontends.synth import Builder
from tinypatch.ir import Graph, QuantParams
from tinypatch.planning.plan import Plan
from tinypatch.runtime.executor import run

S_IN, S_OUT = 2.0 ** -6, 2.0 ** -3


def tie_graph(seed: int = 0) -> Graph:
    """One input, every operator reading it (or a conv of it) is a graph output: convolutions
    (3x3, 1x1, strided, 5x5 depthwise), pools, MEAN, ADD, MUL, FULLY_CONNECTED; odd widths for
    the DSP two-pixel and Helium four-pixel tails."""
    b = Builder("ties", seed)
    x = b.input((1, 9, 11, 16), scale=S_IN, zero_point=3)
    c3 = b.conv(x, 16, 3, name="conv3", act="NONE")
    outs = [c3, b.conv(x, 24, 1, name="conv1", act="NONE"), b.conv(x, 8, 3, 2, name="conv3s2", act="NONE"),
            b.depthwise(x, 3, name="dw3", act="NONE"), b.depthwise(x, 3, 2, name="dw3s2", act="NONE"),
            b.depthwise(x, 5, name="dw5", act="NONE"), b.pool(x, "avg", 2, name="avg2"),
            b.pool(x, "avg", 3, 1, name="avg3", padding="SAME"), b.mean(x, name="mean"),
            b.add(c3, x, name="add"), b.mul(c3, x, name="mul")]
    flat = b.reshape(x, (1, 9 * 11 * 16), name="flat")
    outs.append(b.fully_connected(flat, 10, name="fc"))
    g = b.finish(outs)
    rng = np.random.default_rng(seed)
    for op in g.ops:
        if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            _tie_weights(g, op, rng)
        elif op.type in ("ADD", "MUL"):
            g.tensors[op.outputs[0]].quant = QuantParams.tensor(S_OUT * 2.0 ** -int(rng.integers(0, 3)),
                                                                int(rng.integers(-20, 21)))
    return g


def _tie_weights(g: Graph, op, rng: np.random.Generator) -> None:  # noqa: ANN001
    """Small weights and biases; per channel a real multiplier 2^-e (ties at every odd multiple of
    2^(e-1)) or, on every third channel, a random one; a random output zero point."""
    w, bias = g.tensors[op.inputs[1]], g.tensors[op.inputs[2]]
    axis = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": None}[op.type]
    channels = w.shape[0 if axis is None else axis]
    w.data = rng.integers(-2, 3, w.shape).astype(np.int8)
    e = rng.integers(1, 5, channels).astype(np.float64)
    mult = 2.0 ** -e
    mult[::3] = rng.uniform(0.01, 0.6, mult[::3].size)
    if axis is None:  # FULLY_CONNECTED: one scale
        mult = mult[:1]
    w_scale = mult * S_OUT / S_IN
    w.quant = QuantParams(w_scale, np.zeros(w_scale.size, np.int64), axis)
    bias.data = rng.integers(-40, 41, bias.shape).astype(np.int32)
    bias.quant = QuantParams(S_IN * w_scale, np.zeros(w_scale.size, np.int64), 0 if axis is not None else None)
    g.tensors[op.outputs[0]].quant = QuantParams.tensor(S_OUT, int(rng.integers(-20, 21)))


def tie_input(g: Graph, seed: int = 1) -> np.ndarray:
    t = g.tensors[g.inputs[0]]
    return np.random.default_rng(seed).integers(3 - 7, 3 + 8, t.shape).astype(np.int8)


def test_the_cases_hit_negative_ties():
    """Not a vacuous check: convolution accumulators fall exactly on negative halves."""
    g = tie_graph()
    ex = run(g, [tie_input(g)], keep=True)
    k = next(i for i, op in enumerate(g.ops) if op.name == "conv3")
    real = S_IN * g.tensors[g.ops[k].inputs[1]].quant.scale.astype(np.float64) / S_OUT
    acc = _conv3_acc(g, k, ex[g.inputs[0]])
    scaled = acc * real
    ties = (np.abs(scaled - np.floor(scaled)) == 0.5) & (scaled < 0)
    assert ties.sum() > 50


def _conv3_acc(g: Graph, k: int, x: np.ndarray) -> np.ndarray:
    op = g.ops[k]
    w = g.tensors[op.inputs[1]].data.astype(np.int64)
    b = g.tensors[op.inputs[2]].data.astype(np.int64)
    xp = np.pad(x.astype(np.int64) - 3, ((0, 0), (1, 1), (1, 1), (0, 0)))
    _, h, wd, _ = x.shape
    acc = np.zeros((h, wd, w.shape[0]), np.int64) + b
    for ky in range(3):
        for kx in range(3):
            acc += np.einsum("hwc,oc->hwo", xp[0, ky: ky + h, kx: kx + wd], w[:, ky, kx])
    return acc


def _host_exact(tmp_path, fast: bool) -> None:  # noqa: ANN001
    g = tie_graph()
    x = tie_input(g)
    generate(g, Plan.layer_by_layer(g), tmp_path)
    make(tmp_path, "host-check", variables=None if fast else {"FAST": ""})
    got = run_host(tmp_path, g, [x], "model_host_check")
    want = run(g, [x])
    for name in g.outputs:
        assert got[name].tobytes() == want[name].tobytes(), f"{name}: C differs from the Python executor"


NO_CC = missing_tools("host")


@pytest.mark.skipif(NO_CC is not None, reason=f"host C compiler: {NO_CC}")
@pytest.mark.parametrize("fast", [False, True], ids=["reference", "dsp-portable"])
def test_single_ops_on_ties_host(fast, tmp_path):
    _host_exact(tmp_path, fast)


@pytest.mark.parametrize("target", ["cortex-m7", "cortex-m55"])
def test_single_ops_on_ties_emulated(target, tmp_path):
    """DSP kernels on Cortex-M7, Helium kernels on Cortex-M55 (one QEMU run each)."""
    missing = missing_tools(target)
    if missing:
        pytest.skip(f"Cortex-M toolchain/emulator: {missing}")
    g = tie_graph()
    x = tie_input(g)
    project = generate(g, Plan.layer_by_layer(g), tmp_path, target=target)
    cost = measure(g, project, [x], timeout=120)
    got = read_outputs(tmp_path / "output.bin", g)
    want = run(g, [x])
    bad = [n for n in g.outputs if got[n].tobytes() != want[n].tobytes()]
    assert not bad and cost.exact, f"{target}: {bad} differ"
