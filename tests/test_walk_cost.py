"""What makes a plan executor's first run cheaper must not change what it computes: memoized tiling
figures equal the computed ones, an arena's reused views follow its claims, and the replay's
checks (:class:`~tinypatch.runtime.stage_replay.TiledChecks`) build the same batched groups
whether or not like tile ops are skipped before their like class is looked up, and those groups
cover every padded tile op once."""

from __future__ import annotations

import numpy as np
import pytest
from test_stage_replay import _covered

import tinypatch.runtime.plan_executor as pe
import tinypatch.runtime.stage_replay as sr
from tinypatch.errors import PlanError
from tinypatch.planning.memory import plan_buffers
from tinypatch.planning.rewrite import rewritten
from tinypatch.runtime.sim_arena import Arena, IdArena

MODELS = ["mlperf_ic_resnet8_int8", "mlperf_kws_dscnn_int8", "mlperf_vww_96_int8", "person_detect", "mcunet_vww"]


def _tilings(name: str):
    """Every stage tiling of the plans the host-speed benchmark runs on shared model ``name``
    (``--sram 32KB`` included), with the graph each plan runs on."""
    from conftest import model_path
    from test_plan_batching import _plan_kinds

    from tinypatch import load

    path = str(model_path(f"{name}.tflite"))
    g = load(path)
    for plan in _plan_kinds(path).values():
        graph = rewritten(g, plan)
        for st in plan_buffers(graph, plan).tilings:
            yield graph, st


def _groups(checks: sr.TiledChecks) -> list[tuple]:
    return [(grp.k, grp.pads, grp.tiles, grp.windows, grp.out) for grp in checks.groups]


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_memoized_tilings_and_reduced_checks_equal_the_computed_ones(name, monkeypatch):
    """Per stage of every benchmarked plan: each axis's memoized ``extent`` and ``overlap`` (asked twice)
    equal the union and halo computed from the regions, and :class:`TiledChecks` builds the same groups
    (the same batched calls, in the same order) as when every tile op is looked up in its like class."""
    for graph, st in _tilings(name):
        for axis in (st.h, st.w):
            for t in st.info.internal + [st.info.tiled]:
                spans = [r[t] for r in axis.regions if r[t][0] < r[t][1]]
                want = (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else (0, 0)
                assert axis.extent(t) == want and axis.extent(t) == want
            for k in st.info.tile_ops:
                want = max(s[k].out[0] - s[k].need[0] for s in axis.spans)
                assert axis.overlap(k) == want and axis.overlap(k) == want
        kernels = [None] * len(graph.ops)
        got = sr.TiledChecks(graph, kernels, st)
        with monkeypatch.context() as m:  # every exact tile row (column) counted as the first of its class
            m.setattr(sr, "_firsts", lambda kinds, spans, k: set(range(len(spans))))
            full = sr.TiledChecks(graph, kernels, st)
        assert got.usable == full.usable and _groups(got) == _groups(full)
        if not st.stream:  # strips compute whole rows: their columns are not groups
            _covered(graph, st, got)


@pytest.mark.parametrize("cls", [Arena, IdArena])
def test_reused_views_follow_the_claims(cls):
    """A view is made once per claim, shape and dtype: the same view while the claim stands, a view of
    the new bytes after the buffer is claimed elsewhere, and a request larger than the claim or of a
    freed buffer raises every time."""
    a = cls(256, 16)
    a.alloc("x", 0, 32)
    v = a.view("x", (1, 2, 2, 4), np.dtype(np.int8))
    assert a.view("x", (1, 2, 2, 4), np.dtype(np.int8)) is v
    v[...] = 7
    a.free("x")
    with pytest.raises(PlanError, match="not live"):
        a.view("x", (1, 2, 2, 4), np.dtype(np.int8))
    a.alloc("x", 64, 16)
    w = a.view("x", (1, 2, 2, 4), np.dtype(np.int8))
    assert w is not v and np.shares_memory(w, a.memory[64:80])
    for _ in range(2):
        with pytest.raises(PlanError, match="holds 16 bytes, 32 requested"):
            a.view("x", (1, 2, 4, 4), np.dtype(np.int8))


def _pixels(windows: list[tuple[int, int, int, int]]) -> set[tuple[int, int]]:
    return {(r, c) for r0, r1, c0, c1 in windows for r in range(r0, r1) for c in range(c0, c1)}


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_like_tiles_skip_read_and_write_what_their_tiles_would(name):
    """Per shadow-path stage of every benchmarked plan, :meth:`PlanExecutor._like_tiles` (made cheaper
    for the first run) against a tile-by-tile recomputation: tile (0, 0) and every tile whose row and
    column geometry (:func:`_axis_keys`) pair is new are walked; a stage whose rows carry nothing but
    lines (:meth:`_separable`) walks in its first rows taking lines (:meth:`_lined_rows`), and in tile
    row 0 unless one of those has every op computing (:meth:`_full_row`), every new geometry pair,
    in other rows exactly column 0 of each new row geometry and its forced tiles (a tile holding each
    op's largest region);
    the merged read windows cover exactly the pixels the skipped tiles read of each full-size tensor
    (where their op computes), the output windows exactly those they write; a run starts at
    each skipped tile whose left neighbour walks, and names per cached op its last column there with
    a region."""
    from conftest import model_path

    from tinypatch import load
    from tinypatch.runtime.inputs import model_inputs

    path = str(model_path(f"{name}.tflite"))
    g = load(path)
    checked = 0
    for plan in _plan_kinds_of(path):
        ex = pe.PlanExecutor(g, plan)
        ex(model_inputs(g, None))
        for start in ex.skips:
            st = ex.stage_at[start]
            skip, reads, outs, runs = pe.PlanExecutor(g, plan)._like_tiles(st)
            assert (skip, reads, outs) == ex.skips[start][:3]
            ops, gr = st.info.tile_ops, st.stage.grid
            rows = pe._axis_keys(ex.graph, ops, st.h.spans, ex.producers, True)
            cols = pe._axis_keys(ex.graph, ops, st.w.spans, ex.producers, True)
            tiles = [(i, j) for i in range(gr[0]) for j in range(gr[1])]
            assert skip <= set(tiles) and (0, 0) not in skip
            forced = ex._separable(st)
            lined = ex._lined_rows(st) if forced is not None else set()
            full = ex._full_row(st, lined) if forced is not None else None
            # rows walked at every column key: every row (keyed walk); separable: the lined rows, and tile
            # row 0 unless a lined row has every op computing (then row 0 walks column 0 as a new row key)
            keyed = range(gr[0]) if forced is None else sorted(lined | ({0} if full is None else set()))
            for i in keyed:  # a new geometry pair is a new key pair
                seen: set[tuple] = {(rows[r], cols[c]) for r in range(i) for c in range(gr[1])} if forced is None \
                    else set()
                for j in range(gr[1]):
                    assert (rows[i], cols[j]) in seen or (i, j) not in skip, (start, i, j)
                    seen.add((rows[i], cols[j]))
            if forced is not None:
                for k in ops:  # a tile holding each op's largest region is walked (its claims reach furthest)
                    if ex.graph.ops[k].outputs[0] != st.info.output:
                        hs, ws = ([sp[k].need[1] - sp[k].need[0] for sp in a.spans] for a in (st.h, st.w))
                        assert any(hs[i] == max(hs) and ws[j] == max(ws) and (i, j) not in skip for i, j in forced)
                new = {i for i in range(1, gr[0]) if rows[i] not in rows[:i]} | ({0} if full is not None else set())
                want = {(i, j) for i, j in tiles if i not in keyed and (j == 0 and i in new or (i, j) in forced)}
                assert {(i, j) for i, j in tiles if i not in keyed and (i, j) not in skip} == want
            last = st.info.tile_ops[-1]
            for t, windows in reads + [(None, outs)]:
                want_px: set[tuple[int, int]] = set()
                for k in st.info.tile_ops:
                    ns = [-1] if t is None else [n for n, u in enumerate(ex.graph.ops[k].inputs) if u == t]
                    if t is None and (k != last or st.info.reduce is not None):
                        continue
                    for i, j in skip:
                        sh, sw = st.h.spans[i][k], st.w.spans[j][k]
                        for n in ns:
                            if n >= 0 and not (sh.out[0] < sh.out[1] and sw.out[0] < sw.out[1]):
                                continue
                            rh, rw = (sh.out, sw.out) if n < 0 else (sh.reads[n], sw.reads[n])
                            want_px |= _pixels([(*rh, *rw)])
                assert _pixels(windows) == want_px, (start, t)
            for i, j in skip:
                first = j == 0 or (i, j - 1) not in skip
                assert ((i, j) in runs) == first
                if first:
                    end = next((c for c in range(j, gr[1]) if (i, c) not in skip), gr[1])
                    held = {k: [c for c in range(j, end) if st.w.spans[c][k].need[0] < st.w.spans[c][k].need[1]]
                            for k in ops if st.cached(k) and st.h.spans[i][k].need[0] < st.h.spans[i][k].need[1]}
                    want_last = {k: (i, cs[-1]) for k, cs in held.items() if cs}
                    assert runs[(i, j)].last == want_last
            checked += 1
    if name in ("mlperf_ic_resnet8_int8", "mcunet_vww"):
        assert checked, "no shadow-path stage: the test would not exercise _like_tiles"


def _plan_kinds_of(path: str):
    from test_plan_batching import _plan_kinds
    return _plan_kinds(path).values()
