"""What a plan costs: MACs (two recomputation conventions), placed arena peak, working set."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from tinypatch.analysis.macs import op_macs
from tinypatch.analysis.analytic import AnalyticMemory, analytic_memory, residual_skips
from tinypatch.ir import Graph
from tinypatch.planning.arena import place
from tinypatch.planning.check import check_plan
from tinypatch.planning.memory import accumulator_bytes, line_buffer_bytes, place_plan, plan_buffers
from tinypatch.planning.plan import Plan
from tinypatch.planning.rewrite import base_macs
from tinypatch.planning.tiles import StageTiling


def overhead(macs: float, base: float) -> float:
    """Extra MACs over ``base`` as a fraction (0 for a model with no MACs at all, as zero extra)."""
    if base == 0:
        return 0.0 if macs == 0 else float("inf")
    return macs / base - 1


@dataclass
class PlanCost:
    """Figures of one plan. Peaks are placed arena high-water marks (16-byte aligned buffers)."""

    macs: int  # border-clipped: each tile computes only the pixels it needs
    macs_full_tiles: int  # TinyEngine-style: every tile computed at the largest tile's size
    base_macs: int  # layer-by-layer
    peak: int  # placed, with the plan's own include_input setting
    peak_with_input: int
    peak_without_input: int
    lower_bound: int
    stage_working_set: list[int]  # per stage: peak of tile-local buffers alone (one tile's working set)
    include_input: bool
    peak_analytic: int  # MCUNetV2 convention: int8, in+out per op, in-place depthwise, tiles in a stage
    peak_analytic_op: int  # op index where the analytic peak occurs

    @property
    def mac_overhead(self) -> float:
        return overhead(self.macs, self.base_macs)

    @property
    def mac_overhead_full_tiles(self) -> float:
        return overhead(self.macs_full_tiles, self.base_macs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(mac_overhead=self.mac_overhead, mac_overhead_full_tiles=self.mac_overhead_full_tiles)
        return d


def plan_macs(graph: Graph, tilings: list[StageTiling]) -> tuple[int, int, int]:
    """(border-clipped MACs, full-size-tile MACs, layer-by-layer MACs) of a plan's tilings.

    Inside a stage an op is charged its MACs per output pixel for every pixel it computes: exact
    for convolutions, depthwise and FC; a TRANSPOSE_CONV, whose pixels gather different numbers of
    taps, is charged its mean per pixel rounded up (so a stage never looks cheaper than layer by
    layer)."""
    base = sum(op_macs(graph, op) for op in graph.ops)
    macs = macs_full = base
    for st in tilings:
        for k in st.info.ops:
            full = op_macs(graph, graph.ops[k])
            if not full:
                continue
            out = graph.tensors[graph.ops[k].outputs[0]].shape
            per_pixel = -(-full // (out[1] * out[2]))  # exact but for TRANSPOSE_CONV: its mean, rounded up
            macs += per_pixel * st.h.total_len(k) * st.w.total_len(k) - full
            macs_full += per_pixel * st.h.max_out_len(k) * st.w.max_out_len(k) * st.stage.n_tiles - full
    return macs, macs_full, base


def plan_cost(graph: Graph, plan: Plan, alignment: int = 16) -> PlanCost:
    tilings = check_plan(graph, plan)
    macs, macs_full, _ = plan_macs(graph, tilings)
    base = base_macs(graph)  # the model's, for a graph rewritten by the plan
    peaks = {}
    for inc in (True, False):
        pb = plan_buffers(graph, replace(plan, include_input=inc), tilings, strict=inc == plan.include_input)
        pl = place_plan(pb, alignment)
        peaks[inc] = (pl.peak, pl.lower_bound, pb)
    pb = peaks[plan.include_input][2]
    working = []
    for k, st in enumerate(tilings):
        tile_bufs = [b for b in pb.liveness.buffers
                     if any(pb.liveness.tensor_buffer.get(t) == b.name for t in st.info.internal)]
        working.append(place(tile_bufs, alignment).peak if tile_bufs else 0)
    analytic = plan_analytic(graph, plan, tilings)
    return PlanCost(macs, macs_full, base, peaks[plan.include_input][0], peaks[True][0], peaks[False][0],
                    peaks[plan.include_input][1], working, plan.include_input, analytic.peak, analytic.peak_index)


def plan_analytic(graph: Graph, plan: Plan, tilings: list[StageTiling]) -> AnalyticMemory:
    """The MCUNetV2 analytic convention applied to a plan.

    Inside a stage each op costs its tile-sized input and output (the last op writes the
    full-size stage output), plus what the stage keeps across tiles: the full stage output,
    full stage inputs it does not read itself and cached tile buffers (each once: one that is a
    residual skip there is already counted live), line buffers and the sums of an accumulated
    global average.
    """
    elements: dict[str, int] = {}
    extra = [0] * len(graph.ops)
    producers = graph.producers()
    excluded = set(graph.inputs if not plan.include_input else []) | set(
        graph.outputs if not plan.include_output else [])

    skips = residual_skips(graph)  # counted live by analytic_memory already: not held twice

    def full(t: str) -> int:
        return 0 if t in excluded else graph.tensors[t].size

    for st in tilings:
        for t in st.info.internal:
            elements[t] = st.h.max_len(t) * st.buffer_cols(t) * graph.tensors[t].shape[3]
        cached = [producers[t] for t in st.info.internal if st.cached(producers[t])]
        for k in st.info.ops:
            op = graph.ops[k]
            held = 0 if k == st.stage.end - 1 else full(st.info.output)
            held += sum(full(t) for t in st.info.inputs if t not in op.inputs and t not in skips.get(k, ()))
            held += sum(elements[graph.ops[c].outputs[0]] for c in cached
                        if graph.ops[c].outputs[0] not in (*op.inputs, *op.outputs, *skips.get(k, ())))
            held += sum(line_buffer_bytes(graph, st, c) // graph.tensors[graph.ops[c].outputs[0]].np_dtype.itemsize
                        for c in cached if st.line_buffer(c))
            extra[k] = held + accumulator_bytes(graph, st)  # int32 sums of an accumulated global average
    return analytic_memory(graph, plan.include_input, plan.include_output, elements, extra)
