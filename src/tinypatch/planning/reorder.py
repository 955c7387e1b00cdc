"""Memory-aware operator order: producers delayed until just before their first consumer.

Converters emit operators breadth-first (an FPN's lateral convolution right after the backbone
map it reads), so the lateral's output waits across the whole backbone. :func:`sink_order`
moves every operator, last first, to just before the first operator that reads its outputs;
an operator only feeding graph outputs (a detector's side head) stays where it is, or, with
``heads`` "last" / "reversed", moves to the end in its order / in reverse order (so the
shallow heads run after the deep top-down path that still needs their inputs, or the other
way round). The order stays topological, so the graph computes the same values.
"""

from __future__ import annotations

from tinypatch.errors import PlanError
from tinypatch.ir import Graph

HEADS = ("stay", "last", "reversed")


def sink_order(graph: Graph, heads: str = "stay") -> list[int]:
    """A topological order of ``graph``'s operator indices (see the module docstring)."""
    if heads not in HEADS:
        raise PlanError(f"heads must be one of {', '.join(HEADS)}, got {heads!r}")
    users = graph.consumers()
    readers = [sorted({u for t in op.outputs for u in users.get(t, [])}) for op in graph.ops]
    order = list(range(len(graph.ops)))
    if heads != "stay":
        tail = [i for i in order if not readers[i]]
        order = [i for i in order if readers[i]] + (tail if heads == "last" else tail[::-1])
    for i in reversed(range(len(graph.ops))):
        if readers[i]:
            order.remove(i)
            order.insert(min(order.index(u) for u in readers[i]), i)
    return order
