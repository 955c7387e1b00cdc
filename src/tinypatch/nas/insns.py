"""Predicted instructions of a network's recompute schedules, from its layer chain (per stage).

:meth:`tinypatch.planning.latency.CostModel.predict` sums, op by op, instructions per computed
output pixel, per computed row, per kernel call and per pixel left over from groups of 2 and 4
in a row (:meth:`~tinypatch.planning.latency.CostModel.op_rates`). An op outside every patch
stage runs layer by layer; an op inside a recompute stage computes, per tile, the output rows
(= columns: square maps, square grids) :meth:`tinypatch.nas.chain.Chain.extents` lists. So a
schedule's prediction is the layer-by-layer one plus, per stage, a difference that depends on
that stage alone (:meth:`ChainCost.delta`), which the stage walk of
:mod:`tinypatch.nas.twostage` adds up like the MAC overheads. The rates come from the built
graph (which kernel path an op runs depends on its weights); tests/test_nas_latency.py checks the
sums against ``predict`` on the graph.

A stage computes at least the full output of each of its ops, once per tile row and column, so
with non-negative rates only the leftover-pixel terms can make a tiled op cheaper than layer by
layer: :meth:`ChainCost.slack` bounds how much all stages after an op can save, which keeps the
walk's pruning exact for the instruction objective.
"""

from __future__ import annotations

import math
from functools import cache

from tinypatch.ir import Graph
from tinypatch.nas.chain import Chain
from tinypatch.planning.latency import CostModel, OpRates
from tinypatch.planning.plan import Plan


class ChainCost:
    """Instructions of ``chain``'s recompute schedules on ``model``'s target (``graph``: the
    network ``chain`` describes, for the rates)."""

    def __init__(self, chain: Chain, graph: Graph, model: CostModel) -> None:
        assert len(graph.ops) == len(chain.ops), "the chain and the graph describe different networks"
        self.chain = chain
        self.rates: list[OpRates | None] = [
            model.op_rates(graph, k) if len(graph.tensors[op.outputs[0]].shape) == 4 else None
            for k, op in enumerate(graph.ops)]
        self.base = model.predict(graph, Plan.layer_by_layer(graph))  # the plan's input flag changes no work
        side = [chain.side[op.output] for op in chain.ops]
        self._layer = [0.0 if r is None else self._op(r, [side[k]]) for k, r in enumerate(self.rates)]
        signed = [v for r in self.rates if r is not None for v in (r.pixel, r.row, r.call, r.rem2, r.rem4)]
        save = [0.0 if r is None else r.rem2 * side[k] * (side[k] % 2) + r.rem4 * side[k] * (side[k] % 4)
                for k, r in enumerate(self.rates)]
        self._save = [sum(save[k:]) if min(signed, default=0) >= 0 else math.inf for k in range(len(save) + 1)]
        self._side = side
        self.delta = cache(self._delta)

    @staticmethod
    def _op(r: OpRates, spans: list[int]) -> float:
        """One op computing ``spans`` output rows per tile row and the same columns per tile column."""
        s, tiles = sum(spans), sum(1 for e in spans if e > 0)
        return (r.pixel * s * s + r.row * s * tiles + r.call * tiles * tiles + r.rem2 * s * sum(e % 2 for e in spans)
                + r.rem4 * s * sum(e % 4 for e in spans))

    def _delta(self, start: int, end: int, p: int) -> float:
        """Instructions ``p`` x ``p`` recomputed tiles over ops [start, end) add to layer by layer."""
        out = 0.0
        for k, spans in self.chain.extents(start, end, p).items():
            r = self.rates[k]
            assert r is not None and sum(spans) >= self._side[k], "a stage computes an op's whole output"
            out += self._op(r, spans) - self._layer[k]
        return out

    def slack(self, start: int) -> float:
        """A lower bound (<= 0) of what stages over ops from ``start`` on add (-inf: no bound)."""
        return -self._save[start]
