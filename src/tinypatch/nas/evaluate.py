"""A candidate's best schedule under the constraints, and its figures.

Conventions (:class:`Constraints`):

- ``analytic`` (MCUNetV2's, its §3.3 search): SRAM is the analytic peak (int8 activations,
  in+out per op, in-place depthwise). Every MCUNetV2 schedule is enumerated: ``p`` x ``p``
  patches (``p`` in 1..``max_patches``; 1 = layer by layer) over ops ``[0, end)`` for every
  legal stage end (the patch layers ``n`` < N), halos recomputed; the feasible one with the
  fewest MACs is kept; with ``stages`` = K >= 2 (default 2, at most 4) also every run of up to K
  consecutive patch stages, ``[0, n1)`` in ``p1`` x ``p1`` then ``[n1, n2)`` in ``p2`` x ``p2``
  tiles, ... (:mod:`tinypatch.nas.twostage`; ``stages`` = 1: MCUNetV2's single stage). With ``stream``
  (default) each of those stages may also be one of our planner's stream stages
  (:mod:`tinypatch.planning.stream`: ``g`` row strips, ``g`` in its strip counts, each computed
  column by column through window buffers of the consumer's kernel width, halo rows recomputed,
  columns computed once; where no tensor inside the stage has two readers, i.e. no residual block
  inside it), whose analytic peak holds every window buffer across the stage as ``plan_analytic``
  counts cached buffers; ``stream=False`` and ``stages`` = 1 is MCUNetV2's space. Fast paths, each
  checked against the plain computation by the tests: layer by layer is taken at once when it
  fits (no patch schedule has fewer MACs); a (p, end) whose peak lower bound exceeds the budget
  is never tiled; a tiling's MACs are computed before its (dearer) peak; and for specs without SE blocks the figures come from the layer
  chain (:mod:`tinypatch.nas.chain`, microseconds) instead of the built and tiled graph.
- ``placed``: SRAM is the placed arena peak (16-byte aligned, in-place ops) of our planner's
  best schedule (:func:`tinypatch.planning.search.search`: multi-stage, halo caching, column
  streaming, in place; grids up to ``max_patches`` tiles per axis besides 4-, 2- and 1-row
  strips), MCUNetV2's schedules included; seconds per network, against tens of milliseconds.

``include_input`` counts the model input in the SRAM figure. Flash is the bytes of the constant
tensors (int8 weights, int32 biases); a network over the flash limit is never built. ``max_macs`` bounds the MACs the schedule executes
(recomputed halos included). With a ``target`` (a fitted instruction cost model,
:mod:`tinypatch.planning.latency`, as ``tinypatch plan --target``) the chosen schedule's predicted
instructions are computed on the built graph and ``max_insns`` bounds them (the latency limit);
``schedule_objective`` "instructions" chooses each network's schedule by the fewest predicted
instructions instead of the fewest MACs (analytic: exact over the same schedules,
:mod:`tinypatch.nas.insns`; placed: our planner's instruction front). The objective value is not
computed here (see :mod:`tinypatch.nas.evolution`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import cache
from typing import Any

from tinypatch.analysis.analytic import analytic_memory
from tinypatch.analysis.macs import op_macs
from tinypatch.analysis.regions import axis_maps, split_even
from tinypatch.errors import BudgetError, PlanError, UsageError
from tinypatch.frontends.mcunet_config import build_net
from tinypatch.frontends.spec import NetSpec
from tinypatch.ir import Graph
from tinypatch.nas.chain import Chain, chain_schedule
from tinypatch.nas.insns import ChainCost
from tinypatch.nas.twostage import stage_schedule
from tinypatch.planning.cost import plan_analytic, plan_macs
from tinypatch.planning.latency import OBJECTIVES, cost_model, fitted_targets
from tinypatch.planning.columns import ring_columns
from tinypatch.planning.plan import STREAM, Plan, Stage, fingerprint
from tinypatch.planning.optimal import Schedule, axis_counts
from tinypatch.planning.search import choose, search
from tinypatch.planning.tiles import StageTiling, legal_ends, stage_info, tile_axis, tile_stage

CONVENTIONS = ("analytic", "placed")
MAX_STAGES = 4  # consecutive patch stages the analytic convention's schedules may have


@dataclass(frozen=True)
class Constraints:
    """What a feasible candidate must meet; sizes in bytes."""

    sram: int
    flash: int | None = None
    max_macs: int | None = None
    include_input: bool = True
    convention: str = "analytic"
    max_patches: int = 4  # p in 1..max_patches; 1: layer by layer only (MCUNet's per-layer search)
    stages: int = 2  # analytic convention: at most this many patch stages, then per layer (1: MCUNetV2's)
    target: str | None = None  # a fitted instruction cost model: predict the chosen schedule's instructions
    max_insns: int | None = None  # limit on those predicted instructions (needs target)
    schedule_objective: str = "macs"  # a network's schedule: fewest MACs or fewest predicted "instructions"
    clock_hz: int | None = None  # for printing max_insns as time (one instruction per cycle); changes nothing
    stream: bool = True  # analytic convention: stages may also stream (not with the instructions objective)

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise UsageError(f"unknown SRAM convention {self.convention!r}; choose from {', '.join(CONVENTIONS)}")
        for name in ("sram", "flash", "max_macs", "max_insns", "clock_hz"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise UsageError(f"the {name.replace('_', ' ')} limit must be a positive integer, got {v!r}")
        if not isinstance(self.max_patches, int) or not 1 <= self.max_patches <= 16:
            raise UsageError(f"max_patches must be in 1..16, got {self.max_patches!r}")
        if not isinstance(self.stream, bool):
            raise UsageError(f"stream must be True or False, got {self.stream!r}")
        if self.stages not in range(1, MAX_STAGES + 1):
            raise UsageError(f"stages must be in 1..{MAX_STAGES}, got {self.stages!r}")
        if self.target is not None and self.target not in fitted_targets():
            raise UsageError(f"no instruction cost model for target {self.target!r} "
                             f"(fitted: {', '.join(fitted_targets()) or 'none'})")
        if self.schedule_objective not in OBJECTIVES:
            raise UsageError(f"unknown schedule objective {self.schedule_objective!r}; "
                             f"choose from {', '.join(OBJECTIVES)}")
        for what, needs in (("a latency limit", self.max_insns is not None),
                            ("the instructions objective", self.schedule_objective == "instructions")):
            if needs and self.target is None:
                raise UsageError(f"{what} needs a target's instruction cost model (--target)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Evaluation:
    """Figures of one candidate; ``peak`` / ``schedule_macs`` are those of its chosen schedule."""

    fingerprint: str
    feasible: bool
    reason: str  # why it is infeasible ("" when feasible)
    macs: int  # layer by layer
    flash: int
    layer_peak: int  # layer by layer, in the constraints' convention
    peak: int  # the chosen schedule's (the least reachable one when infeasible on SRAM)
    schedule_macs: int
    patches: int  # p (grid p x p; 1: layer by layer; -g: a stream stage of g row strips)
    end: int  # the patch stage runs ops [0, end) (0: layer by layer)
    schedule: str  # readable label
    patches2: int = 0  # a second patch stage's p (0: none; -g: stream)
    end2: int = 0  # the second patch stage runs ops [end, end2) (0: none)
    later: tuple[int, ...] = ()  # (p, end) of the third and later patch stages, flattened
    insns: int = 0  # the schedule's predicted instructions on the constraints' target (0: no target)

    def __post_init__(self) -> None:
        object.__setattr__(self, "later", tuple(self.later))  # a list when read back from JSON

    @property
    def overhead(self) -> float:
        return self.schedule_macs / self.macs - 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def network_figures(graph: Graph) -> tuple[int, int]:
    """(MACs layer by layer, flash bytes of the constant tensors)."""
    macs = sum(op_macs(graph, op) for op in graph.ops)
    flash = sum(t.size * t.np_dtype.itemsize for t in graph.tensors.values() if t.is_const)
    return macs, flash


def evaluate(spec: NetSpec, constraints: Constraints, fast: bool = True) -> Evaluation:
    """Find the best schedule of ``spec`` under ``constraints`` (module docstring).

    ``fast``: in the analytic convention, compute everything from the spec's layer chain
    (:mod:`tinypatch.nas.chain`) instead of building and tiling the graph (same figures)."""
    c = constraints
    fp = spec.fingerprint()
    chain = Chain(spec)
    if chain.supported and (fast and c.convention == "analytic" or c.flash is not None and chain.flash > c.flash):
        return _chain(spec, chain, fp, c)  # all from the chain, or over the flash limit: no graph needed
    if c.convention == "analytic" and c.schedule_objective == "instructions":
        raise UsageError("the instructions objective of the analytic convention needs the chain fast path "
                         "(fast=True, a network without SE blocks)")
    graph = build_net(spec)
    macs, flash = network_figures(graph)

    def result(feasible: bool, reason: str, layer_peak: int, peak: int, smacs: int, p: int, end: int,
               label: str) -> Evaluation:
        return _limit_macs(Evaluation(fp, feasible, reason, macs, flash, layer_peak, peak, smacs, p, end, label), c)

    if c.flash is not None and flash > c.flash:
        return result(False, f"flash {flash} B > {c.flash} B", 0, 0, macs, 1, 0, "-")
    if c.convention == "placed":
        return _limit_insns(_placed(graph, c, result), c)
    return _latency(graph, _analytic(graph, c, macs, result), c)


def _limit_macs(e: Evaluation, c: Constraints) -> Evaluation:
    if e.feasible and c.max_macs is not None and e.schedule_macs > c.max_macs:
        return replace(e, feasible=False, reason=f"executes {e.schedule_macs} MACs > {c.max_macs}")
    return e


def _latency(graph: Graph, e: Evaluation, c: Constraints) -> Evaluation:
    """``e`` with its schedule's predicted instructions on ``c.target`` and the latency limit applied
    (unchanged without a target; only feasible evaluations are predicted)."""
    if c.target is None or not e.feasible:
        return e
    plan = Plan(graph.name, fingerprint(graph), recompute_stages(graph, _stages_of(e)),
                include_input=c.include_input)
    return _limit_insns(replace(e, insns=round(cost_model(c.target).predict(graph, plan))), c)


def _limit_insns(e: Evaluation, c: Constraints) -> Evaluation:
    if e.feasible and c.max_insns is not None and e.insns > c.max_insns:
        return replace(e, feasible=False,
                       reason=f"latency: predicted {e.insns:,} instructions > {c.max_insns:,} on {c.target}")
    return e


def _chain(spec: NetSpec, chain: Chain, fp: str, c: Constraints) -> Evaluation:
    macs = sum(chain.macs())
    if c.flash is not None and chain.flash > c.flash:
        return Evaluation(fp, False, f"flash {chain.flash} B > {c.flash} B", macs, chain.flash, 0, 0, macs, 1, 0, "-")
    layer = max(chain.per_op(c.include_input))
    by_insns = c.schedule_objective == "instructions" and c.max_patches > 1
    found: tuple[int, ...] | int = (macs, layer, 1, 0)
    if layer > c.sram and c.max_patches > 1:
        found = chain_schedule(chain, c.sram, c.include_input, c.max_patches, c.stages, stream=_streams(c))
    if isinstance(found, int):
        return Evaluation(fp, False, f"SRAM: no schedule fits {c.sram} B", macs, chain.flash, layer, min(found, layer),
                          macs, 1, 0, "-")
    if layer > c.sram and c.max_patches == 1:
        return Evaluation(fp, False, f"SRAM {layer} B > {c.sram} B", macs, chain.flash, layer, layer, macs, 1, 0,
                          "layer-by-layer")
    if c.target is None:
        return _limit_macs(_found(fp, macs, chain.flash, layer, found), c)
    graph = build_net(spec)
    if by_insns:  # the MAC search above only told that some schedule fits
        found = chain_schedule(chain, c.sram, c.include_input, c.max_patches, c.stages,
                               ChainCost(chain, graph, cost_model(c.target)))
        assert not isinstance(found, int)
    e = _limit_macs(_found(fp, macs, chain.flash, layer, found), c)
    return _latency(graph, e, c)


def _streams(c: Constraints) -> bool:
    """Are stream stages enumerated (the instruction figures of the chain cover recompute tiles only)?"""
    return c.stream and c.schedule_objective != "instructions"


def _found(fp: str, macs: int, flash: int, layer: int, found: tuple[int, ...]) -> Evaluation:
    """The feasible evaluation of a schedule (MACs, peak, p1, n1, ...) (p1 = 1: layer by layer)."""
    if found[2] == 1:
        return Evaluation(fp, True, "", macs, flash, layer, layer, macs, 1, 0, "layer-by-layer")
    smacs, peak, p, end, p2, end2, *later = (*found, 0, 0) if len(found) == 4 else found
    return Evaluation(fp, True, "", macs, flash, layer, peak, smacs, p, end, _label(found[2:]), p2, end2, tuple(later))


def _stages_of(e: Evaluation) -> list[tuple[int, int, int]]:
    """The stages (start, end, p) of an analytic evaluation (none: layer by layer; p < 0: stream)."""
    if e.patches == 1:
        return []
    flat = (e.patches, e.end, e.patches2, e.end2, *e.later)
    ends = (0, *flat[1::2])
    return [(a, b, p) for a, b, p in zip(ends, ends[1:], flat[::2]) if p]


def _label(stages: tuple[int, ...]) -> str:
    """``[0:n1] p1xp1 + [n1:n2] p2xp2 ... recompute`` from (p1, n1, p2, n2, ...); with a stream
    stage (p = -g) each stage says its mode: ``[0:n1] g strips stream + [n1:n2] p2xp2 recompute``."""
    ends = (0, *stages[1::2])
    parts = [(a, b, p) for a, b, p in zip(ends, ends[1:], stages[::2])]
    if all(p > 0 for _, _, p in parts):
        return " + ".join(f"[{a}:{b}] {p}x{p}" for a, b, p in parts) + " recompute"
    return " + ".join(f"[{a}:{b}] " + (f"{p}x{p} recompute" if p > 0 else f"{-p} strip{'s' * (p < -1)} stream") for a, b, p in parts)


def _analytic(graph: Graph, c: Constraints, macs: int, result: Any) -> Evaluation:
    lbl = analytic_memory(graph, c.include_input)
    if lbl.peak <= c.sram or c.max_patches == 1:
        ok = lbl.peak <= c.sram
        return result(ok, "" if ok else f"SRAM {lbl.peak} B > {c.sram} B", lbl.peak, lbl.peak, macs, 1, 0,
                      "layer-by-layer")
    found = mcunetv2_schedule(graph, c.sram, c.include_input, c.max_patches, stages=c.stages, stream=_streams(c))
    if isinstance(found, int):
        return result(False, f"SRAM: no schedule fits {c.sram} B", lbl.peak, min(found, lbl.peak), macs, 1, 0, "-")
    smacs, peak, p, end, p2, end2, *later = (*found, 0, 0) if len(found) == 4 else found
    return replace(result(True, "", lbl.peak, peak, smacs, p, end, _label(found[2:])), patches2=p2, end2=end2,
                   later=tuple(later))


def mcunetv2_schedule(graph: Graph, sram: int, include_input: bool = False, max_patches: int = 4,
                      exhaustive: bool = False, square_fast_path: bool = True,
                      stages: int = 1, stream: bool = False) -> tuple[int, ...] | int:
    """MCUNetV2's patch schedule of ``graph`` with the fewest MACs whose analytic peak fits ``sram``:
    (MACs, peak, p, end), or the least peak of the schedules tiled when none fits. ``stages`` >= 2
    also tries up to that many consecutive patch stages (:mod:`tinypatch.nas.twostage`): then
    (MACs, peak, p1, end1, p2, end2, ...) when more than one stage wins; ``stream``: each stage may
    also be a stream stage (p = -g, ``g`` row strips; module docstring).

    Unless ``exhaustive``, a (p, end) is skipped untiled when a lower bound of its peak exceeds
    ``sram``: the layers after the stage, or the full stage output held while every earlier op
    of the stage works on tiles at least 1/p^2 of its layer-by-layer bytes; and for each ``p``
    the stage ends are tried in increasing order, stopping at the first whose MACs exceed the
    best found (a longer stage recomputes at least the same halos, so its MACs never shrink).
    """
    per_op = analytic_memory(graph, include_input).per_op
    tail = _suffix_max(per_op)
    head = [0] + [max(per_op[:k]) for k in range(1, len(per_op) + 1)]  # head[k] = max(per_op[:k])
    ends = [e for e in legal_ends(graph, 0) if len(graph.tensors[graph.ops[e - 1].outputs[0]].shape) == 4]
    best: tuple[int, int, int, int] | None = None
    least: int | None = None
    graph_fp = fingerprint(graph)
    square = _square_prefix(graph) if square_fast_path else [False] * (len(graph.ops) + 1)
    for p in range(2, max_patches + 1):
        for end in ends:
            out = graph.tensors[graph.ops[end - 1].outputs[0]]
            bound = max(tail[end], out.size + -(-head[end - 1] // (p * p)))
            if min(out.shape[1], out.shape[2]) < p or bound > sram and not exhaustive:
                continue
            stage = Stage(0, end, split_even(out.shape[1], p), split_even(out.shape[2], p))
            st = _tile(graph, stage, square[end])
            smacs = plan_macs(graph, [st])[0]
            if best is not None and smacs > best[0] and not exhaustive:
                break
            plan = Plan(graph.name, graph_fp, [stage], include_input=include_input)
            peak = plan_analytic(graph, plan, [st]).peak
            assert peak >= bound, "the peak lower bound is wrong"
            least = peak if least is None else min(least, peak)
            if peak <= sram and (best is None or (smacs, peak) < best[:2]):
                best = (smacs, peak, p, end)
    if stages >= 2 or stream:
        found, least2 = _stages(graph, per_op, square, sram, include_input, max_patches, best, stages, exhaustive,
                                stream)
        if found is not None:
            return found
        least = min((v for v in (least, least2) if v is not None), default=None)
    if best is None:
        return least if least is not None else tail[0]
    return best


def _stages(graph: Graph, per_op: list[int], square: list[bool], sram: int, include_input: bool,
            max_patches: int, best: tuple[int, ...] | None, stages: int, exhaustive: bool,
            stream: bool = False) -> tuple[Any, int | None]:
    """:func:`stage_schedule` with each stage tiled and costed on the graph (``p`` < 0: a stream stage)."""
    base = sum(op_macs(graph, op) for op in graph.ops)
    outs = [graph.tensors[op.outputs[0]] for op in graph.ops]
    ends = cache(lambda start: [e for e in legal_ends(graph, start) if len(outs[e - 1].shape) == 4])
    fp = fingerprint(graph)

    @cache
    def tiled(start: int, end: int, p: int) -> tuple[Stage, StageTiling]:
        if p < 0:
            stage = recompute_stages(graph, [(start, end, p)])[0]
            return stage, tile_stage(graph, stage)
        shape = outs[end - 1].shape
        stage = Stage(start, end, split_even(shape[1], p), split_even(shape[2], p))
        return stage, _tile(graph, stage, square[end])

    @cache
    def strips(start: int, end: int) -> list[int]:
        try:
            ring_columns(graph, list(range(start, end)))
        except PlanError:  # a tensor inside read twice, or an op that cannot stream
            return []
        return axis_counts(outs[end - 1].shape[1], max_patches)

    def overhead(start: int, end: int, p: int) -> int:
        return plan_macs(graph, [tiled(start, end, p)[1]])[0] - base

    def peak(start: int, end: int, p: int) -> int:
        stage, st = tiled(start, end, p)
        per = plan_analytic(graph, Plan(graph.name, fp, [stage], include_input=include_input), [st]).per_op
        return max(per[start:end])

    return stage_schedule(per_op, base, ends, lambda end: min(outs[end - 1].shape[1:3]),
                          lambda end: outs[end - 1].size, overhead, peak, sram, max_patches, best, stages, exhaustive,
                          strips=strips if stream else None)


def _square_prefix(graph: Graph) -> list[bool]:
    """``out[end]``: ops [0, end) are spatially local with the same map along H and W, on square
    feature maps, so a stage over them tiles the two axes alike (``out[0]`` is True)."""
    out = [True]
    for op in graph.ops:
        maps = axis_maps(graph, op)
        shapes = [graph.tensors[t].shape for t in (*op.inputs, *op.outputs) if t and not graph.tensors[t].is_const]
        out.append(out[-1] and maps is not None and maps[0] == maps[1]
                   and all(len(s) == 4 and s[1] == s[2] for s in shapes))
    return out


def _tile(graph: Graph, stage: Stage, square: bool) -> StageTiling:
    """:func:`tile_stage` of a recompute stage; one axis tiled and reused for the other when the
    stage is square (:func:`_square_prefix`) and so is its grid."""
    if not square or stage.rows != stage.cols:
        return tile_stage(graph, stage)
    info = stage_info(graph, stage.start, stage.end)
    rows = tile_axis(graph, info, 0, stage.rows)
    return StageTiling(stage, info, rows, rows)


def _suffix_max(values: list[int]) -> list[int]:
    """``out[i]`` = max(values[i:]) (0 past the end)."""
    out = [0] * (len(values) + 1)
    for i in range(len(values) - 1, -1, -1):
        out[i] = max(values[i], out[i + 1])
    return out


def _placed(graph: Graph, c: Constraints, result: Any) -> Evaluation:
    front = search(graph, include_input=c.include_input, max_grid=c.max_patches, target=c.target,
                   objective=c.schedule_objective)
    base = front.baseline
    layer_peak = base.peak or base.lower_bound
    if c.max_patches == 1:
        ok = layer_peak <= c.sram
        e = result(ok, "" if ok else f"SRAM {layer_peak} B > {c.sram} B", layer_peak, layer_peak, base.macs, 1,
                   0, "layer-by-layer")
        return replace(e, insns=round(base.insns)) if base.insns is not None else e
    try:
        s = choose(front, sram=c.sram)
    except BudgetError as exc:
        return result(False, f"SRAM: no schedule fits {c.sram} B", layer_peak, int(exc.best or 0), base.macs, 1, 0,
                      "-")
    grids = [ch.grid for ch in s.choices if ch.grid]
    p = max((max(g) for g in grids), default=1)
    end = s.plan.stages[0].end if s.plan.stages else 0
    e = result(True, "", layer_peak, s.peak or s.lower_bound, s.macs, p, end, s.label)
    return replace(e, insns=round(s.insns)) if s.insns is not None else e


def planner_schedule(spec: NetSpec, constraints: Constraints) -> Schedule | None:
    """Our planner's best schedule of ``spec`` under the SRAM limit, placed arena (None if none fits;
    with a target: the fewest predicted instructions, or MACs with the MACs schedule objective)."""
    front = search(build_net(spec), include_input=constraints.include_input, max_grid=constraints.max_patches,
                   target=constraints.target, objective=constraints.schedule_objective)
    try:
        return choose(front, sram=constraints.sram)
    except BudgetError:
        return None


def best_plan(spec: NetSpec, evaluation: Evaluation, constraints: Constraints) -> Plan:
    """The plan behind a feasible evaluation (rebuilt: evaluations keep only its figures)."""
    graph = build_net(spec)
    if constraints.convention == "placed":
        return choose(search(graph, include_input=constraints.include_input, max_grid=constraints.max_patches,
                             target=constraints.target, objective=constraints.schedule_objective),
                      sram=constraints.sram).plan
    return Plan(graph.name, fingerprint(graph), recompute_stages(graph, _stages_of(evaluation)),
                include_input=constraints.include_input)


def recompute_stages(graph: Graph, stages: list[tuple[int, int, int]]) -> list[Stage]:
    """Stages ``(start, end, p)``: ops [start, end) in ``p`` x ``p`` recomputed tiles, or for ``p`` < 0 a
    stream stage of ``-p`` row strips (one-column tiles, every op but the last streaming)."""
    out = []
    for start, end, p in stages:
        shape = graph.tensors[graph.ops[end - 1].outputs[0]].shape
        if p < 0:
            out.append(Stage(start, end, split_even(shape[1], -p), split_even(shape[2], shape[2]),
                             {k: STREAM for k in range(start, end - 1)}))
        else:
            out.append(Stage(start, end, split_even(shape[1], p), split_even(shape[2], p)))
    return out
