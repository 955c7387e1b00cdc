"""The schedule search over rewritten graphs: reordered operators and recomputed maps.

:func:`rewrite_front` runs a search (any ``search_of(graph)``, e.g. the exact search, then
optionally a ``refine`` pass such as in-place ops) on the model and on each candidate rewrite of it (:func:`candidates`: the
memory-aware orders of :mod:`tinypatch.planning.reorder`, and on each the recompute rewrites
of :mod:`tinypatch.planning.recompute`), and merges the fronts: a schedule of a rewritten graph
is kept where it beats every other on (peak, MACs), its plan carrying the rewrites. MACs are
counted on the graph the plan runs (clones included), so overheads stay against the model's
layer-by-layer MACs. The model's own front is part of the union, so rewriting never makes a
front worse.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

from tinypatch.ir import Graph
from tinypatch.planning.optimal import FrontResult, Schedule
from tinypatch.planning.plan import fingerprint
from tinypatch.planning.recompute import recompute_candidates
from tinypatch.planning.reorder import HEADS, sink_order
from tinypatch.planning.rewrite import apply_rewrites, describe, tag_plan


@dataclass
class RewrittenSchedule(Schedule):
    """A point of the front found on a rewritten graph (its plan carries the rewrites)."""

    graph: Graph | None = None  # the rewritten graph the plan's stages index
    note: str = ""  # what the rewrites do, e.g. "recompute 0-4 for 26, reordered"

    @property
    def label(self) -> str:
        return f"{{{self.note}}} {Schedule.label.fget(self)}"  # type: ignore[attr-defined]


def schedule_graph(schedule: Schedule, model: Graph) -> Graph:
    """The graph ``schedule``'s plan indexes: its rewritten graph, or ``model``."""
    return getattr(schedule, "graph", None) or model


def candidates(graph: Graph, limit: int = 2) -> Iterator[tuple[list[dict[str, Any]], Graph]]:
    """Distinct rewrites of ``graph`` worth a search: each memory-aware order, and on each order
    up to ``limit`` recompute rewrites; as (rewrites, rewritten graph)."""
    seen = {fingerprint(graph)}
    identity = list(range(len(graph.ops)))
    for heads in HEADS:
        order = sink_order(graph, heads)
        base = [] if order == identity else [{"order": order}]
        g = apply_rewrites(graph, base)
        if fingerprint(g) not in seen:
            seen.add(fingerprint(g))
            yield base, g
        for ops, consumer in recompute_candidates(g, limit):
            rewrites = [*base, {"recompute": ops, "for": consumer}]
            r = apply_rewrites(graph, rewrites)
            if fingerprint(r) not in seen:
                seen.add(fingerprint(r))
                yield rewrites, r


def rewrite_front(graph: Graph, search_of: Callable[[Graph], FrontResult],
                  refine: Callable[[Graph, FrontResult], FrontResult] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> FrontResult:
    """``search_of(graph)`` (then ``refine``d, e.g. by the in-place pass) merged with the points of
    every candidate rewrite's front (module docstring). A candidate's points that the model's own
    searched front already matches or beats on (peak, MACs) are dropped before ``refine``, which
    then only runs where a rewrite may pay."""
    t0 = time.perf_counter()
    raw = search_of(graph)
    base = refine(graph, raw) if refine else raw
    points: list[Schedule] = list(base.front)
    options = base.options
    tried = list(candidates(graph))
    for n, (rewrites, g) in enumerate(tried, 1):
        result = search_of(g)
        options += result.options
        new = [s for s in result.front if not any(_covers(raw, b, s) for b in raw.front)]
        if new and refine:
            new = [s for s in refine(g, replace(result, front=new)).front
                   if not any(_covers(raw, b, s) for b in raw.front)]
        note = describe(rewrites)
        for s in new:
            figures = {f.name: getattr(s, f.name) for f in fields(Schedule)}
            figures["plan"] = tag_plan(s.plan, graph, rewrites, g)
            points.append(RewrittenSchedule(**figures, graph=g, note=note))
        if progress:
            progress(n, len(tried))
    front, fewest = [], None
    for s in sorted(points, key=lambda s: (s.peak or s.lower_bound, *base.key(s))):
        if fewest is None or base.key(s) < fewest:
            front.append(s)
            fewest = base.key(s)
    return replace(base, front=front, options=options, seconds=time.perf_counter() - t0,
                   space={**base.space, "rewrites": len(tried)})


def _covers(result: FrontResult, a: Schedule, b: Schedule) -> bool:
    """``a`` is at least as good as ``b`` on peak and on the front's objective."""
    return (a.peak or a.lower_bound) <= (b.peak or b.lower_bound) and result.key(a) <= result.key(b)
