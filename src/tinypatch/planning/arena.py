"""Arena placement: give every activation buffer an offset in one block of SRAM.

Buffers (``tinypatch.analysis.liveness.Buffer``) that are live at the same step must not
share bytes. Sizes are rounded up to ``alignment`` (16 B, like TFLM's arena), so every
offset is aligned too. Strategies:

* ``tflm``: TFLM's GreedyMemoryPlanner: buffers sorted by size, descending (equal sizes in
  reverse list order, as TFLM's sort array is filled from the back), each at the lowest
  offset that fits among the already placed buffers that overlap it in time (first fit);
* ``<fit>-fit/<order>``: the same greedy with first- or best-fit gaps and other orders
  (size, lifetime length, start, size*lifetime, pressure);
* ``search/<preorder>``: a depth-first search for a placement within a capacity, over
  canonical placements (after MiniMalloc, Moffitt, ASPLOS 2023): buffers go in nondecreasing
  (offset, preorder rank) order, each right above the placed buffers it meets in time. Of the
  placements within the capacity take one with the least sum of offsets (identical buffers in
  rank order): no buffer can move down, so it is built in that order and no cut below drops
  it; the search is complete. Cuts: the bytes still unplaced in a section (a run of steps
  with the same live buffers) must fit under the capacity above the last offset placed, above
  the buffer just placed where it lives, and above the lowest offset left to the section's
  buffers; a buffer whose offset is at or above where another unplaced one could end is
  skipped (that one could drop below it). Static preorders (pressure, start, lifetime, area)
  take turns, with doubling node limits.

:func:`place` runs TFLM's greedy first, so it is never worse than ``tflm``. If that misses
the liveness lower bound it asks the search for the bound, then, failing that, keeps the best
greedy variant and bisects between the bound and it, within a node budget. A placement is
``optimal`` when it reaches the bound or the search proves nothing lower fits.

:func:`plan_arena` applies this to a graph's activations.

Anchored buffers (an operator's output written in place over its input,
:mod:`tinypatch.analysis.liveness`) keep their fixed distance: each group of anchored buffers
is placed as one block by the greedy variants (first fit of the whole group), and the best
one is kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tinypatch.analysis.liveness import Buffer, align_up, anchor_groups, liveness, lower_bound
from tinypatch.errors import PlanError
from tinypatch.ir import Graph

NODE_LIMIT = 20_000  # search nodes (placements tried) one call may spend, at most
WORK_LIMIT = 60_000  # nodes x buffers by default (a node costs ~ the number of buffers): ~40 ms


@dataclass(frozen=True)
class Placement:
    """Offsets of a list of buffers in one arena."""

    buffers: list[Buffer]
    offsets: dict[str, int]
    alignment: int
    strategy: str
    lower_bound: int  # max bytes live at one step (aligned sizes)
    optimal: bool  # proven optimal: reaches the lower bound or the search proved it
    anchors: dict[str, tuple[str, int]] = field(default_factory=dict)  # buffer -> (buffer above, shift)

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
        shared = set()  # anchored pairs: may share bytes, at their fixed distance
        for name, (above, shift) in self.anchors.items():
            if self.offsets[name] != self.offsets[above] - align_up(shift, self.alignment):
                raise PlanError(f"buffer {name!r} must start {shift} bytes below {above!r}")
            shared |= {(name, above), (above, name)}
        live = [b for b in self.buffers if sizes[b.name]]
        for i, a in enumerate(live):
            a0 = self.offsets[a.name]
            for b in live[i + 1:]:
                b0 = self.offsets[b.name]
                if (a.name, b.name) in shared:
                    continue
                if a.overlaps_in_time(b) and a0 < b0 + sizes[b.name] and b0 < a0 + sizes[a.name]:
                    raise PlanError(f"buffers {a.name!r} and {b.name!r} are live together and overlap "
                                    f"in the arena ([{a0}, +{sizes[a.name]}) vs [{b0}, +{sizes[b.name]}))")


# --- greedy ---------------------------------------------------------------------------
def _fit(busy: list[tuple[int, int]], size: int, fit: str) -> int:
    """Lowest (first fit) or tightest (best fit) offset for ``size`` bytes among ``busy``
    [lo, hi) intervals sorted by lo."""
    cand, best, best_gap = 0, None, None
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
        steps = max((b.end for b in buffers), default=-1) + 1
        self.live: list[list[int]] = [[] for _ in range(steps)]  # buffers live at each step
        starting: list[list[int]] = [[] for _ in range(steps)]
        for i, b in enumerate(buffers):
            starting[b.start].append(i)
            for t in range(b.start, b.end + 1):
                self.live[t].append(i)
        # j meets i in time iff it is live when i starts or starts while i is live
        self.conflicts = [[j for j in self.live[b.start] if j != i] +
                          [j for t in range(b.start + 1, b.end + 1) for j in starting[t]]
                          for i, b in enumerate(buffers)]
        prof = [sum(self.sizes[i] for i in ids) for ids in self.live]
        self.pressure = [max(prof[b.start:b.end + 1]) for b in buffers]  # most bytes live in its lifetime

    def busy(self, i: int, offsets: list[int | None]) -> list[tuple[int, int]]:
        return sorted((o, o + self.sizes[j]) for j in self.conflicts[i] if (o := offsets[j]) is not None)

    def greedy(self, order: list[int], fit: str) -> list[int]:
        offsets: list[int | None] = [None] * len(self.buffers)
        for i in order:
            offsets[i] = _fit(self.busy(i, offsets), self.sizes[i], fit)
        return offsets  # type: ignore[return-value]

    def peak(self, offsets: list[int]) -> int:
        return max((o + s for o, s in zip(offsets, self.sizes) if s), default=0)


def _by(keys: list[Any]) -> list[int]:
    return sorted(range(len(keys)), key=lambda i: keys[i])  # stable: ties keep list order


def _life(b: Buffer) -> int:
    return b.end - b.start


ORDERS: dict[str, Callable[[_Problem], list[int]]] = {
    # TFLM fills its sort array from the back, so equal sizes end up in reverse list order
    "tflm": lambda p: _by([(-s, -i) for i, s in enumerate(p.sizes)]),
    "size": lambda p: _by([-s for s in p.sizes]),
    "lifetime": lambda p: _by([(-_life(b), -s) for b, s in zip(p.buffers, p.sizes)]),
    "start": lambda p: _by([(b.start, -s) for b, s in zip(p.buffers, p.sizes)]),
    "area": lambda p: _by([-s * (_life(b) + 1) for b, s in zip(p.buffers, p.sizes)]),
    "pressure": lambda p: _by([(-q, -s) for q, s in zip(p.pressure, p.sizes)]),
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
    return Placement(p.buffers, {b.name: o for b, o in zip(p.buffers, offsets)}, alignment, strategy, lb,
                     optimal or p.peak(offsets) <= lb)


def _greedy(p: _Problem, alignment: int, lb: int, fit: str, order: str) -> Placement:
    strategy = "tflm" if (fit, order) == ("first", "tflm") else f"{fit}-fit/{order}"
    return _placement(p, p.greedy(ORDERS[order](p), fit), alignment, strategy, lb, False)


def tflm_greedy(buffers: list[Buffer], alignment: int = 16) -> Placement:
    """TFLM GreedyMemoryPlanner's placement (buffers added in list order)."""
    _validate(buffers, alignment)
    return _greedy(_Problem(buffers, alignment), alignment, lower_bound(buffers, alignment), "first", "tflm")


# --- search ---------------------------------------------------------------------------
PREORDERS: dict[str, Callable[[_Problem, int], Any]] = {
    "pressure": lambda p, i: (-p.pressure[i], -_life(p.buffers[i]), -p.sizes[i]),
    "start": lambda p, i: (p.buffers[i].start, -_life(p.buffers[i])),
    "lifetime": lambda p, i: (-_life(p.buffers[i]), -p.sizes[i]),
    "area": lambda p, i: -p.sizes[i] * (_life(p.buffers[i]) + 1),
}


class _Search:
    """Canonical depth-first search for a placement within a capacity (see the module docstring).

    Time is cut into sections: runs of steps with the same live buffers. Per section it keeps
    the bytes not yet placed: they must fit above the last buffer placed there.
    """

    def __init__(self, p: _Problem) -> None:
        self.p = p
        ids = [i for i, s in enumerate(p.sizes) if s]
        live = [[i for i in ids_t if p.sizes[i]] for ids_t in p.live]
        self.live: list[list[int]] = []  # buffers live in each section
        section = []  # section of each step
        for t, ids_t in enumerate(live):
            if not t or ids_t != live[t - 1]:
                self.live.append(ids_t)
            section.append(len(self.live) - 1)
        self.span = {i: (section[p.buffers[i].start], section[p.buffers[i].end] + 1) for i in ids}
        self.bytes = [sum(p.sizes[i] for i in ids_k) for ids_k in self.live]
        self.conflicts = [[j for j in c if p.sizes[j]] for c in p.conflicts]
        self.orders = {name: sorted(ids, key=lambda i: key(p, i)) for name, key in PREORDERS.items()}

    def run(self, cap: int, order: list[int], limit: int) -> tuple[list[int] | None, bool, int]:
        """Offsets within ``cap`` bytes (or None), whether the search finished, nodes used."""
        sizes, conflicts, span, live, buffers = self.p.sizes, self.conflicts, self.span, self.live, self.p.buffers
        rank = {i: r for r, i in enumerate(order)}
        unplaced = list(self.bytes)  # bytes not yet placed, per section
        low = [0] * len(sizes)  # lowest offset left to each unplaced buffer
        offsets: list[int | None] = [None] * len(sizes)
        if max(unplaced, default=0) > cap:
            return None, True, 0

        def candidates(last: tuple[int, int]) -> list[int]:
            todo = [i for i in order if offsets[i] is None]
            lowest_top = min([low[i] + sizes[i] for i in todo])
            # at or above lowest_top a buffer is dominated: another one could end below it
            out, seen = [], set()
            for i in sorted([i for i in todo if low[i] < lowest_top], key=low.__getitem__):  # stable: by rank
                key = (sizes[i], buffers[i].start, buffers[i].end)
                if (low[i], rank[i]) > last and low[i] + sizes[i] <= cap and key not in seen:
                    seen.add(key)
                    out.append(i)
            return out

        def put(i: int) -> list[tuple[int, int]]:
            """Place buffer i at its lowest offset; (buffer, old lowest offset) of those it raised."""
            offsets[i] = low[i]
            top = low[i] + sizes[i]
            for k in range(*span[i]):
                unplaced[k] -= sizes[i]
            raised = [(j, low[j]) for j in conflicts[i] if offsets[j] is None and low[j] < top]
            for j, _ in raised:
                low[j] = top
            return raised

        def fits(i: int, raised: list[tuple[int, int]]) -> bool:
            o = low[i]
            top = o + sizes[i]
            if o + max(unplaced) > cap or any(top + unplaced[k] > cap for k in range(*span[i])):
                return False  # what is left must fit above this offset, and above this buffer where it lives
            for j, _ in raised:  # ... and above the lowest offset left to the buffers of a section
                if top + sizes[j] > cap:
                    return False
                for k in range(*span[j]):
                    if top + unplaced[k] > cap and \
                            min(low[x] for x in live[k] if offsets[x] is None) + unplaced[k] > cap:
                        return False
            return True

        def take_back(i: int, raised: list[tuple[int, int]]) -> None:
            for k in range(*span[i]):
                unplaced[k] += sizes[i]
            for j, lo in raised:
                low[j] = lo
            offsets[i] = None

        if not order:
            return [0] * len(sizes), True, 0
        left, nodes = len(order), 0
        stack: list[list[Any]] = [[candidates((-1, -1)), 0, None]]  # candidates, next, undo record
        while stack:
            frame = stack[-1]
            if frame[2] is not None:
                take_back(*frame[2])
                frame[2] = None
                left += 1
            if frame[1] == len(frame[0]):
                stack.pop()
                continue
            if nodes == limit:
                return None, False, nodes
            i = frame[0][frame[1]]
            frame[1] += 1
            nodes += 1
            frame[2] = (i, put(i))
            left -= 1
            if not fits(*frame[2]):
                continue
            if not left:
                return [0 if o is None else o for o in offsets], True, nodes
            stack.append([candidates((offsets[i], rank[i])), 0, None])
        return None, True, nodes

    def probe(self, cap: int, budget: int) -> tuple[list[int] | None, str, bool, int]:
        """Try the preorders round robin, doubling their node limits: (offsets, preorder, proven
        infeasible, nodes used)."""
        used, limit = 0, 2 * len(self.span) + 2
        while used < budget:
            for name, order in self.orders.items():
                offsets, finished, nodes = self.run(cap, order, min(limit, budget - used))
                used += nodes
                if offsets is not None or finished:
                    return offsets, name, offsets is None, used
                if used >= budget:
                    break
            limit *= 2
        return None, "", False, used


def _bisect(s: _Search, lo: int, best: Placement, budget: int) -> Placement:
    """Lower ``best`` towards ``lo`` (no placement fits below it) by bisecting the capacity."""
    step = best.alignment
    while lo < best.peak and budget > 0:
        cap = lo + (best.peak - lo) // step // 2 * step
        offsets, name, infeasible, used = s.probe(cap, budget)
        budget -= used
        if offsets is not None:
            best = _placement(s.p, offsets, best.alignment, f"search/{name}", best.lower_bound, False)
        elif infeasible:
            lo = cap + step
        else:
            break
    return replace(best, optimal=best.optimal or lo >= best.peak)


def _budget(n: int) -> int:
    """Default search nodes for ``n`` buffers: WORK_LIMIT's worth, but at least one dive and its
    backtracking in the first preorder's round."""
    return min(NODE_LIMIT, max(WORK_LIMIT // max(n, 1), 2 * n + 2))


def exact(buffers: list[Buffer], alignment: int = 16, node_limit: int = NODE_LIMIT) -> Placement | None:
    """The search alone (no greedy incumbent); None if it finds no placement within ``node_limit``.

    ``optimal`` in the result says whether the search proved it within ``node_limit``.
    """
    _validate(buffers, alignment)
    p = _Problem(buffers, alignment)
    lb = lower_bound(buffers, alignment)
    s = _Search(p)
    offsets, name, infeasible, used = s.probe(lb, node_limit)
    if offsets is not None:
        return _placement(p, offsets, alignment, f"search/{name}", lb, True)
    stacked = list(itertools.accumulate(p.sizes, initial=0))[:-1]  # every buffer on top of the last
    found = _bisect(s, lb + alignment if infeasible else lb,
                    _placement(p, stacked, alignment, "stacked", lb, False), node_limit - used)
    return None if found.strategy == "stacked" else found


# --- anchored groups ------------------------------------------------------------------
def _lowest_free(forbidden: list[tuple[int, int]]) -> int:
    """Lowest offset o >= 0 with o <= lo or o >= hi for every (lo, hi)."""
    cand = 0
    for lo, hi in sorted(forbidden):
        if cand <= lo:
            break
        if cand < hi:
            cand = hi
    return cand


class GroupPlacer:
    """Greedy first fit of whole anchored groups (over several group orders; the lowest wins) for
    one buffer list under any anchors: the time conflicts are worked out once, so that the
    in-place pass can try many anchor sets cheaply."""

    def __init__(self, buffers: list[Buffer], alignment: int) -> None:
        _validate(buffers, alignment)
        self.buffers, self.alignment = buffers, alignment
        self.p = _Problem(buffers, alignment)
        self.index = {b.name: i for i, b in enumerate(buffers)}
        s = self.p.sizes
        # buffer i alone in its group: (j, lo, hi) for each buffer j it meets, i may not start in (o_j + lo, o_j + hi)
        self.alone = [[(j, -s[i], s[j]) for j in c if s[j]] if s[i] else [] for i, c in enumerate(self.p.conflicts)]

    def offsets(self, anchors: dict[str, tuple[str, int]], cap: int | None = None) -> tuple[list[int], str] | None:
        """Offsets of the lowest placement, and its group order; None when every order needs more
        than ``cap`` bytes (an order is given up as soon as it does)."""
        p, alone, bufs, sizes = self.p, self.alone, self.buffers, self.p.sizes
        # anchored groups by their first member (buffer order), members in buffer order; the others alone
        where = anchor_groups([bufs[self.index[n]] for n in anchors], anchors, self.alignment)
        shared: dict[str, list[tuple[int, int]]] = {}
        for name, (root, rel) in where.items():
            shared.setdefault(root, []).append((self.index[name], rel))
        first = {min(ms)[0]: sorted(ms) for ms in shared.values()}
        later = {i for ms in first.values() for i, _ in ms[1:]}
        members = [first.get(i) or [(i, 0)] for i in range(len(bufs)) if i not in later]
        forbid = []  # per group: (j, lo, hi): the group may not start in (o_j + lo, o_j + hi)
        for ms in members:
            if len(ms) == 1:
                forbid.append(alone[ms[0][0]])
                continue
            own = {i for i, _ in ms}
            forbid.append([(j, -r - sizes[i], sizes[j] - r) for i, r in ms if sizes[i] for j in p.conflicts[i]
                           if j not in own and sizes[j]])
        extent = np.array([max(r + sizes[i] for i, r in ms) for ms in members], np.int64)
        start = np.array([min(bufs[i].start for i, _ in ms) for ms in members], np.int64)
        end = np.array([max(bufs[i].end for i, _ in ms) for ms in members], np.int64)
        pressure = np.array([max(p.pressure[i] for i, _ in ms) for ms in members], np.int64)
        orders = {"size": np.argsort(-extent, kind="stable"),  # stable, as _by
                  "pressure": np.lexsort((-extent, -pressure)),
                  "lifetime": np.lexsort((-extent, start - end)),
                  "start": np.lexsort((-extent, start)),
                  "area": np.argsort(-extent * (end - start + 1), kind="stable")}
        top = [max([r + sizes[i] for i, r in ms if sizes[i]], default=None) for ms in members]  # highest byte
        best, best_name = None, ""
        for name, order in orders.items():
            offsets: list[int | None] = [None] * len(bufs)
            peak = 0
            for g in order.tolist():
                o = _lowest_free([(oj + lo, oj + hi) for j, lo, hi in forbid[g] if (oj := offsets[j]) is not None])
                for i, r in members[g]:
                    offsets[i] = o + r
                if top[g] is not None and o + top[g] > peak:
                    peak = o + top[g]
                    if cap is not None and peak > cap:
                        break
            else:
                if best is None or peak < cap:  # type: ignore[operator]
                    best, best_name, cap = offsets, name, peak
        return None if best is None else (best, best_name)  # type: ignore[return-value]

    def peak(self, anchors: dict[str, tuple[str, int]], cap: int | None = None) -> int | None:
        """Arena bytes of :meth:`place`'s placement; None when that is more than ``cap``."""
        found = self.offsets(anchors, cap)
        return None if found is None else self.p.peak(found[0])

    def place(self, anchors: dict[str, tuple[str, int]]) -> Placement:
        offsets, name = self.offsets(anchors)  # type: ignore[misc]
        lb = lower_bound(self.buffers, self.alignment, anchors)
        return replace(_placement(self.p, offsets, self.alignment, f"groups/{name}", lb, False), anchors=dict(anchors))


# --- entry points ---------------------------------------------------------------------
def place(buffers: list[Buffer], alignment: int = 16, node_limit: int | None = None,
          anchors: dict[str, tuple[str, int]] | None = None) -> Placement:
    """The lowest placement found: TFLM's greedy, then the search for the lower bound, then the
    other greedy variants and bisection. ``node_limit``: search nodes to spend (default
    :func:`_budget`: about 40 ms up to ~170 buffers, one dive beyond). With ``anchors``
    (buffer -> (buffer above it, shift)) the anchored groups are placed by :class:`GroupPlacer`."""
    _validate(buffers, alignment)
    if anchors:
        return GroupPlacer(buffers, alignment).place(anchors)
    p = _Problem(buffers, alignment)
    lb = lower_bound(buffers, alignment)
    best = _greedy(p, alignment, lb, "first", "tflm")
    if best.optimal:
        return best
    budget = _budget(len(buffers)) if node_limit is None else node_limit
    s = _Search(p)
    offsets, name, infeasible, used = s.probe(lb, budget)
    if offsets is not None:
        return _placement(p, offsets, alignment, f"search/{name}", lb, True)
    for fit in FITS:
        for order in ORDERS:
            cand = _greedy(p, alignment, lb, fit, order)
            best = cand if cand.peak < best.peak else best
    return _bisect(s, lb + alignment if infeasible else lb, best, budget - used)


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
               node_limit: int | None = None) -> ArenaPlan:
    """Place the activations of ``graph``; ``method`` is "best" (:func:`place`) or "tflm"."""
    if method not in ("best", "tflm"):
        raise PlanError(f"unknown arena method {method!r} (use 'best' or 'tflm')")
    live = liveness(graph, include_input, include_output, aliasing)
    if method == "tflm":
        pl = tflm_greedy(live.buffers, alignment)
    else:
        pl = place(live.buffers, alignment, node_limit)
    offsets = {t: pl.offsets[b] for t, b in live.tensor_buffer.items()}
    sizes = {t: graph.tensors[t].nbytes for t in live.tensor_buffer}
    return ArenaPlan(offsets, sizes, dict(live.tensor_buffer), pl, include_input, include_output, aliasing)
