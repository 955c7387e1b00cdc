"""Graph rewrites a plan may carry: operator reordering and recomputation.

A rewrite is plain JSON data, applied in turn to the model's graph:

* ``{"order": [i0, i1, ...]}``: run the operators in this order (every index of the current
  graph once; the order must be topological). Nothing else changes.
* ``{"recompute": [i, j, ...], "for": c}``: clone operators ``i, j, ...`` (increasing, all
  before ``c``) for operator ``c`` alone: each clone reads what its original reads, with the
  outputs of earlier clones in place of their originals, and writes fresh tensors
  (``<name>/recompute``, numbered if taken); ``c`` reads the clones' outputs instead of the
  originals'. The clones go just before ``c`` and share the originals' constant tensors
  (weights are not duplicated). The values are those of the originals, so every graph output
  is byte-identical; the originals' outputs die at their other consumers, and the clones
  can be fused into ``c``'s patch stage, where they are recomputed tile by tile.

:func:`rewritten` turns a plan's model into the graph its stages index, checking both
fingerprints; :func:`tag_plan` records rewrites in a plan made on a rewritten graph.
"""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import pairwise
from typing import Any

from tinypatch.analysis.macs import op_macs
from tinypatch.errors import GraphError, PlanError
from tinypatch.ir import Graph, Op, Tensor
from tinypatch.planning.plan import Plan, check_rewrite, fingerprint

RECOMPUTED = "/recompute"  # suffix of the tensors and operators a recompute rewrite makes
MAX_GROWTH = 2  # rewrites may make at most this many times the model's operators (plus MAX_EXTRA)
MAX_EXTRA = 256


def reorder(graph: Graph, order: list[int]) -> Graph:
    """A copy of ``graph`` running its operators in ``order``. Raises PlanError unless topological."""
    if sorted(order) != list(range(len(graph.ops))):
        raise PlanError(f"an order rewrite must list each of the {len(graph.ops)} operators once")
    g = graph.copy()
    g.ops = [g.ops[i] for i in order]
    try:
        g.validate()
    except GraphError as exc:
        raise PlanError(f"the order rewrite is not a legal operator order: {exc}") from None
    return g


def recompute(graph: Graph, ops: list[int], consumer: int) -> Graph:
    """A copy of ``graph`` in which operators ``ops`` are cloned for ``consumer`` (see the module
    docstring). Raises PlanError when ``consumer`` reads none of their outputs."""
    if not ops or any(b <= a for a, b in pairwise(ops)) or ops[0] < 0 or not ops[-1] < consumer < len(graph.ops):
        raise PlanError(f"a recompute rewrite clones increasing operator indices before its consumer "
                        f"(0..{len(graph.ops) - 1}), got {ops} for {consumer}")
    g = graph.copy()
    renamed: dict[str, str] = {}
    clones = []
    for i in ops:
        op = g.ops[i]
        outputs = []
        for t in op.outputs:
            src = g.tensors[t]
            name = g.unique_name(t + RECOMPUTED)
            g.add_tensor(Tensor(name, src.shape, src.dtype, src.quant, src.data))
            renamed[t] = name
            outputs.append(name)
        clones.append(Op(op.type, [renamed.get(t, t) for t in op.inputs], outputs, dict(op.attrs),
                         op.name + RECOMPUTED))
    target = g.ops[consumer]
    if not any(t in renamed for t in target.inputs):
        raise PlanError(f"recompute rewrite: operator {consumer} reads none of the outputs of operators {ops}")
    target.inputs = [renamed.get(t, t) for t in target.inputs]
    g.ops[consumer:consumer] = clones
    g.validate()
    return g


def apply_rewrites(graph: Graph, rewrites: list[dict[str, Any]]) -> Graph:
    """The graph ``rewrites`` make of ``graph`` (a new graph; ``graph`` is not changed). Its meta
    records the model's fingerprint and layer-by-layer MACs (``rewritten_from``), which MAC
    overheads are measured against."""
    g = graph
    limit = MAX_GROWTH * len(graph.ops) + MAX_EXTRA
    for k, r in enumerate(rewrites):
        check_rewrite(r, f"rewrite {k}")
        if "recompute" in r and len(g.ops) + len(r["recompute"]) > limit:
            raise PlanError(f"rewrite {k} would make more than {limit} operators of the model's {len(graph.ops)}; "
                            f"rewrites may at most double a graph")
        g = reorder(g, r["order"]) if "order" in r else recompute(g, r["recompute"], r["for"])
    if g is graph:
        return graph
    g.meta["rewritten_from"] = graph.meta.get("rewritten_from") or {
        "fingerprint": fingerprint(graph), "macs": sum(op_macs(graph, op) for op in graph.ops)}
    return g


def base_macs(graph: Graph) -> int:
    """Layer-by-layer MACs of the model ``graph`` was rewritten from (of ``graph`` itself if it was not)."""
    src = graph.meta.get("rewritten_from")
    return int(src["macs"]) if src else sum(op_macs(graph, op) for op in graph.ops)


def rewritten(graph: Graph, plan: Plan) -> Graph:
    """The graph ``plan``'s stages index: ``graph`` itself when the plan has no rewrites or ``graph``
    is already the rewritten one, else the rewrites applied to the model ``graph``. Raises
    PlanError when ``graph`` is neither, or the rewrites do not reproduce the planned graph."""
    if not plan.rewrites:
        return graph
    fp = fingerprint(graph)
    if fp == plan.rewritten_fingerprint:
        return graph
    if fp != plan.fingerprint:
        raise PlanError(f"the plan was made for model {plan.model!r} (fingerprint {plan.fingerprint}), "
                        f"not for {graph.name!r} (fingerprint {fp}); re-run `tinypatch plan`")
    g = apply_rewrites(graph, plan.rewrites)
    if fingerprint(g) != plan.rewritten_fingerprint:
        raise PlanError(f"the plan's rewrites make a graph with fingerprint {fingerprint(g)}, not the "
                        f"{plan.rewritten_fingerprint} it was planned on; re-run `tinypatch plan`")
    return g


def tag_plan(plan: Plan, model: Graph, rewrites: list[dict[str, Any]], graph: Graph) -> Plan:
    """``plan`` (made on ``graph``, which ``rewrites`` make of ``model``) as a plan of ``model``."""
    if not rewrites:
        return plan
    return replace(plan, fingerprint=fingerprint(model), rewrites=json.loads(json.dumps(rewrites)),
                   rewritten_fingerprint=fingerprint(graph))


def describe(rewrites: list[dict[str, Any]]) -> str:
    """A short text for the rewrites, e.g. ``recompute 0-4 for 27, reordered``."""
    parts = []
    for r in rewrites:
        if "order" in r:
            if "reordered" not in parts:
                parts.append("reordered")
        else:
            ops = r["recompute"]
            span = f"{ops[0]}-{ops[-1]}" if ops == list(range(ops[0], ops[-1] + 1)) and len(ops) > 1 else \
                ",".join(map(str, ops))
            parts.append(f"recompute {span} for {r['for']}")
    return ", ".join(parts)
