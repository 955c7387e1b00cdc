"""Reject plans that cannot run on a graph, with a message that says why."""

from __future__ import annotations

from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.planning.plan import Plan, fingerprint
from tinypatch.planning.tiles import StageTiling, tile_stage


def check_plan(graph: Graph, plan: Plan) -> list[StageTiling]:
    """Validate ``plan`` against ``graph``; return its stage tilings. Raises PlanError."""
    fp = fingerprint(graph)
    if plan.rewrites and fp == plan.fingerprint and fp != plan.graph_fingerprint:
        raise PlanError("the plan rewrites the model's graph; run it on tinypatch.planning.rewrite.rewritten(graph, "
                        "plan), as run, codegen and show do")
    if plan.graph_fingerprint != fp:
        raise PlanError(f"the plan was made for model {plan.model!r} (fingerprint {plan.fingerprint}), "
                        f"not for {graph.name!r} (fingerprint {fp}); re-run `tinypatch plan`")
    previous_end = 0
    for k, stage in enumerate(sorted(plan.stages, key=lambda s: s.start)):
        if stage.start < previous_end:
            raise PlanError(f"stage {k} (ops [{stage.start}, {stage.end})) overlaps the stage before it")
        previous_end = stage.end
    if [s.start for s in plan.stages] != sorted(s.start for s in plan.stages):
        raise PlanError("plan stages must be listed in operator order")
    users = graph.consumers() if len(plan.stages) > 1 else None
    return [tile_stage(graph, s, users) for s in plan.stages]
