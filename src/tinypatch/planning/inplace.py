"""Choose the layer-by-layer operators that run in place.

:mod:`tinypatch.analysis.inplace_shift` says which operators *can* write their output over an input
and how far below it; this pass decides which *should*: an in-place pair saves bytes at its
own step but ties two buffers together for the whole arena placement, so each candidate is
tried on the real placement (:func:`tinypatch.planning.memory.place_plan`) and kept only if
it lowers the arena peak, or keeps it and lowers the bytes live at the fullest steps. Candidates are tried in order of the bytes live at their step
(the fullest steps first), in rounds until none helps. :func:`inplace_front` applies this to
every schedule of a searched front (what ``tinypatch plan`` offers by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.planning.check import check_plan
from tinypatch.planning.memory import inplace_anchors, place_plan, plan_buffers
from tinypatch.planning.optimal import FrontResult, Schedule
from tinypatch.planning.plan import Plan
from tinypatch.planning.tiles import StageTiling


def inplace_options(graph: Graph, plan: Plan) -> list[int]:
    """Layer-by-layer ops of ``plan`` that could run in place, fullest step first."""
    pb = plan_buffers(graph, replace(plan, inplace=[]))
    live = pb.liveness
    options = [k for k in range(len(graph.ops)) if k not in plan.inplace and inplace_anchors(
        graph, replace(plan, inplace=[k]), live.buffers, live.tensor_buffer, pb.tilings, strict=False)]
    profile = live.profile()
    return sorted(options, key=lambda k: -profile[k])


def _score(graph: Graph, plan: Plan, alignment: int, tilings: list[StageTiling]) -> tuple[int, list[int]]:
    """(placed peak, bytes live per step, fullest first): lower is better, lexicographically."""
    pb = plan_buffers(graph, plan, tilings)
    return place_plan(pb, alignment).peak, sorted(pb.liveness.profile(alignment), reverse=True)


def add_inplace(graph: Graph, plan: Plan, alignment: int = 16) -> Plan:
    """``plan`` with in-place operators added while each lowers the placed arena peak, or leaves
    it and lowers the bytes live at the fullest steps (so that ties between steps break)."""
    tilings = check_plan(graph, plan)  # the stages do not change: tile them once
    best = _score(graph, plan, alignment, tilings)
    chosen = list(plan.inplace)
    options = inplace_options(graph, plan)
    improved = True
    while improved:
        improved = False
        for k in [k for k in options if k not in chosen]:
            trial = replace(plan, inplace=sorted([*chosen, k]))
            try:
                score = _score(graph, trial, alignment, tilings)
            except PlanError:  # conflicts with an op already chosen
                continue
            if score < best:
                best, chosen, improved = score, trial.inplace, True
    return replace(plan, inplace=chosen)


def inplace_front(graph: Graph, result: FrontResult, alignment: int = 16,
                  progress: Callable[[int, int], None] | None = None) -> FrontResult:
    """``result`` with every schedule's layer-by-layer ops run in place where that lowers its peak
    (:func:`add_inplace`; MACs and instructions unchanged), layer by layer itself among them, and the
    points no longer on the front (of the result's objective) dropped."""

    def lowered(s: Schedule) -> Schedule:
        plan = add_inplace(graph, s.plan, alignment)
        if not plan.inplace:
            return s
        pl = place_plan(plan_buffers(graph, plan), alignment)
        insns = result.model.predict(graph, plan) if result.model is not None else s.insns
        return replace(s, plan=plan, peak=pl.peak, lower_bound=pl.lower_bound, insns=insns)

    baseline = lowered(result.baseline)
    points = [baseline]  # layer by layer in place may now beat patch schedules with no extra MACs
    for i, s in enumerate(result.front):
        points.append(baseline if s.plan == result.baseline.plan else lowered(s))
        if progress:
            progress(i + 1, len(result.front))
    front, fewest = [], None
    for s in sorted(points, key=lambda s: (s.peak or s.lower_bound, *result.key(s))):
        if fewest is None or result.key(s) < fewest:
            front.append(s)
            fewest = result.key(s)
    return replace(result, baseline=baseline, front=front)
