"""Automatic schedule search: split point and tile grid, Pareto front of peak SRAM vs MACs.

The space (MCUNetV2's): one patch stage from the first spatially-local operator to any legal
cut, tile grids n_h x n_w for n_h, n_w in 1..``max_grid`` (near-even, uneven allowed), plus
plain layer-by-layer. Every candidate is costed exactly on MACs (border-clipped
recomputation) and on the liveness lower bound of its arena, which is separable in H and W
and vectorised, so the whole space costs milliseconds; the candidates on the lower-bound
front are then placed by the arena planner and the front is recomputed on placed peaks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from tinypatch.analysis.liveness import align_up
from tinypatch.analysis.macs import op_macs
from tinypatch.analysis.regions import axis_maps, split_even
from tinypatch.errors import BudgetError, PlanError
from tinypatch.ir import DTYPE_BYTES, Graph
from tinypatch.planning.arena import place
from tinypatch.planning.memory import plan_buffers
from tinypatch.planning.plan import Plan, Stage, fingerprint
from tinypatch.planning.tiles import AxisTiling, StageTiling, legal_ends, stage_info, tile_axis


@dataclass
class Candidate:
    """A costed schedule."""

    plan: Plan
    macs: int
    lower_bound: int
    peak: int | None = None  # placed high-water mark, once placed

    @property
    def label(self) -> str:
        if not self.plan.stages:
            return "layer-by-layer"
        s = self.plan.stages[0]
        return f"ops[{s.start}:{s.end}] {s.grid[0]}x{s.grid[1]}"


@dataclass
class SearchResult:
    baseline: Candidate  # layer-by-layer
    candidates: list[Candidate]
    front: list[Candidate]  # Pareto-optimal on (placed peak, MACs), sorted by peak
    seconds: float

    def best_under_sram(self, sram: int) -> Candidate:
        """Fewest MACs with placed peak <= sram; BudgetError names the smallest peak otherwise."""
        fits = [c for c in self.front if c.peak is not None and c.peak <= sram]
        if not fits:
            best = min(c.peak for c in self.front if c.peak is not None)
            raise BudgetError(f"no schedule fits {sram} B of SRAM; the smallest achievable peak is {best} B", best)
        return min(fits, key=lambda c: (c.macs, c.peak))

    def best_under_overhead(self, max_overhead: float) -> Candidate:
        """Smallest placed peak with MACs <= (1 + max_overhead) x layer-by-layer MACs."""
        limit = self.baseline.macs * (1 + max_overhead)
        fits = [c for c in self.front if c.macs <= limit]
        return min(fits, key=lambda c: (c.peak, c.macs))


def pixel_macs(graph: Graph, k: int) -> int:
    """MACs per output pixel of op ``k`` (0 for non-MAC ops)."""
    out = graph.tensors[graph.ops[k].outputs[0]].shape
    return op_macs(graph, graph.ops[k]) // max(out[1] * out[2], 1)


def first_local_op(graph: Graph) -> int | None:
    for i, op in enumerate(graph.ops):
        if axis_maps(graph, op) is not None:
            return i
    return None


def search(graph: Graph, include_input: bool = True, include_output: bool = True,
           max_grid: int = 8, alignment: int = 16) -> SearchResult:
    """Cost every schedule of the space and return its Pareto front (see module docstring)."""
    t0 = time.perf_counter()
    base_plan = Plan(graph.name, fingerprint(graph), [], include_input, include_output)
    base_buf = plan_buffers(graph, base_plan)
    total_macs = sum(op_macs(graph, op) for op in graph.ops)
    baseline = Candidate(base_plan, total_macs, base_buf.liveness.lower_bound(alignment))
    cands = [baseline]
    start = first_local_op(graph)
    for end in (legal_ends(graph, start) if start is not None else []):
        cands.extend(_stage_candidates(graph, base_plan, start, end, max_grid, alignment, total_macs))
    front = _pareto(cands, key=lambda c: c.lower_bound)
    for c in front:
        c.peak = place(plan_buffers(graph, c.plan).liveness.buffers, alignment).peak
    baseline.peak = baseline.peak or place(base_buf.liveness.buffers, alignment).peak
    front = _pareto(front + [baseline], key=lambda c: c.peak)
    return SearchResult(baseline, cands, front, time.perf_counter() - t0)


def _stage_candidates(graph: Graph, base: Plan, start: int, end: int, max_grid: int, alignment: int,
                      total_macs: int) -> list[Candidate]:
    info = stage_info(graph, start, end)
    out_shape = graph.tensors[info.output].shape
    probe = Plan(base.model, base.fingerprint, [Stage(start, end, [0, out_shape[1]], [0, out_shape[2]])],
                 base.include_input, base.include_output)
    pb = plan_buffers(graph, probe)
    buffers = pb.liveness.buffers
    steps = max(b.end for b in buffers) + 1
    tile_buf = {pb.liveness.tensor_buffer[t]: t for t in info.internal if t in pb.liveness.tensor_buffer}
    fixed = np.zeros(steps, np.int64)
    tile_names, masks = [], []
    for b in buffers:
        if b.name in tile_buf:
            tile_names.append(tile_buf[b.name])
            m = np.zeros(steps, np.int64)
            m[b.start: b.end + 1] = 1
            masks.append(m)
        else:
            fixed[b.start: b.end + 1] += align_up(b.size, alignment)
    mask = np.array(masks).reshape(len(masks), steps)
    chan = np.array([graph.tensors[t].shape[3] * DTYPE_BYTES[graph.tensors[t].dtype] for t in tile_names])
    pm = np.array([pixel_macs(graph, k) for k in info.ops], np.int64)
    stage_full_macs = sum(op_macs(graph, graph.ops[k]) for k in info.ops)

    def axis(ax: int, n: int) -> tuple[AxisTiling, np.ndarray, np.ndarray]:
        til = tile_axis(graph, info, ax, split_even(out_shape[1 + ax], n))
        lens = np.array([til.max_len(t) for t in tile_names], np.int64)
        totals = np.array([til.total_len(k) for k in info.ops], np.int64)
        return til, lens, totals

    hs = {n: axis(0, n) for n in range(1, min(max_grid, out_shape[1]) + 1)}
    ws = {n: axis(1, n) for n in range(1, min(max_grid, out_shape[2]) + 1)}
    out = []
    for nh, (th, lh, mh) in hs.items():
        for nw, (tw, lw, mw) in ws.items():
            sizes = -(-(lh * lw * chan) // alignment) * alignment
            lb = int((fixed + sizes @ mask).max()) if len(tile_names) else int(fixed.max())
            macs = total_macs - stage_full_macs + int((pm * mh * mw).sum())
            stage = Stage(start, end, th.cuts, tw.cuts)
            out.append(Candidate(Plan(base.model, base.fingerprint, [stage], base.include_input,
                                      base.include_output), macs, lb))
    return out


def _pareto(cands: list[Candidate], key) -> list[Candidate]:  # noqa: ANN001
    """Candidates not dominated on (key, macs), sorted by key."""
    front, best_macs = [], None
    for c in sorted(cands, key=lambda c: (key(c), c.macs)):
        if best_macs is None or c.macs < best_macs:
            front.append(c)
            best_macs = c.macs
    return front


def plan_for(graph: Graph, sram: int | None = None, max_mac_overhead: float | None = None,
             include_input: bool = True, max_grid: int = 8) -> tuple[Candidate, SearchResult]:
    """The schedule the CLI picks: fewest MACs under ``sram``, else least peak under the overhead."""
    res = search(graph, include_input=include_input, max_grid=max_grid)
    if sram is not None:
        chosen = res.best_under_sram(sram)
        if max_mac_overhead is not None and chosen.macs > res.baseline.macs * (1 + max_mac_overhead):
            raise BudgetError(f"no schedule fits {sram} B within +{max_mac_overhead:.0%} MACs", chosen.peak)
        return chosen, res
    if max_mac_overhead is not None:
        if max_mac_overhead < 0:
            raise PlanError("--max-mac-overhead must be >= 0")
        return res.best_under_overhead(max_mac_overhead), res
    return min(res.front, key=lambda c: (c.peak, c.macs)), res


__all__ = ["Candidate", "SearchResult", "search", "plan_for", "StageTiling"]
