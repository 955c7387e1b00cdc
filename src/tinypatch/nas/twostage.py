"""Two consecutive patch stages, ``[0, n1)`` in ``p1`` x ``p1`` tiles then ``[n1, n2)`` in ``p2`` x ``p2``
tiles, then layer by layer: the schedule with the fewest MACs whose analytic peak fits the budget.

Each stage recomputes its halos, so its MAC overhead and the analytic bytes of its own ops
depend on that stage alone (a skip tensor inside a stage is either tile-sized or the stage's
input): the search combines per-stage figures, ``overhead(start, end, p)`` (MACs recomputed)
and ``peak(start, end, p)`` (max analytic bytes over ops [start, end)), computed once per stage
and the dearer peak only when the MACs can still win, by the caller
(:class:`tinypatch.nas.chain.Chain` or the graph). Pruning, checked against the exhaustive
enumeration by tests/test_nas.py: a stage whose peak lower bound (its full output held while
its other ops work on at least 1/p^2 of their layer-by-layer bytes, or the layers after it)
exceeds the budget is not tiled; stage ends are tried in increasing order and a loop stops at
the first whose MACs exceed the best found (a longer stage never recomputes less).
"""

from __future__ import annotations

from collections.abc import Callable

Found = tuple[int, int, int, int, int, int]  # (MACs, peak, p1, n1, p2, n2); p2 = n2 = 0: one stage


def two_stage_schedule(per_op: list[int], base_macs: int, ends: Callable[[int], list[int]],
                       side: Callable[[int], int], out_bytes: Callable[[int], int],
                       overhead: Callable[[int, int, int], int], peak_of: Callable[[int, int, int], int],
                       sram: int, max_patches: int,
                       best: Found | None, exhaustive: bool = False) -> tuple[Found | None, int | None]:
    """The best of ``best`` (a one-stage schedule, or None) and every two-stage schedule; with the
    least analytic peak of the two-stage schedules tiled (None if none was)."""
    n = len(per_op)
    tail = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        tail[i] = max(per_op[i], tail[i + 1])
    least: int | None = None

    def bound(start: int, end: int, p: int) -> int:
        inner = max(per_op[start:end - 1], default=0)
        return out_bytes(end) + -(-inner // (p * p))

    for p1 in range(2, max_patches + 1):
        for n1 in ends(0):
            if side(n1) < p1 or bound(0, n1, p1) > sram and not exhaustive:
                continue
            ov1 = overhead(0, n1, p1)
            if best is not None and base_macs + ov1 > best[0] and not exhaustive:
                break
            peak1 = peak_of(0, n1, p1)
            if peak1 > sram and not exhaustive:
                continue
            for p2 in range(2, max_patches + 1):
                for n2 in ends(n1):
                    if side(n2) < p2 or max(tail[n2], bound(n1, n2, p2)) > sram and not exhaustive:
                        continue
                    macs = base_macs + ov1 + overhead(n1, n2, p2)
                    if best is not None and macs > best[0] and not exhaustive:
                        break
                    peak = max(peak1, peak_of(n1, n2, p2), tail[n2])
                    least = peak if least is None else min(least, peak)
                    if peak <= sram and (best is None or (macs, peak) < best[:2]):
                        best = (macs, peak, p1, n1, p2, n2)
    return best, least
