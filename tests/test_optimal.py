"""The exact multi-stage search: its cost model, its optimality and its plans."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import tinypatch.planning.optimal as O
from tinypatch.analysis.regions import split_even
from tinypatch.errors import PlanError
from tinypatch.frontends.synth import Builder
from tinypatch.frontends.zoo import build
from tinypatch.planning.memory import plan_buffers
from tinypatch.planning.search import search
from tinypatch.planning.tile_arrays import axis_figures
from tinypatch.planning.tiles import stage_info, tile_axis
from tinypatch.runtime.executor import run
from tinypatch.runtime.inputs import random_input
from tinypatch.runtime.plan_executor import PlanExecutor

from strategies import random_cnn


def chain(h: int = 19, w: int = 13):
    b = Builder("chain", seed=5)
    x = b.input((1, h, w, 3))
    x = b.conv(x, 6, 3, 2, name="c0")
    x = b.depthwise(x, 3, 1, name="d1")
    x = b.conv(x, 4, 1, 1, name="p2", act="NONE")
    x = b.conv(x, 8, 3, 2, name="c3")
    x = b.depthwise(x, 5, 1, name="d4")
    return b.finish([x])


def _check_figures(g):
    c = O._Costs(g, True, True, 1)
    for b in O.cut_positions(g)[1:]:
        s0 = b
        while s0 > 0 and c.local[s0 - 1] and (s0 == b or not O._escapes(g, c, s0 - 1, b)):
            s0 -= 1
        if s0 == b or len(g.tensors[g.ops[b - 1].outputs[0]].shape) != 4:
            continue
        try:
            info = stage_info(g, s0, b)
        except PlanError:  # no legal stage ends at b
            continue
        out = g.tensors[info.output].shape
        for ax, keep in itertools.product((0, 1), (False, True)):
            cached = frozenset(info.ops[:-1]) if keep else frozenset()
            cut_lists = [split_even(out[1 + ax], k) for k in O.axis_counts(out[1 + ax], 8)]
            for cuts, fig in zip(cut_lists, axis_figures(g, info, c.maps[ax], cut_lists, cached)):
                try:
                    til = tile_axis(g, info, ax, cuts, cached)
                except Exception:
                    assert not fig.valid
                    continue
                assert fig.valid
                assert fig.max_len == {t: til.max_len(t) for t in til.regions[0]}
                assert fig.total_len == {k: til.total_len(k) for k in info.ops}
                assert fig.overlap == {k: til.overlap(k) for k in info.ops}


def test_vectorised_figures_agree_with_tile_axis():
    for g in (chain(), build("mcunet-in0")):
        _check_figures(g)


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(random_cnn(max_layers=5, head=False))
def test_vectorised_figures_agree_on_random_cnns(case):
    _check_figures(case[0])


def _held_by_start(st, live, sizes, local_life):
    """Tile bytes held from each start, one start at a time: the tensors live at a start are
    taken off the steps from it on (the loop the search once ran)."""
    held = np.maximum.accumulate(live[..., ::-1], axis=-1)[..., ::-1][..., st.start_idx]
    for j, (i0, rows) in enumerate(zip(st.start_idx.tolist(), st.start_rows)):
        if rows:
            steps = live[..., i0:]
            for r in rows:
                steps = steps - sizes[..., r, None] * local_life[r, i0:]
            held[..., j] = steps.max(axis=-1)
    return held


def test_held_tile_bytes_agree_with_a_loop_over_starts():
    """The (start, step) pairs of _StartRows give every stage end, halo variant and grid of a
    network with residual blocks the same held tile bytes as taking each start on its own."""
    g = build("mcunet-in0")
    c = O._Costs(g, True, True, 16)
    cuts = O.cut_positions(g)
    checked = 0
    for b in cuts[1:]:
        span = O._stage_span(c, b)
        st = span and O._stage_end(c, cuts, b, False, span[0], span[0])
        if not st:
            continue
        variants = O._policy_variants(O.POLICIES, st.info.tile_ops, c.levels)
        _, blocks = O._axis_table(c, st, variants, False, 8, False)
        pairs = O._StartRows(st)
        for var in variants:
            fh, fw = blocks[(0, var.cache_h)], blocks[(1, var.cache_w)]
            persistent = np.array([st.info.ops[r] in var.cache_w for r in range(len(st.internal))], bool)
            local_life = st.life & ~persistent[:, None]
            sizes = O._ceil_to(fh.max_len[:, None, :] * fw.max_len[None, :, :] * st.chan, 16)
            live = sizes @ local_life.astype(np.int64)
            held = O._held_tiles(st, live, np.where(persistent, 0, sizes), pairs)
            assert (held == _held_by_start(st, live, sizes, local_life)).all()
            checked += sum(map(bool, st.start_rows))
    assert checked > 100  # starts with tensors live across them (residual inputs among them)


def test_dp_front_equals_brute_force():
    g = chain()
    c = O._Costs(g, True, True, 16)
    cuts = O.cut_positions(g)
    opts = O._segment_options(c, cuts, 8, O.POLICIES, False)
    results = []

    def walk(at: int, peak: int, macs: int) -> None:
        if at == cuts[-1]:
            results.append((peak, macs))
            return
        for b in cuts[cuts.index(at) + 1:]:
            for lb, m, *_ in opts.get((at, b), ()):  # layer-by-layer runs: their single ops in a row
                walk(b, max(peak, lb), macs + m)

    walk(cuts[0], 0, 0)
    p, m = np.array([r[0] for r in results]), np.array([r[1] for r in results])
    brute = sorted({(int(p[i]), int(m[i])) for i in O._pareto_filter(p, m)})
    dp = sorted({(s.lower_bound, s.macs) for s in O.optimal_front(g, place_front=False).front})
    assert dp == brute
    assert len(dp) > 3


@pytest.mark.parametrize("name", ["mcunet-in0", "chain"])
def test_front_plans_cost_what_they_run(name):
    g = chain() if name == "chain" else build(name)
    res = search(g, include_input=False)
    x = [random_input(g.tensors[n], 3) for n in g.inputs]
    ref = run(g, x)
    assert res.front[0].peak < res.baseline.peak
    for s in res.front:
        assert plan_buffers(g, s.plan).liveness.lower_bound(16) == s.lower_bound  # the DP's model is exact
        out = PlanExecutor(g, s.plan)(x)
        assert out.arena_high_water == out.arena_size == s.peak
        for n in g.outputs:
            assert np.array_equal(out.outputs[n], ref[n])


def test_single_stage_space_is_mcunetv2s():
    g = build("mcunet-in0")
    res = search(g, strategy="recompute", single_stage=True)
    full = search(g)
    for s in res.front:
        assert len(s.plan.stages) <= 1
        assert all(not st_.halo for st_ in s.plan.stages)
        assert all(st_.start == 0 for st_ in s.plan.stages)
    # the bigger space can only do better: every single-stage point is matched or dominated
    for s in res.front:
        assert any(f.lower_bound <= s.lower_bound and f.macs <= s.macs for f in full.front)


def head_net():
    b = Builder("head", seed=9)
    x = b.input((1, 21, 17, 3))
    x = b.conv(x, 8, 3, 2, name="c0")
    x = b.depthwise(x, 3, 1, name="d1")
    x = b.conv(x, 64, 1, 1, name="wide")  # the big map a global average reads
    x = b.mean(x, name="gap")
    x = b.fully_connected(x, 5, name="fc")
    return b.finish([x])


def test_global_average_accumulates_over_tiles():
    g = head_net()
    res = search(g)
    reducing = [s for s in res.front if any(g.ops[st_.end - 1].type == "MEAN" for st_ in s.plan.stages)]
    assert reducing, "the front should use a stage that accumulates the global average"
    wide = next(op.outputs[0] for op in g.ops if op.name == "wide")
    assert min(s.peak for s in reducing) < g.tensors[wide].nbytes  # the wide map never exists whole
    x = [random_input(g.tensors[n], 7) for n in g.inputs]
    ref = run(g, x)
    for s in reducing[:3]:
        out = PlanExecutor(g, s.plan)(x)
        assert out.arena_high_water == out.arena_size == s.peak
        for n in g.outputs:
            assert np.array_equal(out.outputs[n], ref[n])


@pytest.mark.parametrize("halo", ["recompute", "cache_w", "cache"])
def test_global_average_pool_stage_on_a_real_model(halo):
    from tinypatch.frontends.tflite import load_tflite
    from tinypatch.planning.plan import Plan, Stage, fingerprint

    from conftest import model_path

    g = load_tflite(model_path("mlperf_ic_resnet8_int8.tflite"))
    pool = next(i for i, op in enumerate(g.ops) if op.type == "AVERAGE_POOL_2D")
    start = pool - 4  # the last residual block and the pool
    shape = g.tensors[g.ops[pool].inputs[0]].shape
    plan = Plan(g.name, fingerprint(g), [Stage(start, pool + 1, split_even(shape[1], 3), split_even(shape[2], 2),
                                               {k: halo for k in range(start, pool)})])
    x = [random_input(g.tensors[n], 1) for n in g.inputs]
    ref = run(g, x)
    out = PlanExecutor(g, plan)(x)
    assert out.arena_high_water == out.arena_size
    for n in g.outputs:
        assert np.array_equal(out.outputs[n], ref[n])


def test_halo_policies_name_and_map_their_ops():
    assert str(O.HaloPolicy("cache", before=4)) == "cache<4"
    assert O.HaloPolicy("cache", before=4).halo(2, 8) == {2: "cache", 3: "cache"}
    assert str(O.HaloPolicy("cache_w", after=4)) == "cache_w>=4"
    assert O.HaloPolicy("cache_w", after=4).halo(2, 8) == {k: "cache_w" for k in range(4, 7)}
    assert O.HaloPolicy("cache").halo(0, 3) == {0: "cache", 1: "cache"} and O.RECOMPUTE.halo(0, 3) == {}
