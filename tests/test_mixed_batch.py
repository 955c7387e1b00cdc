"""The values-only mixed-precision runner (:mod:`tinypatch.runtime.mixed_batch`) against its oracle, the
plan executor's tile loop with the same :class:`~tinypatch.runtime.mixed.MixedPrecision` hook: the same
output bytes, per-stage counts (tiles, outlier tiles, BitOPs) and recorded calibration statistics."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import model_path
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import random_cnn

import tinypatch.runtime.quantmcu as qm
from tinypatch import api
from tinypatch.analysis.regions import split_even
from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.planning.check import check_plan
from tinypatch.planning.plan import Plan, Stage, fingerprint
from tinypatch.planning.precision import MapPrecision, PrecisionPlan, StagePrecision, plan_fingerprint
from tinypatch.planning.tiles import legal_ends
from tinypatch.runtime.mixed import MixedPrecision, stage_maps
from tinypatch.runtime.mixed_batch import MixedTiles, values_runner
from tinypatch.runtime.plan_executor import PlanExecutor


def assert_same_as_tile_loop(graph: Graph, plan: Plan, precision: PrecisionPlan | None, inputs: list[np.ndarray],
                             record: bool) -> MixedPrecision:
    """Run ``inputs`` through both; assert identical outputs, counts and statistics. Returns the oracle's hook."""
    old, new = MixedPrecision(graph, plan, precision, record), MixedPrecision(graph, plan, precision, record)
    ex, fast = PlanExecutor(graph, plan, old), MixedTiles(graph, plan, new)
    assert fast.usable()
    for x in inputs:
        want, got = ex([x]).outputs, fast(x)
        assert want.keys() == got.keys()
        for name, value in want.items():
            assert value.dtype == got[name].dtype and value.shape == got[name].shape
            assert value.tobytes() == got[name].tobytes(), name
    assert old.counts == new.counts
    assert old.stats.keys() == new.stats.keys()
    for name, a in old.stats.items():
        b = new.stats[name]
        assert a.patch_max == b.patch_max, name
        assert a.hist.dtype == b.hist.dtype and np.array_equal(a.hist, b.hist), name
        assert a.below_zero_point == b.below_zero_point, name
        assert len(a.pixels) == len(b.pixels) == len(a.pixel_patch_max) == len(b.pixel_patch_max)
        for p, q in zip(a.pixels, b.pixels):
            assert p.dtype == q.dtype and p.shape == q.shape and np.array_equal(p, q), name
        for p, q in zip(a.pixel_patch_max, b.pixel_patch_max):
            assert p.dtype == q.dtype and np.array_equal(p, q), name
    return old


def _inputs(graph: Graph, n: int, seed: int = 0) -> list[np.ndarray]:
    t = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(seed)
    if t.np_dtype.kind == "f":
        return [rng.uniform(-1, 1, t.shape).astype(t.np_dtype) for _ in range(n)]
    return [rng.integers(-128, 128, t.shape, dtype=np.int8) for _ in range(n)]


@st.composite
def _case(draw: st.DrawFn) -> tuple[Graph, Plan]:
    """A random int8 CNN with one recompute stage on drawn (uneven, one-pixel at times) cuts."""
    graph, _ = draw(random_cnn(max_layers=5, head=False))
    assume(graph.tensors[graph.inputs[0]].dtype == "int8")
    s = draw(st.integers(0, len(graph.ops) - 1))
    ends = legal_ends(graph, s)
    assume(ends)
    e = draw(st.sampled_from(ends))
    h, w = graph.tensors[graph.ops[e - 1].outputs[0]].shape[1:3]

    def cuts(size: int) -> list[int]:
        if draw(st.booleans()):
            return split_even(size, draw(st.integers(1, size)))
        inner = draw(st.sets(st.integers(1, size - 1), max_size=4)) if size > 1 else set()
        return sorted({0, size, *inner})
    plan = Plan(graph.name, fingerprint(graph), [Stage(s, e, cuts(h), cuts(w))], draw(st.booleans()))
    try:
        check_plan(graph, plan)
    except PlanError:
        assume(False)
    assume(MixedTiles(graph, plan, MixedPrecision(graph, plan, None)).usable())
    return graph, plan


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(_case(), st.data())
def test_random_plans_and_precisions_match_the_tile_loop(case, data):
    graph, plan = case
    xs = _inputs(graph, 2, data.draw(st.integers(0, 99)))
    oracle = assert_same_as_tile_loop(graph, plan, None, xs, record=True)  # int8: the calibration recording
    maps = []
    for t in stage_maps(graph, plan, 0):
        s = oracle.stats[t]
        if not s.patch_max:
            continue
        q = data.draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))  # thresholds among the patches' maxima: some outliers
        thr = int(np.quantile(s.patch_max, q, method="higher")) if data.draw(st.booleans()) else 255
        maps.append(MapPrecision(t, data.draw(st.integers(2, 8)), thr, s.below_zero_point or data.draw(st.booleans()),
                                 step=data.draw(st.sampled_from(["static", "patch", "pixel"]))))
    precision = PrecisionPlan(graph.name, fingerprint(graph), plan_fingerprint(plan), [StagePrecision(0, maps)],
                              data.draw(st.sampled_from(["rest", "map"])))
    assert_same_as_tile_loop(graph, plan, precision, xs, record=data.draw(st.booleans()))


@pytest.fixture(scope="module")
def vww():
    graph = api.load(str(model_path("mlperf_vww_96_int8.tflite")))
    plan = api.plan(graph, single_stage=True, strategy="recompute", inplace=False, include_input=False).plan
    return graph, plan


@pytest.mark.parametrize("scope", ["rest", "map"])
@pytest.mark.parametrize("step", ["static", "patch", "pixel"])
def test_vww_mcunetv2_plan_matches_the_tile_loop(vww, scope, step):
    graph, plan = vww
    xs = _inputs(graph, 2)
    rec = assert_same_as_tile_loop(graph, plan, None, xs, record=True)
    bits = [6, 4, 2, 3, 5, 7, 8]  # every map its own width
    maps = [MapPrecision(t, bits[n % len(bits)], int(np.quantile(rec.stats[t].patch_max, 0.9, method="higher")),
                         rec.stats[t].below_zero_point, step=step) for n, t in enumerate(stage_maps(graph, plan, 0))]
    precision = PrecisionPlan(graph.name, fingerprint(graph), plan_fingerprint(plan), [StagePrecision(0, maps)], scope)
    old = assert_same_as_tile_loop(graph, plan, precision, xs, record=step == "patch")
    c = old.counts[plan.stages[0].start]
    assert c.outlier_tiles > 0 and c.bitops < c.bitops_int8  # outlier patches, and patches that ran low-bit


def test_vww_search_is_the_tile_loops(vww, monkeypatch):
    """quantize's plan, search trace and fidelity are those of the plan executor's runs."""
    graph, plan = vww
    calib = _inputs(graph, 3, 5)
    opts = qm.QuantizeOptions(step="patch", min_agreement=0.5, max_change=1.0)
    new = qm.quantize(graph, plan, calib, opts)
    monkeypatch.setattr(qm, "values_runner", lambda g, p, hook: lambda x: PlanExecutor(g, p, hook)([x]).outputs)
    old = qm.quantize(graph, plan, calib, opts)
    assert new.precision.to_json() == old.precision.to_json()
    assert new.steps == old.steps and any(s.accepted for s in new.steps)
    assert new.calibration == old.calibration


def test_plans_with_only_cached_stages_run_on_the_plan_executor(vww):
    graph, plan = vww
    s = plan.stages[0]
    cached = replace(plan, stages=[Stage(s.start, s.end, s.rows, s.cols, {s.start: "cache_w"})])
    hook = MixedPrecision(graph, cached, None, record=True)
    runner = values_runner(graph, cached, hook)
    assert not MixedTiles(graph, cached, MixedPrecision(graph, cached, None)).usable()
    assert not isinstance(runner, MixedTiles)
    x = _inputs(graph, 1)[0]
    oracle = MixedPrecision(graph, cached, None, record=True)
    want = PlanExecutor(graph, cached, oracle)([x]).outputs
    assert all(want[n].tobytes() == v.tobytes() for n, v in runner(x).items())
    assert hook.counts == oracle.counts
    assert isinstance(values_runner(graph, plan, MixedPrecision(graph, plan, None)), MixedTiles)


def test_a_cached_stage_runs_on_the_tile_loop_beside_batched_ones():
    """person_detect's recompute plan with its second stage's halo cached: the first stage batched,
    the second on the plan executor's tile loop with the same hook; every map of both at its own
    width, outliers in both: the same bytes, counts and statistics as the plan executor alone."""
    graph = api.load(str(model_path("person_detect.tflite")))
    plan = api.plan(graph, strategy="recompute").plan
    assert len(plan.stages) == 2
    s = plan.stages[1]
    mixed = replace(plan, stages=[plan.stages[0], Stage(s.start, s.end, s.rows, s.cols,
                                                        dict.fromkeys(range(s.start, s.end - 1), "cache"))])
    check_plan(graph, mixed)
    fast = MixedTiles(graph, mixed, MixedPrecision(graph, mixed, None))
    assert fast.usable() and set(fast.own) == {plan.stages[0].start} and fast.loop is not None
    xs = _inputs(graph, 2, 4)
    rec = assert_same_as_tile_loop(graph, mixed, None, xs, record=True)
    # the batched stage's thresholds at their maps' 0.8 quantiles (outlier tiles and low-bit ones); the
    # cached stage's at 255 (its inputs change with the first stage's widths: every tile low-bit)
    stages = [StagePrecision(i, [MapPrecision(t, [5, 3, 7, 2][n % 4],
                                              int(np.quantile(rec.stats[t].patch_max, 0.8, method="higher")) if i == 0
                                              else 255,
                                              rec.stats[t].below_zero_point, step="patch")
                                 for n, t in enumerate(stage_maps(graph, mixed, i))])
              for i in range(2)]
    precision = PrecisionPlan(graph.name, fingerprint(graph), plan_fingerprint(mixed), stages, "rest")
    old = assert_same_as_tile_loop(graph, mixed, precision, xs, record=True)
    first, cached = (old.counts[st_.start] for st_ in mixed.stages)
    assert first.outlier_tiles > 0 and first.bitops < first.bitops_int8 and cached.bitops < cached.bitops_int8


def test_two_stage_recompute_plan_matches_the_tile_loop():
    """person_detect's recompute plan: two stages, every map of both at its own width."""
    graph = api.load(str(model_path("person_detect.tflite")))
    plan = api.plan(graph, strategy="recompute").plan
    assert len(plan.stages) == 2
    xs = _inputs(graph, 2, 3)
    rec = assert_same_as_tile_loop(graph, plan, None, xs, record=True)
    stages = [StagePrecision(i, [MapPrecision(t, [6, 4, 2, 5][n % 4],
                                              int(np.quantile(rec.stats[t].patch_max, 0.85, method="higher")),
                                              rec.stats[t].below_zero_point, step="patch")
                                 for n, t in enumerate(stage_maps(graph, plan, i))])
              for i in range(len(plan.stages))]
    precision = PrecisionPlan(graph.name, fingerprint(graph), plan_fingerprint(plan), stages, "rest")
    old = assert_same_as_tile_loop(graph, plan, precision, xs, record=True)
    assert all(c.outlier_tiles > 0 and c.bitops < c.bitops_int8 for c in old.counts.values() if c.tiles)


def test_run_stage_computes_one_stage_from_its_inputs():
    """``PlanExecutor.run_stage``: a stage alone, from the whole-image values of its inputs, gives the
    whole-image values of its output (int8, no hook)."""
    from tinypatch.runtime.executor import Executor

    graph = api.load(str(model_path("person_detect.tflite")))
    plan = api.plan(graph, strategy="cache").plan
    env = Executor(graph)(_inputs(graph, 1, 2), keep=True)
    ex = PlanExecutor(graph, plan)
    for s in plan.stages:
        out = ex.stage_at[s.start].info.output
        got = ex.run_stage(s.start, env)
        assert got.dtype == env[out].dtype and got.tobytes() == env[out].tobytes()
