"""Choose the layer-by-layer operators that run in place.

:mod:`tinypatch.analysis.inplace` says which operators *can* write their output over an input
and how far below it; this pass decides which *should*: an in-place pair saves bytes at its
own step but ties two buffers together for the whole arena placement, so each candidate is
tried on the real placement (:func:`tinypatch.planning.memory.place_plan`) and kept only if
it lowers the arena peak, or keeps it and lowers the bytes live at the fullest steps. Candidates are tried in order of the bytes live at their step
(the fullest steps first), in rounds until none helps.
"""

from __future__ import annotations

from dataclasses import replace

from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.planning.memory import place_plan, plan_buffers
from tinypatch.planning.plan import Plan


def inplace_options(graph: Graph, plan: Plan) -> list[int]:
    """Layer-by-layer ops of ``plan`` that could run in place, fullest step first."""
    pb = plan_buffers(graph, replace(plan, inplace=[]))
    profile = pb.liveness.profile()
    staged = {k for st in pb.tilings for k in range(st.stage.start, st.stage.end)}
    options = []
    for k in range(len(graph.ops)):
        if k in staged or k in plan.inplace:
            continue
        try:
            plan_buffers(graph, replace(plan, inplace=[k]), pb.tilings)
        except PlanError:
            continue
        options.append(k)
    return sorted(options, key=lambda k: -profile[k])


def _score(graph: Graph, plan: Plan, alignment: int) -> tuple[int, list[int]]:
    """(placed peak, bytes live per step, fullest first): lower is better, lexicographically."""
    pb = plan_buffers(graph, plan)
    return place_plan(pb, alignment).peak, sorted(pb.liveness.profile(alignment), reverse=True)


def add_inplace(graph: Graph, plan: Plan, alignment: int = 16) -> Plan:
    """``plan`` with in-place operators added while each lowers the placed arena peak, or leaves
    it and lowers the bytes live at the fullest steps (so that ties between steps break)."""
    best = _score(graph, plan, alignment)
    chosen = list(plan.inplace)
    options = inplace_options(graph, plan)
    improved = True
    while improved:
        improved = False
        for k in [k for k in options if k not in chosen]:
            trial = replace(plan, inplace=sorted([*chosen, k]))
            try:
                score = _score(graph, trial, alignment)
            except PlanError:  # conflicts with an op already chosen
                continue
            if score < best:
                best, chosen, improved = score, trial.inplace, True
    return replace(plan, inplace=chosen)
