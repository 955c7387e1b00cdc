"""Runs of a plan executor (:mod:`tinypatch.runtime.stage_replay`): the arena effect of the first
run's walk on provenance replayed, every tile's computation checked in batches. Byte-exact against the tile
loop (``batch=False``) in :func:`test_plan_batching.assert_batched_same`, which every batching test
runs twice; here: that each stage kind does replay, that replays still catch a tile computing other
bytes (border tiles, whose kernels run on their own windows), that the walk on provenance catches
a stale line buffer where values cannot, and a placement overlap, that the tiles a walk skips read and
write their own windows, and that the growing of padded tiles to a common size keeps each tile's own
pixels (kernel locality, hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_plan_batching import _chain, _input, _plan, assert_batched_same

import tinypatch.runtime.plan_executor as pe
from tinypatch.analysis.regions import AxisMap, axis_maps, split_even
from tinypatch.errors import PlanError
from tinypatch.frontends.random_cnn import CnnBuilder
from tinypatch.frontends.synth import Builder
from tinypatch.ir import Graph, Op, Tensor
from tinypatch.kernels import prepare
from tinypatch.planning.check import check_plan
from tinypatch.planning.plan import Plan, Stage
from tinypatch.planning.tiles import OpSpan
from tinypatch.runtime.stage_replay import TiledChecks, reads_exactly, _widen

_STAGES = {
    "recompute": (False, Stage(0, 5, split_even(10, 4), split_even(10, 3))),
    "average": (True, Stage(0, 6, split_even(10, 5), split_even(10, 3))),
    "cache_w": (False, Stage(0, 5, split_even(10, 5), split_even(10, 5), {k: "cache_w" for k in range(4)})),
    "cache": (False, Stage(0, 5, split_even(10, 4), split_even(10, 3), {k: "cache" for k in range(4)})),
    "mixed": (False, Stage(0, 5, split_even(10, 5), split_even(10, 2), {0: "cache", 3: "cache"})),
}


@pytest.mark.parametrize("kind", sorted(_STAGES))
def test_later_runs_replay_tiled_stages(kind):
    pool, stage = _STAGES[kind]
    g = _chain(pool)
    ex = assert_batched_same(g, _plan(g, [stage]), _input(g))
    assert ex.replays[0] is not None, "the stage does not replay: the test would not exercise that path"


def test_later_runs_replay_stream_stages():
    g = _chain()
    width = g.tensors[g.ops[4].outputs[0]].shape[2]
    stage = Stage(0, 5, [0, 3, 5, 7, 10], list(range(width + 1)), {k: "stream" for k in range(4)})
    ex = assert_batched_same(g, _plan(g, [stage], include_input=False), _input(g))
    assert ex.replays[0] is not None


@pytest.mark.parametrize("kind", ["average", "cache", "mixed"])
def test_int32_ids_walk_as_int64_ids(kind, monkeypatch):
    """Ids in int32 cells (where every id fits) walk a stage as int64 ones: the same cells before and
    after the walk (FOREIGN aside), the same recorded effect."""
    pool, stage = _STAGES[kind]
    g = _chain(pool)
    plan, x = _plan(g, [stage]), _input(g)
    got = []
    for dtype in (np.int32, np.int64):
        ex = pe.PlanExecutor(g, plan)
        assert ex._id_dtype == np.int32
        ex._id_dtype = dtype
        walks = []
        walk = ex._walk_ids
        monkeypatch.setattr(ex, "_walk_ids", lambda *a, walk=walk, walks=walks: walks.append(walk(*a)) or walks[-1])
        ex([x])
        (walked, before), = walks
        assert walked.memory.dtype == dtype and ex.replays[0] is not None
        cells = [np.where(c == walked.FOREIGN, -3, c).astype(np.int64) for c in (before, walked.memory)]
        effect = ex.replays[0][0]
        got.append((cells, effect.valid, effect.live, effect.end, effect.replayable))
    (c32, *e32), (c64, *e64) = got
    assert all(np.array_equal(a, b) for a, b in zip(c32, c64))
    assert np.array_equal(e32[0], e64[0]) and e32[1:] == e64[1:]


@pytest.mark.parametrize("kind", ["recompute", "cache"])
def test_replays_run_padded_tiles_on_their_own_windows(kind):
    """A replaying run computes the padded (border) tiles' kernels on their own windows and compares
    them with the whole image: a kernel that goes wrong on tile calls only (an explicit ``pads``) is a
    PlanError, as in the walks."""
    pool, stage = _STAGES[kind]
    g = _chain(pool)
    ex = pe.PlanExecutor(g, _plan(g, [stage]))
    ex([_input(g)])  # the first run records what later runs replay
    assert ex.replays[0] is not None and ex.replays[0][1].groups
    kernel = ex.kernels[0]

    def off_by_one_on_tiles(args, pads=None):
        out = kernel(args, pads)
        return out if pads is None else [(out[0].astype(np.int16) + 1).clip(-128, 127).astype(np.int8)]
    ex.kernels[0] = off_by_one_on_tiles
    with pytest.raises(PlanError, match=r"tile \(\d+, \d+\) of op 0 computes other bytes"):
        ex([_input(g)])


@pytest.mark.parametrize("kind", ["recompute", "cache"])
def test_batched_tile_calls_catch_a_kernel_gone_wrong_on_tiles(kind, monkeypatch):
    """The padded tile ops of one op run as one batch (``run_calls``: conv and depthwise stack their
    windows into one GEMM or weighted sum); a kernel whose padding goes wrong where a tile's pads are
    not the whole image's (asymmetric here) is still a PlanError on a replaying run."""
    from tinypatch.kernels import conv

    pool, stage = _STAGES[kind]
    g = _chain(pool)
    ex = pe.PlanExecutor(g, _plan(g, [stage]))
    ex([_input(g)])
    checks = ex.replays[0][1]
    batches = []
    for cls in {type(ex.kernels[k]) for k in checks.by_op}:
        run_calls = cls.run_calls
        monkeypatch.setattr(cls, "run_calls", lambda self, calls, f=run_calls: batches.append(len(calls)) or f(self, calls))
    padded = conv.centered_padded
    monkeypatch.setattr(conv, "centered_padded", lambda x, zp, pads, dtype: padded(
        x, zp + (pads[0] != pads[1] or pads[2] != pads[3]), pads, dtype))
    with pytest.raises(PlanError, match=r"tile \(\d+, \d+\) of op \d+ computes other bytes"):
        ex([_input(g)])
    assert max(batches) > 1, "no batch of several calls: the test would not exercise run_calls' stacking"


def _covered(graph, st, checks) -> None:
    """Every tile op computing pixels whose window is padded along an axis it does not span whole (its
    kernel must run on its own window) has its pixels, or those of a like tile op (same op, sizes and
    paddings), inside a window that a group of its op computes with its paddings; no window is computed
    twice, each group's windows hold their own tiles' pixels, and each group runs in one batch."""
    assert sorted(n for ns in checks.by_op.values() for n in ns) == list(range(len(checks.groups)))
    assert all(checks.groups[n].k == k for k, ns in checks.by_op.items() for n in ns)

    def like(k, sh, sw):
        return k, sh.out[1] - sh.out[0], sw.out[1] - sw.out[0], sh.pads, sw.pads

    windows, covered = set(), set()
    for grp in checks.groups:
        h, w = grp.out[1]
        for (i, j), (r, c) in zip(grp.tiles, grp.out[0]):
            sh, sw = st.h.spans[i][grp.k], st.w.spans[j][grp.k]
            assert (*sh.pads, *sw.pads) == grp.pads
            assert r <= sh.out[0] and sh.out[1] <= r + h and c <= sw.out[0] and sw.out[1] <= c + w
            assert (grp.k, grp.pads, r, c, h, w) not in windows, "a window computed twice"
            windows.add((grp.k, grp.pads, r, c, h, w))
            covered.update(like(grp.k, rows[grp.k], cols[grp.k]) for rows in st.h.spans for cols in st.w.spans
                           if (*rows[grp.k].pads, *cols[grp.k].pads) == grp.pads
                           and r <= rows[grp.k].out[0] and rows[grp.k].out[1] <= r + h
                           and c <= cols[grp.k].out[0] and cols[grp.k].out[1] <= c + w)
    for k in st.info.tile_ops:
        size = graph.tensors[graph.ops[k].outputs[0]].shape[1:3]
        for rows in st.h.spans:
            for cols in st.w.spans:
                sh, sw = rows[k], cols[k]
                if sh.out[0] >= sh.out[1] or sw.out[0] >= sw.out[1]:
                    continue
                if (any(sh.pads) and sh.out != (0, size[0])) or (any(sw.pads) and sw.out != (0, size[1])):
                    assert like(k, sh, sw) in covered


@pytest.mark.parametrize("kind", sorted(_STAGES))
def test_groups_cover_every_padded_tile_op_once(kind):
    pool, stage = _STAGES[kind]
    g = _chain(pool)
    ex = pe.PlanExecutor(g, _plan(g, [stage]))
    st = ex.stage_at[0]
    checks = TiledChecks(ex.graph, ex.kernels, st)
    assert checks.groups
    _covered(ex.graph, st, checks)


def test_a_replay_needs_the_arena_state_it_was_recorded_from(monkeypatch):
    """A run reaching the stage with the arena in another state than the recording run walks again."""
    g = _chain()
    ex = pe.PlanExecutor(g, _plan(g, [_STAGES["cache"][1]]))
    x = _input(g)
    want = ex([x]).outputs
    ex([x])  # the first run recorded, this one replays
    walks = []
    walk = ex._run_stage
    monkeypatch.setattr(ex, "_run_stage", lambda *a: walks.append(1) or walk(*a))
    ex([x])
    assert not walks
    ex.replays[0][0].end_before += 1  # as if an earlier op had touched one more byte
    got = ex([x]).outputs
    assert walks == [1]
    assert all(got[n].tobytes() == want[n].tobytes() for n in g.outputs)


@pytest.mark.parametrize("halo", ["cache", "cache_w"])
def test_skipped_tiles_read_and_write_their_own_windows(halo):
    """The tiles a cached stage's walk skips (``_like_tiles``: their keys interned, their windows
    gathered per tile row and merged) read exactly the pixels of full-size tensors and write exactly
    the stage-output pixels that those tiles' own spans name, one by one (reads where an op computes,
    as a walk reads)."""
    g = _chain()
    ex = pe.PlanExecutor(g, _plan(g, [Stage(0, 5, split_even(10, 5), split_even(10, 5), {k: halo for k in range(4)})]))
    st = ex.stage_at[0]
    skip, reads, outs, _ = ex._like_tiles(st)
    assert skip, "no tile skips its walk: the test would not exercise the skipped tiles"

    def pixels(windows):
        return {(r, c) for r0, r1, c0, c1 in windows for r in range(r0, r1) for c in range(c0, c1)}
    want: dict[str, set] = {}
    for i, j in skip:
        for k in st.info.tile_ops:
            if st.h.spans[i][k].out[0] >= st.h.spans[i][k].out[1] or st.w.spans[j][k].out[0] >= st.w.spans[j][k].out[1]:
                continue  # all of it cached: no read
            for n, t in enumerate(g.ops[k].inputs):
                rh, rw = st.h.spans[i][k].reads[n], st.w.spans[j][k].reads[n]
                if rh is not None and rw is not None and ex.producers.get(t) not in st.info.tile_ops:
                    want.setdefault(t, set()).update(pixels([(*rh, *rw)]))
    assert {t: pixels(w) for t, w in reads} == want
    last = st.info.tile_ops[-1]
    assert pixels(outs) == pixels([(*st.h.spans[i][last].out, *st.w.spans[j][last].out) for i, j in skip])


def test_exact_windows():
    m = AxisMap("window", 10, 10, kernel=3, stride=1, pad=1)
    assert reads_exactly([m], OpSpan((0, 4), (0, 4), ((0, 5),), (1, 0)))
    assert not reads_exactly([m], OpSpan((0, 4), (0, 4), ((0, 6),), (1, 0)))  # one row too many
    assert not reads_exactly([m], OpSpan((0, 4), (0, 4), ((0, 5),), (0, 0)))  # the border padding missing
    assert reads_exactly([m], OpSpan((3, 6), (3, 6), ((2, 7),), (0, 0)))
    ident = AxisMap("identity", 10, 10)
    assert reads_exactly([ident, None], OpSpan((3, 6), (3, 6), ((3, 6), None), (0, 0)))


def test_window_input_span_is_the_padded_receptive_field():
    """AxisMap.input_span (its branch-free form) against the formula it stands for, windows reaching
    past either border or lying wholly outside the map (tiles inside a PAD border) included."""
    for in_size, kernel, stride, dilation, pad in [(1, 1, 1, 1, 0), (5, 3, 1, 1, 1), (7, 3, 2, 1, 1), (6, 5, 2, 2, 4),
                                                   (9, 10, 3, 1, 5), (4, 2, 1, 3, 0)]:
        m = AxisMap("window", in_size, 12, kernel=kernel, stride=stride, dilation=dilation, pad=pad)
        for a in range(-2, 13):
            for b in range(a + 1, 14):
                lo, hi = a * stride - pad, (b - 1) * stride - pad + (kernel - 1) * dilation + 1
                start = min(max(lo, 0), in_size)
                want = ((start, max(min(hi, in_size), start)), max(0, min(hi, 0) - lo), max(0, hi - max(lo, in_size)))
                assert m.input_span((a, b)) == want, (m, a, b)


def test_widen_keeps_the_padded_end():
    m = AxisMap("window", 10, 5, kernel=3, stride=2, pad=0)  # VALID-like: pads only past the end
    top = AxisMap("window", 10, 10, kernel=3, stride=1, pad=1)
    assert _widen([top], OpSpan((0, 2), (0, 2), ((0, 3),), (1, 0)), 4) == (0, 4)
    assert _widen([top], OpSpan((8, 10), (8, 10), ((7, 10),), (0, 1)), 4) == (6, 10)
    assert _widen([top], OpSpan((0, 10), (0, 10), ((0, 10),), (1, 1)), 11) is None
    assert _widen([m], OpSpan((1, 2), (1, 2), ((2, 5),), (0, 0)), 3) == (1, 4)


@st.composite
def _op_and_tile(draw: st.DrawFn):
    kind = draw(st.sampled_from(["conv", "depthwise", "avg", "max"]))
    k, s = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    h = draw(st.integers(k + 1, 12))
    b = Builder("one", seed=draw(st.integers(0, 9)))
    x = b.input((1, h, 6, 3))
    if kind == "conv":
        y = b.conv(x, 4, k, s, name="op")
    elif kind == "depthwise":
        y = b.depthwise(x, k, s, name="op")
    else:
        y = b.pool(x, kind, k, s, name="op", padding="SAME")
    g = b.finish([y])
    m = axis_maps(g, g.ops[0])[0]
    a = draw(st.integers(0, m.out_size - 1))
    n = draw(st.integers(a + 1, m.out_size))
    return g, m, (a, n), draw(st.integers(n - a, m.out_size))


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_op_and_tile())
def test_a_grown_tile_computes_its_own_pixels_from_its_own_window(case):
    """What the batched checks rest on: a padded tile grown to a larger size (:func:`_widen`) with its
    paddings kept computes, at the tile's own pixels, the bytes of the tile's own kernel call."""
    g, m, out, size = case
    (r0, r1), before, after = m.input_span(out)
    own = OpSpan(out, out, ((r0, r1),), (before, after))
    grown = _widen([m], own, size)
    if grown is None:
        return
    kernel = prepare(g, g.ops[0])
    x = np.random.default_rng(size).integers(-128, 128, g.tensors[g.inputs[0]].shape, dtype=np.int8)
    wpads = (1, 1) if kernel.default_pads((x.shape[1], x.shape[2]))[2] else (0, 0)
    mine = kernel([x[:, r0:r1]], (before, after, *wpads))[0]
    (g0, g1), gb, ga = m.input_span(grown)
    assert (gb, ga) == (before, after)
    big = kernel([x[:, g0:g1]], (gb, ga, *wpads))[0]
    assert big[:, out[0] - grown[0]: out[1] - grown[0]].tobytes() == mine.tobytes()


def test_the_first_run_walks_on_provenance(monkeypatch):
    """Later runs do not walk, so the first run walks each stage on provenance (every window a tile reads
    must hold the ids of the pixels it needs, :meth:`~tinypatch.runtime.plan_executor.PlanExecutor._walk_ids`):
    a stale line buffer is caught even where the input is flat (here all zeros: every interior pixel
    alike, so the stale bytes equal the right ones, and a walk on values does not see it)."""
    g = _chain()
    flat = np.zeros_like(_input(g))

    def executor(provenance: bool) -> pe.PlanExecutor:
        ex = pe.PlanExecutor(g, _plan(g, [_STAGES["cache"][1]]))
        save = ex._save_lines
        monkeypatch.setattr(ex, "_save_lines", lambda arena, st_, k, i, *a: save(arena, st_, k, i, *a)
                            if i == 0 else None)
        if not provenance:  # every run walks on values
            monkeypatch.setattr(ex, "_replayable", lambda *a: None)
        return ex

    ex = executor(False)
    ex([flat])
    assert ex.shadowed[0], "the value walk does not compare what it reads: the test would show nothing"
    ex = executor(True)
    with pytest.raises(PlanError, match="reads wrong bytes"):
        ex([flat])
    assert 0 not in ex.replays
    with pytest.raises(PlanError, match="reads wrong bytes"):  # no replay was recorded: it walks (and fails) again
        ex([flat])


def test_the_first_run_catches_a_placement_overlap():
    """A line buffer placed over its cached map's buffer: the first run (a walk on provenance) claims
    both, as the tile loop does, and fails."""
    g = _chain()
    ex = pe.PlanExecutor(g, _plan(g, [_STAGES["cache"][1]]))
    cached = ex.buffer_of[g.ops[0].outputs[0]]
    lines = pe.line_buffer_name(g.ops[0].outputs[0])
    ex.placement.offsets[lines] = ex.placement.offsets[cached]
    with pytest.raises(PlanError, match="collides"):
        ex([_input(g)])
    assert 0 not in ex.replays


# --- stages holding a gather (resize, transpose conv) ----------------------------------------------
_GATHERS = ("nearest", "bilinear", "transpose_conv")


def _gather_chain(kind: str, h: int, w: int, out: tuple[int, int], flags: tuple[bool, bool], seed: int = 3) -> Graph:
    """conv 3x3, the gather (a resize to ``out``, align_corners / half_pixel_centers ``flags``; or a
    stride-2 transpose conv, SAME when ``flags[0]``), conv 3x3."""
    b = CnnBuilder(np.random.default_rng(seed), (1, h, w, 3), f"gather_{kind}")
    b.conv(4, 3, 3, (1, 1), (1, 1), "SAME", "RELU")
    if kind == "nearest":
        b.resize(*out, *flags)
    elif kind == "bilinear":
        b.resize_bilinear(*out, flags[0] and not flags[1], flags[1])
    else:
        b.transpose_conv(5, 3, 2, (2, 2), "SAME" if flags[0] else "VALID", flags[1], "RELU")
    b.conv(3, 3, 3, (1, 1), (1, 1), "SAME")
    return b.finish()


def _cuts(draw: st.DrawFn, size: int) -> list[int]:
    return sorted({0, size, *draw(st.lists(st.integers(1, max(size - 1, 1)), max_size=4))})


@st.composite
def _gather_case(draw: st.DrawFn) -> tuple[Graph, np.ndarray, Plan]:
    """A conv-gather-conv chain and a one-stage plan on random cuts, the stage starting at the gather or
    before it, in a drawn halo mode."""
    kind = draw(st.sampled_from(_GATHERS))
    h, w = draw(st.integers(3, 8)), draw(st.integers(3, 8))
    out = (draw(st.integers(h, 2 * h + 1)), draw(st.integers(w, 2 * w + 1)))
    g = _gather_chain(kind, h, w, out, (draw(st.booleans()), draw(st.booleans())), draw(st.integers(0, 9)))
    start = draw(st.integers(0, 1))
    oh, ow = g.tensors[g.ops[2].outputs[0]].shape[1:3]
    mode = draw(st.sampled_from(["recompute", "cache_w", "cache"]))
    stage = Stage(start, 3, _cuts(draw, oh), _cuts(draw, ow), {k: mode for k in range(start, 2)})
    plan = _plan(g, [stage], draw(st.booleans()))
    try:
        check_plan(g, plan)
    except PlanError:
        assume(False)
    x = np.random.default_rng(draw(st.integers(0, 9))).integers(-128, 128, (1, h, w, 3), dtype=np.int8)
    return g, x, plan


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(_gather_case())
def test_stages_holding_a_gather_replay_as_the_tile_loop(case):
    """A stage holding a resize (nearest, bilinear) or a transpose conv, on random cuts and halo modes:
    its runs replay (the gather's tile ops shown by their tables) and give the tile loop's bytes, arena
    and high-water mark."""
    g, x, plan = case
    ex = assert_batched_same(g, plan, x)
    start = plan.stages[0].start
    assert ex.replays[start] is not None, "the stage does not replay"
    assert not ex.replays[start][1].gathers, "a gather tile op not shown by its tables"


@pytest.mark.parametrize("kind", _GATHERS)
def test_recompute_stages_holding_a_gather_group_like_tiles_on_provenance_only(monkeypatch, kind):
    """A recompute stage holding a gather: its first run's walk on provenance walks one tile per group of
    like tiles (same geometry; no kernel runs there), and gives the tile loop's bytes, arena and
    high-water mark; a run whose recorded effect does not apply walks on values tile by tile (a gather
    does not batch), with the tile loop's bytes too."""
    g = _gather_chain(kind, 6, 6, (12, 12), (False, False))
    oh, ow = g.tensors[g.ops[2].outputs[0]].shape[1:3]
    plan = _plan(g, [Stage(1, 3, split_even(oh, 6), split_even(ow, 6))])
    check_plan(g, plan)
    x = _input(g)
    assert_batched_same(g, plan, x)
    ex = pe.PlanExecutor(g, plan)
    ex([x])
    grouped = set().union(*ex.stored.values())  # tiles stored with their group's first, not walked
    assert len(grouped) >= 4, "no like tiles grouped on provenance: the test would not exercise it"
    monkeypatch.setattr(ex.replays[1][0], "applies", lambda arena: False)  # every later run walks on values
    ref = pe.PlanExecutor(g, plan, batch=False)([x])
    got = ex([x])
    assert got.outputs[g.outputs[0]].tobytes() == ref.outputs[g.outputs[0]].tobytes()
    assert got.touched_high_water == ref.touched_high_water


def _off_tables(kernel, flip: bool = False):  # noqa: ANN001, ANN202
    """``kernel.tables`` with tile windows' row sources in reverse order (``flip``: inside the slice,
    other rows), or their weights in another dtype (value-neutral for a nearest resize); the whole
    image's (from origin 0 over the whole axis) as they are."""
    tables = kernel.tables

    def off(ax, out, origin):  # noqa: ANN001, ANN202
        src, used, weights = tables(ax, out, origin)
        if out == (0, kernel.out.shape[1 + ax]) and origin == 0:
            return src, used, weights
        if not flip:
            return src, used, weights.astype(np.int32)
        return (src[::-1] if ax == 0 else src), used, weights
    return off


def _fpn_like() -> tuple[Graph, Plan, np.ndarray]:
    """The nearest chain (4x4 -> 8x8) as one 4x4-tile stage from the resize on."""
    g = _gather_chain("nearest", 4, 4, (8, 8), (False, False))
    return g, _plan(g, [Stage(1, 3, [0, 2, 4, 6, 8], [0, 2, 4, 6, 8])]), _input(g)


def test_a_gather_tile_off_its_tables_is_caught_on_every_run(monkeypatch):
    """A resize whose tile tables are not the whole image's restricted (row sources reversed): its
    tile ops are not shown, run on their own slices every run (the first one's replay included) and
    differ from the whole image: a PlanError on the first run and on the next."""
    g, plan, x = _fpn_like()
    ex = pe.PlanExecutor(g, plan)
    monkeypatch.setattr(ex.kernels[1], "tables", _off_tables(ex.kernels[1], flip=True))
    for _ in range(2):
        with pytest.raises(PlanError, match=r"tile \(\d+, \d+\) of op 1 computes other bytes"):
            ex([x])
        assert ex.replays[1] is not None and ex.replays[1][1].gathers


def test_gather_tile_ops_not_shown_run_on_their_slices_every_run(monkeypatch):
    """Tile tables other than the whole image's but computing the same bytes (a nearest resize's empty
    weights in another dtype): the tile ops run on their own slices (one per like class) every run and
    the runs replay as the tile loop; a gather going wrong on tile slices after the first run is a
    PlanError on the next."""
    g, plan, x = _fpn_like()
    ex = pe.PlanExecutor(g, plan)
    kernel = ex.kernels[1]
    monkeypatch.setattr(kernel, "tables", _off_tables(kernel))
    want = pe.PlanExecutor(g, plan, batch=False)([x]).outputs
    for _ in range(2):
        got = ex([x]).outputs
        assert all(got[n].tobytes() == want[n].tobytes() for n in g.outputs)
    checks = ex.replays[1][1]
    assert checks.gathers and len(checks.gathers) < 16, "every tile op, or none, checked: no like classes"
    gather = kernel.gather
    whole = g.tensors[g.ops[1].inputs[0]].shape[1:3]
    monkeypatch.setattr(kernel, "gather", lambda x_, rows, cols: gather(x_, rows, cols) if x_.shape[1:3] == whole
                        else gather(x_, rows, cols) ^ np.int8(1))
    with pytest.raises(PlanError, match=r"tile \(\d+, \d+\) of op 1 computes other bytes"):
        ex([x])


def test_a_gather_slice_missing_a_source_is_an_input_error_as_in_the_tile_loop(monkeypatch):
    """Tile tables whose sources leave the tile's slice: the tile loop's ``window`` refuses it
    (InputError), and so does a batched run (the tile op, not shown, runs on its own slice)."""
    from tinypatch.errors import InputError

    g, plan, x = _fpn_like()
    for batch in (False, True):
        ex = pe.PlanExecutor(g, plan, batch=batch)
        tables = ex.kernels[1].tables
        monkeypatch.setattr(ex.kernels[1], "tables", lambda ax, out, origin, t=tables: (
            t(ax, out, origin) if origin == 0 else (t(ax, out, origin)[0] + 9, *t(ax, out, origin)[1:])))
        with pytest.raises(InputError, match="does not cover"):
            ex([x])


def _float_bilinear() -> Graph:
    """A float32 RESIZE_BILINEAR 5x4 -> 9x7 (half-pixel centres) on its own."""
    g = Graph("bilinear_f32")
    g.add_tensor(Tensor("x", (1, 5, 4, 2), "float32", None))
    g.add_tensor(Tensor("size", (2,), "int32", None, np.array([9, 7], np.int32)))
    g.add_tensor(Tensor("y", (1, 9, 7, 2), "float32", None))
    g.inputs, g.outputs = ["x"], ["y"]
    g.add_op(Op("RESIZE_BILINEAR", ["x", "size"], ["y"], {"half_pixel_centers": True}))
    return g


@pytest.mark.parametrize("kind", [*_GATHERS, "bilinear_float32"])
def test_gather_windows_are_the_whole_image_restricted(kind):
    """:meth:`~tinypatch.kernels.base.GatherOp.window` on a slice holding exactly the used sources of an
    output window gives the whole image's bytes there, for every row interval (float bilinear included:
    its weight is the whole image's, not the position minus a slice-relative source)."""
    if kind == "bilinear_float32":
        g, k = _float_bilinear(), 0
        x = np.random.default_rng(2).standard_normal((1, 5, 4, 2)).astype(np.float32)
    else:
        g, k = _gather_chain(kind, 5, 4, (9, 7), (False, True)), 1
        t = g.tensors[g.ops[k].inputs[2 if kind == "transpose_conv" else 0]]
        x = np.random.default_rng(2).integers(-128, 128, t.shape, dtype=np.int8)
    kernel = prepare(g, g.ops[k])
    oh, ow = kernel.out.shape[1:3]
    whole = kernel.window(x, (0, 0), ((0, oh), (0, ow)))
    cols = kernel.tables(1, (1, ow), 0)
    c = cols[0][cols[1]]
    for a in range(oh):
        for b in range(a + 1, oh + 1):
            rows = kernel.tables(0, (a, b), 0)
            r = rows[0][rows[1]]
            got = kernel.window(x[:, r.min(): r.max() + 1, c.min(): c.max() + 1], (int(r.min()), int(c.min())),
                                ((a, b), (1, ow)))
            assert got.tobytes() == whole[:, a:b, 1:].tobytes(), (a, b)


@pytest.mark.slow
@pytest.mark.parametrize("sram", ["32KB", "64KB"])
@pytest.mark.parametrize("name", ["fpn_detector_96_b1", "unet_64_b1"])
def test_converter_made_gather_stages_replay_as_the_tile_loop(tf_models, name, sram):
    """The converter-made FPN detector (nearest upsampling) and U-Net (transpose conv, bilinear) under
    their fewest-MAC plans within ``sram``, input outside the arena: the first and a later run give the
    tile loop's bytes, arena and high-water mark, and every stage holding a gather replays with each
    gather tile op shown by its tables."""
    from tinypatch import api, load
    from tinypatch.runtime.inputs import model_inputs

    path = tf_models / f"{name}.tflite"
    if not path.exists():
        pytest.skip(f"{path} was not built")
    g = load(str(path))
    (x,) = model_inputs(g, None)
    ex = assert_batched_same(g, api.plan(str(path), sram=sram, include_input=False).plan, x)
    gathers = [s for s, st_ in ex.stage_at.items() if any(ex.layout[k][2] for k in st_.info.tile_ops)]
    assert gathers, "no stage holds a gather: the test would not exercise them"
    assert all(ex.replays[s] is not None and not ex.replays[s][1].gathers for s in gathers)


@pytest.mark.parametrize("kind", _GATHERS)
def test_a_placement_overlap_in_a_gather_stage_is_the_tile_loops_plan_error(kind):
    """A cached stage holding a gather, its resize's (transpose conv's) line buffer placed over its
    cached map: the batched executor's first run (a walk on provenance) raises the tile loop's
    PlanError."""
    g = _gather_chain(kind, 6, 5, (11, 9), (True, False))
    oh, ow = g.tensors[g.ops[2].outputs[0]].shape[1:3]
    plan = _plan(g, [Stage(0, 3, split_even(oh, 3), split_even(ow, 2), {0: "cache", 1: "cache"})])
    for batch in (False, True):
        ex = pe.PlanExecutor(g, plan, batch=batch)
        name = g.ops[1].outputs[0]
        lines = pe.line_buffer_name(name)
        assert lines in ex.placement.offsets, "no line buffer: the test would not exercise the overlap"
        ex.placement.offsets[lines] = ex.placement.offsets[ex.buffer_of[name]]
        with pytest.raises(PlanError, match="collides"):
            ex([_input(g)])
