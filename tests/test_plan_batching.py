"""The plan executor's batched paths (like recompute tiles in one kernel call per op, like stream
strips computed row-wide, cached stages computed on the whole image) against its tile-by-tile /
column-by-column run (``batch=False``): the same output bytes and the same simulated arena at the
end (every byte's value, validity and touched flag), so the measured high-water mark is the same;
and a wrong window-buffer slot or a stale cached part is caught by the batched walks."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from strategies import random_cnn

import tinypatch.runtime.plan_executor as pe
from tinypatch.analysis.regions import split_even
from tinypatch.errors import InputError, PlanError
from tinypatch.frontends.synth import Builder
from tinypatch.ir import Graph
from tinypatch.planning.check import check_plan
from tinypatch.planning.plan import Plan, Stage, fingerprint
from tinypatch.planning.stream import STEP_DST, STEP_KEEP
from tinypatch.planning.tiles import legal_ends
from tinypatch.runtime.executor import run
from tinypatch.runtime.sim_arena import Arena


class _Recording(Arena):
    made: ClassVar[list[Arena]] = []

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        _Recording.made.append(self)


def _run(g: Graph, plan: Plan, xs: list[np.ndarray], batch: bool, replay: bool = True):
    """Runs on ``xs`` by one executor: their results, their arenas, and the executor (``replay``
    False: it walks every stage on values, as where a recorded arena effect does not apply)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pe, "Arena", _Recording)
        _Recording.made.clear()
        ex = pe.PlanExecutor(g, plan, batch=batch)
        if not replay:
            mp.setattr(ex, "_replayable", lambda *a: None)
        outs = [ex([x]) for x in xs]
    return outs, list(_Recording.made), ex


def _other(x: np.ndarray) -> np.ndarray:
    """Another input like ``x``."""
    rng = np.random.default_rng(7)
    if x.dtype == np.int8:
        return rng.integers(-128, 128, x.shape, dtype=np.int8)
    return rng.standard_normal(x.shape).astype(x.dtype)


def assert_batched_same(g: Graph, plan: Plan, x: np.ndarray) -> pe.PlanExecutor:
    """The first batched run (a walk on provenance records each stage's arena effect, then replays it,
    :mod:`tinypatch.runtime.stage_replay`), the third, after another input, and a batched walk on
    values (where a replay does not apply) against the tile loop: the same output bytes, arena bytes,
    validity and high-water mark. Returns the batched executor."""
    (ref,), (b,), _ = _run(g, plan, [x], False)
    whole = run(g, [x])
    (walked,), (w,), _ = _run(g, plan, [x], True, replay=False)
    outs, arenas, ex = _run(g, plan, [x, _other(x), x], True)
    for got, a in ((outs[0], arenas[0]), (outs[2], arenas[2]), (walked, w)):
        for n in g.outputs:
            assert got.outputs[n].tobytes() == ref.outputs[n].tobytes() == whole[n].tobytes(), plan.to_json()
        assert got.touched_high_water == ref.touched_high_water
        assert np.array_equal(a.memory, b.memory)
        assert np.array_equal(a.valid, b.valid)
    return ex


def _chain(pool: bool = False) -> Graph:
    b = Builder("chain", seed=5)
    x = b.input((1, 20, 20, 3))
    x = b.conv(x, 6, 3, 1, name="c0")
    x = b.depthwise(x, 3, 1, name="d1")
    x = b.conv(x, 5, 1, 1, name="p2", act="NONE")
    x = b.depthwise(x, 3, 2, name="d3")
    x = b.conv(x, 4, 1, 1, name="p4")
    if pool:
        x = b.global_pool(x, "avg", name="gap")
    return b.finish([x])


def _plan(g: Graph, stages: list[Stage], include_input: bool = True) -> Plan:
    return Plan(g.name, fingerprint(g), stages, include_input)


def _input(g: Graph) -> np.ndarray:
    return np.random.default_rng(1).integers(-128, 128, g.tensors[g.inputs[0]].shape, dtype=np.int8)


@pytest.mark.parametrize("grid", [(4, 3), (5, 5), (3, 1)])
def test_like_recompute_tiles_match_the_tile_loop(grid):
    g = _chain()
    stage = Stage(0, 5, split_even(10, grid[0]), split_even(10, grid[1]))
    assert_batched_same(g, _plan(g, [stage]), _input(g))


def test_recompute_tiles_into_an_average_match_the_tile_loop():
    g = _chain(pool=True)
    stage = Stage(0, 6, split_even(10, 5), split_even(10, 3))
    check_plan(g, _plan(g, [stage]))
    assert_batched_same(g, _plan(g, [stage]), _input(g))


@pytest.mark.parametrize("mode", ["cache_w", "cache"])
@pytest.mark.parametrize("grid", [(4, 3), (5, 1), (1, 4)])
def test_cached_stages_match_the_tile_loop(mode, grid):
    g = _chain()
    stage = Stage(0, 5, split_even(10, grid[0]), split_even(10, grid[1]), {k: mode for k in range(4)})
    assert_batched_same(g, _plan(g, [stage]), _input(g))


@pytest.mark.parametrize("modes", [{k: "cache_w" for k in range(4)}, {1: "cache_w", 3: "cache_w"}, {2: "cache_w"},
                                   {k: "cache" for k in range(4)}, {0: "cache", 3: "cache"}])
@pytest.mark.parametrize("grid", [(5, 5), (3, 5), (5, 2)])
def test_like_tiles_of_cached_stages_skip_their_walk(modes, grid):
    """Shadow-path stages (``cache_w``, ``cache`` with line buffers, mixed with recompute ops) walk
    one tile per key (rows, columns, left neighbour, saved lines) only; the arena ends the same."""
    g = _chain()
    stage = Stage(0, 5, split_even(10, grid[0]), split_even(10, grid[1]), modes)
    plan = _plan(g, [stage])
    check_plan(g, plan)
    assert_batched_same(g, plan, _input(g))
    ex = pe.PlanExecutor(g, plan)
    ex([_input(g)])
    assert ex.skips[0][0], "no tile skipped its walk: the test would not exercise that path"


def _walk_values(monkeypatch: pytest.MonkeyPatch, ex: pe.PlanExecutor, provenance: bool) -> None:
    """Unless ``provenance``, ``ex`` walks every stage on values (as where a replay does not apply),
    not once on provenance (its first run, then replays)."""
    if not provenance:
        monkeypatch.setattr(ex, "_replayable", lambda *a: None)


@pytest.mark.parametrize("provenance", [True, False])
def test_walks_after_a_skipped_tile_check_its_restored_columns(monkeypatch, provenance):
    """The walk after skipped tiles compares what it slides from their restored regions with the
    shadow (on provenance: the ids): a restore that leaves stale bytes is a PlanError."""
    g = _chain()
    stage = Stage(0, 5, split_even(10, 5), split_even(10, 5), {k: "cache_w" for k in range(4)})
    ex = pe.PlanExecutor(g, _plan(g, [stage]))  # the first run walks (on provenance; later ones replay)
    _walk_values(monkeypatch, ex, provenance)
    restore = ex._restore

    def stale(arena, st_, tiles, kept, shadow):
        restore(arena, st_, tiles, kept, {t: v + 1 for t, v in shadow.items()})
    monkeypatch.setattr(ex, "_restore", stale)
    with pytest.raises(PlanError, match="reads wrong bytes"):
        ex([_input(g)])


def test_walked_tiles_of_shadow_stages_compute_their_own_bytes():
    """On the shadow path the walked tile of each like-tile group still runs its kernels on its own
    window and is compared with the whole-image values: a tile computation that goes wrong (here
    a depthwise kernel off by one on tile windows only) is a PlanError, not masked by the shadow."""
    g = _chain()
    stage = Stage(0, 5, split_even(10, 5), split_even(10, 5), {k: "cache_w" for k in range(4)})
    ex = pe.PlanExecutor(g, _plan(g, [stage]))
    ex([_input(g)])
    assert ex.shadowed[0], "the stage does not take the shadow path: the test would not exercise it"
    kernel = ex.kernels[1]

    def off_by_one_on_tiles(args, pads=None):
        if pads is None:  # the whole-image (shadow) call
            return kernel(args)
        out = kernel(args, pads)
        return [(out[0].astype(np.int16) + 1).clip(-128, 127).astype(np.int8)]
    ex.kernels[1] = off_by_one_on_tiles
    with pytest.raises(PlanError, match="computes other bytes"):
        ex([_input(g)])


@pytest.mark.parametrize("provenance", [True, False])
def test_a_stale_line_buffer_is_caught(monkeypatch, provenance):
    """The shadow path checks what every tile reads from its cached parts: a line buffer saved for
    the second tile row only (valid but stale bytes from then on) is a PlanError."""
    g = _chain()
    stage = Stage(0, 5, split_even(10, 4), split_even(10, 3), {k: "cache" for k in range(4)})
    ex = pe.PlanExecutor(g, _plan(g, [stage]))
    _walk_values(monkeypatch, ex, provenance)
    save = ex._save_lines
    monkeypatch.setattr(ex, "_save_lines", lambda arena, st_, k, i, *a: save(arena, st_, k, i, *a) if i == 0 else None)
    with pytest.raises(PlanError, match="reads wrong bytes"):
        ex([_input(g)])


def _dw_chain(pool: bool = False) -> Graph:
    """Pointwise and 3x3 depthwise convolutions, stride 1: with fine tiles at the bottom (right) the
    first ops of a cached stage need nothing new there (empty regions in the last tile row/column)."""
    b = Builder("dw_chain", seed=5)
    x = b.input((1, 16, 16, 3))
    x = b.conv(x, 6, 1, 1, name="p0")
    x = b.depthwise(x, 3, 1, name="d1")
    x = b.conv(x, 5, 1, 1, name="p2")
    x = b.depthwise(x, 3, 1, name="d3")
    x = b.conv(x, 4, 1, 1, name="p4")
    if pool:
        x = b.global_pool(x, "avg", name="gap")
    return b.finish([x])


_FINE = [0, 2, 4, 6, 8, 10, 12, 14, 15, 16]  # the last tile one pixel: ops 0 and 1 hold nothing of it
# (graph, stage): a 2-D stage with line buffers and empty regions in its last tile row and column;
# single tile columns, whose cached rows roll down (one into an average, whose sums skipped tiles add)
_EMPTY_LAST = {
    "lines": (_dw_chain, Stage(0, 5, _FINE, _FINE, {k: "cache" for k in range(4)})),
    "rolling": (_dw_chain, Stage(0, 5, [0, 2, 4, 6, 8, 10, 12, 14, 15, 16], [0, 16], {k: "cache" for k in range(4)})),
    "rolling into an average": (lambda: _dw_chain(pool=True),
                                Stage(0, 6, [0, *range(2, 17)], [0, 16], {k: "cache" for k in range(4)})),
}


def _empty_last(name: str) -> tuple[Graph, Plan]:
    make, stage = _EMPTY_LAST[name]
    g = make()
    plan = _plan(g, [stage])
    st_ = check_plan(g, plan)[0]
    assert any(sp[k].need[0] >= sp[k].need[1] for sp in st_.h.spans for k in st_.info.tile_ops), \
        "no empty region: the test would not exercise that path"
    return g, plan


@pytest.mark.parametrize("name", list(_EMPTY_LAST))
def test_tiles_beside_empty_regions_and_rolling_rows_skip_their_walk(name):
    """A cached stage with empty regions in its last tile row/column, and single tile columns whose
    cached rows roll down, walk one tile per key, not every tile: most tiles skip, and the output
    bytes, arena bytes, validity and high-water mark are the tile loop's."""
    g, plan = _empty_last(name)
    assert_batched_same(g, plan, _input(g))
    ex = pe.PlanExecutor(g, plan)
    ex([_input(g)])
    grid = plan.stages[0].grid
    skipped = len(ex.skips[0][0])
    assert skipped >= grid[0] * grid[1] // 2, f"only {skipped} of {grid[0] * grid[1]} tiles skipped their walk"


@pytest.mark.parametrize("provenance", [True, False])
@pytest.mark.parametrize("name,fault", [("lines", "save"), ("lines", "restore"), ("rolling", "restore"),
                                        ("rolling", "roll"), ("rolling into an average", "roll")])
def test_stale_buffers_are_caught_beside_skipped_tiles(monkeypatch, provenance, name, fault):
    """With tiles skipping their walk, a buffer out of step is still caught by the walked tiles: a line
    buffer saved for the first tile row only (by walked and skipped tiles alike), a stale restore of
    the regions skipped tiles leave, cached rows rolled down one row off."""
    g, plan = _empty_last(name)
    ex = pe.PlanExecutor(g, plan)
    _walk_values(monkeypatch, ex, provenance)
    if fault == "save":
        save = ex._save_lines
        monkeypatch.setattr(ex, "_save_lines", lambda arena, st_, k, i, *a: save(arena, st_, k, i, *a) if i == 0 else None)
    elif fault == "restore":
        restore = ex._restore
        monkeypatch.setattr(ex, "_restore", lambda arena, st_, tiles, kept, shadow:
                            restore(arena, st_, tiles, kept, {t: v + 1 for t, v in shadow.items()}))
    else:
        region = ex._region

        def off_by_one(arena, st_, k, i, j, kept):
            got = region(arena, st_, k, i, j, kept)
            sh = st_.h.spans[i][k]
            if i and sh.out[0] > sh.need[0] + 1 and g.ops[k].outputs[0] in kept:  # rows rolled down
                got[:, 0] = got[:, 1]
            return got
        monkeypatch.setattr(ex, "_region", off_by_one)
    with pytest.raises(PlanError, match="reads wrong bytes"):
        ex([_input(g)])
    assert ex.skips[0][0], "no tile skipped its walk: the test would not exercise that path"


@pytest.mark.parametrize("end,rows", [(5, [0, 3, 5, 7, 10]), (3, [0, 1, 2, 5, 8, 11, 14, 17, 20]), (4, [0, 10])])
def test_like_stream_strips_match_the_column_walk(end, rows):
    g = _chain()
    width = g.tensors[g.ops[end - 1].outputs[0]].shape[2]
    stage = Stage(0, end, rows, list(range(width + 1)), {k: "stream" for k in range(end - 1)})
    assert_batched_same(g, _plan(g, [stage], include_input=False), _input(g))


@pytest.mark.parametrize("provenance", [True, False])
def test_a_wrong_window_slot_is_caught(monkeypatch, provenance):
    """The batched walk checks what every step reads: a compute step that writes its column one
    slot off is a PlanError (the column-by-column run would compute wrong bytes instead)."""
    g = _chain()
    stage = Stage(0, 3, [0, 10, 20], list(range(21)), {0: "stream", 1: "stream"})
    plan = _plan(g, [stage], include_input=False)
    steps = pe.column_steps(g, check_plan(g, plan)[0])
    k = max(n for n, s in enumerate(steps) if not s[STEP_KEEP] and s[0] == 0 and s[STEP_DST] > 0)  # slots all written
    bad = [*steps]
    bad[k] = (*steps[k][:STEP_DST], steps[k][STEP_DST] - 1, *steps[k][STEP_DST + 1:])
    monkeypatch.setattr(pe, "column_steps", lambda graph, st_: bad)
    ex = pe.PlanExecutor(g, plan)
    _walk_values(monkeypatch, ex, provenance)
    with pytest.raises(PlanError, match="window buffer"):
        ex([_input(g)])


def _drawn_span(draw: st.DrawFn, min_ops: int) -> tuple[Graph, np.ndarray, int, int, tuple[int, int]]:
    """A random CNN, its input, a legal stage span [s, e) of at least ``min_ops`` ops and the size of
    its output."""
    graph, x = draw(random_cnn(max_layers=5, head=False))
    s = draw(st.integers(0, len(graph.ops) - 1))
    ends = [e for e in legal_ends(graph, s) if e - s >= min_ops]
    assume(ends)
    e = draw(st.sampled_from(ends))
    return graph, x, s, e, graph.tensors[graph.ops[e - 1].outputs[0]].shape[1:3]


def _checked_plan(draw: st.DrawFn, graph: Graph, stage: Stage) -> Plan:
    """The one-stage plan of ``stage`` (input in the arena or not, drawn); cases it does not pass are dropped."""
    plan = _plan(graph, [stage], draw(st.booleans()))
    try:
        check_plan(graph, plan)
    except PlanError:
        assume(False)
    return plan


@st.composite
def _case(draw: st.DrawFn) -> tuple[Graph, np.ndarray, Plan]:
    graph, x, s, e, (h, w) = _drawn_span(draw, 1)
    rows = split_even(h, draw(st.integers(1, h)))
    if draw(st.booleans()) and e - s >= 2:
        stage = Stage(s, e, rows, list(range(w + 1)), {k: "stream" for k in range(s, e - 1)})
    else:
        mode = draw(st.sampled_from(["recompute", "cache_w", "cache"]))
        stage = Stage(s, e, rows, split_even(w, draw(st.integers(1, w))), {k: mode for k in range(s, e - 1)})
    return graph, x, _checked_plan(draw, graph, stage)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(_case())
def test_random_batched_stages_match_the_tile_loop(case):
    graph, x, plan = case
    assert_batched_same(graph, plan, x)


@st.composite
def _cached_case(draw: st.DrawFn) -> tuple[Graph, np.ndarray, Plan]:
    """A cached stage on uneven cuts (fine last tiles make empty regions), one tile column at times
    (rows roll down)."""
    graph, x, s, e, (h, w) = _drawn_span(draw, 2)

    def cuts(size: int, one: bool) -> list[int]:  # like tiles of a drawn size, then one-pixel tiles
        if one:
            return [0, size]
        step, tail = draw(st.integers(1, 3)), draw(st.integers(0, min(2, size - 1)))
        return sorted({*range(0, size - tail, step), *range(size - tail, size + 1)})
    mode = draw(st.sampled_from(["cache_w", "cache"]))
    stage = Stage(s, e, cuts(h, False), cuts(w, draw(st.booleans())), {k: mode for k in range(s, e - 1)})
    return graph, x, _checked_plan(draw, graph, stage)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(_cached_case())
def test_random_cached_stages_on_uneven_cuts_match_the_tile_loop(case):
    """Tiles that skip their walk beside empty regions and in rolling stages leave the tile loop's bytes."""
    graph, x, plan = case
    assert_batched_same(graph, plan, x)


def _plan_kinds(path: str) -> dict[str, Plan]:
    """What ``benchmarks/host_speed.py --sram 32KB`` runs: the default plan, the least-peak plan and the
    least-peak stream plan of the model's front, and the fewest-MAC plan under 32 kB with the input
    outside the arena where one fits (kinds naming the same plan once)."""
    from tinypatch import api
    from tinypatch.errors import BudgetError
    from tinypatch.planning.plan import STREAM

    result = api.plan(path)
    front = sorted(result.front.front, key=lambda s: (s.peak, s.macs))
    stream = [s.plan for s in front if any(STREAM in st_.halo.values() for st_ in s.plan.stages)]
    try:
        budget = [api.plan(path, sram="32KB", include_input=False).plan]
    except BudgetError:
        budget = []
    kinds: dict[str, Plan] = {}
    for kind, plan in (("default", result.plan), ("least-peak", front[0].plan), *(("stream", p) for p in stream[:1]),
                       *(("budget", p) for p in budget)):
        if all(plan.to_dict() != p.to_dict() for p in kinds.values()):
            kinds[kind] = plan
    return kinds


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hello_world_int8", "mlperf_ic_resnet8_int8", "mlperf_kws_dscnn_int8",
                                  "mlperf_vww_96_int8", "person_detect", "person_detect_qdimfix", "mcunet_vww",
                                  "mcunetv2_large"])
def test_shared_model_plans_match_the_tile_loop(name):
    """Every plan kind the host-speed benchmark runs (with ``--sram 32KB``), on the shared models: the
    first run (a walk on provenance, then the stage values computed in batches) and a later one (a
    replay) give the bytes, arena and high-water mark of the tile loop, and every stage replays but
    stream stages that cannot batch whole rows (they walk on values every run)."""
    from conftest import model_path

    from tinypatch import load
    from tinypatch.runtime.inputs import model_inputs

    path = str(model_path(f"{name}.tflite"))
    g = load(path)
    (x,) = model_inputs(g, None)
    for plan in _plan_kinds(path).values():
        ex = assert_batched_same(g, plan, x)
        # every stage replays but a stream stage whose ops compute columns with gaps (no whole-row batch)
        assert len(ex.replays) == len(plan.stages) and all(r is not None or ex.streams[i].rows is None
                                                           for i, r in ex.replays.items())


def _rows_fresh(modes: dict[int, str], grid: tuple[int, int] = (5, 5), cuts: list[int] | None = None
                ) -> tuple[Graph, Plan]:
    """The chain as one stage whose rows carry nothing from one tile row to the next (``cache_w`` only);
    ``cuts``: both axes cut there."""
    g = _chain()
    rows, cols = (cuts, cuts) if cuts else (split_even(10, grid[0]), split_even(10, grid[1]))
    plan = _plan(g, [Stage(0, 5, rows, cols, modes)])
    check_plan(g, plan)
    return g, plan


def _walked(ex: pe.PlanExecutor, g: Graph) -> list[tuple[int, int]]:
    """The tiles stage 0 walks on ``ex``'s first run (on provenance)."""
    tiles: list[tuple[int, int]] = []
    compute = ex._compute_ids

    def spy(arena, outside, st_, k, i, j, *a):
        if (i, j) not in tiles:
            tiles.append((i, j))
        return compute(arena, outside, st_, k, i, j, *a)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ex, "_compute_ids", spy)
        ex([_input(g)])
    return tiles


@pytest.mark.parametrize("modes", [{k: "cache_w" for k in range(4)}, {1: "cache_w", 3: "cache_w"}, {}])
def test_stages_whose_rows_carry_nothing_walk_one_tile_per_new_row(modes):
    """``cache_w`` (or recompute) only: tile row 0 walks one tile per column key, each later row key one
    tile (column 0), each op's largest region one tile; the arena ends as the tile loop leaves it."""
    g, plan = _rows_fresh(modes)
    assert_batched_same(g, plan, _input(g))
    ex = pe.PlanExecutor(g, plan)
    if not modes:  # a recompute stage batches like tiles: no shadow, no walk to shorten
        assert ex._separable(ex.stage_at[0]) is not None
        return
    walked = _walked(ex, g)
    forced = ex._separable(ex.stage_at[0])
    assert forced and set(forced) <= set(walked)
    assert all(j == 0 or i == 0 or (i, j) in forced for i, j in walked), walked
    assert len(walked) < 25 // 2, walked
    assert len(ex.skips[0][0]) == 25 - len(walked)


def test_stages_whose_rows_carry_something_keep_their_keyed_walk():
    """Rows rolling down one tile column or an average: no separable walk (line buffers: one)."""
    g, plan = _rows_fresh({1: "cache"})
    ex = pe.PlanExecutor(g, plan)
    assert ex._separable(ex.stage_at[0]) is not None
    g, plan = _rows_fresh({1: "cache"}, (5, 1))
    ex = pe.PlanExecutor(g, plan)
    assert ex._separable(ex.stage_at[0]) is None
    g, plan = _rows_fresh({1: "cache_w"}, (5, 1))
    ex = pe.PlanExecutor(g, plan)
    assert ex._separable(ex.stage_at[0]) is not None  # one tile column: rows recomputed, columns whole
    gp = _chain(pool=True)
    plan = _plan(gp, [Stage(0, 6, split_even(10, 5), split_even(10, 5), {1: "cache_w"})])
    ex = pe.PlanExecutor(gp, plan)
    assert ex._separable(ex.stage_at[0]) is None


_LINED = [{k: "cache" for k in range(4)}, {1: "cache"}, {0: "cache", 2: "cache_w", 3: "cache"}]


@pytest.mark.parametrize("modes", _LINED)
@pytest.mark.parametrize("grid", [(5, 5), (4, 3)])
def test_line_buffered_stages_walk_their_first_lined_rows_and_one_tile_per_new_row(modes, grid):
    """Line buffers carry rows from one tile row to the next, and nothing else does: the first tile row
    taking lines walks one tile per column key (tile row 0 only column 0 where every op computes in
    that row, as here), each later row key one tile (column 0), each op's largest region one tile; the
    arena ends as the tile loop leaves it."""
    g, plan = _rows_fresh(modes, grid)
    assert_batched_same(g, plan, _input(g))
    ex = pe.PlanExecutor(g, plan)
    st_ = ex.stage_at[0]
    forced, lined = ex._separable(st_), ex._lined_rows(st_)
    assert forced and lined == {1} and ex._full_row(st_, lined) == 1, (forced, lined)
    walked = _walked(ex, g)
    assert {j for i, j in walked if i == 0} <= {0} | {j for i, j in forced if i == 0}, walked
    rows, cols = (pe._axis_keys(ex.graph, st_.info.tile_ops, a.spans, ex.producers, True) for a in (st_.h, st_.w))
    firsts = {j for j in range(grid[1]) if cols[j] not in cols[:j]}  # (the walk's keys: its left neighbour's too)
    new = {i for i in range(2, grid[0]) if rows[i] not in rows[:i]}  # (the walk's: the lines it keeps too)
    assert {(1, j) for j in firsts} | {(i, 0) for i in new} | set(forced) <= set(walked)
    assert all(i == 1 or j == 0 or (i, j) in forced for i, j in walked), walked
    assert len(walked) < grid[1] + grid[0] + len(forced) and len(ex.skips[0][0]) == grid[0] * grid[1] - len(walked)


def _uneven(g: Graph, rows: list[int], cols: list[int], modes: dict) -> Plan:
    """One stage over the 16x16 depthwise chain, cut at ``rows`` x ``cols`` (a cut the planner
    refuses is not drawn)."""
    plan = _plan(g, [Stage(0, 5, [0, *sorted(rows), 16], [0, *sorted(cols), 16], modes)])
    try:
        check_plan(g, plan)
    except PlanError:
        assume(False)
    return plan


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(st.integers(1, 15), min_size=1, max_size=5, unique=True),
       st.lists(st.integers(1, 15), min_size=1, max_size=5, unique=True), st.sampled_from(_LINED))
def test_line_buffered_stages_on_uneven_cuts_match_the_tile_loop(rows, cols, modes):
    """Line-buffered stages of 3x3 depthwise chains on uneven cuts (one-pixel tiles leave the first ops
    empty regions in later tile rows and columns): the separable walk, where it applies, leaves the
    tile loop's bytes, arena and high-water mark."""
    g = _dw_chain()
    plan = _uneven(g, rows, cols, modes)
    assert_batched_same(g, plan, _input(g))


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(st.integers(1, 15), min_size=2, max_size=5, unique=True),
       st.lists(st.integers(1, 15), min_size=2, max_size=5, unique=True), st.sampled_from(_LINED),
       st.integers(0, 20), st.integers(0, 10 ** 6))
def test_a_separable_walk_catches_the_placement_faults_walking_every_tile_catches(rows, cols, modes, which, where):
    """The separable walk of a line-buffered stage against a walk of every tile, both on provenance,
    with one of the stage's buffers (a tile buffer, a cached map's, a line buffer) placed elsewhere in
    the arena, as a wrong plan would place it: the same outcome (a collision, an overflow, a read of
    other bytes, or none)."""
    g = _dw_chain()
    plan = _uneven(g, rows, cols, modes)
    ex = pe.PlanExecutor(g, plan)
    st_ = ex.stage_at[0]
    assume(ex._separable(st_) is not None)
    names = [g.ops[k].outputs[0] for k in st_.info.tile_ops[:-1]]
    bufs = sorted({ex.buffer_of[t] for t in names} | {pe.line_buffer_name(t) for t in names
                                                     if pe.line_buffer_name(t) in ex.placement.offsets})
    buf = bufs[which % len(bufs)]
    offset = where % ex.peak // 16 * 16

    def outcome(every: bool) -> str:
        e = pe.PlanExecutor(g, plan)
        e.placement.offsets[buf] = offset
        e.out_buf = {k: (n, b, offset if b == buf else o, *rest) for k, (n, b, o, *rest) in e.out_buf.items()}
        if every:
            e._like_tiles = lambda st_: (set(), [], [], {})  # type: ignore[method-assign]
        try:
            e([_input(g)])
        except PlanError as err:
            return str(err).split(" ")[0] if "collides" not in str(err) else "collides"
        assert every or e.skips[0][0], "no tile skipped its walk"
        return "none"
    got = outcome(False)
    event(got)
    assert got == outcome(True)


@pytest.mark.parametrize("provenance", [True, False])
def test_line_buffer_columns_are_checked_in_the_first_lined_row(monkeypatch, provenance):
    """Tile row 0 takes no lines, so line-buffer columns are checked only where a tile row takes them:
    a line buffer that never keeps the last tile column's fresh columns (walked and skipped tiles
    alike: later rows there read never-written bytes) is caught by the first lined row's walk of every
    column key. Walking only tile row 0 and column 0 of later row keys (their forced tiles aside)
    would not catch it: the fault lies in a column that only tile rows after the first read."""
    def run(lined: bool) -> None:
        g, plan = _rows_fresh({k: "cache" for k in range(4)})
        ex = pe.PlanExecutor(g, plan)
        _walk_values(monkeypatch, ex, provenance)
        save, last = ex._save_lines, len(ex.stage_at[0].w.spans) - 1

        def unsaved_last(arena, st_, k, i, j, region, cols=None):
            end = st_.w.spans[last][k].out[0]  # where the last tile column's fresh columns start
            if cols is None and j != last:
                save(arena, st_, k, i, j, region)
            elif cols is not None and cols[0] < end:  # a skipped run's columns, less the last tile's
                c1 = min(cols[1], end)
                save(arena, st_, k, i, j, region[:, :, : c1 - cols[0]], (cols[0], c1))
        monkeypatch.setattr(ex, "_save_lines", unsaved_last)
        if not lined:
            monkeypatch.setattr(ex, "_lined_rows", lambda st_: set())
        assert all(j != last for i, j in ex._separable(ex.stage_at[0]) if i), "a forced tile would show it"
        ex([_input(g)])
    run(False)
    with pytest.raises(PlanError, match="never-written"):
        run(True)


@pytest.mark.parametrize("provenance", [True, False])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("mode", ["cache_w", "cache"])
def test_a_window_off_by_one_in_a_skipped_row_or_column_is_caught(monkeypatch, provenance, axis, mode):
    """A read window one pixel off in tile row 2 (or column 2) only, which the separable walk would skip
    were its key that of rows (columns) 1 and 3: its key differs, so it is walked and raises (with line
    buffers, column 2 by the first lined row: tile row 0 walks column 0 only)."""
    from dataclasses import replace
    g, plan = _rows_fresh({k: mode for k in range(4)})
    ex = pe.PlanExecutor(g, plan)
    _walk_values(monkeypatch, ex, provenance)
    st_ = ex.stage_at[0]
    spans = (st_.h, st_.w)[axis].spans
    spans[2] = dict(spans[2])  # (the tiling is this graph's own: built for this test)
    sp = spans[2][2]  # the pointwise conv reading the depthwise's region
    spans[2][2] = replace(sp, reads=tuple(None if r is None else (r[0] + 1, r[1] + 1) for r in sp.reads))
    with pytest.raises(PlanError, match="reads wrong bytes"):
        ex([_input(g)])


@pytest.mark.parametrize("provenance", [True, False])
@pytest.mark.parametrize("mode", ["cache_w", "cache"])
def test_a_stale_cached_column_is_caught_where_rows_carry_nothing(monkeypatch, provenance, mode):
    """Slides that leave the first kept column stale (every tile, as a wrong plan would) are caught
    (with line buffers by the first lined row: tile row 0 walks column 0 only)."""
    g, plan = _rows_fresh({k: mode for k in range(4)})
    ex = pe.PlanExecutor(g, plan)
    _walk_values(monkeypatch, ex, provenance)
    region = ex._region

    def stale(arena, st_, k, i, j, kept):
        got = region(arena, st_, k, i, j, kept)
        sw = st_.w.spans[j][k]
        if j and sw.out[0] > sw.need[0] + 1:
            got[:, :, 0] = got[:, :, 1]
        return got
    monkeypatch.setattr(ex, "_region", stale)
    with pytest.raises(PlanError, match="reads wrong bytes"):
        ex([_input(g)])


def _unet_mini() -> Graph:
    """conv 3x3, 2x2 max pool, conv 3x3, nearest upsampling x2, conv 3x3 (a U-Net's step down and up): on
    one-pixel tile columns of a ``cache_w`` stage the ops before the pool hold nothing in every other
    tile column (empty regions, as in a converter-made U-Net's default plan), and the stage holds a
    gather (the resize)."""
    b = Builder("unet_mini", seed=5)
    x = b.input((1, 12, 12, 3))
    x = b.conv(x, 4, 3, 1, name="c0")
    x = b.pool(x, "max", 2, 2, name="mp1")
    x = b.conv(x, 5, 3, 1, name="c2")
    x = b.resize_nearest(x, (12, 12), name="up3")
    x = b.conv(x, 3, 3, 1, name="c4")
    return b.finish([x])


def _pooled(modes: dict[int, str], rows: list[int], cols: list[int]) -> tuple[Graph, Plan]:
    """:func:`_unet_mini` as one stage on cuts ``rows`` x ``cols``, its ops cached as ``modes`` says."""
    g = _unet_mini()
    plan = _plan(g, [Stage(0, 5, rows, cols, modes)])
    check_plan(g, plan)
    return g, plan


_POOLED = [{2: "cache_w", 3: "cache_w"}, {0: "cache_w", 2: "cache_w", 3: "cache_w"}, {k: "cache_w" for k in range(4)}]


@pytest.mark.parametrize("modes", _POOLED)
@pytest.mark.parametrize("rows", [split_even(12, 4), [0, 1, 6, 12]])
@pytest.mark.parametrize("cols", [list(range(13)), [0, 1, 2, 3, 4, 5, 9, 10, 11, 12]])
def test_rows_carrying_nothing_beside_empty_columns_walk_one_tile_per_new_row(modes, rows, cols):
    """A stage whose rows carry nothing, with ops holding nothing in every other tile column and a
    gather: tile row 0 walks one tile per column key, each later row key one tile (column 0), each
    op's largest region one tile (on the wide column: after skipped tiles, some holding no region of
    a cached op); bytes, arena and high-water mark are the tile loop's."""
    g, plan = _pooled(modes, rows, cols)
    ex = pe.PlanExecutor(g, plan)
    st_ = ex.stage_at[0]
    assert any(pe._empty(sp[k]) for sp in st_.w.spans for k in st_.info.tile_ops), "no empty region"
    assert any(ex.layout[k][2] for k in st_.info.tile_ops), "no gather"
    forced = ex._separable(st_)
    assert forced
    walked = _walked(ex, g)
    assert set(forced) <= set(walked)
    assert all(j == 0 or i == 0 or (i, j) in forced for i, j in walked), walked
    tiles = (len(rows) - 1) * (len(cols) - 1)
    assert len(walked) < tiles // 2 and len(ex.skips[0][0]) == tiles - len(walked), walked
    assert_batched_same(g, plan, _input(g))


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(st.integers(1, 11), max_size=4, unique=True), st.lists(st.integers(1, 11), min_size=4, unique=True),
       st.sampled_from(_POOLED))
def test_rows_carrying_nothing_beside_empty_columns_on_uneven_cuts_match_the_tile_loop(rows, cols, modes):
    """``cache_w`` stages holding a pool and a gather on uneven cuts (narrow columns leave ops before
    the pool empty regions): the separable walk leaves the tile loop's bytes."""
    try:
        g, plan = _pooled(modes, [0, *sorted(rows), 12], [0, *sorted(cols), 12])
    except PlanError:
        assume(False)
    assert_batched_same(g, plan, _input(g))


def _overlap_only_the_largest_claim_hits(monkeypatch: pytest.MonkeyPatch, g: Graph, plan: Plan) -> None:
    """Op 0's tile buffer placed so that only its largest claim reaches the next buffer: the batched
    first run raises the tile loop's PlanError; without the largest regions' walks it would not."""
    ex = pe.PlanExecutor(g, plan)
    st_ = ex.stage_at[0]
    k = 0  # the first conv: recomputed, its tile buffer claimed tile by tile
    buf = ex.buffer_of[g.ops[k].outputs[0]]
    rows = [sp[k].need[1] - sp[k].need[0] for sp in st_.h.spans]
    cols = [sp[k].need[1] - sp[k].need[0] for sp in st_.w.spans]
    pixel = g.tensors[g.ops[k].outputs[0]].shape[3] * g.tensors[g.ops[k].outputs[0]].np_dtype.itemsize
    sizes = sorted({r * c * pixel for r in rows for c in cols})
    assert len(sizes) > 1

    def claim_of(n: int) -> int:  # as the arena rounds claims (16-byte alignment)
        return -(-n // 16) * 16
    offsets = ex.placement.offsets
    start = min(o for b, o in offsets.items() if o >= offsets[buf] + claim_of(sizes[-1]))  # the next buffer
    claim, second = claim_of(sizes[-1]), claim_of(sizes[-2])
    assert claim > second + 16 and start - claim + 16 >= offsets[buf], (sizes, start)
    moved = start - claim + 16  # only the largest claim reaches the next buffer

    def run(forced: bool, batch: bool = True) -> None:
        e = pe.PlanExecutor(g, plan, batch=batch)
        monkeypatch.setitem(e.placement.offsets, buf, moved)
        name, b, _, *rest = e.out_buf[k]
        e.out_buf[k] = (name, b, moved, *rest)
        if not forced:
            separable = e._separable
            monkeypatch.setattr(e, "_separable", lambda s: separable(s) and set())
        e([_input(g)])
    run(False)  # the keyed tiles' claims miss it
    for batch in (False, True):
        with pytest.raises(PlanError, match="collides"):
            run(True, batch)


@pytest.mark.parametrize("case", ["no empty region", "line buffers", "empty columns"])
def test_a_placement_overlap_only_the_largest_claim_hits_is_caught(monkeypatch, case):
    """A tile buffer placed so that only the largest tile's claim reaches the next live buffer: the walk
    of each op's largest region raises; without it (only the keyed tiles walked) the run would not.
    A narrow first tile row and column: the largest claims are interior tiles', which no key walks
    (with line buffers and a narrow first lined row: nor does that row; with empty columns: tiles
    beside ones where op 0 claims 0 bytes)."""
    if case == "no empty region":
        g, plan = _rows_fresh({1: "cache_w", 3: "cache_w"}, cuts=[0, 1, 4, 7, 10])
    elif case == "line buffers":  # a narrow first lined row too
        g, plan = _rows_fresh({1: "cache", 3: "cache"}, cuts=[0, 1, 2, 6, 10])
        st_ = pe.PlanExecutor(g, plan).stage_at[0]
        assert pe.PlanExecutor._lined_rows(st_) == {1}
    else:
        g, plan = _pooled({2: "cache_w", 3: "cache_w"}, [0, 1, 6, 12], [0, 1, 2, 3, 4, 5, 9, 10, 11, 12])
        st_ = pe.PlanExecutor(g, plan).stage_at[0]
        assert any(pe._empty(sp[0]) for sp in st_.w.spans), "op 0 holds something in every tile column"
    _overlap_only_the_largest_claim_hits(monkeypatch, g, plan)


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(st.integers(1, 9), min_size=1, max_size=5, unique=True),
       st.lists(st.integers(1, 9), min_size=1, max_size=5, unique=True),
       st.sets(st.integers(0, 3), min_size=1))
def test_rows_carrying_nothing_on_uneven_cuts_match_the_tile_loop(rows, cols, cached):
    """``cache_w`` stages on uneven cuts: the separable walk leaves the tile loop's bytes."""
    g = _chain()
    plan = _plan(g, [Stage(0, 5, [0, *sorted(rows), 10], [0, *sorted(cols), 10], {k: "cache_w" for k in cached})])
    try:
        check_plan(g, plan)
    except PlanError:
        assume(False)
    assert_batched_same(g, plan, _input(g))
