"""Choose the layer-by-layer operators that run in place.

:mod:`tinypatch.analysis.inplace_shift` says which operators *can* write their output over an input
and how far below it; this pass decides which *should*: an in-place pair saves bytes at its
own step but ties two buffers together for the whole arena placement, so candidates are
tried on the real placement (:func:`tinypatch.planning.arena.place`) and kept only if they
lower the arena peak, or keep it and lower the bytes live at the fullest steps. Candidates are
tried in order of the bytes live at their step (the fullest steps first), in blocks (see
:func:`add_inplace`), in rounds until none helps. :func:`inplace_front` applies this to
every schedule of a searched front (what ``tinypatch plan`` offers by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tinypatch.analysis.liveness import Buffer, align_up, live_profile
from tinypatch.ir import Graph
from tinypatch.planning.arena import GroupPlacer, place
from tinypatch.planning.check import check_plan
from tinypatch.planning.memory import PlanBuffers, kept_buffers, op_anchor, place_plan, plan_buffers
from tinypatch.planning.optimal import FrontResult, Schedule
from tinypatch.planning.plan import Plan
from tinypatch.planning.tiles import StageTiling


def _op_anchors(graph: Graph, plan: Plan, pb: PlanBuffers) -> dict[int, tuple[str, str, int]]:
    """Op -> (output buffer, input buffer, shift) of every layer-by-layer op not yet in place that could be."""
    live = pb.liveness
    by_name = {b.name: b for b in live.buffers}
    kept = kept_buffers(graph, live.tensor_buffer)
    staged = {k for st in pb.tilings for k in range(st.stage.start, st.stage.end)}
    done = set(plan.inplace)
    return {k: a for k in range(len(graph.ops)) if k not in staged and k not in done
            and (a := op_anchor(graph, k, by_name, live.tensor_buffer, kept)) is not None}


def inplace_options(graph: Graph, plan: Plan) -> list[int]:
    """Layer-by-layer ops of ``plan`` that could run in place, fullest step first."""
    pb = plan_buffers(graph, replace(plan, inplace=[]))
    profile = pb.liveness.profile()
    return sorted(_op_anchors(graph, plan, pb), key=lambda k: -profile[k])


class _Groups:
    """Anchored groups (chains of buffers at fixed distances) as a union-find with offsets: screens
    a candidate against the arena peak without placing the arena."""

    def __init__(self, buffers: list[Buffer], alignment: int) -> None:
        self.alignment = alignment
        self.size = {b.name: align_up(b.size, alignment) for b in buffers}
        self.parent = {b.name: b.name for b in buffers}
        self.rel = {b.name: 0 for b in buffers}  # offset from the parent
        self.members = {b.name: [b.name] for b in buffers}  # root -> its group
        self.span = {b.name: (0, self.size[b.name]) for b in buffers}  # root -> (low, high) in root coords
        steps = max((b.end for b in buffers), default=-1) + 1
        live: list[list[str]] = [[] for _ in range(steps)]
        for b in buffers:
            for t in range(b.start, b.end + 1):
                live[t].append(b.name)
        self.conflicts = {b.name: {n for t in range(b.start, b.end + 1) for n in live[t]} - {b.name}
                          for b in buffers}

    def find(self, name: str) -> tuple[str, int]:
        """(root, offset of ``name`` from the root); compresses the path."""
        path = []
        while self.parent[name] != name:
            path.append(name)
            name = self.parent[name]
        acc = 0
        for n in reversed(path):  # nearest the root first: offsets add up from there
            acc += self.rel[n]
            self.rel[n], self.parent[n] = acc, name
        return name, (self.rel[path[0]] if path else 0)

    def _join(self, out: str, src: str, shift: int) -> tuple[str, str, int]:
        """(root of out, root of src, offset of out's root in src's root coords) once anchored."""
        (ro, oo), (rs, os_) = self.find(out), self.find(src)
        return ro, rs, os_ - align_up(shift, self.alignment) - oo

    def fits(self, out: str, src: str, shift: int, peak: int) -> bool:
        """Could the group made by writing ``out`` ``shift`` bytes below ``src`` sit in ``peak``
        bytes, with room beside each member for every other buffer live with it? (Necessary for
        any placement within ``peak``.)"""
        ro, rs, d = self._join(out, src, shift)
        (lo_o, hi_o), (lo_s, hi_s) = self.span[ro], self.span[rs]
        lo, hi = min(lo_s, lo_o + d), max(hi_s, hi_o + d)
        if hi - lo > peak:
            return False
        group = self.members[rs] + self.members[ro]
        rel = {n: self.find(n)[1] + (d if n in self.members[ro] else 0) - lo for n in group}
        a = self.alignment
        forbidden = []  # group offsets o at which buffer j fits neither below nor above member n
        for n in group:
            r, s = rel[n], self.size[n]
            if not s:
                continue
            for j in self.conflicts[n]:
                sj = self.size[j]
                if sj and j not in rel and peak - r - s - sj + a <= sj - r - a:
                    forbidden.append((peak - r - s - sj + a, sj - r - a))
        o = 0
        for f0, f1 in sorted(forbidden):
            if f0 > o:
                break
            o = max(o, f1 + a)
        return o <= peak - (hi - lo)

    def merge(self, out: str, src: str, shift: int) -> None:
        ro, rs, d = self._join(out, src, shift)
        (lo_o, hi_o), (lo_s, hi_s) = self.span[ro], self.span[rs]
        self.parent[ro], self.rel[ro] = rs, d
        self.span[rs] = (min(lo_s, lo_o + d), max(hi_s, hi_o + d))
        self.members[rs] += self.members.pop(ro)


def add_inplace(graph: Graph, plan: Plan, alignment: int = 16, tilings: list[StageTiling] | None = None) -> Plan:
    """``plan`` with in-place operators added while they lower the placed arena peak, or leave
    it and lower the bytes live at the fullest steps (so that ties between steps break).

    Candidates go fullest step first. A candidate is screened locally: it must save bytes at its
    step, and the anchored group it makes must fit under the current peak with room beside each
    member for every buffer live with it (else the peak rises whatever the placement). The survivors are tried on the real placement in blocks, all of
    them first, halving a block that makes the score worse down to the single op that does, and
    doubling it again after a block that helps; so a pass costs a few placements when most
    candidates help, not one per candidate. Passes repeat until none helps. ``tilings``: the
    plan's stage tilings, if the caller has checked it already.
    """
    tilings = check_plan(graph, plan) if tilings is None else tilings  # the stages do not change: tile them once
    pb = plan_buffers(graph, plan, tilings)  # the buffers do not depend on the in-place ops
    live = pb.liveness
    sizes = {b.name: align_up(b.size, alignment) for b in live.buffers}

    placer = GroupPlacer(live.buffers, alignment)

    def score(anchors: dict[str, tuple[str, int]], cap: int | None = None) -> tuple[int, list[int]] | None:
        """(placed peak, bytes live per step, fullest first): lower is better, lexicographically; None
        when the peak is above ``cap`` (the bytes live at one step already are, or every greedy order is)."""
        profile = sorted(live_profile(live.buffers, live.num_steps, alignment, anchors), reverse=True)
        if cap is not None and profile and profile[0] > cap:
            return None
        peak = placer.peak(anchors, cap) if anchors else place(live.buffers, alignment).peak
        return None if peak is None or (cap is not None and peak > cap) else (peak, profile)

    found = _op_anchors(graph, plan, pb)
    # bytes live per step with no op in place (the plan's own buffers when it has none in place)
    profile = (plan_buffers(graph, replace(plan, inplace=[]), tilings) if plan.inplace else pb).liveness.profile()
    options = sorted(found, key=lambda k: -profile[k])
    anchors = dict(live.anchors)
    chosen = list(plan.inplace)
    best = score(anchors)
    assert best is not None
    improved = True
    while improved:
        improved = False
        groups = _Groups(live.buffers, alignment)
        for name, (above, shift) in anchors.items():
            groups.merge(name, above, shift)
        screened = []
        for k in options:
            if k in chosen:
                continue
            out, src, shift = found[k]
            if align_up(shift, alignment) >= sizes[out] or not groups.fits(out, src, shift, best[0]):
                continue  # saves nothing at its step, or cannot keep the peak
            groups.merge(out, src, shift)
            screened.append(k)
        i, m = 0, len(screened)
        while i < len(screened):
            block = screened[i:i + m]
            trial = {**anchors, **{found[k][0]: found[k][1:] for k in block}}
            s = score(trial, best[0])  # a higher peak cannot be better
            if s is not None and s < best and (m == 1 or s[0] == best[0]):  # a block that lowers the peak goes op by op
                best, anchors, improved = s, trial, True
                chosen += block
                i += len(block)
                m *= 2
            elif m == 1:
                i += 1
            else:
                m //= 2
    return replace(plan, inplace=sorted(chosen))


def inplace_front(graph: Graph, result: FrontResult, alignment: int = 16,
                  progress: Callable[[int, int], None] | None = None) -> FrontResult:
    """``result`` with every schedule's layer-by-layer ops run in place where that lowers its peak
    (:func:`add_inplace`; MACs and instructions unchanged), layer by layer itself among them, and the
    points no longer on the front (of the result's objective) dropped."""

    def lowered(s: Schedule) -> Schedule:
        tilings = check_plan(graph, s.plan)
        plan = add_inplace(graph, s.plan, alignment, tilings)
        if not plan.inplace:
            return s
        pl = place_plan(plan_buffers(graph, plan, tilings), alignment)
        insns = result.model.predict(graph, plan) if result.model is not None else s.insns
        return replace(s, plan=plan, peak=pl.peak, lower_bound=pl.lower_bound, insns=insns)

    baseline = lowered(result.baseline)
    points = [baseline]  # layer by layer in place may now beat patch schedules with no extra MACs
    for i, s in enumerate(result.front):
        points.append(baseline if s.plan == result.baseline.plan else lowered(s))
        if progress:
            progress(i + 1, len(result.front))
    front, fewest = [], None
    for s in sorted(points, key=lambda s: (s.peak or s.lower_bound, *result.key(s))):
        if fewest is None or result.key(s) < fewest:
            front.append(s)
            fewest = result.key(s)
    return replace(result, baseline=baseline, front=front)
