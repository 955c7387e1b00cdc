"""Exact Pareto front of (peak SRAM, MACs) over multi-stage fused schedules with halo caching.

The schedule space:

* the operators are cut at *clean cuts*, positions where exactly one activation tensor is
  live (between blocks, and inside blocks without a skip connection), into segments;
* each segment runs either layer by layer, or as one patch stage over a tile grid
  ``n_h x n_w`` (per axis ``1..max_grid`` tiles, or tiles of 4, 2 or 1 rows/columns of the
  stage output; MCUNetV2's single-stage space keeps to ``1..max_grid``) with one halo policy: "recompute" (MCUNetV2),
  "cache_w" or "cache" (see :class:`~tinypatch.planning.plan.Stage`), or the cached
  high-resolution prefix variants of :func:`_policy_variants`;
* or, where every op can (:mod:`tinypatch.planning.stream`), as a "stream" stage: ``n_h`` row
  strips (counts as above) computed column by column through window buffers.

At a clean cut only the cut tensor is live, so a schedule's arena lower bound is the largest
segment lower bound, and its MACs are the sum over segments. Every segment option is costed
exactly (its liveness lower bound and border-clipped MACs) and a label-setting dynamic
program over the cuts keeps, at each cut, every Pareto-optimal (peak, MACs) pair of the
schedules of the prefix; max and + are monotone, so the front at the last cut is the exact
front of the whole space. Tilings are computed once per segment end, policy and tile count
and shared by every segment start (the backward region propagation does not depend on where
the stage starts), which makes the search take seconds.

Peaks here are liveness lower bounds; :func:`optimal_front` then places each front plan in
an arena and reports the placed peak as well.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from tinypatch.analysis.liveness import align_up, liveness, tensor_lifetimes
from tinypatch.analysis.macs import op_macs
from tinypatch.analysis.regions import axis_maps, is_global_reduce, split_even
from tinypatch.errors import BudgetError, PlanError
from tinypatch.ir import DTYPE_BYTES, Graph
from tinypatch.planning.columns import column_maps, output_window
from tinypatch.planning.memory import place_plan, plan_buffers
from tinypatch.planning.plan import STREAM, Plan, Stage, fingerprint
from tinypatch.planning.tile_arrays import axis_figures
from tinypatch.planning.tiles import StageInfo, first_local_op, input_maps

POLICIES = ("recompute", "cache_w", "cache", STREAM)


@dataclass(frozen=True)
class HaloPolicy:
    """The halo modes of a stage's ops: ``mode`` for the ops it covers, "recompute" for the others.

    Uniform (every op but the last), or only the ops before ``before`` (the cached high-resolution
    prefix, printed ``cache<c``), or only those from ``after`` on (``cache_w>=c``).
    """

    mode: str  # "recompute", "cache_w", "cache" or "stream"
    before: int | None = None
    after: int | None = None

    def __str__(self) -> str:
        if self.before is not None:
            return f"{self.mode}<{self.before}"
        if self.after is not None:
            return f"{self.mode}>={self.after}"
        return self.mode

    def covers(self, k: int) -> bool:
        return (self.before is None or k < self.before) and (self.after is None or k >= self.after)

    def halo(self, start: int, end: int) -> dict[int, str]:
        """The :class:`~tinypatch.planning.plan.Stage` halo modes of ops ``[start, end)`` ("recompute" left out)."""
        if self.mode == "recompute":
            return {}
        return {k: self.mode for k in range(start, end - 1) if self.covers(k)}


RECOMPUTE = HaloPolicy("recompute")


@dataclass(frozen=True)
class Choice:
    """How one segment ``[start, end)`` runs: layer by layer (grid None) or as a patch stage."""

    start: int
    end: int
    grid: tuple[int, int] | None = None
    policy: HaloPolicy = RECOMPUTE


class Option(NamedTuple):
    """One way to run a segment: its arena lower bound and MACs."""

    lower_bound: int
    macs: int
    choice: Choice


class Variant(NamedTuple):
    """A halo policy with the stage ops it caches along H and along W."""

    policy: HaloPolicy
    cache_h: frozenset[int]
    cache_w: frozenset[int]


@dataclass
class Schedule:
    """One point of the front: its segments, figures and the plan that realises it."""

    choices: tuple[Choice, ...]
    lower_bound: int
    macs: int
    plan: Plan
    peak: int | None = None  # placed

    @property
    def label(self) -> str:
        parts = [f"[{c.start}:{c.end}] {c.grid[0]}x{c.grid[1]} {c.policy}" for c in self.choices if c.grid]
        return " + ".join(parts) or "layer-by-layer"


@dataclass
class FrontResult:
    baseline: Schedule
    front: list[Schedule]  # sorted by peak, MACs decreasing
    seconds: float
    options: int  # segment options costed
    space: dict[str, object] = field(default_factory=dict)

    def best_under_sram(self, sram: int) -> Schedule:
        fits = [s for s in self.front if (s.peak or s.lower_bound) <= sram]
        if not fits:
            best = min(s.peak or s.lower_bound for s in self.front)
            raise BudgetError(f"no schedule fits {sram} B of SRAM; the smallest achievable peak is {best} B", best)
        return min(fits, key=lambda s: (s.macs, s.peak or s.lower_bound))

    def best_under_overhead(self, max_overhead: float) -> Schedule:
        limit = self.baseline.macs * (1 + max_overhead) + 1e-9
        return min((s for s in self.front if s.macs <= limit), key=lambda s: (s.peak or s.lower_bound, s.macs))


def clean_cuts(graph: Graph) -> list[int]:
    """Positions 0..n where at most one activation tensor crosses (0 and n always)."""
    n = len(graph.ops)
    life = tensor_lifetimes(graph)
    producers = graph.producers()
    crossing = [0] * (n + 1)
    for t, (s, e) in life.items():
        first = producers[t] + 1 if t in producers else 0
        last = e + 1 if t not in graph.outputs else n + 1
        for p in range(first, min(last, n + 1)):
            if p <= e or t in graph.outputs:
                crossing[p] += 1
    return [p for p in range(n + 1) if p in (0, n) or crossing[p] <= 1]


def axis_counts(size: int, max_grid: int, strips: bool = True) -> list[int]:
    """Tile counts tried along an axis of ``size``: 1..max_grid, and (``strips``) tiles 4, 2 and 1 long."""
    counts = set(range(1, min(max_grid, size) + 1))
    if strips:
        counts |= {-(-size // 4), -(-size // 2), size}
    return sorted(counts)


class _Costs:
    """Per-op figures of a graph under one accounting."""

    def __init__(self, graph: Graph, include_input: bool, include_output: bool, alignment: int) -> None:
        self.g = graph
        self.n = len(graph.ops)
        self.alignment = alignment
        self.macs = np.array([op_macs(graph, op) for op in graph.ops], np.int64)
        live = liveness(graph, include_input, include_output, aliasing=True)
        self.lbl_profile = np.array(live.profile(alignment) or [0], np.int64)
        self.in_arena = set(live.tensor_buffer)
        self.life = tensor_lifetimes(graph)
        self.producers = graph.producers()
        self.local = [axis_maps(graph, op) is not None for op in graph.ops]
        self.maps = [input_maps(graph, [i for i, ok in enumerate(self.local) if ok], ax) for ax in (0, 1)]
        self._full = {t: align_up(graph.tensors[t].nbytes, alignment) for t in self.in_arena}
        # stream stages: which ops can pull columns, and each output's window width (0: not streamable)
        self.streams = [column_maps(graph, k) is not None for k in range(self.n)]
        self.ring = [output_window(graph, k) for k in range(self.n)]
        # positions just after a spatially strided op (where the resolution drops)
        self.levels = [i + 1 for i, op in enumerate(graph.ops) if self.local[i] and _downsamples(graph, op)]

    def full(self, tensor: str) -> int:
        return self._full.get(tensor, 0)


def _segment_options(c: _Costs, cuts: list[int], max_grid: int, policies: tuple[str, ...],
                     first_only: bool, progress: Callable[[int, int], None] | None = None,
                     ) -> dict[tuple[int, int], list[Option]]:
    """(a, b) -> every non-dominated :class:`Option` of the segment between clean cuts a and b:
    layer by layer, and for each end b the patch stages over tile grids (:func:`_tile_candidates`)
    and stream stages (:func:`_stream_candidates`) from every start a the stage can have."""
    opts = _layer_options(c, cuts)
    for done, b in enumerate(cuts[1:], 1):
        if progress:
            progress(done, len(cuts) - 1)
        stage = _stage_end(c, cuts, b, first_only)
        if stage is None:
            continue
        variants = _policy_variants(policies, stage.info.tile_ops, c.levels)
        streams = _stream_starts(c, stage.starts, b) if STREAM in policies and not stage.reduce else []
        table = _axis_table(c, stage, variants, bool(streams), max_grid, first_only)
        cands = _tile_candidates(c, stage, variants, table, max_grid, first_only)
        if streams:
            cands += _stream_candidates(c, stage, streams, table, max_grid, first_only)
        _add_pareto(opts, b, cands)
    return opts


def _layer_options(c: _Costs, cuts: list[int]) -> dict[tuple[int, int], list[Option]]:
    """Every segment run layer by layer: its lower bound is its ops' liveness profile."""
    macs_prefix = np.concatenate([[0], np.cumsum(c.macs)])
    opts: dict[tuple[int, int], list[Option]] = {}
    for ia, a in enumerate(cuts):
        for b in cuts[ia + 1:]:
            lb = int(c.lbl_profile[a:b].max())
            opts[(a, b)] = [Option(lb, int(macs_prefix[b] - macs_prefix[a]), Choice(a, b))]
    return opts


@dataclass
class _StageEnd:
    """The stages ending at cut ``b``, shared by all their starts: the longest one's tensors and
    per-step figures (rows of ``internal`` are the outputs of ``info.ops[:-1]``)."""

    b: int
    starts: list[int]  # clean cuts a where a stage [a, b) may start
    info: StageInfo  # of the longest stage [s0, b)
    reduce: bool  # ends with an accumulated global average
    internal: list[str]
    chan: np.ndarray  # bytes per pixel of each internal tensor in the arena (0: not in it)
    life: np.ndarray  # [internal, step]: tile-local lifetime over the stage's steps
    pixel_macs: np.ndarray  # MACs per output pixel of each op
    full_out: int  # the full-size stage output (and accumulator), aligned
    start_idx: np.ndarray  # step index of each start
    full_ins: np.ndarray  # the full-size tensor entering at each start, aligned
    start_rows: list[int | None]  # internal row of the tensor entering at each start (None: a graph input)
    step_mask: np.ndarray  # [start, step]: steps run by the stage from that start


def _stage_end(c: _Costs, cuts: list[int], b: int, first_only: bool) -> _StageEnd | None:
    """Geometry and figures of the stages ending at cut ``b`` (None when none can)."""
    g = c.g
    red = _accumulating_end(g, c, b)
    last_tile = b - 2 if red else b - 1
    s0 = last_tile + 1
    while s0 > 0 and c.local[s0 - 1]:
        s0 -= 1
    if s0 > last_tile:
        return None
    starts = [a for a in cuts if s0 <= a <= last_tile]
    if first_only:
        starts = [a for a in starts if a == s0 and a == first_local_op(g)]
    if len(g.tensors[g.ops[last_tile].outputs[0]].shape) != 4 or not starts:
        return None
    info = stage_info_relaxed(g, s0, b)
    out = g.tensors[info.tiled]
    ops = info.ops
    idx = {k: i for i, k in enumerate(ops)}
    internal = [g.ops[k].outputs[0] for k in ops[:-1]]
    chan = np.array([g.tensors[t].shape[3] * DTYPE_BYTES[g.tensors[t].dtype] if t in c.in_arena else 0
                     for t in internal], np.int64)
    life = np.zeros((len(internal), len(ops)), bool)
    for r, t in enumerate(internal):
        s, e = c.life[t]
        life[r, max(s - s0, 0): min(e - s0, len(ops) - 1) + 1] = True
    pm = np.array([c.macs[k] // _pixels(g, k) for k in ops], np.int64)
    full_out = c.full(info.output)
    if red:  # int32 per-channel sums of the accumulated global average
        full_out += align_up(4 * out.shape[3], c.alignment)
    # the tensor entering at cut a: output of op a-1 (or the graph inputs at a == 0)
    start_idx = np.array([idx[a] for a in starts])
    full_ins = np.array([c.full(g.ops[a - 1].outputs[0]) if a > 0 else sum(c.full(x) for x in g.inputs)
                         for a in starts], np.int64)
    start_rows = [internal.index(g.ops[a - 1].outputs[0]) if a > 0 and g.ops[a - 1].outputs[0] in internal
                  else None for a in starts]
    step_mask = np.arange(len(ops))[None, :] >= start_idx[:, None]
    return _StageEnd(b, starts, info, red, internal, chan, life, pm, full_out, start_idx, full_ins, start_rows,
                     step_mask)


class _AxisFigs(NamedTuple):
    """One axis of one tiling as arrays over the stage: see :class:`~tinypatch.planning.tile_arrays.AxisFigures`."""

    valid: bool
    max_len: np.ndarray  # per internal tensor
    total_len: np.ndarray  # per op
    overlap: np.ndarray  # per op but the last
    extent: np.ndarray  # per internal tensor


def _axis_table(c: _Costs, st: _StageEnd, variants: list[Variant], streams: bool, max_grid: int,
                first_only: bool) -> dict[tuple[int, frozenset[int], int], _AxisFigs]:
    """(axis, cached ops, tile count) -> figures of that tiling, for every variant's cached sets."""
    g, ops, internal = c.g, st.info.ops, st.internal
    shape = g.tensors[st.info.tiled].shape
    table = {}
    for ax in (0, 1):
        counts = axis_counts(shape[1 + ax], max_grid, not first_only)
        cached_sets = {(v.cache_h, v.cache_w)[ax] for v in variants} | ({frozenset()} if streams and ax == 0 else set())
        keys = [(cached, cnt) for cached in cached_sets for cnt in counts]  # all propagated together
        if not keys:
            continue
        figs = axis_figures(g, st.info, c.maps[ax], [split_even(shape[1 + ax], cnt) for _, cnt in keys],
                            [cached for cached, _ in keys])
        for (cached, cnt), fig in zip(keys, figs):
            table[(ax, cached, cnt)] = _AxisFigs(
                fig.valid, np.array([fig.max_len.get(t, 0) for t in internal], np.int64),
                np.array([fig.total_len.get(k, 0) for k in ops], np.int64),
                np.array([fig.overlap[k] for k in ops[:-1]], np.int64),
                np.array([fig.extent.get(t, 0) for t in internal], np.int64))
    return table


class Candidates(NamedTuple):
    """Patch stages ``[start, end)`` of one halo policy before the Pareto filter: one per tile grid
    and start (arrays [grid, start])."""

    starts: list[int]
    lower_bounds: np.ndarray
    macs: np.ndarray
    grids: list[tuple[int, int]]
    policy: HaloPolicy


def _ceil_to(x: np.ndarray, alignment: int) -> np.ndarray:
    return -(-x // alignment) * alignment


def _tile_candidates(c: _Costs, st: _StageEnd, variants: list[Variant],
                     table: dict[tuple[int, frozenset[int], int], _AxisFigs], max_grid: int,
                     first_only: bool) -> list[Candidates]:
    """Every start, policy variant and tile grid: the stage's lower bound (full-size input and output,
    the tile-local buffers live at each step, kept halos and line buffers) and MACs; all the grids
    of a variant at once (arrays [rows, columns, ...])."""
    ops = st.info.ops
    shape = c.g.tensors[st.info.tiled].shape
    counts_h = axis_counts(shape[1], max_grid, not first_only)
    counts_w = axis_counts(shape[2], max_grid, not first_only)
    grids = [(nh, nw) for nh in counts_h for nw in counts_w]
    wide = (np.array(counts_w) > 1)[None, :, None]  # line buffers only when a tile row has several tiles
    out: list[Candidates] = []
    for var in variants:
        fh = [table[(0, var.cache_h, n)] for n in counts_h]
        fw = [table[(1, var.cache_w, n)] for n in counts_w]
        valid = (np.array([f.valid for f in fh])[:, None] & np.array([f.valid for f in fw])[None, :]).ravel()
        if not valid.any():
            continue
        persistent = np.array([ops[r] in var.cache_w for r in range(len(st.internal))], bool)
        line_rows = np.array([ops[r] in var.cache_h for r in range(len(st.internal))], bool)
        local_life = st.life & ~persistent[:, None]
        h_len, w_len = np.stack([f.max_len for f in fh]), np.stack([f.max_len for f in fw])
        sizes = _ceil_to(h_len[:, None, :] * w_len[None, :, :] * st.chan, c.alignment)  # [nh, nw, internal]
        h_tot, w_tot = np.stack([f.total_len for f in fh]), np.stack([f.total_len for f in fw])
        stage_macs = np.cumsum(st.pixel_macs * h_tot[:, None, :] * w_tot[None, :, :], axis=-1)
        stage_macs = np.concatenate([np.zeros(stage_macs.shape[:2] + (1,), np.int64), stage_macs], axis=-1)
        kept = np.where(persistent, sizes, 0)
        if line_rows.any():  # rows kept for the next tile row live in full-width line buffers
            lines = _ceil_to(np.stack([f.overlap for f in fh])[:, None, :] * np.stack([f.extent for f in fw])[None]
                             * st.chan, c.alignment)
            kept = kept + np.where(line_rows & wide, lines, 0)
        tail = np.concatenate([np.cumsum(kept[..., ::-1], axis=-1)[..., ::-1],
                               np.zeros(kept.shape[:2] + (1,), np.int64)], axis=-1)
        live = sizes @ local_life.astype(np.int64)  # tile-local buffers live at each stage step
        held = np.empty(sizes.shape[:2] + (len(st.starts),), np.int64)
        for j, (i0, r) in enumerate(zip(st.start_idx.tolist(), st.start_rows)):
            steps = live[..., i0:]
            if r is not None:  # the entering tensor is held full-size, not as a tile
                steps = steps - sizes[..., r, None] * local_life[r, i0:]
            held[..., j] = steps.max(axis=-1)
        lbs = st.full_ins + st.full_out + held + tail[..., st.start_idx]
        stage_m = stage_macs[..., -1:] - stage_macs[..., st.start_idx]
        n = len(grids)
        out.append(Candidates(st.starts, lbs.reshape(n, -1)[valid], stage_m.reshape(n, -1)[valid],
                              [g for g, ok in zip(grids, valid) if ok], var.policy))
    return out


def _stream_candidates(c: _Costs, st: _StageEnd, streams: list[int],
                       table: dict[tuple[int, frozenset[int], int], _AxisFigs], max_grid: int,
                       first_only: bool) -> list[Candidates]:
    """Stream stages from the starts in ``streams``: one-column tiles pulled through window buffers,
    rows recomputed per strip."""
    g, ops = c.g, st.info.ops
    shape = g.tensors[st.info.tiled].shape
    cols = list(range(shape[2] + 1))
    fig_w = axis_figures(g, st.info, c.maps[1], [cols], frozenset(ops[:-1]))[0]
    if not fig_w.valid:
        return []
    idx = {k: i for i, k in enumerate(ops)}
    tw = np.array([fig_w.total_len.get(k, 0) for k in ops], np.int64)
    rings = np.array([c.ring[k] for k in ops[:-1]], np.int64)
    s_idx = np.array([idx[a] for a in streams])
    s_full = np.array([st.full_ins[st.starts.index(a)] for a in streams], np.int64)
    out: list[Candidates] = []
    for nh in axis_counts(shape[1], max_grid, not first_only):
        fh = table[(0, frozenset(), nh)]
        if not fh.valid:
            continue
        sizes = -(-(fh.max_len * rings * st.chan) // c.alignment) * c.alignment
        tail = np.concatenate([np.cumsum(sizes[::-1])[::-1], [0]])
        stage_macs = np.concatenate([[0], np.cumsum(st.pixel_macs * fh.total_len * tw)])
        lbs = s_full + st.full_out + tail[s_idx]
        out.append(Candidates(streams, lbs[None], (stage_macs[-1] - stage_macs[s_idx])[None], [(nh, shape[2])],
                              HaloPolicy(STREAM)))
    return out


def _add_pareto(opts: dict[tuple[int, int], list[Option]], b: int, cands: list[Candidates]) -> None:
    """Add each segment's non-dominated candidates to its options (in the order they were found)."""
    by_start: dict[int, list[tuple[int, int]]] = {}  # start -> (block, column) in the order found
    for i, blk in enumerate(cands):
        for j, a in enumerate(blk.starts):
            by_start.setdefault(a, []).append((i, j))
    for a, cols in by_start.items():
        lbs = np.concatenate([cands[i].lower_bounds[:, j] for i, j in cols])
        macs = np.concatenate([cands[i].macs[:, j] for i, j in cols])
        where = [(cands[i], k) for i, _ in cols for k in range(len(cands[i].grids))]
        opts[(a, b)].extend(Option(int(lbs[k]), int(macs[k]), Choice(a, b, where[k][0].grids[where[k][1]],
                                                                     where[k][0].policy))
                            for k in _pareto_filter(lbs, macs).tolist())


def _stream_starts(c: _Costs, starts: list[int], b: int) -> list[int]:
    """The starts ``a`` for which ``[a, b)`` can stream (see :mod:`tinypatch.planning.stream`)."""
    ok = []
    for a in starts:
        if b - a >= 2 and all(c.streams[k] for k in range(a, b)) and all(c.ring[k] for k in range(a, b - 1)):
            ok.append(a)
    return ok


def _downsamples(graph: Graph, op) -> bool:  # noqa: ANN001
    maps = axis_maps(graph, op)
    return maps is not None and any(m.out_size < m.in_size for m in maps)


def _policy_variants(policies: tuple[str, ...], ops: list[int], levels: list[int]) -> list[Variant]:
    """Every halo policy a stage over ``ops`` may use, with the ops it caches along H and W.

    Besides the uniform policies, for every ``c`` just after a strided op inside the stage:
    "cache<c" caches the ops before ``c`` and recomputes the rest (high-resolution layers,
    whose recomputed halos cost the most, keep theirs), and "cache_w>=c" keeps the column
    halos of the ops from ``c`` on and recomputes the high-resolution ones (whose buffers
    would cost the most to keep).
    """
    body = frozenset(ops[:-1])
    none: frozenset[int] = frozenset()
    out = []
    if "recompute" in policies:
        out.append(Variant(RECOMPUTE, none, none))
    if "cache_w" in policies:
        out.append(Variant(HaloPolicy("cache_w"), none, body))
    if "cache" in policies:
        out.append(Variant(HaloPolicy("cache"), body, body))
        for lv in levels:
            if ops[0] < lv < ops[-1] and "recompute" in policies:
                pre = frozenset(k for k in body if k < lv)
                out.append(Variant(HaloPolicy("cache", before=lv), pre, pre))
                if "cache_w" in policies:
                    out.append(Variant(HaloPolicy("cache_w", after=lv), none, body - pre))
    return out


def _pixels(graph: Graph, k: int) -> int:
    shape = graph.tensors[graph.ops[k].outputs[0]].shape
    return shape[1] * shape[2] if len(shape) == 4 and shape[1] * shape[2] else 1


def _accumulating_end(graph: Graph, c: _Costs, b: int) -> bool:
    """Does a stage ending at cut ``b`` end with a global average fed only by the op before it?"""
    if b < 2 or not c.local[b - 2] or not is_global_reduce(graph, graph.ops[b - 1]):
        return False
    src = graph.ops[b - 1].inputs[0]
    return c.producers.get(src) == b - 2 and c.life[src][1] == b - 1 and src not in graph.outputs


def stage_info_relaxed(graph: Graph, start: int, end: int) -> StageInfo:
    """Stage info of ``[start, end)`` for the shared backward propagation (legality not needed)."""
    ops = list(range(start, end))
    output = graph.ops[end - 1].outputs[0]
    reduce = end - 1 if end - 1 > start and is_global_reduce(graph, graph.ops[end - 1]) else None
    tiled = graph.ops[end - 1].inputs[0] if reduce is not None else output
    produced = {t for i in ops for t in graph.ops[i].outputs}
    inputs = []
    for i in ops:
        for t in graph.ops[i].inputs:
            if t and t not in produced and not graph.tensors[t].is_const and t not in inputs:
                inputs.append(t)
    return StageInfo(ops, output, inputs, [t for t in produced if t != output], tiled, reduce)


def _pareto_filter(peaks: np.ndarray, macs: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated (peak, MACs) pairs, sorted by peak (ties: the first found)."""
    order = np.lexsort((macs, peaks))
    m = np.asarray(macs)[order]
    if not len(m):
        return order.astype(np.int64)
    before = np.concatenate([[np.iinfo(np.int64).max], np.minimum.accumulate(m)[:-1]])  # least MACs so far
    return order[m < before].astype(np.int64)


def _dp(cuts: list[int], opts: dict[tuple[int, int], list[Option]]) -> list[tuple[int, int, tuple]]:
    """Label-setting DP: Pareto set of (max peak, sum MACs, choices) at the last cut."""
    labels: dict[int, list[tuple[int, int, tuple]]] = {cuts[0]: [(0, 0, ())]}
    for ib, b in enumerate(cuts[1:], 1):
        cand = []
        for a in cuts[:ib]:
            edge = opts.get((a, b))
            if not edge or a not in labels:
                continue
            ep = np.array([e.lower_bound for e in edge])
            em = np.array([e.macs for e in edge])
            keep = _pareto_filter(ep, em)
            for lp, lm, lc in labels[a]:
                for k in keep:
                    cand.append((max(lp, int(ep[k])), lm + int(em[k]), lc + (edge[k].choice,)))
        if cand:
            p = np.array([x[0] for x in cand])
            m = np.array([x[1] for x in cand])
            labels[b] = [cand[i] for i in _pareto_filter(p, m)]
    return labels.get(cuts[-1], [])


def to_plan(graph: Graph, choices: tuple[Choice, ...], include_input: bool, include_output: bool) -> Plan:
    stages = []
    for ch in choices:
        if ch.grid is None:
            continue
        shape = graph.tensors[stage_info_relaxed(graph, ch.start, ch.end).tiled].shape
        stages.append(Stage(ch.start, ch.end, split_even(shape[1], ch.grid[0]), split_even(shape[2], ch.grid[1]),
                            ch.policy.halo(ch.start, ch.end)))
    return Plan(graph.name, fingerprint(graph), stages, include_input, include_output)


def optimal_front(graph: Graph, include_input: bool = True, include_output: bool = True, max_grid: int = 8,
                  policies: tuple[str, ...] = POLICIES, single_stage: bool = False, alignment: int = 16,
                  place_front: bool = True, progress: Callable[[int, int], None] | None = None) -> FrontResult:
    """The exact (peak lower bound, MACs) front of the space in the module docstring.

    ``single_stage`` restricts it to MCUNetV2's space (one stage from the first spatial op);
    ``policies`` restricts the halo policies (e.g. ("recompute",)).
    """
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise PlanError(f"unknown halo policy {bad}; choose from {', '.join(POLICIES)}")
    t0 = time.perf_counter()
    c = _Costs(graph, include_input, include_output, alignment)
    cuts = clean_cuts(graph)
    # with single_stage every stage option starts at the first spatial op, so a path holds at most one
    opts = _segment_options(c, cuts, max_grid, policies, single_stage, progress)
    labels = _dp(cuts, opts)
    front = [Schedule(ch, p, m, to_plan(graph, ch, include_input, include_output)) for p, m, ch in labels]
    base_ch = (Choice(0, len(graph.ops)),)
    baseline = Schedule(base_ch, int(c.lbl_profile.max()), int(c.macs.sum()),
                        to_plan(graph, base_ch, include_input, include_output))
    if place_front:  # the reported peak is the placed arena; keep the schedules that stay Pareto-optimal
        for s in [baseline, *front]:
            s.peak = place_plan(plan_buffers(graph, s.plan), alignment).peak
        keep = _pareto_filter(np.array([s.peak for s in front]), np.array([s.macs for s in front]))
        front = [front[i] for i in keep]
    return FrontResult(baseline, front, time.perf_counter() - t0, sum(len(v) for v in opts.values()),
                       {"cuts": len(cuts), "policies": policies, "max_grid": max_grid, "single_stage": single_stage})
