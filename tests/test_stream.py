"""Stream stages (row strips computed column by column through window buffers): exact outputs,
planned peak == measured high-water, MACs == the columns the executor really computes, and
the search's figures == the plan's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import LAYER_KINDS, random_cnn

import tinypatch.planning.optimal as O
from tinypatch.analysis.regions import split_even
from tinypatch.errors import PlanError
from tinypatch.frontends.synth import Builder
from tinypatch.ir import Graph
from tinypatch.planning.check import check_plan
from tinypatch.planning.cost import plan_cost, plan_macs
from tinypatch.planning.memory import plan_buffers
from tinypatch.planning.plan import Plan, Stage, fingerprint
from tinypatch.planning.search import search
from tinypatch.planning.tiles import legal_ends
from tinypatch.runtime.executor import run
from tinypatch.runtime.inputs import random_input
from tinypatch.runtime.plan_executor import PlanExecutor


def chain() -> Graph:
    b = Builder("chain", seed=3)
    x = b.input((1, 17, 15, 3))
    x = b.conv(x, 6, 3, 2, name="c0")
    x = b.depthwise(x, 5, 1, name="d1")
    x = b.conv(x, 4, 1, 1, name="p2", act="NONE")
    x = b.depthwise(x, 3, 2, name="d3")
    x = b.conv(x, 7, 1, 1, name="p4")
    return b.finish([x])


def stream_stage(g: Graph, start: int, end: int, rows: list[int]) -> Stage:
    width = g.tensors[g.ops[end - 1].outputs[0]].shape[2]
    return Stage(start, end, rows, list(range(width + 1)), {k: "stream" for k in range(start, end - 1)})


def counted_run(g: Graph, plan: Plan, x: list[np.ndarray], batch: bool = True, replay: bool = True):
    """Run the plan, counting the output pixels each op computes (``replay`` False: every stage walks
    on values, as where a recorded arena effect does not apply)."""
    ex = PlanExecutor(g, plan, batch=batch)
    if not replay:
        ex._replayable = lambda *a: None  # type: ignore[method-assign]
    pixels = dict.fromkeys(range(len(g.ops)), 0)
    for k, kern in enumerate(ex.kernels):
        def counting(args, pads=None, _k=k, _f=kern):
            out = _f(args, pads)
            pixels[_k] += out[0].shape[0] * out[0].shape[1] * out[0].shape[2] if out[0].ndim == 4 else 1  # batched strips
            return out
        counting.finish = getattr(kern, "finish", None)  # type: ignore[attr-defined]
        ex.kernels[k] = counting  # type: ignore[assignment]
    return ex(x), pixels


def assert_stream_exact(g: Graph, plan: Plan, x: list[np.ndarray]) -> None:
    """The plan executor's first run (a walk on provenance, then the values computed in batches), its
    batched walk on values and its column-by-column run (``batch=False``) give the whole-image bytes
    in the planned arena; the walks on values, which run the strips' and steps' kernels, compute with
    each op exactly the pixels its MACs are charged for."""
    ref = run(g, x)
    tilings = check_plan(g, plan)
    for batch, replay in ((True, True), (True, False), (False, False)):
        out, pixels = counted_run(g, plan, x, batch, replay)
        for n in g.outputs:
            assert out.outputs[n].tobytes() == ref[n].tobytes(), plan.to_json()
        assert out.arena_high_water == out.arena_size == plan_cost(g, plan).peak
        for st_ in tilings if not replay else ():  # each op computes exactly the pixels its MACs are charged for
            for k in st_.info.tile_ops:
                assert pixels[k] == st_.h.total_len(k) * st_.w.total_len(k)


@pytest.mark.parametrize("start,end", [(0, 5), (0, 3), (1, 5), (2, 4)])
@pytest.mark.parametrize("strips", [1, 2, 3, "rows"])
@pytest.mark.parametrize("include_input", [False, True])
def test_stream_stage_is_exact(start, end, strips, include_input):
    g = chain()
    h = g.tensors[g.ops[end - 1].outputs[0]].shape[1]
    plan = Plan(g.name, fingerprint(g), [stream_stage(g, start, end, split_even(h, h if strips == "rows" else strips))],
                include_input)
    assert_stream_exact(g, plan, [random_input(g.tensors[g.inputs[0]], 5)])


def test_window_buffers_hold_the_consumers_kernel_width():
    """Each internal tensor's buffer: the strip's rows x its consumer's kernel width x channels,
    smaller than the cache_w tile buffer of the same one-column tiling."""
    g = chain()
    kernel_w = {0: 5, 1: 1, 2: 3, 3: 1}  # width of the op reading op k's output (d1, p2, d3, p4)
    stage = stream_stage(g, 0, 5, split_even(g.tensors[g.ops[4].outputs[0]].shape[1], 2))
    pb = plan_buffers(g, Plan(g.name, fingerprint(g), [stage]))
    st_ = pb.tilings[0]
    cache_w = plan_buffers(g, Plan(g.name, fingerprint(g), [Stage(0, 5, stage.rows, stage.cols,
                                                                  {k: "cache_w" for k in range(4)})]))
    sizes = {b.name: b.size for b in pb.liveness.buffers}
    tile_sizes = {b.name: b.size for b in cache_w.liveness.buffers}
    for k, kw in kernel_w.items():
        t = g.ops[k].outputs[0]
        assert sizes[pb.liveness.tensor_buffer[t]] == st_.h.max_len(t) * kw * g.tensors[t].shape[3]
    assert sum(sizes.values()) < sum(tile_sizes.values())


def test_bad_stream_stages_are_refused():
    g = chain()
    w = g.tensors[g.ops[4].outputs[0]].shape[2]
    h = g.tensors[g.ops[4].outputs[0]].shape[1]
    bad = [Stage(0, 5, [0, h], list(range(w + 1)), {0: "stream", 1: "stream"}),  # not every op
           Stage(0, 5, [0, h], split_even(w, 3), {k: "stream" for k in range(4)}),  # wider tiles
           Stage(0, 5, [0, h], list(range(w + 1)), {0: "stream", 1: "stream", 2: "cache", 3: "stream"})]
    for stage in bad:
        with pytest.raises(PlanError):
            check_plan(g, Plan(g.name, fingerprint(g), [stage]))


def test_stream_needs_single_consumers():
    b = Builder("res", seed=2)
    x = b.input((1, 9, 9, 4))
    y = b.conv(x, 4, 1, 1, name="a")
    z = b.depthwise(y, 3, 1, name="b")
    z = b.add(z, y, name="sum")  # y read twice inside the stage
    g = b.finish([z])
    with pytest.raises(PlanError, match="one consumer"):
        check_plan(g, Plan(g.name, fingerprint(g), [stream_stage(g, 0, 3, [0, 9])]))
    plan = Plan(g.name, fingerprint(g), [stream_stage(g, 1, 3, [0, 4, 9])])  # y is the stage input: fine
    assert_stream_exact(g, plan, [random_input(g.tensors[g.inputs[0]], 1)])


def test_stream_plans_round_trip():
    g = chain()
    plan = Plan(g.name, fingerprint(g), [stream_stage(g, 0, 5, [0, 2, 5])])
    assert Plan.from_json(plan.to_json()) == plan


def _stream_options_match_plans(g: Graph, alignment: int) -> int:
    """Every stream option the search costs == its plan's liveness profile and MACs; returns how many."""
    c = O._Costs(g, True, True, alignment)
    cuts = O.cut_positions(g)
    opts = O._segment_options(c, cuts, 8, ("stream",), False)
    n = 0
    for (a, b), cands in opts.items():
        for lb, macs, ch, *_ in cands:
            if ch.grid is None:
                continue
            plan = O.to_plan(g, (ch,), True, True)
            tilings = check_plan(g, plan)
            profile = plan_buffers(g, plan, tilings).liveness.profile(alignment)
            assert max(profile[a:b]) == lb, ch
            m, _, base = plan_macs(g, tilings)
            assert m - base + int(c.macs[a:b].sum()) == macs, ch
            n += 1
    return n


def test_search_costs_stream_stages_exactly():
    assert _stream_options_match_plans(chain(), 16) > 5
    assert _stream_options_match_plans(chain(), 1) > 5


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(random_cnn(max_layers=5, head=False))
def test_search_costs_stream_stages_exactly_on_random_cnns(case):
    _stream_options_match_plans(case[0], 16)


@st.composite
def stream_case(draw: st.DrawFn, kinds: tuple[str, ...] = LAYER_KINDS) -> tuple[Graph, np.ndarray, Plan]:
    graph, x = draw(random_cnn(max_layers=5, kinds=kinds, head=False))
    options = []
    for s in range(len(graph.ops)):
        for e in legal_ends(graph, s):
            if e - s < 2:
                continue
            try:
                check_plan(graph, Plan(graph.name, fingerprint(graph),
                                       [stream_stage(graph, s, e, [0, graph.tensors[graph.ops[e - 1].outputs[0]].shape[1]])]))
            except PlanError:
                continue
            options.append((s, e))
    assume(options)
    s, e = draw(st.sampled_from(options))
    h = graph.tensors[graph.ops[e - 1].outputs[0]].shape[1]
    n = draw(st.integers(1, h))
    rows = split_even(h, n) if draw(st.booleans()) else [0, *sorted(draw(st.lists(
        st.integers(1, h - 1), min_size=n - 1, max_size=n - 1, unique=True))), h] if h > 1 else [0, 1]
    return graph, x, Plan(graph.name, fingerprint(graph), [stream_stage(graph, s, e, rows)], draw(st.booleans()))


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(stream_case())
def test_random_stream_stages_are_exact(case):
    graph, x, plan = case
    assert_stream_exact(graph, plan, [x])


def test_search_uses_stream_stages_and_can_leave_them_out():
    g = chain()
    full = search(g, include_input=False)
    assert any(st_.halo.get(st_.start) == "stream" for s in full.front for st_ in s.plan.stages)
    without = search(g, include_input=False, stream=False)
    assert not any(st_.halo.get(st_.start) == "stream" for s in without.front for st_ in s.plan.stages)
    for s in without.front:  # the bigger space only adds points
        assert any(f.peak <= s.peak and f.macs <= s.macs for f in full.front)


@pytest.mark.parametrize("name", ["mlperf_ic_resnet8_int8.tflite", "mlperf_kws_dscnn_int8.tflite",
                                  "mcunetv2_large.tflite", "mlperf_vww_96_int8.tflite"])
def test_longest_stream_stage_of_a_shared_model_is_exact(name):
    """The longest stream stage from the first spatial op, 3 strips: exact at the planned peak
    (the searched plans of the other models already stream, see test_patch_exact)."""
    from conftest import model_path

    from tinypatch.frontends.tflite import load_tflite
    from tinypatch.planning.tiles import first_local_op

    g = load_tflite(str(model_path(name)))
    start = first_local_op(g)
    for end in sorted(legal_ends(g, start), reverse=True):
        h = g.tensors[g.ops[end - 1].outputs[0]].shape[1]
        plan = Plan(g.name, fingerprint(g), [stream_stage(g, start, end, split_even(h, min(3, h)))])
        try:
            check_plan(g, plan)
        except PlanError:
            continue
        if end - start < 2 or g.tensors[g.ops[end - 1].outputs[0]].shape[2] > 56:
            continue  # the Python executor pulls one column at a time: keep the run short
        break
    else:
        pytest.skip(f"{name}: no stream stage of two or more ops")
    assert_stream_exact(g, plan, [random_input(g.tensors[g.inputs[0]], 1)])


def test_stream_stages_holding_an_explicit_pad_batch_and_replay():
    """An explicit PAD's border columns read only padding: its whole row is still one kernel call (its
    paddings those of the row's window), so the stage batches and later runs replay it, exactly
    (mcunet_vww's 32 KB plan ran such a stage column by column on every run)."""
    b = Builder("padded", seed=5)
    x = b.input((1, 12, 12, 4))
    x = b.conv(x, 6, 1, 1, name="c0")
    x = b.pad(x, 3, 2, 3, 2, name="p1")
    x = b.depthwise(x, 7, 2, name="d2", padding="VALID")
    x = b.conv(x, 5, 1, 1, name="c3")
    g = b.finish([x])
    h = g.tensors[g.ops[3].outputs[0]].shape[1]
    plan = Plan(g.name, fingerprint(g), [stream_stage(g, 0, 4, split_even(h, 2))], False)
    x0 = [random_input(g.tensors[g.inputs[0]], 7)]
    assert_stream_exact(g, plan, x0)
    ex = PlanExecutor(g, plan)
    assert ex.streams[0].rows is not None and ex.streams[0].rows[1][3:] == (3, 2)
    ex(x0)
    assert ex.replays[0] is not None
    assert ex(x0).outputs[g.outputs[0]].tobytes() == run(g, x0)[g.outputs[0]].tobytes()
