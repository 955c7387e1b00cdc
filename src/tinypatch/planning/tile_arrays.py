"""Vectorised per-axis tiling figures for the schedule search.

:func:`tiles.tile_axis` builds the per-tile spans the executor and the C generator walk;
the search only needs a few figures of each tiling (largest region per tensor, computed
length per op, kept halo, extent), for thousands of tilings. :func:`axis_figures` computes
the same propagation with numpy over all tiles at once; tests check that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinypatch.analysis.regions import TABLE_KINDS, AxisMap
from tinypatch.ir import Graph
from tinypatch.planning.tiles import StageInfo

_BIG = 1 << 40  # larger than any position; times the number of tilings still fits int64


@dataclass
class AxisFigures:
    """Figures of one tiling along one axis; ``valid`` is False when a cache cannot hold its halo."""

    max_len: dict[str, int]  # tensor -> largest region over tiles
    extent: dict[str, int]  # tensor -> length of the union of its regions
    total_len: dict[int, int]  # op -> computed output length summed over tiles
    overlap: dict[int, int]  # op -> most positions of its output kept for the next tile
    valid: bool
    reach: dict[str, int] = field(default_factory=dict)  # stage input -> see :func:`axis_figures`


def _span(m: AxisMap, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    empty = lo >= hi
    if m.kind == "identity":
        if m.in_size == 1:
            s, e = np.zeros_like(lo), np.ones_like(hi)
        else:
            s, e = lo, hi
    elif m.kind in TABLE_KINDS:
        s, e = m.table_span(lo, hi)
    else:
        raw_lo = (lo * m.stride if m.stride != 1 else lo) - m.pad
        raw_hi = (hi * m.stride if m.stride != 1 else hi) + (m.extent - m.pad - m.stride)  # (hi - 1) * stride - pad + extent
        s = np.minimum(np.maximum(raw_lo, 0), m.in_size)
        e = np.maximum(np.minimum(raw_hi, m.in_size), s)
    if not empty.any():
        return s, e
    return np.where(empty, 0, s), np.where(empty, 0, e)


def reads_all(m: AxisMap) -> bool:
    """Does every input position along ``m`` feed some output position (so tiles that compute all of
    an op's output, in any pieces, read all of its input)?"""
    p = np.arange(m.out_size, dtype=np.int64)
    s, e = _span(m, p, p + 1)
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    reach = np.maximum.accumulate(e)
    return bool(len(p)) and s[0] == 0 and bool((s[1:] <= reach[:-1]).all()) and reach[-1] == m.in_size


@dataclass
class AxisArrays:
    """:class:`AxisFigures` of several tilings, each figure an array over the tilings."""

    max_len: dict[str, np.ndarray]
    extent: dict[str, np.ndarray]
    total_len: dict[int, np.ndarray]
    overlap: dict[int, np.ndarray]
    valid: np.ndarray
    reach: dict[str, np.ndarray]

    def figures(self, g: int) -> AxisFigures:
        """The figures of tiling ``g``."""
        return AxisFigures({t: int(v[g]) for t, v in self.max_len.items()}, {t: int(v[g]) for t, v in self.extent.items()},
                           {k: int(v[g]) for k, v in self.total_len.items()},
                           {k: int(v[g]) for k, v in self.overlap.items()}, bool(self.valid[g]),
                           {t: int(v[g]) for t, v in self.reach.items()})


def axis_figures(graph: Graph, info: StageInfo, maps: dict[int, list[AxisMap | None]],
                 cut_lists: list[list[int]], cached: frozenset[int] | list[frozenset[int]]) -> list[AxisFigures]:
    """Figures of ``tile_axis(graph, info, axis, cuts, cached)`` for every ``cuts`` in ``cut_lists``
    (``cached``: one set for all, or one per tiling): see :func:`axis_arrays`."""
    arrays = axis_arrays(graph, info, maps, cut_lists, cached)
    return [arrays.figures(g) for g in range(len(cut_lists))]


def axis_arrays(graph: Graph, info: StageInfo, maps: dict[int, list[AxisMap | None]] | list[dict[int, list[AxisMap | None]]],
                cut_lists: list[list[int]], cached: frozenset[int] | list[frozenset[int]]) -> AxisArrays:
    """The figures of :func:`axis_figures` as arrays over the tilings.

    All tilings are propagated together: their tiles are concatenated and per-tiling
    reductions use ``reduceat`` over the group starts. ``maps``: the axis maps of every tiling,
    or a list with each tiling's (so that tilings of both axes go together; spans are taken per
    run of tilings with the same maps). ``reach`` gives, for each tensor the
    stage reads but does not make, the end ``e`` when the union of its tile regions is the
    interval ``[0, e)`` taken in tile order without a gap, else -1 (so ``reach == size``
    proves that the tiles read all of it).
    """
    per_tiling = cached if isinstance(cached, list) else [cached] * len(cut_lists)
    per_maps = maps if isinstance(maps, list) else [maps] * len(cut_lists)
    distinct = list(dict.fromkeys(per_tiling))  # the cached sets, each once
    set_of = {c: k for k, c in enumerate(distinct)}
    a = np.concatenate([np.array(c[:-1], np.int64) for c in cut_lists])
    b = np.concatenate([np.array(c[1:], np.int64) for c in cut_lists])
    sizes = [len(c) - 1 for c in cut_lists]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    gid = np.repeat(np.arange(len(cut_lists)), sizes)
    tile_set = np.array([set_of[c] for c in per_tiling])[gid]  # cached set of each tile's tiling
    first = np.zeros(len(a), bool)
    first[starts] = True
    base = starts[gid]
    n = len(a)
    index = np.arange(n)
    shift = gid * _BIG  # keeps running maxima inside each tiling
    lo: dict[str, np.ndarray] = {info.tiled: a}
    hi: dict[str, np.ndarray] = {info.tiled: b}
    total, overlap = {}, {}
    widened: dict[str, np.ndarray] = {}  # cached op output -> region length per tile
    valid = np.ones(len(cut_lists), bool)
    zeros = np.zeros(n, np.int64)
    parts = []  # (maps, first tile, end tile) of each run of tilings with the same maps
    for k, m in enumerate(per_maps):
        tile = int(starts[k])
        if parts and parts[-1][0] is m:
            parts[-1][2] = tile + sizes[k]
        else:
            parts.append([m, tile, tile + sizes[k]])
    for i in reversed(info.tile_ops):
        op = graph.ops[i]
        t_out = op.outputs[0]
        h_lo = lo.get(t_out, zeros)
        h_hi = hi.get(t_out, zeros)
        nonempty = h_lo < h_hi
        if not nonempty.all():
            h_lo, h_hi = np.where(nonempty, h_lo, 0), np.where(nonempty, h_hi, 0)
        lo[t_out], hi[t_out] = h_lo, h_hi
        o_lo = h_lo
        kept = zeros
        in_set = [i in c for c in distinct]
        if any(in_set):
            caches = np.array(in_set)[tile_set]  # tiles whose tiling caches op i
            up = np.maximum.accumulate(h_hi + shift) - shift  # furthest end computed so far in the tiling
            done = np.concatenate([[0], up[:-1]])
            done[first] = 0
            reuse = nonempty & (done > h_lo)
            o_lo = np.where(reuse, np.minimum(done, h_hi), h_lo)
            # a run of computed outputs restarts where a tile starts past everything computed so far;
            # reusing outputs from before the current run's start is impossible (they were dropped)
            used_before = np.concatenate([[-1], np.maximum.accumulate(np.where(nonempty, index, -1))[:-1]])
            restart = nonempty & ((used_before < base) | (h_lo > done))
            last = np.maximum.accumulate(np.where(restart, index, -1))
            prev = np.concatenate([[-1], last[:-1]])
            run_lo = np.where(prev >= base, h_lo[np.maximum(prev, 0)], 0)
            ok = ~reuse | (h_lo >= run_lo) | ~caches
            valid &= np.logical_and.reduceat(ok, starts)
            # the buffer holds a window sliding forward: from the least start this or a later
            # tile needs to the furthest end computed so far (see tiles.tile_axis)
            rev_lo = np.where(nonempty, h_lo, _BIG - 1)[::-1] + shift[::-1]
            down = np.minimum.accumulate(rev_lo)[::-1] - shift
            widened[t_out] = np.where(caches, np.where(nonempty, up - down, 0), h_hi - h_lo)
            kept = np.where(caches & nonempty, np.where(o_lo < h_hi, o_lo, up) - down, 0)
            o_lo = np.where(caches, o_lo, h_lo)
        total[i] = np.add.reduceat(h_hi - o_lo, starts)
        overlap[i] = np.maximum.reduceat(kept, starts)
        for j, t in enumerate(op.inputs):
            m = parts[0][0][i][j]
            if m is None:
                continue
            if len(parts) == 1:
                s_, e_ = _span(m, o_lo, h_hi)
            else:
                spans = [_span(pm[i][j], o_lo[p0:p1], h_hi[p0:p1]) for pm, p0, p1 in parts]
                s_, e_ = np.concatenate([x for x, _ in spans]), np.concatenate([y for _, y in spans])
            if t in lo:
                cur_lo, cur_hi = lo[t], hi[t]
                cur_empty, new_empty = cur_lo >= cur_hi, s_ >= e_
                lo[t] = np.where(cur_empty, s_, np.where(new_empty, cur_lo, np.minimum(cur_lo, s_)))
                hi[t] = np.where(cur_empty, e_, np.where(new_empty, cur_hi, np.maximum(cur_hi, e_)))
            else:
                lo[t], hi[t] = s_, e_
    max_len = {t: np.maximum.reduceat(widened.get(t, hi[t] - lo[t]), starts) for t in lo}
    made = {graph.ops[i].outputs[0] for i in info.tile_ops}
    reach = {}
    for t in lo:
        if t in made:
            continue
        ne = lo[t] < hi[t]
        top = np.maximum.accumulate(np.where(ne, hi[t], 0) + shift) - shift  # furthest end so far in the tiling
        before = np.where(first, 0, np.concatenate([[0], top[:-1]]))
        joined = np.logical_and.reduceat(~ne | (lo[t] <= before), starts)  # each region starts inside the union
        reach[t] = np.where(joined, np.maximum.reduceat(top, starts), -1)
    extent = {}
    for t in lo:
        ne = lo[t] < hi[t]
        top = np.maximum.reduceat(np.where(ne, hi[t], -_BIG), starts)
        bottom = np.minimum.reduceat(np.where(ne, lo[t], _BIG), starts)
        extent[t] = np.where(top > bottom, top - bottom, 0)
    return AxisArrays(max_len, extent, total, overlap, valid, reach)
