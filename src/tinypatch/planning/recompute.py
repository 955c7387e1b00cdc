"""Which tensors to recompute: long-lived maps whose last reader could rebuild them in its stage.

A tensor read early and once more much later stays whole in between, and with it every byte
of the segments it spans (an FPN's backbone map C3, read by the backbone and again by its
lateral convolution at the end of the top-down path). Cloning the operators that make it for
that late reader (:func:`tinypatch.planning.rewrite.recompute`) lets it die after its early
readers; the clones start from tensors that are live at the late reader anyway (the graph
input, a map the top-down path still holds) and, being spatially local, can run inside the
late reader's patch stage, tile by tile. :func:`recompute_candidates` lists such rewrites,
the most byte-steps saved first; the schedule search decides whether one pays (it counts the
clones' MACs).
"""

from __future__ import annotations

from tinypatch.analysis.liveness import tensor_lifetimes
from tinypatch.analysis.regions import axis_maps
from tinypatch.ir import Graph

MAX_CLONES = 32  # operators one rewrite may clone


def recompute_candidates(graph: Graph, limit: int = 2) -> list[tuple[list[int], int]]:
    """Up to ``limit`` rewrites ``(ops, consumer)`` (see the module docstring), best first: each clones
    the spatially local operators that make a tensor read at least twice, for its last reader,
    starting from tensors live at that reader anyway."""
    life = tensor_lifetimes(graph)
    producers = graph.producers()
    users = graph.consumers()
    found = []
    for t, p in producers.items():
        readers = users.get(t, [])
        if t in graph.outputs or len(readers) < 2 or readers[-1] - readers[-2] < 2:
            continue
        last = readers[-1]
        ops = _chain(graph, p, last, life, producers)
        if ops is not None:
            found.append((graph.tensors[t].nbytes * (last - readers[-2]), ops, last))
    found.sort(key=lambda f: (-f[0], f[2]))
    return [(ops, last) for _, ops, last in found[:limit]]


def _chain(graph: Graph, p: int, consumer: int, life: dict[str, tuple[int, int]],
           producers: dict[str, int]) -> list[int] | None:
    """The operators to clone so that op ``p``'s output is remade for ``consumer`` from tensors live
    at ``consumer`` anyway (graph inputs, constants, maps read later); None if one is not
    spatially local, makes several outputs, or there are more than MAX_CLONES."""
    ops, todo = set(), [p]
    while todo:
        k = todo.pop()
        if k in ops:
            continue
        op = graph.ops[k]
        if axis_maps(graph, op) is None or len(ops) >= MAX_CLONES:
            return None
        ops.add(k)
        for t in op.inputs:
            if t and t in producers and life[t][1] < consumer:
                todo.append(producers[t])
    return sorted(ops)
