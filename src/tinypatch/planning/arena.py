"""Arena placement: give every activation buffer an offset in one block of SRAM.

Buffers (``tinypatch.analysis.liveness.Buffer``) that are live at the same step must not
share bytes. Sizes are rounded up to ``alignment`` (16 B, like TFLM's arena), so every
offset is aligned too. Strategies:

* ``tflm``: TFLM's GreedyMemoryPlanner: buffers sorted by size, descending (equal sizes in
  reverse list order, as TFLM's sort array is filled from the back), each at the lowest
  offset that fits among the already placed buffers that overlap it in time (first fit);
* ``<fit>-fit/<order>``: the same greedy with first- or best-fit gaps and other orders
  (size, lifetime length, start, size*lifetime, pressure); :func:`place` keeps the
  lowest, so it is never worse than ``tflm``;
* ``exact``: branch and bound over placement orders, for at most ``exact_limit`` buffers.
  Placing buffers in the order of their offsets in an optimal solution, each at the lowest
  fitting offset not below the previous one, rebuilds a solution at least as good, so the
  search over such monotone orders is exact. It stops at the liveness lower bound.

:func:`plan_arena` applies this to a graph's activations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from tinypatch.analysis.liveness import Buffer, align_up, liveness, lower_bound
from tinypatch.errors import PlanError
from tinypatch.ir import Graph

EXACT_LIMIT = 12  # most buffers the exact search takes on
NODE_LIMIT = 20_000  # nodes the exact search may visit before it gives up


@dataclass(frozen=True)
class Placement:
    """Offsets of a list of buffers in one arena."""

    buffers: list[Buffer]
    offsets: dict[str, int]
    alignment: int
    strategy: str
    lower_bound: int  # max bytes live at one step (aligned sizes)
    optimal: bool  # proven optimal: reaches the lower bound or the exact search finished

    @property
    def sizes(self) -> dict[str, int]:
        """Aligned size of every buffer."""
        return {b.name: align_up(b.size, self.alignment) for b in self.buffers}

    @property
    def peak(self) -> int:
        """High-water mark: the arena bytes this placement needs."""
        sizes = self.sizes
        return max((self.offsets[n] + s for n, s in sizes.items() if s), default=0)

    def check(self) -> None:
        """Raise PlanError if two buffers live at the same step share a byte, or one is misaligned."""
        sizes = self.sizes
        for b in self.buffers:
            if self.offsets[b.name] < 0 or self.offsets[b.name] % self.alignment:
                raise PlanError(f"buffer {b.name!r} at offset {self.offsets[b.name]} is not "
                                f"{self.alignment}-byte aligned")
        live = [b for b in self.buffers if sizes[b.name]]
        for i, a in enumerate(live):
            a0 = self.offsets[a.name]
            for b in live[i + 1:]:
                b0 = self.offsets[b.name]
                if a.overlaps_in_time(b) and a0 < b0 + sizes[b.name] and b0 < a0 + sizes[a.name]:
                    raise PlanError(f"buffers {a.name!r} and {b.name!r} are live together and overlap "
                                    f"in the arena ([{a0}, +{sizes[a.name]}) vs [{b0}, +{sizes[b.name]}))")


# --- greedy ---------------------------------------------------------------------------
def _fit(busy: list[tuple[int, int]], size: int, fit: str, floor: int = 0) -> int:
    """Offset >= floor for ``size`` bytes among ``busy`` [lo, hi) intervals sorted by lo."""
    cand, best, best_gap = floor, None, None
    for lo, hi in busy:
        gap = lo - cand
        if gap >= size:
            if fit == "first":
                return cand
            if best_gap is None or gap < best_gap:
                best, best_gap = cand, gap
        cand = max(cand, hi)
    return cand if best is None else best


class _Problem:
    """Aligned sizes and time conflicts of a buffer list, by index."""

    def __init__(self, buffers: list[Buffer], alignment: int) -> None:
        self.buffers = buffers
        self.sizes = [align_up(b.size, alignment) for b in buffers]
        self.conflicts = [[j for j, c in enumerate(buffers) if j != i and b.overlaps_in_time(c)]
                          for i, b in enumerate(buffers)]

    def busy(self, i: int, offsets: list[int | None]) -> list[tuple[int, int]]:
        return sorted((offsets[j], offsets[j] + self.sizes[j]) for j in self.conflicts[i]
                      if offsets[j] is not None)

    def greedy(self, order: list[int], fit: str) -> list[int]:
        offsets: list[int | None] = [None] * len(self.buffers)
        for i in order:
            offsets[i] = _fit(self.busy(i, offsets), self.sizes[i], fit)
        return offsets  # type: ignore[return-value]


def _pressure(p: _Problem) -> list[int]:
    """Per buffer: the most bytes live at one step of its lifetime."""
    prof: dict[int, int] = {}
    for b, s in zip(p.buffers, p.sizes):
        for t in range(b.start, b.end + 1):
            prof[t] = prof.get(t, 0) + s
    return [max(prof[t] for t in range(b.start, b.end + 1)) for b in p.buffers]


def _by(keys: list[Any]) -> list[int]:
    return sorted(range(len(keys)), key=lambda i: keys[i])  # stable: ties keep list order


ORDERS: dict[str, Callable[[_Problem], list[int]]] = {
    # TFLM fills its sort array from the back, so equal sizes end up in reverse list order
    "tflm": lambda p: _by([(-s, -i) for i, s in enumerate(p.sizes)]),
    "size": lambda p: _by([-s for s in p.sizes]),
    "lifetime": lambda p: _by([(b.start - b.end, -s) for b, s in zip(p.buffers, p.sizes)]),
    "start": lambda p: _by([(b.start, -s) for b, s in zip(p.buffers, p.sizes)]),
    "area": lambda p: _by([-s * (b.end - b.start + 1) for b, s in zip(p.buffers, p.sizes)]),
    "pressure": lambda p: _by([(-q, -s) for q, s in zip(_pressure(p), p.sizes)]),
}
FITS = ("first", "best")


def _validate(buffers: list[Buffer], alignment: int) -> None:
    if alignment < 1:
        raise PlanError(f"alignment must be >= 1, got {alignment}")
    names = set()
    for b in buffers:
        if b.size < 0 or b.start > b.end or b.start < 0:
            raise PlanError(f"invalid buffer {b}")
        if b.name in names:
            raise PlanError(f"duplicate buffer name {b.name!r}")
        names.add(b.name)


def _placement(p: _Problem, offsets: list[int], alignment: int, strategy: str, lb: int,
               optimal: bool) -> Placement:
    pl = Placement(p.buffers, {b.name: o for b, o in zip(p.buffers, offsets)}, alignment, strategy, lb,
                   optimal)
    return replace(pl, optimal=True) if pl.peak <= lb else pl


def tflm_greedy(buffers: list[Buffer], alignment: int = 16) -> Placement:
    """TFLM GreedyMemoryPlanner's placement (buffers added in list order)."""
    _validate(buffers, alignment)
    p = _Problem(buffers, alignment)
    return _placement(p, p.greedy(ORDERS["tflm"](p), "first"), alignment, "tflm",
                      lower_bound(buffers, alignment), False)


# --- exact ----------------------------------------------------------------------------
def _exact(p: _Problem, lb: int, incumbent: int, node_limit: int) -> tuple[list[int] | None, bool]:
    """Best monotone placement below ``incumbent``: (offsets or None, search finished)."""
    n = len(p.sizes)
    steps = sorted({b.start for b in p.buffers})
    live = [[i for i, b in enumerate(p.buffers) if b.start <= t <= b.end] for t in steps]
    rem = [sum(p.sizes[i] for i in ids) for ids in live]
    at_step = [[k for k, ids in enumerate(live) if i in ids] for i in range(n)]
    order = ORDERS["size"](p)
    offsets: list[int | None] = [None] * n
    best: list[Any] = [incumbent, None]
    nodes = [0]

    def dfs(count: int, floor: int, top: int) -> bool:  # False when out of nodes
        if count == n:
            best[0], best[1] = top, list(offsets)
            return True
        nodes[0] += 1
        if nodes[0] > node_limit:
            return False
        # every unplaced buffer live at a step lies above ``floor``, beside the placed ones there
        bound = top
        for k, ids in enumerate(live):
            occ = 0
            for j in ids:
                o = offsets[j]
                if o is not None and o + p.sizes[j] > floor:
                    occ += o + p.sizes[j] - max(o, floor)
            bound = max(bound, floor + rem[k] + occ)
        if bound >= best[0]:
            return True
        tried = set()
        for i in order:
            key = (p.sizes[i], p.buffers[i].start, p.buffers[i].end)
            if offsets[i] is not None or key in tried:
                continue
            tried.add(key)
            off = _fit(p.busy(i, offsets), p.sizes[i], "first", floor)
            if max(top, off + p.sizes[i]) >= best[0]:
                continue
            offsets[i] = off
            for k in at_step[i]:
                rem[k] -= p.sizes[i]
            ok = dfs(count + 1, off, max(top, off + p.sizes[i]))
            for k in at_step[i]:
                rem[k] += p.sizes[i]
            offsets[i] = None
            if not ok:
                return False
            if best[0] <= lb:
                return True
        return True

    finished = dfs(0, 0, 0)
    return best[1], finished


def exact(buffers: list[Buffer], alignment: int = 16, node_limit: int = NODE_LIMIT) -> Placement | None:
    """The exact search alone (no greedy incumbent); None if it runs out of nodes before a leaf.

    ``optimal`` in the result says whether the search finished within ``node_limit``.
    """
    _validate(buffers, alignment)
    p = _Problem(buffers, alignment)
    lb = lower_bound(buffers, alignment)
    offsets, finished = _exact(p, lb, sum(p.sizes) + 1, node_limit)
    return None if offsets is None else _placement(p, offsets, alignment, "exact", lb, finished)


# --- entry points ---------------------------------------------------------------------
def place(buffers: list[Buffer], alignment: int = 16, exact_limit: int = EXACT_LIMIT,
          node_limit: int = NODE_LIMIT) -> Placement:
    """The lowest placement found: every greedy variant (TFLM's included), then the exact search."""
    _validate(buffers, alignment)
    p = _Problem(buffers, alignment)
    lb = lower_bound(buffers, alignment)
    best = None
    for fit in FITS:
        for name, order in ORDERS.items():
            strategy = "tflm" if (fit, name) == ("first", "tflm") else f"{fit}-fit/{name}"
            cand = _placement(p, p.greedy(order(p), fit), alignment, strategy, lb, False)
            if best is None or cand.peak < best.peak:
                best = cand
            if best.peak <= lb:
                return best
    if len(buffers) <= exact_limit:
        offsets, finished = _exact(p, lb, best.peak, node_limit)
        if offsets is not None:
            return _placement(p, offsets, alignment, "exact", lb, finished)
        if finished:
            return replace(best, optimal=True)
    return best


@dataclass(frozen=True)
class ArenaPlan:
    """Where each activation tensor of a graph lives in the arena."""

    offsets: dict[str, int]  # tensor -> byte offset (aliased tensors share one)
    sizes: dict[str, int]  # tensor -> bytes (its own dtype)
    buffer_of: dict[str, str]  # tensor -> arena buffer name
    placement: Placement
    include_input: bool
    include_output: bool
    aliasing: bool

    @property
    def peak(self) -> int:
        return self.placement.peak

    @property
    def lower_bound(self) -> int:
        return self.placement.lower_bound

    @property
    def strategy(self) -> str:
        return self.placement.strategy

    @property
    def alignment(self) -> int:
        return self.placement.alignment

    def check(self) -> None:
        """Raise PlanError unless the placement is valid and every tensor fits in its buffer."""
        self.placement.check()
        psizes = self.placement.sizes
        for t, b in self.buffer_of.items():
            if self.offsets[t] != self.placement.offsets[b] or self.sizes[t] > psizes[b]:
                raise PlanError(f"tensor {t!r} does not fit its buffer {b!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak": self.peak, "lower_bound": self.lower_bound, "strategy": self.strategy,
            "optimal": self.placement.optimal, "alignment": self.alignment,
            "include_input": self.include_input, "include_output": self.include_output,
            "aliasing": self.aliasing,
            "tensors": {t: {"offset": self.offsets[t], "bytes": self.sizes[t], "buffer": self.buffer_of[t]}
                        for t in self.offsets},
        }


def plan_arena(graph: Graph, include_input: bool = True, include_output: bool = True,
               alignment: int = 16, aliasing: bool = True, method: str = "best",
               exact_limit: int = EXACT_LIMIT) -> ArenaPlan:
    """Place the activations of ``graph``; ``method`` is "best" (:func:`place`) or "tflm"."""
    if method not in ("best", "tflm"):
        raise PlanError(f"unknown arena method {method!r} (use 'best' or 'tflm')")
    live = liveness(graph, include_input, include_output, aliasing)
    if method == "tflm":
        pl = tflm_greedy(live.buffers, alignment)
    else:
        pl = place(live.buffers, alignment, exact_limit)
    offsets = {t: pl.offsets[b] for t, b in live.tensor_buffer.items()}
    sizes = {t: graph.tensors[t].nbytes for t in live.tensor_buffer}
    return ArenaPlan(offsets, sizes, dict(live.tensor_buffer), pl, include_input, include_output, aliasing)
