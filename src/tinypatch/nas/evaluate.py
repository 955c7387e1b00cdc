"""A candidate's best schedule under the constraints, and its figures.

Conventions (:class:`Constraints`):

- ``analytic`` (MCUNetV2's, its §3.3 search): SRAM is the analytic peak (int8 activations,
  in+out per op, in-place depthwise). Every MCUNetV2 schedule is enumerated: ``p`` x ``p``
  patches (``p`` in 1..``max_patches``; 1 = layer by layer) over ops ``[0, end)`` for every
  legal stage end (the patch layers ``n`` < N), halos recomputed; the feasible one with the
  fewest MACs is kept. Fast path: layer by layer is taken at once when it fits (no patch
  schedule has fewer MACs), and a stage end is skipped without tiling it when the layers after
  it or its own full-size output already exceed the budget (both are part of every such
  schedule's peak); a tiling's MACs are computed before its (dearer) peak and it is dropped
  when they cannot beat the best so far.
- ``placed``: SRAM is the placed arena peak (16-byte aligned, in-place ops) of our planner's
  best schedule (:func:`tinypatch.planning.search.search`: multi-stage, halo caching, column
  streaming, in place; grids up to ``max_patches``), MCUNetV2's schedules included.

``include_input`` counts the model input in the SRAM figure. Flash is the bytes of the constant
tensors (int8 weights, int32 biases). ``max_macs`` bounds the MACs the schedule executes
(recomputed halos included). The objective value is not computed here (see
:mod:`tinypatch.nas.evolution`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tinypatch.analysis.analytic import analytic_memory
from tinypatch.analysis.macs import op_macs
from tinypatch.analysis.regions import split_even
from tinypatch.errors import BudgetError, UsageError
from tinypatch.frontends.mcunet_config import build_net
from tinypatch.frontends.spec import NetSpec
from tinypatch.ir import Graph
from tinypatch.planning.cost import plan_analytic, plan_macs
from tinypatch.planning.plan import Plan, Stage, fingerprint
from tinypatch.planning.search import choose, search
from tinypatch.planning.tiles import legal_ends, tile_stage

CONVENTIONS = ("analytic", "placed")


@dataclass(frozen=True)
class Constraints:
    """What a feasible candidate must meet; sizes in bytes."""

    sram: int
    flash: int | None = None
    max_macs: int | None = None
    include_input: bool = True
    convention: str = "analytic"
    max_patches: int = 4  # p in 1..max_patches; 1: layer by layer only (MCUNet's per-layer search)

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise UsageError(f"unknown SRAM convention {self.convention!r}; choose from {', '.join(CONVENTIONS)}")
        for name in ("sram", "flash", "max_macs"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise UsageError(f"the {name.replace('_', ' ')} limit must be a positive integer, got {v!r}")
        if not isinstance(self.max_patches, int) or not 1 <= self.max_patches <= 16:
            raise UsageError(f"max_patches must be in 1..16, got {self.max_patches!r}")

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
    patches: int  # p (grid p x p; 1: layer by layer)
    end: int  # the patch stage runs ops [0, end) (0: layer by layer)
    schedule: str  # readable label

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


def spec_flash(spec: NetSpec) -> int:
    """Flash bytes of ``spec`` as :func:`build_net` builds it (int8 weights, int32 biases), without
    building it (SE blocks are not counted: their weights are ``build_net``'s business)."""
    total, cin = 0, spec.in_channels
    total += spec.stem_kernel ** 2 * cin * spec.stem_channels + 4 * spec.stem_channels
    cin = spec.stem_channels
    for b in spec.blocks:
        if b is None:
            continue
        mid = b.mid_channels or round(cin * b.expand_ratio)
        if b.expand_ratio != 1:
            total += cin * mid + 4 * mid
        else:
            mid = cin
        if b.depthwise:
            total += b.kernel ** 2 * mid + 4 * mid
        total += mid * b.out_channels + 4 * b.out_channels
        cin = b.out_channels
    if spec.feature_mix:
        total += cin * spec.feature_mix + 4 * spec.feature_mix
        cin = spec.feature_mix
    return total + cin * spec.num_classes + 4 * spec.num_classes + 8  # + the MEAN's axes (int32 [2])


def evaluate(spec: NetSpec, constraints: Constraints) -> Evaluation:
    """Build ``spec`` and find its best schedule under ``constraints`` (module docstring)."""
    c = constraints
    fp = spec.fingerprint()
    if c.flash is not None and not any(b is not None and b.use_se for b in spec.blocks):
        flash = spec_flash(spec)  # fast path: no graph for a network over the flash limit
        if flash > c.flash:
            return Evaluation(fp, False, f"flash {flash} B > {c.flash} B", 0, flash, 0, 0, 0, 1, 0, "-")
    graph = build_net(spec)
    macs, flash = network_figures(graph)

    def result(feasible: bool, reason: str, layer_peak: int, peak: int, smacs: int, p: int, end: int,
               label: str) -> Evaluation:
        if feasible and c.max_macs is not None and smacs > c.max_macs:
            feasible, reason = False, f"executes {smacs} MACs > {c.max_macs}"
        return Evaluation(fp, feasible, reason, macs, flash, layer_peak, peak, smacs, p, end, label)

    if c.flash is not None and flash > c.flash:
        return result(False, f"flash {flash} B > {c.flash} B", 0, 0, macs, 1, 0, "-")
    if c.convention == "placed":
        return _placed(graph, c, result)
    return _analytic(graph, c, macs, result)


def _analytic(graph: Graph, c: Constraints, macs: int, result: Any) -> Evaluation:
    lbl = analytic_memory(graph, c.include_input)
    if lbl.peak <= c.sram or c.max_patches == 1:
        ok = lbl.peak <= c.sram
        return result(ok, "" if ok else f"SRAM {lbl.peak} B > {c.sram} B", lbl.peak, lbl.peak, macs, 1, 0,
                      "layer-by-layer")
    found = mcunetv2_schedule(graph, c.sram, c.include_input, c.max_patches)
    if isinstance(found, int):
        return result(False, f"SRAM: no schedule fits {c.sram} B", lbl.peak, min(found, lbl.peak), macs, 1, 0, "-")
    smacs, peak, p, end = found
    return result(True, "", lbl.peak, peak, smacs, p, end, f"[0:{end}] {p}x{p} recompute")


def mcunetv2_schedule(graph: Graph, sram: int, include_input: bool = False, max_patches: int = 4,
                      exhaustive: bool = False) -> tuple[int, int, int, int] | int:
    """MCUNetV2's patch schedule of ``graph`` with the fewest MACs whose analytic peak fits ``sram``:
    (MACs, peak, p, end), or the least peak of the schedules tiled when none fits.

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
    for p in range(2, max_patches + 1):
        for end in ends:
            out = graph.tensors[graph.ops[end - 1].outputs[0]]
            bound = max(tail[end], out.size + -(-head[end - 1] // (p * p)))
            if min(out.shape[1], out.shape[2]) < p or bound > sram and not exhaustive:
                continue
            stage = Stage(0, end, split_even(out.shape[1], p), split_even(out.shape[2], p))
            st = tile_stage(graph, stage)
            smacs = plan_macs(graph, [st])[0]
            if best is not None and smacs > best[0] and not exhaustive:
                break
            plan = Plan(graph.name, fingerprint(graph), [stage], include_input=include_input)
            peak = plan_analytic(graph, plan, [st]).peak
            assert peak >= bound, "the peak lower bound is wrong"
            least = peak if least is None else min(least, peak)
            if peak <= sram and (best is None or (smacs, peak) < best[:2]):
                best = (smacs, peak, p, end)
    if best is None:
        return least if least is not None else tail[0]
    return best


def _suffix_max(values: list[int]) -> list[int]:
    """``out[i]`` = max(values[i:]) (0 past the end)."""
    out = [0] * (len(values) + 1)
    for i in range(len(values) - 1, -1, -1):
        out[i] = max(values[i], out[i + 1])
    return out


def _placed(graph: Graph, c: Constraints, result: Any) -> Evaluation:
    front = search(graph, include_input=c.include_input, max_grid=c.max_patches)
    base = front.baseline
    layer_peak = base.peak or base.lower_bound
    if c.max_patches == 1:
        ok = layer_peak <= c.sram
        return result(ok, "" if ok else f"SRAM {layer_peak} B > {c.sram} B", layer_peak, layer_peak, base.macs, 1,
                      0, "layer-by-layer")
    try:
        s = choose(front, sram=c.sram)
    except BudgetError as exc:
        return result(False, f"SRAM: no schedule fits {c.sram} B", layer_peak, int(exc.best or 0), base.macs, 1, 0,
                      "-")
    grids = [ch.grid for ch in s.choices if ch.grid]
    p = max((max(g) for g in grids), default=1)
    end = s.plan.stages[0].end if s.plan.stages else 0
    return result(True, "", layer_peak, s.peak or s.lower_bound, s.macs, p, end, s.label)


def best_plan(spec: NetSpec, evaluation: Evaluation, constraints: Constraints) -> Plan:
    """The plan behind a feasible evaluation (rebuilt: evaluations keep only its figures)."""
    graph = build_net(spec)
    if constraints.convention == "placed":
        return choose(search(graph, include_input=constraints.include_input, max_grid=constraints.max_patches),
                      sram=constraints.sram).plan
    if evaluation.patches == 1:
        return Plan.layer_by_layer(graph, include_input=constraints.include_input)
    out = graph.tensors[graph.ops[evaluation.end - 1].outputs[0]].shape
    p = evaluation.patches
    return Plan(graph.name, fingerprint(graph), [Stage(0, evaluation.end, split_even(out[1], p),
                                                       split_even(out[2], p))], include_input=constraints.include_input)
