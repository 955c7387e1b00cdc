"""MCUNetV2 figures of a spec from its layer chain, without building the graph (the fast path).

For a spec without SE blocks, :func:`build_net` makes a plain chain: stem conv, per block
(1x1 expand) (depthwise) 1x1 project (ADD with the block input), (1x1 feature mix), MEAN, FC,
square feature maps, TFLite SAME padding. :class:`Chain` lists those operators as sizes only
and computes what :mod:`tinypatch.analysis` and :mod:`tinypatch.planning` compute on the graph,
for this op set: MACs, flash, layer-by-layer analytic bytes (in+out, in-place depthwise,
live residual skips), the legal first-stage ends, and, for ``p`` x ``p`` patches over ops
``[0, end)`` with recomputed halos, the border-clipped MACs and the analytic peak (tiles'
regions propagated backwards along one axis, the other being the same), and the same for a
stage over ops ``[start, end)`` (a later patch stage); and the same for a *stream* stage (our
planner's :mod:`tinypatch.planning.stream`: ``g`` row strips, each computed column by column
through window buffers of its consumer's kernel width, rows recomputed between strips, columns
computed once; legal where no tensor inside the stage has two consumers). Integer arithmetic
on a few dozen intervals: microseconds where building and tiling the graph takes tens of
milliseconds. tests/test_nas.py checks every figure against the graph path on random specs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from tinypatch.analysis.regions import split_even
from tinypatch.frontends.spec import NetSpec
from tinypatch.nas.twostage import stage_schedule
from tinypatch.planning.optimal import axis_counts


class StageCost(Protocol):
    """Predicted instructions of a chain's schedules (:class:`tinypatch.nas.insns.ChainCost`)."""

    base: float  # layer by layer

    def delta(self, start: int, end: int, p: int) -> float: ...  # a patch stage's change

    def slack(self, start: int) -> float: ...  # the most stages from op start on could still save


@dataclass(frozen=True)
class _Op:
    kind: str  # conv, dw, add, mean, fc
    inputs: tuple[int, ...]  # tensor ids (activations only)
    output: int
    kernel: int = 1
    stride: int = 1


class Chain:
    """The operators and activation tensors ``build_net(spec)`` makes (``supported`` False with SE)."""

    def __init__(self, spec: NetSpec) -> None:
        self.supported = not any(b is not None and b.use_se for b in spec.blocks)
        self.side: list[int] = [spec.resolution]  # per tensor: spatial side (1 after the pool)
        self.chan: list[int] = [spec.in_channels]
        self.ops: list[_Op] = []
        self.flash = 0
        x = self._conv("conv", 0, spec.stem_channels, spec.stem_kernel, spec.stem_stride)
        for b in spec.blocks:
            if b is None:
                continue
            cin = self.chan[x]
            h = x
            if b.expand_ratio != 1:
                h = self._conv("conv", h, b.mid_channels or round(cin * b.expand_ratio), 1, 1)
            if b.depthwise:
                h = self._conv("dw", h, self.chan[h], b.kernel, b.stride)
            h = self._conv("conv", h, b.out_channels, 1, 1)
            x = self._add(h, x) if b.shortcut else h
        if spec.feature_mix:
            x = self._conv("conv", x, spec.feature_mix, 1, 1)
        x = self._new(1, self.chan[x], _Op("mean", (x,), len(self.side)))
        self.flash += 8  # the MEAN's axes (int32 [2])
        self._new(1, spec.num_classes, _Op("fc", (x,), len(self.side)))
        self.flash += spec.num_classes * (self.chan[x] + 4)
        self.producer = {op.output: i for i, op in enumerate(self.ops)}
        self.last_use = [0] * len(self.side)
        self.readers = [0] * len(self.side)  # ops reading each tensor
        for i, op in enumerate(self.ops):
            for t in op.inputs:
                self.last_use[t] = max(self.last_use[t], i)
                self.readers[t] += 1
        self.last_use[-1] = len(self.ops)  # the graph output
        self.skip_at = self._skips()
        self._macs = self.macs()
        self._pad = [max((self.side[op.output] - 1) * op.stride + op.kernel - self.side[op.inputs[0]], 0) // 2
                     for op in self.ops]  # TFLite SAME padding before the first row
        self._stages: dict[tuple[int, int, int, bool], tuple[int, dict[int, int], list[int], dict[int, list[int]]]] = {}
        self._peaks: dict[tuple[int, int, int, bool], int] = {}

    def _new(self, side: int, chan: int, op: _Op) -> int:
        self.side.append(side)
        self.chan.append(chan)
        self.ops.append(op)
        return op.output

    def _conv(self, kind: str, x: int, cout: int, k: int, s: int) -> int:
        cin = self.chan[x]
        self.flash += (k * k * cout * (cin if kind == "conv" else 1)) + 4 * cout
        return self._new(-(-self.side[x] // s), cout, _Op(kind, (x,), len(self.side), k, s))

    def _add(self, h: int, x: int) -> int:
        return self._new(self.side[h], self.chan[h], _Op("add", (h, x), len(self.side)))

    def _skips(self) -> dict[int, list[int]]:
        """Op -> skip tensors counted live there (analytic convention): the ops strictly between
        the skip's producer and the projection conv that do not read the skip."""
        out: dict[int, list[int]] = {}
        for op in self.ops:
            if op.kind != "add":
                continue
            main, skip = op.inputs
            for i in range(self.producer.get(skip, -1) + 1, self.producer[main]):
                if skip not in self.ops[i].inputs:
                    out.setdefault(i, []).append(skip)
        return out

    # --- layer by layer ------------------------------------------------------------------------
    def macs(self) -> list[int]:
        out = []
        for op in self.ops:
            o, i = op.output, op.inputs[0]
            if op.kind == "conv":
                out.append(self.side[o] ** 2 * self.chan[o] * op.kernel ** 2 * self.chan[i])
            elif op.kind == "dw":
                out.append(self.side[o] ** 2 * self.chan[o] * op.kernel ** 2)
            elif op.kind == "fc":
                out.append(self.chan[o] * self.chan[i])
            else:
                out.append(0)
        return out

    def per_op(self, include_input: bool, elements: dict[int, int] | None = None,
               extra: list[int] | None = None, ops: range | None = None) -> list[int]:
        """Analytic bytes of every op, or of ``ops`` (``elements``: tile-sized tensors; ``extra``:
        bytes held)."""
        nbytes = [self._bytes(t) for t in range(len(self.side))]
        if not include_input:
            nbytes[0] = 0
        for t, e in (elements or {}).items():
            nbytes[t] = e
        out = []
        for i in ops or range(len(self.ops)):
            op = self.ops[i]
            ins = sum(nbytes[t] for t in op.inputs)
            b = max(ins, nbytes[op.output]) if op.kind == "dw" else ins + nbytes[op.output]
            b += sum(nbytes[s] for s in self.skip_at.get(i, ()))
            out.append(b + (extra[i] if extra else 0))
        return out

    def _bytes(self, t: int) -> int:
        return self.side[t] * self.side[t] * self.chan[t]

    # --- patch stages --------------------------------------------------------------------------
    def legal_ends(self, start: int = 0) -> list[int]:
        """Every ``end`` such that ops [start, end) form a legal patch stage with a 2-D output."""
        ends = []
        for end in range(start + 1, len(self.ops) + 1):
            if self.ops[end - 1].kind in ("mean", "fc"):
                break
            out = self.ops[end - 1].output
            if all(self.last_use[t] < end for t in range(start + 1, out)):  # only the last output leaves
                ends.append(end)
        return ends

    def streams(self, start: int, end: int) -> bool:
        """Can ops [start, end) (a legal stage) run as a stream stage: every tensor made inside it but
        its output read by one op (:func:`tinypatch.planning.columns.ring_columns`)?"""
        return all(self.readers[t] == 1 for t in range(start + 1, self.ops[end - 1].output))

    def strips(self, start: int, end: int, max_patches: int) -> list[int]:
        """Row-strip counts of the stream stages ops [start, end) may run as (none if they cannot)."""
        return axis_counts(self.side[self.ops[end - 1].output], max_patches) if self.streams(start, end) else []

    def stage(self, start: int, end: int, p: int, include_input: bool) -> tuple[int, int]:
        """(MAC overhead, max analytic bytes over ops [start, end)) of ``p`` x ``p`` recomputed tiles
        over ops [start, end), or for ``p`` < 0 of a stream stage of ``-p`` row strips
        (:meth:`streams` must hold), the other ops layer by layer (cached)."""
        return self.stage_overhead(start, end, p, include_input), self.stage_peak(start, end, p, include_input)

    def stage_overhead(self, start: int, end: int, p: int, include_input: bool) -> int:
        key = (start, end, p, include_input)
        if key not in self._stages:
            self._stages[key] = self._tile(start, end, p, include_input)
        return self._stages[key][0]

    def stage_peak(self, start: int, end: int, p: int, include_input: bool) -> int:
        key = (start, end, p, include_input)
        if key not in self._peaks:
            self.stage_overhead(start, end, p, include_input)
            _, elements, extra, _ = self._stages[key]
            self._peaks[key] = max(self.per_op(include_input, elements, extra, range(start, end)))
        return self._peaks[key]

    def extents(self, start: int, end: int, p: int) -> dict[int, list[int]]:
        """Per op ``k`` of the stage: the output rows (= columns) each tile row computes (cached)."""
        key = (start, end, p, False)
        if key not in self._stages:
            self._stages[key] = self._tile(start, end, p, False)
        return self._stages[key][3]

    def _tile(self, start: int, end: int, p: int,
              include_input: bool) -> tuple[int, dict[int, int], list[int], dict[int, list[int]]]:
        """(MAC overhead, tile-sized tensor elements, bytes held per op, per op the output extent of
        each tile along one axis) of ``p`` x ``p`` tiles over ops [start, end), or (``p`` < 0) of a
        stream stage of ``-p`` row strips; the stage input is the output of op ``start - 1`` (the
        model input at 0).

        A stream stage recomputes rows like ``-p`` x 1 tiles and computes every column once (the
        columns one whole-width tile needs); each tensor inside it lives in a window buffer (its
        strip rows x its consumer's window columns) held across the whole stage, as
        :func:`tinypatch.planning.cost.plan_analytic` counts cached buffers."""
        out = self.ops[end - 1].output
        longest, total, spans = self._axis(start, end, split_even(self.side[out], abs(p)))
        cols = total if p > 0 else self._axis(start, end, [0, self.side[out]])[1]
        macs = self._macs
        overhead = sum(m // self.side[self.ops[k].output] ** 2 * total[k] * cols[k] - m
                       for k, m in enumerate(macs[:end]) if m and k >= start)
        inside = [t for t in longest if start < t < out]
        if p > 0:
            elements = {t: longest[t] ** 2 * self.chan[t] for t in inside}
        else:
            elements = {t: longest[t] * self._window(t) * self.chan[t] for t in inside}
        held_out = self._bytes(out)
        # the stage inputs, held whole: tensor ``start`` (the output of op ``start - 1``, the model input at 0)
        # and a residual skip made before the stage that an ADD inside it reads (a stage starting at that ADD)
        held_in = {t: self._bytes(t) if include_input or t else 0
                   for k in range(start, end) for t in self.ops[k].inputs if t <= start}
        extra = [0] * len(self.ops)
        for k in range(start, end):
            op, skips = self.ops[k], self.skip_at.get(k, ())
            extra[k] = ((held_out if k < end - 1 else 0)
                        + sum(b for t, b in held_in.items() if t not in op.inputs and t not in skips))
            if p < 0:  # every window buffer lives across the stage
                extra[k] += sum(elements[t] for t in inside if t not in op.inputs and t != op.output and t not in skips)
        return overhead, elements, extra, spans

    def _window(self, t: int) -> int:
        """Columns of tensor ``t`` its one reader takes for one output column (its window buffer)."""
        q = next(op for op in self.ops if t in op.inputs)
        if q.kind not in ("conv", "dw"):
            return 1
        n_in, pad = self.side[t], self._pad[self.producer[q.output]]
        return max(min(c * q.stride - pad + q.kernel, n_in) - max(c * q.stride - pad, 0)
                   for c in range(self.side[q.output]))

    def _axis(self, start: int, end: int, cuts: list[int]) -> tuple[dict[int, int], list[int], dict[int, list[int]]]:
        """Tiles ``cuts`` of the stage output propagated backwards along one axis, halos recomputed:
        (per tensor its longest region, per op the output length computed over all tiles, per op the
        output extent of each tile)."""
        out = self.ops[end - 1].output
        longest: dict[int, int] = {}
        total: list[int] = [0] * end  # per op: output pixels computed along one axis
        spans: dict[int, list[int]] = {k: [] for k in range(start, end)}
        for a, b in zip(cuts, cuts[1:]):
            need = {out: (a, b)}
            for k in range(end - 1, start - 1, -1):
                op = self.ops[k]
                lo, hi = need[op.output]
                total[k] += hi - lo
                spans[k].append(hi - lo)
                if op.kind == "add":
                    reads = (lo, hi)
                else:
                    n_in, pad = self.side[op.inputs[0]], self._pad[k]
                    reads = (max(lo * op.stride - pad, 0), min((hi - 1) * op.stride - pad + op.kernel, n_in))
                for t in op.inputs:
                    old = need.get(t)
                    need[t] = reads if old is None else (min(old[0], reads[0]), max(old[1], reads[1]))
            for t, (lo, hi) in need.items():
                longest[t] = max(longest.get(t, 0), hi - lo)
        return longest, total, spans


def chain_schedule(chain: Chain, sram: int, include_input: bool, max_patches: int,
                   stages: int = 1, cost: StageCost | None = None, stream: bool = False) -> tuple[int, ...] | int:
    """:func:`tinypatch.nas.evaluate.mcunetv2_schedule` on a :class:`Chain` (same pruning, same result);
    ``stages`` >= 2 also tries up to that many consecutive patch stages (:mod:`tinypatch.nas.twostage`);
    ``stream``: each of them may also be a stream stage (``p`` = ``-g``: ``g`` row strips, our
    planner's strip counts :func:`tinypatch.planning.optimal.axis_counts`; not with ``cost``).

    With ``cost``, the schedule with the fewest predicted instructions wins instead, layer by layer
    included (then ``(MACs, peak, 1, 0)``); a (p, end) is skipped, not the loop stopped, when its
    instructions minus what later stages could save exceed the best found."""
    per_op = chain.per_op(include_input)
    tail = [0] * (len(per_op) + 1)
    for i in range(len(per_op) - 1, -1, -1):
        tail[i] = max(per_op[i], tail[i + 1])
    head = [0]
    for v in per_op:
        head.append(max(head[-1], v))
    base = sum(chain.macs())
    best: tuple[int, ...] | None = (base, tail[0], 1, 0) if cost is not None and tail[0] <= sram else None
    best_ins = cost.base if best is not None and cost is not None else math.inf
    least: int | None = None
    for p in range(2, max_patches + 1):
        for end in chain.legal_ends():
            out = chain.ops[end - 1].output
            side = chain.side[out]
            bound = max(tail[end], chain._bytes(out) + -(-head[end - 1] // (p * p)))
            if side < p or bound > sram:
                continue
            ins = 0.0
            if cost is None:
                smacs = base + chain.stage_overhead(0, end, p, include_input)
                if best is not None and smacs > best[0]:
                    break
            else:
                ins = cost.base + cost.delta(0, end, p)
                if ins + cost.slack(end) > best_ins:
                    continue
                smacs = base + chain.stage_overhead(0, end, p, include_input)
            peak = max(chain.stage_peak(0, end, p, include_input), tail[end])
            least = peak if least is None else min(least, peak)
            if peak <= sram and (best is None or (ins, smacs, peak) < (best_ins if cost else 0.0, *best[:2])):
                best, best_ins = (smacs, peak, p, end), ins
    if stages >= 2 or stream:
        found, least2 = stage_schedule(
            per_op, base, cache(chain.legal_ends), lambda end: chain.side[chain.ops[end - 1].output],
            lambda end: chain._bytes(chain.ops[end - 1].output),
            lambda start, end, p: chain.stage_overhead(start, end, p, include_input),
            lambda start, end, p: chain.stage_peak(start, end, p, include_input), sram, max_patches, best, stages,
            insns=cost.delta if cost else None, slack=cost.slack if cost else None,
            base_insns=cost.base if cost else 0.0,
            strips=(lambda start, end: chain.strips(start, end, max_patches)) if stream else None)
        if found is not None:
            return found
        least = min((v for v in (least, least2) if v is not None), default=None)
    if best is None:
        return least if least is not None else tail[0]
    return best
