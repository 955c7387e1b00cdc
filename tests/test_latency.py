"""The instruction cost model (planning/latency.py): its features, the search's instruction
objective, the CLI, and predictions against QEMU counts on a few shared models."""

from __future__ import annotations

import pytest

from tinypatch.analysis.macs import op_elem_ops, op_macs
from tinypatch.cli import main
from tinypatch.codegen import generate
from tinypatch.codegen.report import measure
from tinypatch.codegen.toolchain import build_insncount, missing_tools
from tinypatch.errors import PlanError
from tinypatch.frontends.synth import Builder
from tinypatch.planning.cost import plan_macs
from tinypatch.planning.check import check_plan
from tinypatch.planning.latency import cost_model, fitted_targets, plan_calls, plan_work
from tinypatch.planning.optimal import Choice, HaloPolicy, to_plan
from tinypatch.planning.plan import Plan
from tinypatch.planning.search import choose, search
from tinypatch.runtime.inputs import random_input


def _chain():
    b = Builder("chain", seed=4)
    x = b.input((1, 24, 24, 8))
    x = b.conv(x, 16, 3, 1, name="c0")
    x = b.depthwise(x, 3, 1, name="d1")
    x = b.conv(x, 12, 1, 1, name="c2")
    return b.finish([x])


@pytest.mark.parametrize("grid, mode", [((1, 1), "recompute"), ((3, 4), "recompute"), ((4, 4), "cache"),
                                        ((6, 24), "stream")])
def test_features_count_the_work_the_plan_does(grid, mode):
    g = _chain()
    plan = to_plan(g, (Choice(0, 3, grid, HaloPolicy(mode)),), True, True)
    work = plan_work(g, plan)
    assert [w.k for w in work] == [0, 1, 2]
    macs, _, _ = plan_macs(g, check_plan(g, plan))
    feats = [w.features(g) for w in work]
    assert round(sum(f["work"] for f in feats)) == macs  # no element ops in this chain
    calls = [w.calls for w in work]
    if mode == "stream":  # one call per column of each strip
        assert calls[-1] == grid[0] * 24
    else:
        assert calls == [grid[0] * grid[1]] * 3
    assert plan_calls(g, plan) == sum(calls)


def test_layer_by_layer_features():
    g = _chain()
    for w in plan_work(g, Plan.layer_by_layer(g)):
        op = g.ops[w.k]
        _, h, wd, _ = g.tensors[op.outputs[0]].shape
        assert (w.pixels, w.rows, w.calls) == (h * wd, h, 1)
        assert w.features(g)["work"] == pytest.approx(op_macs(g, op) + op_elem_ops(g, op))


@pytest.mark.skipif("cortex-m7" not in fitted_targets(), reason="no fitted cost model")
def test_instruction_objective_front_and_ties():
    g = _chain()
    by_insns = search(g, target="cortex-m7")
    by_macs = search(g, target="cortex-m7", objective="macs")
    plain = search(g)
    assert by_insns.objective == "instructions" and plain.objective == "macs"
    assert all(s.insns and s.calls for s in by_insns.front)
    peaks = [s.peak for s in by_insns.front]
    assert peaks == sorted(peaks)
    keys = [by_insns.key(s) for s in by_insns.front]
    assert keys == sorted(keys, reverse=True)  # less peak costs instructions
    # the MAC objective keeps today's front (same peaks and MACs), with predictions beside
    assert [(s.peak, s.macs) for s in by_macs.front] == [(s.peak, s.macs) for s in plain.front]
    model = cost_model("cortex-m7")
    chosen = choose(by_insns, sram=by_insns.baseline.peak)
    assert chosen.insns == pytest.approx(model.predict(g, chosen.plan))
    assert chosen.insns <= by_insns.baseline.insns


def test_objective_needs_a_model():
    with pytest.raises(PlanError, match="cost model"):
        search(_chain(), objective="instructions")
    with pytest.raises(PlanError, match="no instruction cost model for target 'host'"):
        cost_model("host")


def test_cli_plan_target(capsys, tmp_path):
    if "cortex-m7" not in fitted_targets():
        pytest.skip("no fitted cost model")
    out = tmp_path / "p.json"
    assert main(["plan", "mcunet-in0", "--target", "cortex-m7", "--sram", "40KB", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "predicted instr." in text and "objective: predicted instructions" in text
    assert main(["plan", "mcunet-in0", "--target", "host"]) == 2
    assert "no instruction cost model for target 'host'" in capsys.readouterr().err
    assert main(["plan", "mcunet-in0", "--objective", "instructions"]) == 2


# --- predictions against QEMU (a few shared models; benchmarks/mcu.py covers all) -------------------
CASES = [("mlperf_kws_dscnn_int8.tflite", "cortex-m7"), ("mlperf_kws_dscnn_int8.tflite", "cortex-m55"),
         ("mlperf_ic_resnet8_int8.tflite", "cortex-m55")]


@pytest.mark.parametrize("name, target", CASES)
def test_predicted_instructions_within_10_percent(name, target, assets, tmp_path):
    if missing_tools(target):
        pytest.skip(missing_tools(target))
    if target not in fitted_targets():
        pytest.skip("no fitted cost model")
    from tinypatch.frontends.tflite import load_tflite

    g = load_tflite(str(assets / "models" / name))
    front = [s for s in search(g).front if s.plan.stages]
    plans = [Plan.layer_by_layer(g), front[0].plan, front[-1].plan]
    plugin = build_insncount(assets, tmp_path / "plugin")
    model = cost_model(target)
    x = [random_input(g.tensors[g.inputs[0]], seed=0)]
    for k, plan in enumerate(plans):
        project = generate(g, plan, tmp_path / f"p{k}", target)
        c = measure(g, project, x, plugin)
        assert c.exact
        predicted = model.predict(g, project.plan)
        assert abs(predicted / c.insns - 1) <= 0.10, (k, predicted, c.insns)

