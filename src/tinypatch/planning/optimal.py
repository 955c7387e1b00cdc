"""Exact Pareto front of (peak SRAM, MACs) over multi-stage fused schedules with halo caching.

The schedule space:

* the operators are cut into segments at any positions (between blocks, inside a residual
  block, while an FPN's feature maps wait for their top-down path, after a graph output);
* each segment runs either layer by layer, or as one patch stage over a tile grid
  ``n_h x n_w`` (per axis ``1..max_grid`` tiles, or tiles of 4, 2 or 1 rows/columns of the
  stage output; MCUNetV2's single-stage space keeps to ``1..max_grid``) with one halo policy: "recompute" (MCUNetV2),
  "cache_w" or "cache" (see :class:`~tinypatch.planning.plan.Stage`), or the cached
  high-resolution prefix variants of :func:`_policy_variants`;
* or, where every op can (:mod:`tinypatch.planning.stream`), as a "stream" stage: ``n_h`` row
  strips (counts as above) computed column by column through window buffers.

Every tensor live across a cut exists whole whatever the segments around it do (a stage only
shrinks tensors made and consumed inside it), and a segment counts every tensor live at its
start as held whole throughout (a stage reads its inputs until its last tile; the others wait),
so a schedule's arena lower bound is the largest segment lower bound, and its MACs are the sum
over segments. A stage may produce a graph output as its last tensor, never swallow one or any
tensor used after it (:func:`~tinypatch.planning.tiles.stage_info`).
Every segment option is costed exactly (its liveness lower bound and border-clipped MACs) and
a label-setting dynamic program over the cuts keeps, at each cut, every Pareto-optimal (peak, MACs) pair of the
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

import numpy as np

from tinypatch.analysis.liveness import align_up, liveness, tensor_lifetimes
from tinypatch.analysis.macs import op_macs
from tinypatch.analysis.regions import axis_maps, is_global_reduce, split_even
from tinypatch.errors import BudgetError, PlanError
from tinypatch.ir import DTYPE_BYTES, Graph
from tinypatch.planning.memory import place_plan, plan_buffers
from tinypatch.planning.plan import Plan, Stage, fingerprint
from tinypatch.planning.stream import STREAM, column_maps, output_window
from tinypatch.planning.tile_arrays import axis_figures
from tinypatch.planning.tiles import first_local_op, input_maps, stage_info

POLICIES = ("recompute", "cache_w", "cache", STREAM)


@dataclass(frozen=True)
class Choice:
    """How one segment ``[start, end)`` runs: layer by layer (grid None) or as a patch stage."""

    start: int
    end: int
    grid: tuple[int, int] | None = None
    policy: str = "recompute"


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


def cut_positions(graph: Graph) -> list[int]:
    """Where segments may start and end: every position 0..n between operators."""
    return list(range(len(graph.ops) + 1))


def axis_counts(size: int, max_grid: int, strips: bool = True) -> list[int]:
    """Tile counts tried along an axis of ``size``: 1..max_grid, and (``strips``) tiles 4, 2 and 1 long."""
    counts = set(range(1, min(max_grid, size) + 1))
    if strips:
        counts |= {-(-size // 4), -(-size // 2), size}
    return sorted(counts)


def _grids(h: int, w: int, max_grid: int, strips: bool) -> list[tuple[int, int]]:
    return [(a, b) for a in axis_counts(h, max_grid, strips) for b in axis_counts(w, max_grid, strips)]


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
        self.buffer_of = live.tensor_buffer  # a RESHAPE output shares its input's buffer
        self._buffer_full = {b.name: align_up(b.size, alignment) for b in live.buffers}
        self.life = tensor_lifetimes(graph)
        self.producers = graph.producers()
        # tensors live across each position p (made before op p, live at op p): held full-size
        self.across: list[list[str]] = [[] for _ in range(self.n + 1)]
        for t, (s, e) in self.life.items():
            for p in range(self.producers[t] + 1 if t in self.producers else 0, e + 1):
                self.across[p].append(t)
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

    def held(self, tensors: list[str]) -> int:
        """Aligned bytes of the arena buffers holding ``tensors`` whole (aliases counted once)."""
        return sum(self._buffer_full[b] for b in {self.buffer_of[t] for t in tensors if t in self.buffer_of})


def _segment_options(c: _Costs, cuts: list[int], max_grid: int, policies: tuple[str, ...],
                     first_only: bool, progress: Callable[[int, int], None] | None = None,
                     ) -> dict[tuple[int, int], list[tuple[int, int, Choice]]]:
    """(a, b) -> [(lower bound, MACs, choice)] for every segment between two cuts."""
    g = c.g
    macs_prefix = np.concatenate([[0], np.cumsum(c.macs)])
    opts: dict[tuple[int, int], list[tuple[int, int, Choice]]] = {}
    for ia, a in enumerate(cuts):
        for b in cuts[ia + 1:]:
            lb = int(c.lbl_profile[a:b].max())
            opts[(a, b)] = [(lb, int(macs_prefix[b] - macs_prefix[a]), Choice(a, b))]
    for done, b in enumerate(cuts[1:], 1):
        if progress:
            progress(done, len(cuts) - 1)
        red = _accumulating_end(g, c, b)
        last_tile = b - 2 if red else b - 1
        s0 = last_tile + 1  # every [a, b) with s0 <= a <= last_tile is a legal stage
        while s0 > 0 and c.local[s0 - 1] and (s0 - 1 == last_tile or not _escapes(g, c, s0 - 1, b)):
            s0 -= 1
        if s0 > last_tile:
            continue
        starts = [a for a in cuts if s0 <= a <= last_tile]
        if first_only:
            starts = [a for a in starts if a == s0 and a == first_local_op(g)]
        if len(g.tensors[g.ops[last_tile].outputs[0]].shape) != 4 or not starts:
            continue
        try:
            info = stage_info(g, s0, b)
        except PlanError:  # e.g. the last output is read by nothing: no stage ends here
            continue
        raw: dict[tuple[int, int], list[tuple[int, int, int, int, str]]] = {(a, b): [] for a in starts}
        out = g.tensors[info.tiled]
        ops = info.ops
        idx = {k: i for i, k in enumerate(ops)}
        internal = [g.ops[k].outputs[0] for k in ops[:-1]]
        chan = np.array([g.tensors[t].shape[3] * DTYPE_BYTES[g.tensors[t].dtype] if t in c.in_arena else 0
                         for t in internal], np.int64)
        life = np.zeros((len(internal), len(ops)), bool)  # tile-local lifetime over the stage's steps
        for r, t in enumerate(internal):
            s, e = c.life[t]
            life[r, max(s - s0, 0): min(e - s0, len(ops) - 1) + 1] = True
        pm = np.array([-(-c.macs[k] // _pixels(g, k)) for k in ops], np.int64)  # see cost.plan_macs
        full_out = c.full(info.output)
        if red:  # int32 per-channel sums of the accumulated global average
            full_out += align_up(4 * out.shape[3], c.alignment)
        # what is live at cut a (the entering tensors, waiting maps, finished outputs) stays whole
        start_idx = np.array([idx[a] for a in starts])
        full_ins = np.array([c.held(c.across[a]) for a in starts], np.int64)
        start_rows = [[internal.index(t) for t in c.across[a] if t in internal] for a in starts]
        step_mask = np.arange(len(ops))[None, :] >= start_idx[:, None]
        variants = _policy_variants(policies, info.tile_ops, c.levels)
        streams = _stream_starts(c, starts, b) if STREAM in policies and not red else []
        per_axis = {}
        for ax in (0, 1):
            counts = axis_counts(out.shape[1 + ax], max_grid, not first_only)
            for cached in {v[1 + ax] for v in variants} | ({frozenset()} if streams and ax == 0 else set()):
                figs = axis_figures(g, info, c.maps[ax], [split_even(out.shape[1 + ax], k) for k in counts], cached)
                for cnt, fig in zip(counts, figs):
                    lens = np.array([fig.max_len.get(t, 0) for t in internal], np.int64)
                    tot = np.array([fig.total_len.get(k, 0) for k in ops], np.int64)
                    over = np.array([fig.overlap[k] for k in ops[:-1]], np.int64)
                    ext = np.array([fig.extent.get(t, 0) for t in internal], np.int64)
                    per_axis[(ax, cached, cnt)] = (fig.valid, lens, tot, over, ext)
        producer_idx = np.arange(len(internal))  # internal[r] is the output of ops[r]
        for pol, cache_h, cache_w in variants:
            persistent = np.array([ops[r] in cache_w for r in producer_idx], bool)
            line_rows = np.array([ops[r] in cache_h for r in producer_idx], bool)
            local_life = life & ~persistent[:, None]
            for nh, nw in _grids(out.shape[1], out.shape[2], max_grid, not first_only):
                ok_h, lh, th, oh, _ = per_axis[(0, cache_h, nh)]
                ok_w, lw, tw, _, ew = per_axis[(1, cache_w, nw)]
                if not (ok_h and ok_w):
                    continue
                sizes = -(-(lh * lw * chan) // c.alignment) * c.alignment
                stage_macs = np.concatenate([[0], np.cumsum(pm * th * tw)])
                kept = np.where(persistent, sizes, 0)
                if nw > 1:  # rows kept for the next tile row live in full-width line buffers
                    kept = kept + np.where(line_rows, -(-(oh * ew * chan) // c.alignment) * c.alignment, 0)
                tail = np.concatenate([np.cumsum(kept[::-1])[::-1], [0]])
                live = sizes @ local_life  # tile-local buffers live at each stage step
                corr = np.zeros((len(starts), len(ops)), np.int64)
                for r_a, rows in enumerate(start_rows):
                    for r in rows:  # the entering tensor is held full-size, not as a tile
                        corr[r_a] += sizes[r] * local_life[r]
                held = np.where(step_mask, live[None, :] - corr, np.iinfo(np.int64).min).max(axis=1)
                lbs = full_ins + full_out + held + tail[start_idx]
                stage_m = stage_macs[-1] - stage_macs[start_idx]
                for a, lb, m in zip(starts, lbs.tolist(), stage_m.tolist()):
                    raw[(a, b)].append((lb, m, nh, nw, pol))
        if streams:  # one-column tiles pulled through window buffers, rows recomputed per strip
            cols = list(range(out.shape[2] + 1))
            fig_w = axis_figures(g, info, c.maps[1], [cols], frozenset(ops[:-1]))[0]
            if fig_w.valid:
                tw = np.array([fig_w.total_len.get(k, 0) for k in ops], np.int64)
                rings = np.array([c.ring[k] for k in ops[:-1]], np.int64)
                s_idx = np.array([idx[a] for a in streams])
                s_full = np.array([full_ins[starts.index(a)] for a in streams], np.int64)
                for nh in axis_counts(out.shape[1], max_grid, not first_only):
                    ok_h, lh, th, _, _ = per_axis[(0, frozenset(), nh)]
                    if not ok_h:
                        continue
                    sizes = -(-(lh * rings * chan) // c.alignment) * c.alignment
                    tail = np.concatenate([np.cumsum(sizes[::-1])[::-1], [0]])
                    stage_macs = np.concatenate([[0], np.cumsum(pm * th * tw)])
                    lbs = s_full + full_out + tail[s_idx]
                    for a, lb, m in zip(streams, lbs.tolist(), (stage_macs[-1] - stage_macs[s_idx]).tolist()):
                        raw[(a, b)].append((lb, m, nh, out.shape[2], STREAM))
        for (a, b_), cands in raw.items():  # keep each segment's non-dominated options only
            if cands:
                keep = _pareto_filter(np.array([x[0] for x in cands]), np.array([x[1] for x in cands]))
                opts[(a, b_)].extend((cands[k][0], cands[k][1], Choice(a, b_, cands[k][2:4], cands[k][4]))
                                     for k in keep)
    return opts


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


def _policy_variants(policies: tuple[str, ...], ops: list[int], levels: list[int],
                     ) -> list[tuple[str, frozenset[int], frozenset[int]]]:
    """(name, ops cached along H, ops cached along W) for every policy a stage over ``ops`` may use.

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
        out.append(("recompute", none, none))
    if "cache_w" in policies:
        out.append(("cache_w", none, body))
    if "cache" in policies:
        out.append(("cache", body, body))
        for lv in levels:
            if ops[0] < lv < ops[-1] and "recompute" in policies:
                pre = frozenset(k for k in body if k < lv)
                out.append((f"cache<{lv}", pre, pre))
                if "cache_w" in policies:
                    out.append((f"cache_w>={lv}", none, body - pre))

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


def _escapes(graph: Graph, c: _Costs, k: int, b: int) -> bool:
    """Is an output of op ``k`` a graph output or read at or after op ``b`` (so no stage ending at
    ``b`` may hold op ``k`` before its last op)?"""
    return any(t in graph.outputs or c.life[t][1] >= b for t in graph.ops[k].outputs)


def _pareto_filter(peaks: np.ndarray, macs: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated (peak, MACs) pairs, sorted by peak."""
    order = np.lexsort((macs, peaks))
    keep, best = [], None
    for i in order:
        if best is None or macs[i] < best:
            keep.append(i)
            best = macs[i]
    return np.array(keep, np.int64)


def _dp(cuts: list[int], opts: dict[tuple[int, int], list[tuple[int, int, Choice]]]) -> list[tuple[int, int, tuple]]:
    """Label-setting DP: Pareto set of (max peak, sum MACs, choices) at the last cut."""
    labels: dict[int, list[tuple[int, int, tuple]]] = {cuts[0]: [(0, 0, ())]}
    for ib, b in enumerate(cuts[1:], 1):
        cand = []
        for a in cuts[:ib]:
            edge = opts.get((a, b))
            if not edge or a not in labels:
                continue
            ep = np.array([e[0] for e in edge])
            em = np.array([e[1] for e in edge])
            keep = _pareto_filter(ep, em)
            for lp, lm, lc in labels[a]:
                for k in keep:
                    cand.append((max(lp, int(ep[k])), lm + int(em[k]), lc + (edge[k][2],)))
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
        shape = graph.tensors[stage_info(graph, ch.start, ch.end).tiled].shape
        if ch.policy.startswith("cache<"):
            halo = {k: "cache" for k in range(ch.start, min(int(ch.policy[6:]), ch.end - 1))}
        elif ch.policy.startswith("cache_w>="):
            halo = {k: "cache_w" for k in range(max(int(ch.policy[9:]), ch.start), ch.end - 1)}

        elif ch.policy != "recompute":
            halo = {k: ch.policy for k in range(ch.start, ch.end - 1)}
        else:
            halo = {}
        stages.append(Stage(ch.start, ch.end, split_even(shape[1], ch.grid[0]), split_even(shape[2], ch.grid[1]), halo))
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
    cuts = cut_positions(graph)
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
