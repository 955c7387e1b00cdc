"""Up to ``K`` consecutive patch stages, ``[0, n1)`` in ``p1`` x ``p1`` tiles, ``[n1, n2)`` in
``p2`` x ``p2`` tiles, ..., then layer by layer: the schedule with the fewest MACs whose analytic
peak fits the budget.

Each stage recomputes its halos, so its MAC overhead and the analytic bytes of its own ops
depend on that stage alone (a skip tensor inside a stage is either tile-sized or the stage's
input): the search combines per-stage figures, ``overhead(start, end, p)`` (MACs recomputed)
and ``peak(start, end, p)`` (max analytic bytes over ops [start, end)), computed once per stage
and the dearer peak only when the MACs can still win, by the caller
(:class:`tinypatch.nas.chain.Chain` or the graph). A schedule's MACs are the sum of its stages'
overheads (plus the layer-by-layer MACs), its peak the max of its stages' peaks and of the
layers after the last stage, so a depth-first walk over the stage boundaries (stage ends in
increasing order, then the next stage from that end) enumerates every schedule. Pruning, checked
against the exhaustive enumeration by tests/test_nas.py: a stage whose peak lower bound (its full
output held while its other ops work on at least 1/p^2 of their layer-by-layer bytes; for the
last stage also the layers after it) exceeds the budget is not tiled; a stage whose peak does is
not extended; a loop over stage ends stops at the first whose MACs so far exceed the best found
(a longer stage never recomputes less, and later stages never subtract MACs).

With ``strips`` (per stage ``[start, end)`` the row-strip counts ``g`` of the stream stages it may
run as, :meth:`tinypatch.nas.chain.Chain.streams`) every stage may also be a stream stage, ``p`` =
``-g`` in the result; then schedules of one stage are enumerated here too when one streams (the
caller enumerates one recompute stage). A stream stage's peak lower bound is its full output;
its MACs are not assumed monotone in its length, so a loop over its ends is never stopped, only
skipped.

With ``insns`` (each stage's predicted instructions over layer by layer,
:class:`tinypatch.nas.insns.ChainCost`) the schedule with the fewest predicted instructions wins
(ties: fewer MACs, then the lower peak); instructions are not monotone in a stage's length, so
instead of stopping a loop, a stage is dropped when its instructions so far plus ``slack(end)``
(what later stages could save at most) exceed the best found.
"""

from __future__ import annotations

from collections.abc import Callable

from tinypatch.errors import UsageError

Found = tuple[int, ...]  # (MACs, peak, p1, n1, p2, n2, ...): one (p, end) per patch stage


def stage_schedule(per_op: list[int], base_macs: int, ends: Callable[[int], list[int]],
                   side: Callable[[int], int], out_bytes: Callable[[int], int],
                   overhead: Callable[[int, int, int], int], peak_of: Callable[[int, int, int], int],
                   sram: int, max_patches: int, best: Found | None, stages: int = 2,
                   exhaustive: bool = False, insns: Callable[[int, int, int], float] | None = None,
                   slack: Callable[[int], float] | None = None,
                   base_insns: float = 0.0,
                   strips: Callable[[int, int], list[int]] | None = None) -> tuple[Found | None, int | None]:
    """The best of ``best`` (a one-stage or layer-by-layer schedule, or None) and every schedule of
    2..``stages`` consecutive patch stages (with ``strips``, stream stages too: 1..``stages``); with the
    least analytic peak of those tiled (None if none was). With ``insns``: fewest predicted
    instructions (``base_insns`` layer by layer; module docstring)."""
    if insns is not None and strips is not None:
        raise UsageError("stream stages have no instruction figures here (use strips=None with insns)")
    n = len(per_op)
    tail = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        tail[i] = max(per_op[i], tail[i + 1])
    least: int | None = None

    def key(macs: int, peak: int, ins: float) -> tuple[float, ...]:
        return (macs, peak) if insns is None else (ins, macs, peak)

    best_key = None if best is None else key(best[0], best[1], base_insns + _insns(insns, best[2:]))

    def bound(start: int, end: int, p: int) -> int:
        inner = max(per_op[start:end - 1], default=0)
        return out_bytes(end) + -(-inner // (p * p))

    def visit(start: int, end: int, p: int, macs0: int, ins0: float, peak0: int, path: tuple[int, ...]) -> bool:
        """Cost stage [start, end) as ``p`` (< 0: a stream stage), record it, go on from it; True: stop
        the loop over longer stages (they cannot recompute fewer MACs)."""
        nonlocal best, best_key, least
        depth = len(path) // 2 + 1  # this stage's number
        low = bound(start, end, p) if p > 0 else out_bytes(end)
        last_ok = max(tail[end], low) <= sram  # the schedule may end with this stage
        if not exhaustive and low > sram or depth == stages and not last_ok and not exhaustive:
            return False
        macs = macs0 + overhead(start, end, p)
        ins = ins0 + insns(start, end, p) if insns is not None else 0.0
        if best_key is not None and not exhaustive:
            if insns is None and macs > best_key[0]:
                return p > 0
            if slack is not None and ins + slack(end) > best_key[0]:
                return False
        peak = max(peak0, peak_of(start, end, p))
        if (depth >= 2 or p < 0 or any(q < 0 for q in path[::2])) and (last_ok or exhaustive):
            full = max(peak, tail[end])
            least = full if least is None else min(least, full)
            if full <= sram and (best_key is None or key(macs, full, ins) < best_key):
                best, best_key = (macs, full, *path, p, end), key(macs, full, ins)
        if depth < stages and (peak <= sram or exhaustive):
            walk(end, macs, ins, peak, (*path, p, end))
        return False

    def walk(start: int, macs0: int, ins0: float, peak0: int, path: tuple[int, ...]) -> None:
        for p in range(2, max_patches + 1):
            for end in ends(start):
                if side(end) >= p and visit(start, end, p, macs0, ins0, peak0, path):
                    break
        for end in ends(start) if strips is not None else ():
            for g in strips(start, end):
                visit(start, end, -g, macs0, ins0, peak0, path)

    if stages >= 2 or strips is not None:
        walk(0, base_macs, base_insns, 0, ())
    return best, least


def _insns(insns: Callable[[int, int, int], float] | None, stages: tuple[int, ...]) -> float:
    """The instructions the stages (p1, n1, p2, n2, ...) add (0: none, or p1 = 1, layer by layer)."""
    if insns is None or not stages or stages[0] == 1:
        return 0.0
    ends = (0, *stages[1::2])
    return sum(insns(a, b, p) for a, b, p in zip(ends, ends[1:], stages[::2]))
