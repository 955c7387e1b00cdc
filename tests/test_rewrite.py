"""Graph rewrites in plans: memory-aware operator order and recomputation (planning/rewrite*.py).

Every rewrite keeps every graph output byte-identical to the model's whole-image run (random
multi-output graphs, by hypothesis); a plan found on a rewritten graph records its rewrites,
round-trips through JSON, and runs (Python executor, C on the host) from the model itself at
measured == planned peak; merging the rewritten fronts never makes the front worse; malformed
or foreign rewrites are refused with PlanError.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from strategies import random_multi_output_cnn
from test_codegen import C_BUILDS, assert_outputs_equal, needs_cc

import tinypatch
from tinypatch.codegen import generate
from tinypatch.codegen.toolchain import make, run_host
from tinypatch.errors import BudgetError, PlanError
from tinypatch.frontends.random_cnn import CnnBuilder
from tinypatch.frontends.zoo import build
from tinypatch.ir import Graph
from tinypatch.planning.check import check_plan
from tinypatch.planning.plan import Plan, fingerprint
from tinypatch.planning.reorder import HEADS, sink_order
from tinypatch.planning.rewrite import apply_rewrites, recompute, rewritten, tag_plan
from tinypatch.planning.rewrite_search import candidates, rewrite_front, schedule_graph
from tinypatch.planning.search import search
from tinypatch.runtime.executor import run
from tinypatch.runtime.plan_executor import PlanExecutor


def tiny_fpn() -> tuple[Graph, np.ndarray]:
    """A two-level FPN in converter order (the C3 lateral right after C3), a stride-16 head made in
    the middle of the graph, a stride-8 head at the end; and a seeded input."""
    rng = np.random.default_rng(5)
    b = CnnBuilder(rng, (1, 32, 32, 3), "tiny_fpn")
    b.conv(8, 3, 3, (2, 2), (1, 1), "SAME", "RELU")
    b.depthwise(1, 3, 3, (1, 1), (1, 1), "SAME", "RELU")
    c3 = b.conv(16, 1, 1, (1, 1), (1, 1), "SAME", "RELU")
    lateral = b.conv(12, 1, 1, (1, 1), (1, 1), "SAME")
    b.cur = c3
    b.depthwise(1, 3, 3, (2, 2), (1, 1), "SAME", "RELU")
    p4 = b.conv(12, 1, 1, (1, 1), (1, 1), "SAME", "RELU", out_quant=b.quant(lateral))
    head16 = b.conv(6, 3, 3, (1, 1), (1, 1), "SAME")
    b.cur = p4
    b.resize(16, 16, False, False)
    b.add(lateral)
    b.conv(12, 3, 3, (1, 1), (1, 1), "SAME", "RELU")
    b.conv(6, 3, 3, (1, 1), (1, 1), "SAME")
    g = b.finish()
    g.outputs = [g.outputs[0], head16]
    return g, rng.integers(-128, 128, (1, 32, 32, 3), dtype=np.int8)


def _same_outputs(a: Graph, b: Graph, xs: list[np.ndarray]) -> None:
    want, got = run(a, xs), run(b, xs)
    assert b.inputs == a.inputs and b.outputs == a.outputs
    for n in a.outputs:
        assert got[n].dtype == want[n].dtype and got[n].tobytes() == want[n].tobytes(), n


def _merged(g: Graph, include_input: bool = False):
    return rewrite_front(g, lambda h: search(h, include_input=include_input))


def test_sink_order_delays_the_lateral_and_keeps_values():
    g, x = tiny_fpn()
    for heads in HEADS:
        order = sink_order(g, heads)
        h = apply_rewrites(g, [{"order": order}])
        _same_outputs(g, h, [x])
        assert order.index(3) == order.index(8) - 1, heads  # the lateral conv just before its top-down ADD
    assert sink_order(g, "reversed")[-2:] == [10, 6]  # the stride-16 head after the stride-8 head


def test_recompute_clones_share_weights_and_free_the_early_map():
    g, x = tiny_fpn()
    h = recompute(g, [0, 1, 2], 3)  # stem..C3 again, for the lateral alone
    assert len(h.ops) == len(g.ops) + 3
    assert [op.inputs[1:] for op in h.ops[3:6]] == [op.inputs[1:] for op in g.ops[:3]]  # same constants
    assert set(h.tensors) - set(g.tensors) == {f"{g.ops[i].outputs[0]}/recompute" for i in range(3)}
    assert h.consumers()[g.ops[2].outputs[0]] == [7]  # C3 now feeds only the backbone
    _same_outputs(g, h, [x])
    with pytest.raises(PlanError, match="reads none"):
        recompute(g, [0], 4)


def test_rewritten_fronts_lower_the_fpn_peak_and_run_exactly_from_the_model():
    g, x = tiny_fpn()
    plain = search(g, include_input=False)
    merged = _merged(g)
    least_plain = min(s.peak for s in plain.front)
    best = min(merged.front, key=lambda s: (s.peak, s.macs))
    assert best.peak < least_plain * 0.6, (best.peak, least_plain)
    assert any(r.get("recompute") for r in best.plan.rewrites) and best.plan.fingerprint == fingerprint(g)
    ref = run(g, [x])
    for s in merged.front:
        plan = Plan.from_json(s.plan.to_json())  # what run / codegen read back
        assert plan == s.plan
        out = PlanExecutor(g, plan)([x])  # the model itself: the executor replays the rewrites
        assert out.arena_high_water == out.arena_size == s.peak, s.label
        for n in g.outputs:
            assert out.outputs[n].tobytes() == ref[n].tobytes(), (s.label, n)
    for s in plain.front:  # never worse: every plain point is matched or beaten
        assert any(m.peak <= s.peak and m.macs <= s.macs for m in merged.front), s.label


def test_api_plan_run_and_show_a_rewritten_plan(tmp_path):
    g, x = tiny_fpn()
    result = tinypatch.plan(g, sram=4200, include_input=False)
    assert result.plan.rewrites and result.model is g and result.graph is not g
    assert result.cost.base_macs == result.baseline.macs < result.cost.macs  # overheads against the model's MACs
    path = tmp_path / "plan.json"
    result.save(path)
    r = tinypatch.run(g, path, input=x)
    assert r.exact and r.arena_high_water == r.arena_size == result.cost.peak <= 4200
    with pytest.raises(BudgetError, match="smallest achievable peak is 7296 B"):  # the model's own op order
        tinypatch.plan(g, sram=4200, include_input=False, rewrite=False)
    from tinypatch.report.show import pipeline

    facts = pipeline(g, Plan.load(path))
    assert len(facts["ops"]) == len(result.graph.ops) and facts["arena"]["bytes"] == result.cost.peak


@needs_cc
def test_rewritten_plan_is_exact_in_c(tmp_path):
    g, x = tiny_fpn()
    best = min(_merged(g).front, key=lambda s: (s.peak, s.macs))
    assert best.plan.rewrites
    generate(g, best.plan, tmp_path)  # the model: generate replays the rewrites
    make(tmp_path, "host-check")
    assert_outputs_equal(g, run_host(tmp_path, g, [x], "model_host_check"), [x])


@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_multi_output_cnn())
def test_random_multi_output_rewrites_keep_every_output(case):
    g, x = case
    for rewrites, h in candidates(g):
        _same_outputs(g, h, [x])
        assert fingerprint(apply_rewrites(g, json.loads(json.dumps(rewrites)))) == fingerprint(h)
    merged, plain = _merged(g, True), search(g, include_input=True)
    assert min(s.peak for s in merged.front) <= min(s.peak for s in plain.front)
    best = min(merged.front, key=lambda s: (s.peak, s.macs))
    out = PlanExecutor(g, best.plan)([x])
    assert out.arena_high_water == out.arena_size == best.peak
    ref = run(g, [x])
    assert all(out.outputs[n].tobytes() == ref[n].tobytes() for n in g.outputs)
    assert schedule_graph(best, g).outputs == g.outputs


@needs_cc
@settings(C_BUILDS, max_examples=3)
@given(random_multi_output_cnn(max_layers=4))
def test_random_multi_output_rewritten_plan_is_exact_in_c(tmp_path_factory, case):
    """A plan of a candidate rewrite (recompute where there is one), generated from the model."""
    g, x = case
    found = list(candidates(g))
    assume(found)
    rewrites, h = max(found, key=lambda c: any("recompute" in r for r in c[0]))
    s = min(search(h, include_input=False).front, key=lambda s: (s.peak, s.macs))
    plan = Plan.from_json(tag_plan(s.plan, g, rewrites, h).to_json())
    out = tmp_path_factory.mktemp("c")
    generate(g, plan, out)
    make(out, "host-check")
    assert_outputs_equal(g, run_host(out, g, [x], "model_host_check"), [x])


def _rewriting_plan() -> tuple[Graph, Plan]:
    g, _ = tiny_fpn()
    return g, min(_merged(g).front, key=lambda s: s.peak).plan


@pytest.mark.parametrize("rewrites, match", [
    ("x", "must be a list"),
    ([{"order": [0, 0]}], "every operator index once"),
    ([{"recompute": [2, 1], "for": 3}], "increasing operator indices"),
    ([{"recompute": [0], "for": 0}], "increasing operator indices"),
    ([{"swap": [0, 1]}], "must be"),
    ([{"order": [0], "recompute": [0], "for": 1}], "must be"),
    ([], "exactly when its format is tinypatch-plan/2"),
])
def test_malformed_rewrites_are_refused(rewrites, match):
    _, plan = _rewriting_plan()
    d = plan.to_dict()
    d["rewrites"] = rewrites
    with pytest.raises(PlanError, match=match):
        Plan.from_dict(d)


def test_foreign_or_illegal_rewrites_are_refused():
    g, plan = _rewriting_plan()
    n = len(g.ops)
    bad_order = plan.to_dict() | {"rewrites": [{"order": list(range(n))[::-1]}]}
    with pytest.raises(PlanError, match="not a legal operator order"):
        rewritten(g, Plan.from_dict(bad_order))
    with pytest.raises(PlanError, match="each of the 11 operators once"):
        rewritten(g, Plan.from_dict(plan.to_dict() | {"rewrites": [{"order": [0, 1]}]}))
    other = plan.to_dict() | {"rewrites": [{"order": sink_order(g, "stay")}]}
    with pytest.raises(PlanError, match="not the .* it was planned on"):
        rewritten(g, Plan.from_dict(other))
    with pytest.raises(PlanError, match="made for model"):
        rewritten(build("mcunet-det-s"), plan)
    with pytest.raises(PlanError, match="rewrites the model's graph"):
        check_plan(g, plan)
    assert check_plan(rewritten(g, plan), plan) is not None


def test_plans_without_rewrites_are_unchanged():
    g, _ = tiny_fpn()
    plan = min(search(g, include_input=False).front, key=lambda s: s.peak).plan
    d = plan.to_dict()
    assert d["format"] == "tinypatch-plan/1" and "rewrites" not in d and "rewritten_fingerprint" not in d
    assert rewritten(g, Plan.from_dict(d)) is g
    _, rewriting = _rewriting_plan()
    d = rewriting.to_dict()
    assert d["format"] == "tinypatch-plan/2"  # a reader of /1 plans refuses it rather than misread the stages
    with pytest.raises(PlanError, match="exactly when"):
        Plan.from_dict(d | {"format": "tinypatch-plan/1"})


def test_rewrites_cannot_blow_the_graph_up():
    g, _ = tiny_fpn()
    sizes = [len(g.ops)]
    for _ in range(5):  # 11, 21, 41, ... 321 ops: past 2 x 11 + 256
        sizes.append(2 * sizes[-1] - 1)
    doubling = [{"recompute": list(range(m - 1)), "for": m - 1} for m in sizes]  # clone all but the last op
    with pytest.raises(PlanError, match="at most double"):
        apply_rewrites(g, doubling)


def test_cli_plans_runs_and_shows_a_rewritten_plan(tmp_path, capsys):
    from tinypatch.backends import write_tflite
    from tinypatch.cli import main

    g, x = tiny_fpn()
    model, plan, inp = tmp_path / "fpn.tflite", tmp_path / "plan.json", tmp_path / "x.npy"
    model.write_bytes(write_tflite(g))
    np.save(inp, x)
    assert main(["plan", str(model), "--no-input", "--sram", "4200", "--no-rewrite"]) == 2
    assert "smallest achievable peak is 7296 B" in capsys.readouterr().err
    assert main(["plan", str(model), "--no-input", "--sram", "4200", "-o", str(plan)]) == 0
    assert "graph rewritten (" in capsys.readouterr().out and Plan.load(plan).rewrites
    assert main(["run", str(model), "--plan", str(plan), "--input", str(inp)]) == 0
    assert "byte-identical" in capsys.readouterr().out
    assert main(["show", str(model), "--plan", str(plan)]) == 0
    assert "/recompute" in capsys.readouterr().out
