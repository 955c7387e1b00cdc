"""Schedule search: the entry point the CLI and the benchmarks use.

``strategy`` picks the halo policies a stage may use ("recompute": MCUNetV2's halo
recomputation only; "cache": keep halos, in tile buffers or column-streamed window buffers;
"auto": all); ``single_stage`` restricts the
space to MCUNetV2's (one patch stage from the first spatial operator). The engine is the
exact dynamic program of :mod:`tinypatch.planning.optimal`.
"""

from __future__ import annotations

from collections.abc import Callable

from tinypatch.errors import BudgetError, PlanError
from tinypatch.ir import Graph
from tinypatch.planning.cost import overhead
from tinypatch.planning.latency import cost_model
from tinypatch.planning.optimal import FrontResult, Schedule, optimal_front
from tinypatch.planning.tiles import first_local_op

__all__ = ["STRATEGIES", "choose", "first_local_op", "search"]

STRATEGIES = {"recompute": ("recompute",), "cache": ("cache_w", "cache", "stream"),
              "auto": ("recompute", "cache_w", "cache", "stream")}


def search(graph: Graph, include_input: bool = True, include_output: bool = True, max_grid: int = 8,
           alignment: int = 16, strategy: str = "auto", single_stage: bool = False,
           progress: Callable[[int, int], None] | None = None, stream: bool = True, target: str | None = None,
           objective: str | None = None) -> FrontResult:
    """The Pareto front of (placed peak, MACs) over the chosen schedule space.

    ``stream=False`` leaves out column-streamed stages (e.g. to compare the schedule spaces).
    With a ``target`` (a fitted cost model, :mod:`tinypatch.planning.latency`) every schedule gets
    its predicted instructions and the ``objective`` defaults to "instructions": the front trades
    peak against predicted instructions (ties: fewer kernel calls); "macs" keeps the MAC front.
    """
    if strategy not in STRATEGIES:
        raise PlanError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if max_grid < 1:
        raise PlanError("the largest grid must have at least 1 tile per axis")
    policies = tuple(p for p in STRATEGIES[strategy] if stream or p != "stream")
    model = cost_model(target) if target is not None else None
    if objective is None:
        objective = "instructions" if model is not None else "macs"
    return optimal_front(graph, include_input, include_output, max_grid, policies, single_stage, alignment,
                         progress=progress, model=model, objective=objective)


def choose(result: FrontResult, sram: int | None = None, max_mac_overhead: float | None = None) -> Schedule:
    """Fewest MACs (or predicted instructions, see :func:`search`) under ``sram``, else the least peak
    under ``max_mac_overhead``, else the least peak."""
    if max_mac_overhead is not None and max_mac_overhead < 0:
        raise PlanError("the MAC overhead must be >= 0")
    if sram is not None:
        chosen = result.best_under_sram(sram)
        if max_mac_overhead is not None and chosen.macs > result.baseline.macs * (1 + max_mac_overhead):
            raise BudgetError(f"no schedule fits {sram} B within +{max_mac_overhead:.0%} MACs; the fewest MACs "
                              f"that fit are +{overhead(chosen.macs, result.baseline.macs):.1%}", chosen.peak)
        return chosen
    if max_mac_overhead is not None:
        return result.best_under_overhead(max_mac_overhead)
    return min(result.front, key=lambda s: (s.peak, *result.key(s)))
