"""In-place operators: the shift bound against a brute-force walk of the kernels' access order,
anchored placement, plans that run ops in place (byte-identical, measured peak == planned), and
the arenas this gives on the shared models against TFLite Micro's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import model_path, tflm_head_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inplace_bytes import BytewisePlanExecutor, c_write_ahead
from strategies import random_cnn

from tinypatch.analysis.inplace_shift import inplace_candidates, window_shift
from tinypatch.analysis.liveness import Buffer
from tinypatch.analysis.regions import axis_maps
from tinypatch.errors import PlanError
from tinypatch.frontends.tflite import load_tflite
from tinypatch.ir import DTYPE_BYTES, Graph
from tinypatch.ir.optable import OPS, InPlace
from tinypatch.planning.arena import place
from tinypatch.planning.inplace import add_inplace, inplace_options
from tinypatch.planning.memory import place_plan, plan_buffers
from tinypatch.planning.plan import Plan, Stage
from tinypatch.planning.tiles import legal_ends
from tinypatch.runtime.executor import run
from tinypatch.runtime.plan_executor import PlanExecutor

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
WINDOW_KINDS = ("conv", "depthwise", "avg_pool", "max_pool", "pad")
WINDOW_OPS = tuple(name for name, d in OPS.items() if d.inplace == InPlace.WINDOW)
IN_PLACE_KERNELS = {"tp_conv_s8", "tp_dwconv_s8", "tp_avgpool_s8", "tp_maxpool_s8", "tp_pad", "tp_fast_conv_s8",
                    "tp_fast_dwconv_s8", "tp_mve_conv_s8", "tp_mve_dwconv_s8"}
# the most output pixels of a row any C kernel writes before it has read their inputs, as stated
# next to each kernel in the C sources (independent of the constant the code under test uses)
BLOCK = max(c_write_ahead().values())


def test_every_kernel_that_runs_in_place_states_its_write_ahead():
    stated = c_write_ahead()
    assert IN_PLACE_KERNELS <= set(stated), f"no write-ahead stated for {IN_PLACE_KERNELS - set(stated)}"
    assert BLOCK == stated["tp_mve_conv_s8"] == 4


def _hazard(graph: Graph, k: int, shift: int, block: int = BLOCK) -> bool:
    """Walk op k's output pixels in raster order, tap by tap: does a pixel read an input byte that
    the writes so far (up to the end of its block, at worst) have overwritten? Output at -shift,
    input at 0."""
    op = graph.ops[k]
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    mh, mw = axis_maps(graph, op)
    in_px, out_px = x.shape[3] * DTYPE_BYTES[x.dtype], y.shape[3] * DTYPE_BYTES[y.dtype]
    for oy in range(mh.out_size):
        rows = [iy for t in range(mh.kernel) if 0 <= (iy := oy * mh.stride - mh.pad + t * mh.dilation) < mh.in_size]
        for ox in range(mw.out_size):
            cols = [ix for t in range(mw.kernel)
                    if 0 <= (ix := ox * mw.stride - mw.pad + t * mw.dilation) < mw.in_size]
            written = (oy * mw.out_size + min(ox + block, mw.out_size)) * out_px - shift  # end of the bytes written
            if any((iy * mw.in_size + ix) * in_px < written for iy in rows for ix in cols):
                return True
    return False


@settings(max_examples=60, **SETTINGS)
@given(random_cnn(max_layers=4, kinds=WINDOW_KINDS, head=False))
def test_window_shift_is_the_least_safe_shift(case):
    g, _ = case
    checked = 0
    for k, op in enumerate(g.ops):
        if op.type not in WINDOW_OPS:
            continue
        shift = window_shift(g, k)
        assert not _hazard(g, k, shift), f"op {k} {op.type}: shift {shift} lets a write overtake a read"
        assert _hazard(g, k, shift - 1), f"op {k} {op.type}: shift {shift} is not the least safe one"
        checked += 1
    assert checked  # every layer kind drawn here is a window op


def test_pointwise_conv_shift_matches_the_readme_example():
    """1x1 conv 48x48x8 -> 16: the last block of 4 pixels ends 2304 * 16 B into the output while
    pixel 2300 still reads from 2300 * 8 B: shift 36,864 - 18,400 = 18,464; the pair needs
    18,464 + 18,432 = 36,896 B instead of 55,296 B."""
    from tinypatch.frontends.synth import Builder

    b = Builder("pw")
    y = b.conv(b.input((1, 48, 48, 8)), 16, 1, name="c")
    g = b.finish([y])
    assert window_shift(g, 0) == 18_464


def test_elementwise_ops_overwrite_an_input_of_their_shape(tmp_path):
    from tinypatch.frontends.synth import Builder

    b = Builder("ew")
    x = b.input((1, 6, 5, 4))
    c = b.conv(x, 4, 3, name="c")
    a = b.add(c, x, name="a")
    g = b.finish([a])
    k = [op.type for op in g.ops].index("ADD")
    assert {(c.tensor, c.shift) for c in inplace_candidates(g, k)} == {(g.ops[k].inputs[0], 0),
                                                                      (g.ops[k].inputs[1], 0)}


# --- anchored placement ------------------------------------------------------------------------
def test_anchored_buffers_keep_their_distance_and_share_only_with_each_other():
    bufs = [Buffer("a", 100, 0, 1), Buffer("b", 120, 1, 2), Buffer("c", 50, 0, 2), Buffer("d", 80, 2, 3)]
    pl = place(bufs, alignment=16, anchors={"b": ("a", 20)})
    pl.check()
    assert pl.offsets["b"] == pl.offsets["a"] - 32  # the shift rounded up to the alignment
    assert pl.peak >= pl.lower_bound
    broken = replace(pl, offsets={**pl.offsets, "b": pl.offsets["a"]})
    with pytest.raises(PlanError, match="below"):
        broken.check()


def test_anchored_lower_bound_counts_shared_bytes_once():
    from tinypatch.analysis.liveness import lower_bound

    bufs = [Buffer("in", 160, 0, 1), Buffer("out", 160, 1, 2)]
    assert lower_bound(bufs, 16) == 320
    assert lower_bound(bufs, 16, {"out": ("in", 20)}) == 192  # 160 + the shift rounded to 32


@settings(max_examples=60, **SETTINGS)
@given(st.data())
def test_group_placer_and_profile_agree_with_plain_computations(data):
    """GroupPlacer gives place()'s peak, None exactly when that is above a cap, and live_profile
    counts the bytes of each anchored group once per step, as a byte-by-byte union does."""
    from tinypatch.analysis.liveness import align_up, anchor_groups, live_profile
    from tinypatch.planning.arena import GroupPlacer

    n = data.draw(st.integers(2, 10))
    bufs = []
    for i in range(n):
        start = data.draw(st.integers(0, 6))
        bufs.append(Buffer(f"b{i}", data.draw(st.integers(0, 300)), start, data.draw(st.integers(start, 7))))
    anchors, used = {}, set()
    for i in range(1, n):
        j = data.draw(st.integers(0, i - 1))
        if data.draw(st.booleans()) and j not in used:
            anchors[f"b{i}"] = (f"b{j}", data.draw(st.integers(0, 64)))
            used.add(j)
    where = anchor_groups(bufs, anchors, 16)
    for t, got in enumerate(live_profile(bufs, 8, 16, anchors)):
        held: dict[str, set[int]] = {}
        for b in bufs:
            if b.start <= t <= b.end:
                root, rel = where[b.name]
                held.setdefault(root, set()).update(range(rel, rel + align_up(b.size, 16)))
        assert got == sum(map(len, held.values()))
    if not anchors:
        return
    placer, peak = GroupPlacer(bufs, 16), place(bufs, 16, anchors=anchors).peak
    assert placer.peak(anchors) == peak
    for cap in (peak, peak - 1, data.draw(st.integers(0, peak + 64))):
        assert placer.peak(anchors, cap) == (peak if peak <= cap else None)


# --- plans with in-place ops ---------------------------------------------------------------------
def all_inplace(graph: Graph, plan: Plan) -> Plan:
    """Every layer-by-layer op that can run in place alongside the others, whatever it costs."""
    chosen: list[int] = []
    for k in inplace_options(graph, plan):
        try:
            plan_buffers(graph, replace(plan, inplace=sorted([*chosen, k])))
        except PlanError:
            continue
        chosen.append(k)
    return replace(plan, inplace=sorted(chosen))


def _assert_runs_exactly(g: Graph, plan: Plan, x: np.ndarray, bytewise: bool = True) -> None:
    """Exact outputs at the planned peak; ``bytewise``: in-place window ops run group by group in
    the shared arena bytes with the C kernels' stated write-ahead, each equal to out of place."""
    pb = plan_buffers(g, plan)
    pl = place_plan(pb)
    pl.check()
    ex = BytewisePlanExecutor(g, plan, BLOCK) if bytewise else PlanExecutor(g, plan)
    got = ex([x])
    if bytewise:
        windowed = [k for k in plan.inplace if g.ops[k].type in WINDOW_OPS]
        assert ex.bytewise_ops == len(windowed)
    ref = run(g, [x])
    ref = ref if isinstance(ref, dict) else dict(zip(g.outputs, ref))
    for name in g.outputs:
        np.testing.assert_array_equal(got.outputs[name], ref[name])
    assert got.arena_high_water == pl.peak


@settings(max_examples=40, **SETTINGS)
@given(random_cnn(max_layers=6), st.booleans(), st.data())
def test_inplace_plans_are_exact_at_their_planned_peak(case, include_input, data):
    g, x = case
    plan = Plan.layer_by_layer(g, include_input=include_input)
    if data.draw(st.booleans()):  # and a patch stage, when there is one
        options = [(s, e) for s in range(len(g.ops)) for e in legal_ends(g, s)]
        if options:
            s, e = data.draw(st.sampled_from(options))
            shape = g.tensors[g.ops[e - 1].outputs[0]].shape
            if len(shape) == 4:
                plan = replace(plan, stages=[Stage(s, e, [0, (shape[1] + 1) // 2, shape[1]],
                                                   [0, shape[2]])])
    try:
        base = place_plan(plan_buffers(g, plan)).peak
    except PlanError:
        return
    greedy = add_inplace(g, plan)
    assert place_plan(plan_buffers(g, greedy)).peak <= base
    for p in (greedy, all_inplace(g, plan)):
        _assert_runs_exactly(g, p, x)


def test_plan_json_keeps_inplace_ops_and_bad_entries_are_refused():
    from tinypatch.frontends.zoo import build

    g = build("mcunet-in1")
    plan = add_inplace(g, Plan.layer_by_layer(g))
    assert plan.inplace
    assert Plan.from_json(plan.to_json()).inplace == plan.inplace
    with pytest.raises(PlanError, match="does not exist"):
        plan_buffers(g, replace(plan, inplace=[len(g.ops) + 3]))
    last_reader = {t: k for k, op in enumerate(g.ops) for t in op.inputs if t}
    kept = next(k for k, op in enumerate(g.ops)  # an op whose input is read again later: a residual
                if op.inputs[0] in last_reader and last_reader[op.inputs[0]] > k and op.type == "CONV_2D")
    with pytest.raises(PlanError, match="cannot run in place"):
        plan_buffers(g, replace(plan, inplace=[kept]))


# --- shared models -------------------------------------------------------------------------------
IN_PLACE_MODELS = ("mcunet_vww.tflite", "mlperf_ic_resnet8_int8.tflite", "mlperf_kws_dscnn_int8.tflite",
                   "mlperf_vww_96_int8.tflite", "person_detect.tflite")


@pytest.mark.parametrize("name", IN_PLACE_MODELS)
def test_shared_models_in_place_need_less_than_tflm_and_run_exactly(name):
    head = tflm_head_of(name)  # TFLite Micro's arena head, measured by its interpreter
    g = load_tflite(str(model_path(name)))
    plan = add_inplace(g, Plan.layer_by_layer(g))
    peak = place_plan(plan_buffers(g, plan)).peak
    assert peak < head * 0.8, f"{name}: {peak} B in place vs TFLM head {head} B"
    x = np.random.default_rng(3).integers(-128, 128, g.tensors[g.inputs[0]].shape).astype(g.tensors[g.inputs[0]].np_dtype)
    _assert_runs_exactly(g, plan, x)


def test_inplace_front_lowers_peaks_and_its_figures_are_real():
    from tinypatch.planning.inplace import inplace_front
    from tinypatch.planning.search import search

    g = load_tflite(str(model_path("mlperf_kws_dscnn_int8.tflite")))
    result = search(g)
    lowered = inplace_front(g, result)
    assert lowered.baseline.plan.inplace and lowered.baseline.peak < result.baseline.peak
    assert min(s.peak for s in lowered.front) <= min(s.peak for s in result.front)
    peaks = [s.peak for s in lowered.front]
    assert peaks == sorted(peaks) and [s.macs for s in lowered.front] == sorted((s.macs for s in lowered.front),
                                                                                 reverse=True)
    x = np.random.default_rng(5).integers(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)
    for s in lowered.front:
        assert place_plan(plan_buffers(g, s.plan)).peak == s.peak
    _assert_runs_exactly(g, lowered.baseline.plan, x)


# --- the in-place pass's local screen --------------------------------------------------------------
def _screen_is_sound(g: Graph, plan: Plan) -> int:
    """Every candidate the screen turns down raises the placed peak when added: returns how many it
    turned down."""
    from tinypatch.planning.inplace import _Groups, _op_anchors

    pb = plan_buffers(g, plan)
    live = pb.liveness
    peak = place_plan(pb).peak
    groups = _Groups(live.buffers, 16)
    refused = 0
    for k, (out, src, shift) in _op_anchors(g, plan, pb).items():
        if not groups.fits(out, src, shift, peak):
            refused += 1
            assert place(live.buffers, 16, None, {out: (src, shift)}).peak > peak, f"op {k} refused but fits"
    return refused


@settings(max_examples=25, **SETTINGS)
@given(random_cnn(max_layers=6))
def test_inplace_screen_refuses_only_ops_that_raise_the_peak(case):
    g, _ = case
    _screen_is_sound(g, Plan.layer_by_layer(g))


def test_inplace_screen_refuses_the_middle_of_a_uniform_chain():
    """3x3 convs 8 -> 8 on 16x16: every step holds two 2 KiB buffers; an op in the middle run in
    place leaves no room beside its pair for its neighbours within 4 KiB, so the screen refuses
    it without placing, and the pass stays fast on long chains."""
    from tinypatch.frontends.synth import Builder

    b = Builder("chain")
    x = b.input((1, 16, 16, 8))
    for i in range(12):
        x = b.conv(x, 8, 3, name=f"c{i}", act="RELU")
    g = b.finish([x])
    assert _screen_is_sound(g, Plan.layer_by_layer(g)) >= 8
    plan = add_inplace(g, Plan.layer_by_layer(g))
    assert place_plan(plan_buffers(g, plan)).peak == 4096
