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
the stage starts), which makes the search take seconds. On long graphs the search stays near
linear in the op count with the same front: layer-by-layer segments of any length are costed
from prefix sums (:func:`_dp`), and the starts of the stages ending at a cut are costed from the
latest backwards only until a proof shows that every earlier start is matched by running the
same ops layer by layer (:func:`_layer_wins`, :func:`_below_dominated`; with an instruction cost
model also on predicted instructions, :func:`_deficit_prefix`), so those stages are left out (they
are counted in no ``options`` figure).

Peaks here are liveness lower bounds; :func:`optimal_front` then places each front plan in
an arena and reports the placed peak as well.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from tinypatch.analysis.liveness import align_up, liveness, tensor_lifetimes
from tinypatch.analysis.macs import op_macs
from tinypatch.analysis.regions import axis_maps, is_global_reduce, nhwc_shape, split_even
from tinypatch.errors import BudgetError, PlanError
from tinypatch.ir import DTYPE_BYTES, Graph
from tinypatch.planning.columns import column_maps, output_window
from tinypatch.planning.latency import OBJECTIVES, CostModel, plan_calls
from tinypatch.planning.memory import place_plan, plan_buffers
from tinypatch.planning.plan import STREAM, Plan, Stage, fingerprint
from tinypatch.planning.tile_arrays import AxisFigures, axis_arrays, axis_figures, reads_all
from tinypatch.planning.tiles import StageInfo, first_local_op, input_maps, stage_info

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
    """One way to run a segment: its arena lower bound, MACs, predicted instructions and kernel calls
    (``cost``/``calls`` 0 without an instruction model)."""

    lower_bound: int
    macs: int
    choice: Choice
    cost: float = 0.0
    calls: int = 0


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
    insns: float | None = None  # predicted instructions (with a target's cost model)
    calls: int | None = None  # kernel calls of the generated code (with a cost model)

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
    objective: str = "macs"  # what the front trades against the peak: "macs" or predicted "instructions"
    model: CostModel | None = None  # the target's instruction cost model, if any

    def key(self, s: Schedule) -> tuple:
        """The objective of ``s``, lower is better: predicted instructions then fewer kernel calls, or
        MACs then (with a cost model) predicted instructions."""
        if self.objective == "instructions":
            return (round(s.insns or 0.0), s.calls or 0)
        return (s.macs, round(s.insns or 0.0))

    def best_under_sram(self, sram: int) -> Schedule:
        fits = [s for s in self.front if (s.peak or s.lower_bound) <= sram]
        if not fits:
            best = min(s.peak or s.lower_bound for s in self.front)
            raise BudgetError(f"no schedule fits {sram} B of SRAM; the smallest achievable peak is {best} B", best)
        return min(fits, key=lambda s: (*self.key(s), s.peak or s.lower_bound))

    def cheaper_nearby(self, chosen: Schedule, more: float = 0.05, saving: float = 0.10) -> Schedule | None:
        """The schedule a little above ``chosen``'s peak that saves much of the objective, if any: the
        least objective (:meth:`key`) among schedules whose peak is at most ``more`` (5%) above
        ``chosen``'s and whose MACs or predicted instructions are at least ``saving`` (10%) below
        (the least-peak choice can cost far more work for a few bytes; ``plan`` names this one)."""
        def peak(s: Schedule) -> int:
            return s.peak or s.lower_bound

        limit, now = peak(chosen) * (1 + more), self.key(chosen)[0]
        options = [s for s in self.front if peak(s) <= limit and self.key(s)[0] <= now * (1 - saving) < now]
        return min(options, key=lambda s: (*self.key(s), peak(s)), default=None)

    def best_under_overhead(self, max_overhead: float) -> Schedule:
        limit = self.baseline.macs * (1 + max_overhead) + 1e-9
        return min((s for s in self.front if s.macs <= limit), key=lambda s: (s.peak or s.lower_bound, s.macs,
                                                                                 *self.key(s)))


def cut_positions(graph: Graph) -> list[int]:
    """Where segments may start and end: every position 0..n between operators."""
    return list(range(len(graph.ops) + 1))


def axis_counts(size: int, max_grid: int, strips: bool = True) -> list[int]:
    """Tile counts tried along an axis of ``size``: 1..max_grid, and (``strips``) tiles 4, 2 and 1 long."""
    counts = set(range(1, min(max_grid, size) + 1))
    if strips:
        counts |= {-(-size // 4), -(-size // 2), size}
    return sorted(counts)


class _Costs:
    """Per-op figures of a graph under one accounting."""

    def __init__(self, graph: Graph, include_input: bool, include_output: bool, alignment: int,
                 model: CostModel | None = None, by_cost: bool = False) -> None:
        self.g = graph
        self.by_cost = by_cost  # the second objective is predicted instructions, not MACs
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
        self.users = graph.consumers()
        self.ring = [output_window(graph, k, self.users) for k in range(self.n)]
        # positions just after a spatially strided op (where the resolution drops)
        self.levels = [i + 1 for i, op in enumerate(graph.ops) if self.local[i] and _downsamples(graph, op)]
        # predicted instructions per computed pixel, row and call of each op (tiled, and in a stream stage)
        self.model = model
        zero = np.zeros(self.n)
        self.rates = self.stream_rates = (zero,) * 6
        if model is not None:
            self.rates, self.stream_rates = (tuple(np.array(v, float) for v in zip(
                *[tuple(model.op_rates(graph, k, stream).__dict__.values()) for k in range(self.n)]))
                for stream in (False, True))
        # layer-by-layer runs [a, b): MACs and predicted instructions as prefix sums
        self.macs_prefix = np.concatenate([[0], np.cumsum(self.macs)])
        self.cost_prefix = _layer_cost_prefix(self)
        self.held_across = np.array([self.held(ts) for ts in self.across], np.int64)
        # stage starts: op j blocks a stage ending at b when it is not local or its output is used at or after b
        used_to = [max([self.life[t][1] if t not in graph.outputs else self.n for t in op.outputs], default=self.n)
                   for op in graph.ops]
        self.used_to = np.array(used_to, np.int64)
        self.local_arr = np.array(self.local, bool)
        # ops that may not be proven to compute all of their output in every tiling (_below_dominated)
        covers = [self.local[k] and bool(self.users.get(op.outputs[0])) and all(
            reads_all(m) for ax in (0, 1) for m in self.maps[ax][k] if m is not None) for k, op in enumerate(graph.ops)]
        self.partial_prefix = np.concatenate([[0], np.cumsum(~np.array(covers, bool))])
        self.deficit_prefix = _deficit_prefix(self)

    def op_cost(self, ops: list[int] | np.ndarray, pixels: np.ndarray, rows: np.ndarray, calls: np.ndarray | int,
                rem: tuple[np.ndarray, np.ndarray] | None = None, copy: np.ndarray | int = 0,
                stream: bool = False) -> np.ndarray:
        """Predicted instructions of ``ops`` computing these pixels and rows in these calls, with ``rem``
        pixels left over from pairs and quads of a row (default: every pixel) and ``copy`` halo bytes
        moved (0 without a model)."""
        pix, row, call, rem2, rem4, cp = self.stream_rates if stream else self.rates
        r2, r4 = rem if rem is not None else (pixels, pixels)
        return (pix[ops] * pixels + row[ops] * rows + call[ops] * calls + rem2[ops] * r2 + rem4[ops] * r4
                + cp[ops] * copy)

    def full(self, tensor: str) -> int:
        return self._full.get(tensor, 0)

    def held(self, tensors: list[str]) -> int:
        """Aligned bytes of the arena buffers holding ``tensors`` whole (aliases counted once)."""
        return sum(self._buffer_full[b] for b in {self.buffer_of[t] for t in tensors if t in self.buffer_of})


def _segment_options(c: _Costs, cuts: list[int], max_grid: int, policies: tuple[str, ...],
                     first_only: bool, progress: Callable[[int, int], None] | None = None,
                     ) -> dict[tuple[int, int], list[Option]]:
    """(a, b) -> the non-dominated :class:`Option` of the segment between cuts a and b: one op run
    layer by layer (longer layer-by-layer runs are sums of these, costed in :func:`_dp` from prefix
    sums), and for each end b the patch stages over tile grids (:func:`_tile_candidates`) and
    stream stages (:func:`_stream_candidates`) from the starts a the stage can have.

    Ends where :func:`_layer_wins` proves that no stage beats layer by layer are skipped. Otherwise
    the stages ending at b are costed from the latest starts backwards, in a window as long as the
    one that settled the end before (growing 4x at a time; all the starts once it would hold half
    of them), until :func:`_below_dominated` proves
    that every stage from an earlier start is matched by running its ops layer by layer (then
    those starts are left out: the front is unchanged)."""
    opts = _layer_options(c)
    width = _WINDOW  # the window that settled the last end: the next one starts there
    for done, b in enumerate(cuts[1:], 1):
        if progress:
            progress(done, len(cuts) - 1)
        span = _stage_span(c, b)
        if span is None:
            continue
        s0, last = span
        if not first_only and _layer_wins(c, b, s0, last):
            continue
        while True:
            lo = s0 if first_only or last + 1 - s0 < 2 * width else last + 1 - width  # half or more: all
            stage = _stage_end(c, cuts, b, first_only, s0, lo)
            if stage is None:
                break
            variants = _policy_variants(policies, stage.info.tile_ops, c.levels)
            streams = _stream_starts(c, stage.starts, b) if STREAM in policies and not stage.reduce else []
            table, blocks = _axis_table(c, stage, variants, bool(streams), max_grid, first_only)
            cands = _tile_candidates(c, stage, variants, blocks, max_grid, first_only)
            covered = all(f.covers for f in table.values() if f.valid)
            if streams:
                more, cols_cover = _stream_candidates(c, stage, streams, table, max_grid, first_only)
                cands += more
                covered = covered and cols_cover
            if lo == s0 or _below_dominated(c, stage, cands, covered, s0, STREAM in policies):
                _add_pareto(opts, b, cands, c.by_cost)
                width = max(_WINDOW, last + 1 - lo)
                break
            width *= 4
    return opts


_WINDOW = 2  # ops in the shortest window of stage starts tried (see _segment_options)
_ROUNDING = 1e-9  # relative: predicted instructions this close are equal (float sums in different orders)


def _layer_wins(c: _Costs, b: int, s0: int, last: int) -> bool:
    """Is every stage ending at ``b`` matched by its ops run layer by layer, on figures known before any
    tiling (so the search can skip ``b``)?

    A stage ``[a, b)`` holds what is live at ``a`` and its output whole, so its lower bound is at least
    ``held(a) + full(output)``; if that reaches the layer-by-layer bound of ``[a, b)`` for every
    start, the peak is matched. Its tiles compute all of the output, and when every op in
    ``[s0, b)`` has a reader and reads all of its inputs (:func:`_below_dominated`), every op
    computes all of its output at least once: no fewer MACs, and with an instruction model no fewer
    predicted instructions when no op of ``[s0, b)`` can cost less in a stage (:func:`_deficit_prefix`).
    Not for a stage ending with an accumulated average (its own MACs are not counted per tile)."""
    if last != b - 1 or c.partial_prefix[b] - c.partial_prefix[s0]:
        return False
    if c.deficit_prefix is None or c.deficit_prefix[b] - c.deficit_prefix[s0] > 0:
        return False
    out = c.full(c.g.ops[b - 1].outputs[0])
    lbl = np.maximum.accumulate(c.lbl_profile[s0:b][::-1])[::-1][:last + 1 - s0]  # layer-by-layer bound of [a, b)
    return bool((c.held_across[s0:last + 1] + out >= lbl).all())


def _below_dominated(c: _Costs, st: _StageEnd, cands: list[Candidates], covered: bool, s0: int,
                     streams: bool) -> bool:
    """Is every patch or stream stage ``[a, b)`` with ``s0 <= a < k`` (``k``: the first start of
    ``st``) matched, peak and MACs both no higher, by running ``[a, b)`` layer by layer?

    Such a stage never changes the front: the DP's Pareto filter keeps the layer-by-layer segment
    ahead of it on a tie. The proof, for a stage of tiling and halo policy (G, V) from ``a``:

    * Peak. Its lower bound is what is live at ``a`` held whole, plus the full-size output, plus the
      most tile buffers live at one step from ``a`` on, plus the kept halos of its ops; the last two
      can only grow when the stage starts earlier, so the bound is at least
      ``held(a) + (lb_k - held(k))`` where ``lb_k`` is the bound of the same (G, V) from ``k`` (for
      stream stages, window buffers likewise). If ``held(a)`` plus the least ``lb_k - held(k)`` over
      all (G, V) reaches the layer-by-layer bound of ``[a, b)`` for every such ``a``, the peak is
      matched. A (G, V) valid from ``a`` is valid from ``k`` (validity is checked op by op), so
      the least over the candidates from ``k`` covers every candidate from ``a``.
    * MACs. From ``k`` each candidate must cost at least the layer-by-layer MACs of ``[k, b)``.
      For the ops before ``k``: the tiles of every tiling read all of each tensor the ops from
      ``k`` read of them (``covered``: gapless regions from 0 to the full size on both axes), and
      every op in ``[s0, k)`` has a reader and reads all of its inputs once all of its output is
      computed (:func:`~tinypatch.planning.tile_arrays.reads_all`). By induction down from ``k``,
      every op in ``[a, k)`` computes all of its output at least once over the tiles, so it costs
      at least its MACs (per output pixel rounded up, see :func:`_stage_end`).
    * Predicted instructions (0 for both without a cost model). From ``k`` each candidate must cost at
      least layer by layer's instructions of ``[k, b)`` plus what the ops of ``[s0, k)``, computing all
      of their output, may cost less in a stage than layer by layer (:func:`_deficit_prefix`; no
      bound with a negative coefficient). Kernel calls: a stage makes at least one per op.

    Stream stages from ``a`` need every op in ``[a, b)`` to stream, so they exist only when
    those from ``k`` do, given at least two ops from ``k`` (otherwise this answers False).
    """
    k = st.starts[0]
    if c.deficit_prefix is None or not covered or c.partial_prefix[k] - c.partial_prefix[s0]:
        return False
    if streams and not st.reduce and st.b - k < 2:
        return False
    lbl_macs = int(c.macs_prefix[st.b] - c.macs_prefix[k])
    lbl_cost = c.cost_prefix[st.b] - c.cost_prefix[k] + (c.deficit_prefix[k] - c.deficit_prefix[s0])
    lbl_cost -= _ROUNDING * abs(lbl_cost)  # sums in another order: equal costs may differ by a few ulps
    least = None
    for blk in cands:
        if blk.starts[0] != k:
            continue
        if (not c.by_cost and (blk.macs[:, 0] < lbl_macs).any()) or (blk.cost[:, 0] < lbl_cost).any():
            return False
        low = int(blk.lower_bounds[:, 0].min()) - int(c.held_across[k])
        least = low if least is None else min(least, low)
    if least is None:  # no stage from k, so none from earlier starts
        return True
    lbl = np.maximum.accumulate(c.lbl_profile[s0:st.b][::-1])[::-1][:k - s0]  # layer-by-layer bound of [a, b)
    return bool((c.held_across[s0:k] + least >= lbl).all())


def _deficit_prefix(c: _Costs) -> np.ndarray | None:
    """Without a cost model, zeros. With one, prefix sums over the ops of how many predicted instructions
    less than layer by layer an op that computes all of its output may cost in a tile or stream stage
    (what the stage figures the search may not compute can hide: :func:`_below_dominated`); None when a
    coefficient is negative, so that no such bound exists.

    Computing all of its output, an op's tiles cover at least its ``H x W`` pixels in at least ``H``
    rows and one call (stream: ``H x W`` pixels, each a row, in at least ``W`` calls); its left-over
    pixels and halo copies cost at least 0, which layer by layer's left-over pixels may exceed.
    """
    if c.model is None:
        return np.zeros(c.n + 1)
    if any((r < 0).any() for r in (*c.rates, *c.stream_rates)):
        return None
    g = c.g
    shapes = [g.tensors[op.outputs[0]].shape for op in g.ops]
    hw = np.array([_pixels(g, k) for k in range(c.n)], float)
    h = np.array([s[1] if len(s) == 4 else 1 for s in shapes], float)
    w = np.array([s[2] if len(s) == 4 else 1 for s in shapes], float)
    pix, row, call = c.rates[:3]
    least = pix * hw + row * h + call
    spix, srow, scall, srem2, srem4 = c.stream_rates[:5]
    streamed = (spix + srow + srem2 + srem4) * hw + scall * w
    least = np.where(np.array(c.streams, bool), np.minimum(least, streamed), least)
    return np.concatenate([[0.0], np.cumsum(np.maximum(_layer_costs(c) - least, 0.0))])


def _layer_costs(c: _Costs) -> np.ndarray:
    """Predicted instructions of each op run layer by layer (zeros without a model)."""
    g = c.g
    ops = np.arange(c.n)
    pixels = np.array([_pixels(g, k) for k in ops], float)
    rows = np.array([s[1] if len(s) == 4 else 1 for s in (g.tensors[op.outputs[0]].shape for op in g.ops)], float)
    widths = np.array([s[2] if len(s) == 4 else 1 for s in (g.tensors[op.outputs[0]].shape for op in g.ops)])
    rem = (rows * (widths % 2), rows * (widths % 4))
    return c.op_cost(ops, pixels, rows, 1, rem)


def _layer_cost_prefix(c: _Costs) -> np.ndarray:
    """Predicted instructions of ops ``[0, k)`` run layer by layer, for every k (zeros without a model)."""
    return np.concatenate([[0.0], np.cumsum(_layer_costs(c))])


def _layer_options(c: _Costs) -> dict[tuple[int, int], list[Option]]:
    """Every op run on its own layer by layer: its lower bound is its liveness profile."""
    return {(k, k + 1): [Option(int(c.lbl_profile[k]), int(c.macs[k]), Choice(k, k + 1),
                                float(c.cost_prefix[k + 1] - c.cost_prefix[k]), 1)] for k in range(c.n)}


def _stage_span(c: _Costs, b: int) -> tuple[int, int] | None:
    """(s0, last): every ``[a, b)`` with ``s0 <= a <= last`` may be a stage as far as its ops go (local,
    no output used after it but the last); None when no stage ends at ``b``."""
    red = _accumulating_end(c.g, c, b)
    last = b - 2 if red else b - 1
    if last < 0 or not c.local[last]:
        return None
    # op j < last blocks the starts up to j when it is not local or its output escapes past b
    blocked = np.flatnonzero((c.used_to[:last] >= b) | ~c.local_arr[:last])
    return (int(blocked[-1]) + 1 if len(blocked) else 0), last


@dataclass
class _StageEnd:
    """The stages ending at cut ``b``, shared by all their starts: the longest one's tensors and
    per-step figures (rows of ``internal`` are the outputs of ``info.ops[:-1]``)."""

    b: int
    starts: list[int]  # cuts a where a stage [a, b) may start
    info: StageInfo  # of the longest stage [s0, b)
    reduce: bool  # ends with an accumulated global average
    internal: list[str]
    chan: np.ndarray  # bytes per pixel of each internal tensor in the arena (0: not in it)
    chan_all: np.ndarray  # bytes per pixel of each internal tensor
    life: np.ndarray  # [internal, step]: tile-local lifetime over the stage's steps
    pixel_macs: np.ndarray  # MACs per output pixel of each op
    full_out: int  # the full-size stage output (and accumulator), aligned
    start_idx: np.ndarray  # step index of each start
    full_ins: np.ndarray  # what is live at each start (entering tensors, waiting maps, outputs) held whole, aligned
    start_rows: list[list[int]]  # internal rows of the tensors live at each start (held whole, not as tiles)
    step_mask: np.ndarray  # [start, step]: steps run by the stage from that start
    inner: list[str]  # stage inputs made by ops that may start a longer stage ending at b


def _stage_end(c: _Costs, cuts: list[int], b: int, first_only: bool, s0: int, lo: int) -> _StageEnd | None:
    """Geometry and figures of the stages ending at cut ``b`` that start at ``lo`` or later (None when
    none can); ``s0`` is the earliest start (:func:`_stage_span`). The figures of a start do not
    depend on ``lo``: regions propagate backwards from ``b``."""
    g = c.g
    red = _accumulating_end(g, c, b)
    last_tile = b - 2 if red else b - 1
    starts = cuts[bisect_left(cuts, lo):bisect_right(cuts, last_tile)]
    if first_only:
        starts = [a for a in starts if a == s0 and a == first_local_op(g)]
    if len(g.tensors[g.ops[last_tile].outputs[0]].shape) != 4 or not starts:
        return None
    earliest, s0 = s0, lo
    try:
        info = stage_info(g, s0, b, c.users, c.local)
    except PlanError:  # e.g. the last output is read by nothing: no stage ends here
        return None
    inner = [t for t in info.inputs if c.producers.get(t, -1) >= earliest]
    out = g.tensors[info.tiled]
    ops = info.ops
    idx = {k: i for i, k in enumerate(ops)}
    internal = [g.ops[k].outputs[0] for k in ops[:-1]]
    chan = np.array([g.tensors[t].shape[3] * DTYPE_BYTES[g.tensors[t].dtype] if t in c.in_arena else 0
                     for t in internal], np.int64)
    chan_all = np.array([g.tensors[t].shape[3] * DTYPE_BYTES[g.tensors[t].dtype] for t in internal], np.int64)
    life = np.zeros((len(internal), len(ops)), bool)
    for r, t in enumerate(internal):
        s, e = c.life[t]
        life[r, max(s - s0, 0): min(e - s0, len(ops) - 1) + 1] = True
    pm = np.array([-(-c.macs[k] // _pixels(g, k)) for k in ops], np.int64)  # see cost.plan_macs
    full_out = c.full(info.output)
    if red:  # int32 per-channel sums of the accumulated global average
        full_out += align_up(4 * out.shape[3], c.alignment)
    # what is live at cut a (the entering tensors, waiting maps, finished outputs) stays whole
    start_idx = np.array([idx[a] for a in starts])
    full_ins = c.held_across[starts]
    start_rows = [[internal.index(t) for t in c.across[a] if t in internal] for a in starts]
    step_mask = np.arange(len(ops))[None, :] >= start_idx[:, None]
    return _StageEnd(b, starts, info, red, internal, chan, chan_all, life, pm, full_out, start_idx, full_ins,
                     start_rows, step_mask, inner)


class _AxisFigs(NamedTuple):
    """One axis of one tiling as arrays over the stage: see :class:`~tinypatch.planning.tile_arrays.AxisFigures`."""

    valid: bool
    max_len: np.ndarray  # per internal tensor
    total_len: np.ndarray  # per op
    overlap: np.ndarray  # per op but the last
    extent: np.ndarray  # per internal tensor
    covers: bool  # the tiles read all of every tensor in the stage's ``inner`` inputs along this axis


class _AxisBlock(NamedTuple):
    """The :class:`_AxisFigs` of one axis and cached set for every tile count (in
    :func:`axis_counts` order), each figure an array with a row per count."""

    valid: np.ndarray
    max_len: np.ndarray
    total_len: np.ndarray
    overlap: np.ndarray
    extent: np.ndarray


def _axis_table(c: _Costs, st: _StageEnd, variants: list[Variant], streams: bool, max_grid: int, first_only: bool,
                ) -> tuple[dict[tuple[int, frozenset[int], int], _AxisFigs], dict[tuple[int, frozenset[int]], _AxisBlock]]:
    """(axis, cached ops, tile count) -> figures of that tiling, for every variant's cached sets (the
    tilings of both axes propagated together); and the same by (axis, cached ops) for all counts."""
    g, ops, internal = c.g, st.info.ops, st.internal
    shape = nhwc_shape(g, st.info.tiled)
    keys, runs = [], {}
    for ax in (0, 1):
        counts = axis_counts(shape[1 + ax], max_grid, not first_only)
        cached_sets = {(v.cache_h, v.cache_w)[ax] for v in variants} | ({frozenset()} if streams and ax == 0 else set())
        for cached in cached_sets:
            runs[(ax, cached)] = slice(len(keys), len(keys) + len(counts))
            keys += [(ax, cached, cnt) for cnt in counts]
    if not keys:
        return {}, {}
    arr = axis_arrays(g, st.info, [c.maps[ax] for ax, _, _ in keys], [split_even(shape[1 + ax], cnt) for ax, _, cnt in keys],
                      [cached for _, cached, _ in keys])
    zero, none = np.zeros(len(keys), np.int64), np.full(len(keys), -1, np.int64)

    def rows(figure: dict, names: list) -> np.ndarray:  # [tiling, name], 0 where a name has no figure
        return np.stack([figure.get(x, zero) for x in names], axis=1) if names else np.zeros((len(keys), 0), np.int64)

    max_len, total, overlap, extent = (rows(arr.max_len, internal), rows(arr.total_len, ops),
                                       rows(arr.overlap, ops[:-1]), rows(arr.extent, internal))
    covers = np.ones(len(keys), bool)
    axis = np.array([ax for ax, _, _ in keys])
    for t in st.inner:
        covers &= arr.reach.get(t, none) == np.array(nhwc_shape(g, t)[1:3])[axis]
    valid = arr.valid.tolist()
    blocks = {key: _AxisBlock(arr.valid[r], max_len[r], total[r], overlap[r], extent[r]) for key, r in runs.items()}
    return {key: _AxisFigs(valid[i], max_len[i], total[i], overlap[i], extent[i], bool(covers[i]))
            for i, key in enumerate(keys)}, blocks


def _reads_inner(g: Graph, st: _StageEnd, fig: AxisFigures, ax: int) -> bool:
    """Do the tiles of ``fig`` read all of each of the stage's ``inner`` inputs along axis ``ax``?"""
    return all(fig.reach.get(t, -1) == nhwc_shape(g, t)[1 + ax] for t in st.inner)


class Candidates(NamedTuple):
    """Patch stages ``[start, end)`` of one halo policy before the Pareto filter: one per tile grid
    and start (arrays [grid, start])."""

    starts: list[int]
    lower_bounds: np.ndarray
    macs: np.ndarray
    grids: list[tuple[int, int]]
    policy: HaloPolicy
    cost: np.ndarray  # predicted instructions [grid, start] (0 without a cost model)
    calls: np.ndarray  # kernel calls [grid, start] (0 without a cost model)


def _ceil_to(x: np.ndarray, alignment: int) -> np.ndarray:
    return -(-x // alignment) * alignment


def _tile_candidates(c: _Costs, st: _StageEnd, variants: list[Variant],
                     blocks: dict[tuple[int, frozenset[int]], _AxisBlock], max_grid: int,
                     first_only: bool) -> list[Candidates]:
    """Every start, policy variant and tile grid: the stage's lower bound (full-size input and output,
    the tile-local buffers live at each step, kept halos and line buffers) and MACs; all the grids
    of a variant at once (arrays [rows, columns, ...])."""
    ops = st.info.ops
    shape = nhwc_shape(c.g, st.info.tiled)
    counts_h = axis_counts(shape[1], max_grid, not first_only)
    counts_w = axis_counts(shape[2], max_grid, not first_only)
    grids = [(nh, nw) for nh in counts_h for nw in counts_w]
    wide = (np.array(counts_w) > 1)[None, :, None]  # line buffers only when a tile row has several tiles
    out: list[Candidates] = []
    start_rows = _StartRows(st)
    for var in variants:
        fh, fw = blocks[(0, var.cache_h)], blocks[(1, var.cache_w)]
        valid = (fh.valid[:, None] & fw.valid[None, :]).ravel()
        if not valid.any():
            continue
        persistent = np.array([ops[r] in var.cache_w for r in range(len(st.internal))], bool)
        line_rows = np.array([ops[r] in var.cache_h for r in range(len(st.internal))], bool)
        local_life = st.life & ~persistent[:, None]
        h_len, w_len = fh.max_len, fw.max_len
        sizes = _ceil_to(h_len[:, None, :] * w_len[None, :, :] * st.chan, c.alignment)  # [nh, nw, internal]
        h_tot, w_tot = fh.total_len, fw.total_len
        stage_macs = np.cumsum(st.pixel_macs * h_tot[:, None, :] * w_tot[None, :, :], axis=-1)
        stage_macs = np.concatenate([np.zeros(stage_macs.shape[:2] + (1,), np.int64), stage_macs], axis=-1)
        kept = np.where(persistent, sizes, 0)
        if line_rows.any():  # rows kept for the next tile row live in full-width line buffers
            lines = _ceil_to(fh.overlap[:, None, :] * fw.extent[None] * st.chan, c.alignment)
            kept = kept + np.where(line_rows & wide, lines, 0)
        tail = np.concatenate([np.cumsum(kept[..., ::-1], axis=-1)[..., ::-1],
                               np.zeros(kept.shape[:2] + (1,), np.int64)], axis=-1)
        live = sizes @ local_life.astype(np.int64)  # tile-local buffers live at each stage step
        held = _held_tiles(st, live, np.where(persistent, 0, sizes), start_rows)
        lbs = st.full_ins + st.full_out + held + tail[..., st.start_idx]
        stage_m = stage_macs[..., -1:] - stage_macs[..., st.start_idx]
        cost, calls = _tile_costs(c, st, counts_h, counts_w, h_tot, w_tot, fh, fw, persistent, line_rows)
        n = len(grids)
        out.append(Candidates(st.starts, lbs.reshape(n, -1)[valid], stage_m.reshape(n, -1)[valid],
                              [g for g, ok in zip(grids, valid) if ok], var.policy,
                              cost.reshape(n, -1)[valid], calls.reshape(n, -1)[valid]))
    return out


class _StartRows:
    """Where the tensors live at a stage's starts (held whole, not as tiles) would count as tile
    buffers: the (start, step) pairs from each start to the last step one of them lives, and the
    tile buffers to take off at each pair."""

    def __init__(self, st: _StageEnd) -> None:
        steps = st.life.shape[1]
        last = np.where(st.life.any(axis=1), steps - 1 - np.argmax(st.life[:, ::-1], axis=1), -1)  # of each buffer
        j = np.repeat(np.arange(len(st.starts)), [len(rows) for rows in st.start_rows])  # (start, tile buffer) pairs
        r = np.array([r for rows in st.start_rows for r in rows], np.int64)
        i0 = st.start_idx[j]
        ok = last[r] >= i0
        j, r, i0 = j[ok], r[ok], i0[ok]
        self.starts = np.unique(j)  # starts with pairs
        if not len(j):
            return
        self.ends = np.zeros(len(st.starts), np.int64)
        np.maximum.at(self.ends, j, last[r])
        self.ends = self.ends[self.starts]  # the last step of each one's pairs
        count = self.ends - st.start_idx[self.starts] + 1
        self.first_pair = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        # pair p of start k is step start_idx + p - first_pair[k]
        self.steps = np.arange(count.sum()) - np.repeat(self.first_pair - st.start_idx[self.starts], count)
        # each tensor takes off its tile buffer at the pairs from its start to its last step
        base = np.zeros(len(st.starts), np.int64)
        base[self.starts] = self.first_pair
        span = last[r] - i0 + 1
        pair = np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span) + np.repeat(base[j], span)
        order = np.argsort(pair, kind="stable")
        self.rows = np.repeat(r, span)[order]
        self.first_row = np.flatnonzero(np.diff(pair[order], prepend=-1))


def _held_tiles(st: _StageEnd, live: np.ndarray, sizes: np.ndarray, sr: _StartRows) -> np.ndarray:
    """Most tile-buffer bytes live at one step from each start [..., start]: ``live`` [..., step], less
    (from a start on) the tile buffers of the tensors live at that start, which it holds whole
    (``sizes`` [..., buffer]: 0 for a buffer that persists over the stage, not in ``live``).

    Those tensors were made before the start, so from the start on they are the only tile buffers
    made before it that still live; each lives without a gap from the start to its last step."""
    suffix = np.maximum.accumulate(live[..., ::-1], axis=-1)[..., ::-1]
    held = suffix[..., st.start_idx]
    if not len(sr.starts):
        return held
    grids = live.shape[:-1]
    flat_live, flat_sizes = live.reshape(-1, live.shape[-1]), sizes.reshape(-1, sizes.shape[-1])
    taken = np.add.reduceat(flat_sizes[:, sr.rows], sr.first_row, axis=1)  # [grid, pair]
    at_pairs = np.maximum.reduceat(flat_live[:, sr.steps] - taken, sr.first_pair, axis=1)  # [grid, start]
    after = np.concatenate([suffix.reshape(flat_live.shape), np.zeros((len(flat_live), 1), live.dtype)], axis=1)
    held[..., sr.starts] = np.maximum(at_pairs, after[:, sr.ends + 1]).reshape(*grids, -1)
    return held


def _stream_candidates(c: _Costs, st: _StageEnd, streams: list[int],
                       table: dict[tuple[int, frozenset[int], int], _AxisFigs], max_grid: int,
                       first_only: bool) -> tuple[list[Candidates], bool]:
    """Stream stages from the starts in ``streams``: one-column tiles pulled through window buffers,
    rows recomputed per strip; and whether the columns read all of the stage's ``inner`` inputs."""
    g, ops = c.g, st.info.ops
    shape = nhwc_shape(g, st.info.tiled)
    known = table.get((1, frozenset(ops[:-1]), shape[2]))  # one-column tiles, every column kept: cache_w's
    if known is not None:
        valid, tw, reads = known.valid, known.total_len, known.covers
    else:
        fig_w = axis_figures(g, st.info, c.maps[1], [list(range(shape[2] + 1))], frozenset(ops[:-1]))[0]
        valid, reads = fig_w.valid, _reads_inner(g, st, fig_w, 1)
        tw = np.array([fig_w.total_len.get(k, 0) for k in ops], np.int64)
    if not valid:
        return [], True
    idx = {k: i for i, k in enumerate(ops)}
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
        if c.model is not None:
            pixels = (fh.total_len * tw).astype(float)  # one call per column and strip: a column of rows each
            costs = np.concatenate([[0.0], np.cumsum(c.op_cost(ops, pixels, pixels, nh * tw, stream=True))])
            cost = (costs[-1] - costs[s_idx])[None]
            calls = np.array([[nh * tw[i:].sum() for i in s_idx]], np.int64)
        else:
            cost, calls = np.zeros((1, len(s_idx))), np.zeros((1, len(s_idx)), np.int64)
        out.append(Candidates(streams, lbs[None], (stage_macs[-1] - stage_macs[s_idx])[None], [(nh, shape[2])],
                              HaloPolicy(STREAM), cost, calls))
    return out, reads


def _tile_costs(c: _Costs, st: _StageEnd, counts_h: list[int], counts_w: list[int], h_tot: np.ndarray,
                w_tot: np.ndarray, fh: _AxisBlock, fw: _AxisBlock, persistent: np.ndarray,
                line_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted instructions and kernel calls of a tile variant's stages, arrays [rows, columns, start]
    (zeros without a cost model)."""
    ops = st.info.ops
    shape = (len(counts_h), len(counts_w), len(st.starts))
    if c.model is None:
        return np.zeros(shape), np.zeros(shape, np.int64)
    nh = np.array(counts_h)[:, None, None]
    nw = np.array(counts_w)[None, :, None]
    pixels = (h_tot[:, None, :] * w_tot[None, :, :]).astype(float)
    if st.reduce:  # the average's per-tile sums: charged once, as its whole-image work
        pixels[..., -1] = 1.0
    rem = tuple(h_tot[:, None, :] * _left_over(w_tot, np.array(counts_w)[:, None], m)[None] for m in (2, 4))
    copy = np.zeros(pixels.shape)  # halo bytes moved between tiles (estimated from the largest overlaps)
    h_ov, w_ov = fh.overlap, fw.overlap
    copy[..., :-1] = st.chan_all * (
        np.where(persistent, h_tot[:, None, :-1] * w_ov[None] * (nw - 1), 0)
        + np.where(line_rows, h_ov[:, None, :] * w_tot[None, :, :-1] * (nh - 1) * np.where(nw > 1, 2, 1), 0))
    costs = np.cumsum(c.op_cost(ops, pixels, h_tot[:, None, :] * nw, nh * nw, rem, copy), axis=-1)
    costs = np.concatenate([np.zeros(shape[:2] + (1,)), costs], axis=-1)
    cost = costs[..., -1:] - costs[..., st.start_idx]
    calls = nh * nw * (len(ops) - st.start_idx)[None, None, :]
    return cost, calls


def _add_pareto(opts: dict[tuple[int, int], list[Option]], b: int, cands: list[Candidates], by_cost: bool) -> None:
    """Add each segment's non-dominated candidates to its options (in the order they were found).

    All segments at once: the candidates of every block, start and grid in one array, sorted by
    start, then as :func:`_pareto_filter` sorts; each start's running least objective is taken
    over its own candidates only (each start's values shifted below every earlier start's)."""
    if not cands:
        return
    rank = {a: r for r, a in enumerate(dict.fromkeys(a for blk in cands for a in blk.starts))}  # in the order found
    fields = [np.concatenate([getattr(blk, f).T.ravel() for blk in cands])
              for f in ("lower_bounds", "macs", "cost", "calls")]
    block = np.concatenate([np.full(blk.macs.size, i) for i, blk in enumerate(cands)])
    row = np.concatenate([np.tile(np.arange(len(blk.grids)), len(blk.starts)) for blk in cands])
    start = np.concatenate([np.repeat([rank[a] for a in blk.starts], len(blk.grids)) for blk in cands])
    peaks, obj, tie = _objectives(*fields, by_cost)
    keys = [obj, peaks, start] if tie.min() == tie.max() else [tie, obj, peaks, start]  # (tie 0: no model)
    if int(peaks.min()) >= 0 and (int(peaks.max()) + 1) * len(rank) < 1 << 62:
        keys[-2:] = [start * (int(peaks.max()) + 1) + peaks]  # sorts as (start, peak)
    order = np.lexsort(keys)  # stable: a start's candidates stay in (block, grid) order on ties
    obj, start = obj[order], start[order]
    span = int(obj.max()) - int(obj.min()) + 1
    if span * len(rank) >= 1 << 62:  # too wide to shift: start by start
        keep = np.concatenate([np.flatnonzero(start == r)[_running_least(obj[start == r])] for r in range(len(rank))])
    else:
        keep = np.flatnonzero(_running_least(obj - start * span))
    lbs, macs, cost, calls = (f[order[keep]].tolist() for f in fields)
    starts = list(rank)
    for k, s, i, r in zip(range(len(keep)), start[keep].tolist(), block[order[keep]].tolist(),
                          row[order[keep]].tolist()):
        a, cand = starts[s], cands[i]
        opts.setdefault((a, b), []).append(Option(lbs[k], macs[k], Choice(a, b, cand.grids[r], cand.policy),
                                                  cost[k], calls[k]))


def _running_least(values: np.ndarray) -> np.ndarray:
    """Where each value is below every value before it."""
    before = np.concatenate([[np.iinfo(np.int64).max], np.minimum.accumulate(values)[:-1]])
    return values < before


def _objectives(peaks: np.ndarray, macs: np.ndarray, cost: np.ndarray, calls: np.ndarray,
                by_cost: bool) -> tuple[np.ndarray, ...]:
    """(peaks, objective, tie-break) arrays: predicted instructions then kernel calls, or MACs then
    predicted instructions (all 0 without a cost model: the order found)."""
    cost = np.round(cost).astype(np.int64)
    return (peaks, cost, calls) if by_cost else (peaks, macs, cost)


def _option_objectives(items: list[Option], by_cost: bool) -> tuple[np.ndarray, ...]:
    return _objectives(np.array([x.lower_bound for x in items]), np.array([x.macs for x in items]),
                       np.array([x.cost for x in items]), np.array([x.calls for x in items]), by_cost)


def _left_over(total: np.ndarray, n: np.ndarray | int, m: int) -> np.ndarray:
    """Sum over ``n`` tiles of (tile width mod ``m``) when widths summing to ``total`` are split evenly."""
    a, extra = total // n, total % n
    return (n - extra) * (a % m) + extra * ((a + 1) % m)


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


def _escapes(graph: Graph, c: _Costs, k: int, b: int) -> bool:
    """Is an output of op ``k`` a graph output or read at or after op ``b`` (so no stage ending at
    ``b`` may hold op ``k`` before its last op)?"""
    return any(t in graph.outputs or c.life[t][1] >= b for t in graph.ops[k].outputs)


def _pareto_filter(peaks: np.ndarray, macs: np.ndarray, tie: np.ndarray | None = None) -> np.ndarray:
    """Indices of the non-dominated (peak, MACs) pairs, sorted by peak (equal MACs: least ``tie``
    kept, then the first found)."""
    order = np.lexsort((macs, peaks) if tie is None else (tie, macs, peaks))
    m = np.asarray(macs)[order]
    if not len(m):
        return order.astype(np.int64)
    before = np.concatenate([[np.iinfo(np.int64).max], np.minimum.accumulate(m)[:-1]])  # least MACs so far
    return order[m < before].astype(np.int64)


def _dp(cuts: list[int], opts: dict[tuple[int, int], list[Option]], c: _Costs,
        ) -> list[tuple[int, int, tuple[Choice, ...]]]:
    """Label-setting DP: Pareto set of (max peak, sum MACs, choices) at the last cut; with ``c.by_cost``
    the front is over (max peak, sum of predicted instructions), ties broken by fewer kernel calls.

    At each cut b the candidates are every label at an earlier cut a followed by a segment [a, b):
    the ops [a, b) run layer by layer (a "run" of label (a, i), figures from prefix sums) or a
    patch or stream stage of ``opts``, each unless the other segment [a, b) beats it. Among
    equal figures the first found wins, in the order (a, label index, segment figures, layer by
    layer first). A run with no less peak than another run and more MACs, or as many MACs and found
    later, is beaten by it at every later cut: both grow by the same ops, their MAC difference
    is fixed and the peaks keep their order. So, without an instruction model (whose rounded
    sums are not that regular), such runs are dropped for good, which keeps a long chain linear.
    """
    stages: dict[int, list[tuple[int, int, Option]]] = {}  # b -> (a, index in opts[(a, b)], option)
    for (a, b), edge in opts.items():
        for i, o in enumerate(edge):
            if o.choice.grid is not None:
                stages.setdefault(b, []).append((a, i + 1 - (b == a + 1), o))  # (k, k + 1) lists the op first
    nodes: list[tuple[Choice | None, int]] = [(None, -1)]  # (last segment, previous node) of every label
    labels = {cuts[0]: _Labels(np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.int64),
                               np.zeros(1, np.int64))}
    runs = _Labels.empty()  # one per label at every earlier cut a, followed by ops [a, b) layer by layer
    profile, mp, cp = c.lbl_profile, c.macs_prefix, c.cost_prefix
    for ib in range(1, len(cuts)):
        b, prev = cuts[ib], cuts[ib - 1]
        runs = runs.extend(labels[prev], prev)
        runs.seg_peak = np.maximum(runs.seg_peak, int(profile[prev:b].max()))
        a = runs.start
        seg = (runs.seg_peak, mp[b] - mp[a], cp[b] - cp[a], b - a)
        cand = _Cands(np.maximum(runs.lb, seg[0]), runs.macs + seg[1], runs.cost + seg[2], runs.calls + seg[3],
                      runs.node, [a, runs.index, *_objectives(*seg, c.by_cost), np.zeros(len(a), np.int64)],
                      np.full(len(a), -1, np.int64))
        if c.model is None and len(a) > 1:
            keep = _lasting_runs(cand)
            runs, cand = runs.take(keep), cand.take(keep)
        beaten, more = _stage_labels(stages.get(b, []), b, labels, nodes, c)
        if beaten:
            cand = cand.take(np.flatnonzero(~np.isin(cand.order[0], list(beaten))))
        allc = _Cands.concat([cand, *more])
        keep = _ordered_filter(allc, c.by_cost)
        chosen = allc.take(keep)
        ids = []
        for k in range(len(keep)):
            seg_node, parent = int(chosen.seg[k]), int(chosen.node[k])
            choice = Choice(int(chosen.order[0][k]), b) if seg_node < 0 else nodes[seg_node][0]
            nodes.append((choice, parent))
            ids.append(len(nodes) - 1)
        labels[b] = _Labels(chosen.peak, chosen.macs, chosen.cost, chosen.calls, np.array(ids, np.int64))
    out = []
    last = labels[cuts[-1]]
    for k in range(len(last.lb)):
        path, node = [], int(last.node[k])
        while nodes[node][0] is not None:
            path.append(nodes[node][0])
            node = nodes[node][1]
        out.append((int(last.lb[k]), int(last.macs[k]), tuple(reversed(path))))
    return out


def _stage_labels(entries: list[tuple[int, int, Option]], b: int, labels: dict[int, _Labels],
                  nodes: list[tuple[Choice | None, int]], c: _Costs) -> tuple[set[int], list[_Cands]]:
    """The candidate labels at cut ``b`` that end with a stage: every label at ``a`` followed by each
    stage ``[a, b)`` of ``entries`` ((a, index in its options, option), in order) that the same ops run
    layer by layer do not beat (those get a node each, in order); and the starts ``a`` whose layer-by-layer
    segment one of these stages beats."""
    if not entries:
        return set(), []
    a0 = np.array([e[0] for e in entries], np.int64)
    index = np.array([e[1] for e in entries], np.int64)
    figs = [np.array([getattr(e[2], f) for e in entries]) for f in ("lower_bound", "macs", "cost", "calls")]
    reach = np.maximum.accumulate(c.lbl_profile[:b][::-1])[::-1]  # layer-by-layer peak of [a, b), by a
    layer = _objectives(reach[a0], c.macs_prefix[b] - c.macs_prefix[a0], c.cost_prefix[b] - c.cost_prefix[a0],
                        b - a0, c.by_cost)
    own = _objectives(*figs, c.by_cost)
    kept = np.flatnonzero(~_beats_all(layer, own, True))
    beaten = set(a0[kept][_beats_all([o[kept] for o in own], [x[kept] for x in layer], False)].tolist())
    if not len(kept):
        return beaten, []
    first_node = len(nodes)
    nodes.extend((entries[i][2].choice, -1) for i in kept.tolist())  # each label taking a stage gets its own node
    starts = a0[kept]
    where = {a: k for k, a in enumerate(dict.fromkeys(starts.tolist()))}  # the labels of each start, concatenated
    labs = [labels[a] for a in where]
    counts = np.array([len(lab.lb) for lab in labs], np.int64)
    offset = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    group = np.array([where[a] for a in starts.tolist()], np.int64)
    n = counts[group]  # labels each kept stage extends
    stage = np.repeat(np.arange(len(kept)), n)
    label = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)  # index among its start's labels
    at = offset[group][stage] + label
    lb, macs, cost, calls, node = (np.concatenate([getattr(lab, f) for lab in labs])[at]
                                   for f in ("lb", "macs", "cost", "calls", "node"))
    pick = kept[stage]
    return beaten, [_Cands(np.maximum(lb, figs[0][pick]), macs + figs[1][pick], cost + figs[2][pick],
                           calls + figs[3][pick], node,
                           [a0[pick], label, *(o[pick] for o in own), index[pick]], first_node + stage)]


def _beats_all(x: tuple[np.ndarray, ...] | list[np.ndarray], y: tuple[np.ndarray, ...] | list[np.ndarray],
               x_first: bool) -> np.ndarray:
    """Does ``x`` keep ``y`` off a Pareto filter, element by element (objective arrays of
    :func:`_objectives`; ``x_first``: x was found before y, so it wins a tie)?"""
    last = x[2] <= y[2] if x_first else x[2] < y[2]
    ahead = (x[0] < y[0]) | ((x[0] == y[0]) & ((x[1] < y[1]) | ((x[1] == y[1]) & last)))
    return ahead & (x[1] <= y[1])


@dataclass
class _Labels:
    """The labels at a cut as arrays (``node``: where :func:`_dp` keeps their choices); as runs,
    also each one's start cut, label index there and the layer-by-layer peak since."""

    lb: np.ndarray
    macs: np.ndarray
    cost: np.ndarray
    calls: np.ndarray
    node: np.ndarray
    start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    seg_peak: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @staticmethod
    def empty() -> _Labels:
        z = np.zeros(0, np.int64)
        return _Labels(z, z, np.zeros(0), z, z)

    def take(self, keep: np.ndarray | list[int]) -> _Labels:
        k = np.asarray(keep, np.int64)
        return _Labels(self.lb[k], self.macs[k], self.cost[k], self.calls[k], self.node[k], self.start[k],
                       self.index[k], self.seg_peak[k])

    def extend(self, new: _Labels, at: int) -> _Labels:
        """These runs and one new run from each label of ``new`` (at cut ``at``)."""
        n = len(new.lb)
        return _Labels(*(np.concatenate([x, y]) for x, y in (
            (self.lb, new.lb), (self.macs, new.macs), (self.cost, new.cost), (self.calls, new.calls),
            (self.node, new.node), (self.start, np.full(n, at, np.int64)), (self.index, np.arange(n)),
            (self.seg_peak, np.zeros(n, np.int64)))))


@dataclass
class _Cands:
    """Candidate labels at a cut: figures, the label they extend, their place in the order they are found,
    and the node of their stage segment (-1: run layer by layer from ``order[0]``)."""

    peak: np.ndarray
    macs: np.ndarray
    cost: np.ndarray
    calls: np.ndarray
    node: np.ndarray
    order: list[np.ndarray]  # start cut, label index, segment objectives (3), segment index
    seg: np.ndarray

    def take(self, keep: np.ndarray | list[int]) -> _Cands:
        k = np.asarray(keep, np.int64)
        return _Cands(self.peak[k], self.macs[k], self.cost[k], self.calls[k], self.node[k],
                      [o[k] for o in self.order], self.seg[k])

    @staticmethod
    def concat(parts: list[_Cands]) -> _Cands:
        return _Cands(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("peak", "macs", "cost", "calls",
                                                                               "node")),
                      [np.concatenate([p.order[j] for p in parts]) for j in range(6)],
                      np.concatenate([p.seg for p in parts]))


def _segment(c: _Costs, a: int, b: int) -> Option:
    """Ops ``[a, b)`` run layer by layer."""
    return Option(int(c.lbl_profile[a:b].max()), int(c.macs_prefix[b] - c.macs_prefix[a]), Choice(a, b),
                  float(c.cost_prefix[b] - c.cost_prefix[a]), b - a)


def _lasting_runs(runs: _Cands) -> list[int]:
    """Indices (in order) of the runs no earlier-found run beats for good: one with no more peak and
    fewer MACs, or as many MACs and found first."""
    out, least, first = [], None, None
    order = list(zip(runs.order[0].tolist(), runs.order[1].tolist()))
    for k in np.lexsort((runs.order[1], runs.order[0], runs.macs, runs.peak)).tolist():
        m = int(runs.macs[k])
        if least is not None and (m > least or (m == least and first < order[k])):
            continue
        out.append(k)
        if least is None or m < least:
            least, first = m, order[k]
        else:
            first = min(first, order[k])
    return sorted(out)


def _ordered_filter(cand: _Cands, by_cost: bool) -> np.ndarray:
    """:func:`_pareto_filter` of the candidates, equal objectives going to the first in ``order``."""
    o1, o2, o3 = _objectives(cand.peak, cand.macs, cand.cost, cand.calls, by_cost)
    order = np.lexsort((*cand.order[::-1], o3, o2, o1))
    m = o2[order]
    if not len(m):
        return order
    before = np.concatenate([[np.iinfo(np.int64).max], np.minimum.accumulate(m)[:-1]])
    return order[m < before]


def to_plan(graph: Graph, choices: tuple[Choice, ...], include_input: bool, include_output: bool,
            consumers: dict[str, list[int]] | None = None) -> Plan:
    stages = []
    for ch in choices:
        if ch.grid is None:
            continue
        shape = nhwc_shape(graph, stage_info(graph, ch.start, ch.end, consumers).tiled)
        stages.append(Stage(ch.start, ch.end, split_even(shape[1], ch.grid[0]), split_even(shape[2], ch.grid[1]),
                            ch.policy.halo(ch.start, ch.end)))
    return Plan(graph.name, fingerprint(graph), stages, include_input, include_output)


def optimal_front(graph: Graph, include_input: bool = True, include_output: bool = True, max_grid: int = 8,
                  policies: tuple[str, ...] = POLICIES, single_stage: bool = False, alignment: int = 16,
                  place_front: bool = True, progress: Callable[[int, int], None] | None = None,
                  model: CostModel | None = None, objective: str = "macs") -> FrontResult:
    """The exact (peak lower bound, MACs) front of the space in the module docstring.

    ``single_stage`` restricts it to MCUNetV2's space (one stage from the first spatial op);
    ``policies`` restricts the halo policies (e.g. ("recompute",)). With an instruction cost
    ``model`` every schedule gets its predicted instructions and kernel calls; ``objective``
    "instructions" (which needs the model) makes the front (peak, predicted instructions).
    """
    if objective not in OBJECTIVES:
        raise PlanError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
    if objective == "instructions" and model is None:
        raise PlanError("the instructions objective needs a target's cost model (--target)")
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise PlanError(f"unknown halo policy {bad}; choose from {', '.join(POLICIES)}")
    t0 = time.perf_counter()
    c = _Costs(graph, include_input, include_output, alignment, model, objective == "instructions")
    cuts = cut_positions(graph)
    # with single_stage every stage option starts at the first spatial op, so a path holds at most one
    opts = _segment_options(c, cuts, max_grid, policies, single_stage, progress)
    labels = _dp(cuts, opts, c)
    front = [Schedule(ch, p, m, to_plan(graph, ch, include_input, include_output, c.users)) for p, m, ch in labels]
    base_ch = (Choice(0, len(graph.ops)),)
    baseline = Schedule(base_ch, int(c.lbl_profile.max()), int(c.macs.sum()),
                        to_plan(graph, base_ch, include_input, include_output))
    runs = len(cuts) * (len(cuts) - 1) // 2  # every layer-by-layer segment, costed from prefix sums in _dp
    result = FrontResult(baseline, front, 0.0, runs + sum(o.choice.grid is not None for v in opts.values() for o in v),
                         {"cuts": len(cuts), "policies": policies, "max_grid": max_grid, "single_stage": single_stage},
                         objective, model)
    if model is not None:  # exact predictions of the schedules found (the search's tile counts are per axis)
        for s in [baseline, *front]:
            s.insns, s.calls = model.predict(graph, s.plan), plan_calls(graph, s.plan)
    if place_front:  # the reported peak is the placed arena; keep the schedules that stay Pareto-optimal
        for s in [baseline, *front]:
            s.peak = place_plan(plan_buffers(graph, s.plan), alignment).peak
        if front:
            keys = np.array([result.key(s) for s in front])
            result.front = [front[i] for i in _pareto_filter(np.array([s.peak for s in front]), *keys.T)]
    result.seconds = time.perf_counter() - t0
    return result
