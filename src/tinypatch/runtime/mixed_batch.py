"""Values-only runs of a precision plan over recompute-only patch stages, all tiles of an op at once.

The plan executor with a :class:`~tinypatch.runtime.mixed.MixedPrecision` hook walks every tile on
values, in its simulated arena, on every run: each tile's low-bit values depend on that tile's own
outlier tests. Where every op of every stage recomputes its halo (no cached part, line or window
buffer: tiles independent, each op's output region of a tile computed whole from the tile's own
windows), :class:`MixedTiles` computes the same values op by op for all tiles together. A tile's
piece of a map is a crop of an array shared by tiles (:class:`_Run`):

* a stage input: the whole map; a piece the hook lowers: the crop of its array lowered (the
  requantization is elementwise, per pixel for a per-pixel step; a per-patch step's shift, the
  tile's own, is part of the lowered array's key), so tiles that took the same decisions share arrays;
* an op's output, for a tile whose whole-image values are its own (it reads exactly the receptive
  field of its pixels, and along each axis its window is not padded or is the whole axis: the
  argument of :mod:`~tinypatch.runtime.stage_replay`) and whose inputs are whole arrays: the crop of
  one whole-image call on those arrays (when its tiles compute at least as many pixels); else the
  kernel on the tile's own windows with its own paddings, tiles of equal window shapes and paddings
  stacked as one call, an op's calls one :meth:`~tinypatch.kernels.base.PreparedOp.run_calls` (the
  bytes of one call each);
* the hook's decisions are carried per tile, in the tile loop's order within a tile (an op's stage
  inputs in input order, then its output): max ``|q - zp|`` of each piece, the outlier flag, the scope
  ``rest`` flag, the maps' widths (which weigh their consumers' BitOPs);
* recorded statistics (``record=True``) are appended per map in the tile loop's order (tile by tile,
  within a tile in call order); a histogram counts each array's pixels as often as pieces hold them.

A stage that is not recompute-only (cached parts, line or window buffers carry values from tile
to tile) runs on the plan executor's tile loop with the same hook, in an arena holding its inputs
(:meth:`~tinypatch.runtime.plan_executor.PlanExecutor.run_stage`), so one such stage no longer sends
the whole plan there. No arena is simulated beyond that: ``tinypatch run --precision`` keeps the plan
executor, which measures it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from tinypatch.analysis.regions import Interval, reads_nchw, writes_nchw
from tinypatch.ir import Graph
from tinypatch.ir.optable import op_def
from tinypatch.kernels.lowbit import block_shift, requantize, requantize_blocks
from tinypatch.planning.plan import STREAM, Plan
from tinypatch.planning.rewrite import rewritten
from tinypatch.planning.tiles import OpSpan, StageTiling, input_maps, tile_stage
from tinypatch.runtime.executor import Executor
from tinypatch.runtime.mixed import WEIGHT_BITS, MixedPrecision, sample_pixels
from tinypatch.runtime.plan_executor import PlanExecutor
from tinypatch.runtime.stage_replay import reads_exactly
from tinypatch.runtime.threads import blas_threads


def recompute_only(graph: Graph, st: StageTiling) -> bool:
    """Can :class:`MixedTiles` run stage ``st``: tiles independent (no stream, cached part or
    accumulated average; every op computes all it holds), every op a batching NHWC kernel with one
    4-D output that is not a gather."""
    if st.stream or st.info.reduce is not None or STREAM in st.stage.halo.values():
        return False
    for k in st.info.tile_ops:
        op = graph.ops[k]
        if st.cached(k) or len(op.outputs) != 1 or not op_def(op.type).batches or op_def(op.type).gather \
                or reads_nchw(graph, op) or writes_nchw(graph, op) or len(graph.tensors[op.outputs[0]].shape) != 4:
            return False
        if any(s[k].out != s[k].need for s in (*st.h.spans, *st.w.spans)):
            return False
    return True


def _own(graph: Graph, st: StageTiling) -> dict[int, np.ndarray]:
    """Per tile op, per tile (row-major): are its whole-image values its own? It reads exactly the
    receptive field of its pixels, padded as the whole image is, and along each axis its window is
    not padded or is the whole axis (:mod:`~tinypatch.runtime.stage_replay`'s argument)."""
    ops = st.info.tile_ops
    maps = (st.h.maps or input_maps(graph, ops, 0), st.w.maps or input_maps(graph, ops, 1))
    out = {}
    for k in ops:
        size = [next(m for m in maps[a][k] if m is not None).out_size for a in (0, 1)]
        axes = [np.array([reads_exactly(maps[a][k], sp[k]) and (not any(sp[k].pads) or sp[k].out == (0, size[a]))
                          for sp in spans]) for a, spans in enumerate((st.h.spans, st.w.spans))]
        out[k] = (axes[0][:, None] & axes[1][None, :]).ravel()
    return out


class MixedTiles:
    """``MixedTiles(graph, plan, hook)(x)``: the model outputs the plan executor with ``hook`` gives
    on input ``x``, with the same counts and recorded statistics in ``hook`` (see the module
    docstring). A stage that is not :func:`recompute_only` runs on the plan executor's tile loop
    (:attr:`loop`, :meth:`~tinypatch.runtime.plan_executor.PlanExecutor.run_stage`); :meth:`usable`:
    is any stage batched here."""

    def __init__(self, graph: Graph, plan: Plan, hook: MixedPrecision) -> None:
        g = rewritten(graph, plan)
        self.graph, self.hook = g, hook
        consumers = g.consumers()
        self.stages = {s.start: tile_stage(g, s, consumers) for s in plan.stages}
        self.own = {s: _own(g, st) for s, st in self.stages.items() if recompute_only(g, st)}
        # the tile loop of the other stages
        self.loop = PlanExecutor(g, plan, hook) if len(self.own) < len(self.stages) else None

    @functools.cached_property
    def ex(self) -> Executor:
        """The layer-by-layer ops' and batched stages' kernels (prepared on the first call)."""
        return Executor(self.graph)

    def usable(self) -> bool:
        """Does any stage run batched here (else the plan executor alone does the same)?"""
        return bool(self.own)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        with blas_threads(1):  # as the plan executor runs by default
            return self._run(x)

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        g = self.graph
        env = self.ex.check_inputs([x])
        k = 0
        while k < len(g.ops):
            st = self.stages.get(k)
            if st is not None:
                if k in self.own or self.loop is None:  # (no loop: every stage is batched)
                    env[st.info.output] = self._stage(st, env)
                else:
                    env[st.info.output] = self.loop.run_stage(k, env)
                k = st.stage.end
                continue
            op = g.ops[k]
            outs = self.ex.kernels[k]([env[t] if t in env else g.tensors[t].data if t else None for t in op.inputs])
            env.update(zip(op.outputs, outs))
            k += 1
        return {n: env[n] for n in g.outputs}

    def _stage(self, st: StageTiling, env: dict[str, np.ndarray]) -> np.ndarray:
        """Stage ``st``'s output, every tile computed and classified as the tile loop does it."""
        g, hook = self.graph, self.hook
        tiles = [(i, j) for i in range(st.stage.grid[0]) for j in range(st.stage.grid[1])]
        run = _Run(len(tiles))
        held: dict[str, list[_Ref | None]] = {}  # stage-internal map -> its (lowered) region per tile
        out_t = g.tensors[st.info.output]
        full = np.zeros(out_t.shape, out_t.np_dtype)
        counts = hook.counts[st.stage.start]
        own = self.own[st.stage.start]
        for k in st.info.tile_ops:
            op = g.ops[k]
            spans = [(st.h.spans[i][k], st.w.spans[j][k]) for i, j in tiles]
            live = np.array([u for u, (sh, sw) in enumerate(spans) if sh.out[0] < sh.out[1] and sw.out[0] < sw.out[1]],
                            np.int64)
            if not live.size:
                continue
            ins: list[tuple[int, list[_Ref]]] = []  # per activation input: its position, per live tile its ref
            for n, t in enumerate(op.inputs):
                if not t or g.tensors[t].is_const:
                    continue
                if t in held:  # a tile whose producer computed nothing reads nothing of it
                    if ("none", t) not in run.paths:
                        run.paths["none", t] = np.zeros(g.tensors[t].shape, g.tensors[t].np_dtype)
                    refs = [held[t][u] or (("none", t), 0, 0, 0) for u in live]
                else:
                    run.paths[("in", t)] = env[t]
                    run.whole.add(("in", t))
                    refs = self._apply(st.stage.start, run, t, [(("in", t), 0, 0, 0)] * len(live), live,
                                       [(spans[u][0].reads[n], spans[u][1].reads[n]) for u in live])
                ins.append((n, refs))  # type: ignore[arg-type]
            outs = self._compute(k, run, ins, [spans[u] for u in live], live, own[k])
            macs = hook.per_pixel[k]
            if macs:
                w = run.width(hook.graph.ops[k].inputs[0])[live]
                px = np.array([(spans[u][0].out[1] - spans[u][0].out[0]) * (spans[u][1].out[1] - spans[u][1].out[0])
                               for u in live], np.int64)
                counts.bitops += int((macs * px * WEIGHT_BITS * w).sum())
                counts.bitops_int8 += int((macs * px).sum()) * WEIGHT_BITS * 8
            regions = [(spans[u][0].out, spans[u][1].out) for u in live]
            name = op.outputs[0]
            if name == st.info.output:
                for ref, (rows, cols) in zip(outs, regions):
                    full[:, rows[0]: rows[1], cols[0]: cols[1]] = run.crop(ref, rows, cols)
            else:
                per_tile: list[_Ref | None] = [None] * len(tiles)
                for u, ref in zip(live, self._apply(st.stage.start, run, name, outs, live, regions)):
                    per_tile[u] = ref
                held[name] = per_tile
        counts.tiles += len(tiles)
        counts.outlier_tiles += int(run.outlier.sum())
        for u in range(len(tiles)):  # the recorded patches in the tile loop's order
            for name, got in run.events:
                if u in got:
                    pm, px = got[u]
                    s = hook.stats[name]
                    s.patch_max.append(pm)
                    s.pixels.append(px)
                    s.pixel_patch_max.append(np.full(len(px), pm, np.int32))
        return full

    def _compute(self, k: int, run: _Run, ins: list[tuple[int, list[_Ref]]], spans: list[tuple[OpSpan, OpSpan]],
                 live: np.ndarray, own: np.ndarray) -> list[_Ref]:
        """Op k for each live tile: where its whole-image values are its own (``own``) and its inputs
        are whole maps, a crop of the whole-image call on those maps (one call per distinct inputs);
        else the kernel on its own windows with its paddings, tiles of equal window shapes and
        paddings stacked as one call, all of them one ``run_calls``."""
        g, kernel = self.graph, self.ex.kernels[k]
        op = g.ops[k]
        refs: list[_Ref] = [None] * len(live)  # type: ignore[list-item]
        groups: dict[tuple, list[int]] = {}
        area: dict[tuple, int] = {}  # per distinct inputs: the pixels their tiles compute
        for n in range(len(live)):
            keys = tuple(r[n][0] for _, r in ins)
            area[keys] = area.get(keys, 0) + (spans[n][0].out[1] - spans[n][0].out[0]) * \
                (spans[n][1].out[1] - spans[n][1].out[0])
        whole_area = int(np.prod(g.tensors[op.outputs[0]].shape[1:3]))
        for n, u in enumerate(live):
            keys = tuple(r[n][0] for _, r in ins)
            # the whole-image call where it computes no more pixels than those tiles would
            if own[u] and area[keys] >= whole_area and all(key in run.whole for key in keys):
                key = ("op", k, keys)
                if key not in run.paths:
                    by_pos = {p: run.paths[kk] for (p, _), kk in zip(ins, keys)}
                    run.paths[key] = kernel([by_pos[p] if p in by_pos else g.tensors[t].data if t else None
                                             for p, t in enumerate(op.inputs)])[0]
                    run.whole.add(key)
                refs[n] = (key, 0, 0, 0)
                continue
            sh, sw = spans[n]
            windows = tuple(run.crop(r[n], sh.reads[p], sw.reads[p]) for p, r in ins)
            n_calls = groups.setdefault((tuple(w.shape for w in windows), (*sh.pads, *sw.pads)), [])
            n_calls.append(n)
            run.windows[n] = windows
        calls = [([_stack([run.windows[n][a] for n in ns]) for a in range(len(ins))], key[1])
                 for key, ns in groups.items()]
        for c, (ns, v) in enumerate(zip(groups.values(), kernel.run_calls(calls) if calls else [])):
            key = ("tiles", k, c)
            run.paths[key] = v
            for b, n in enumerate(ns):
                refs[n] = (key, b, spans[n][0].out[0], spans[n][1].out[0])
        run.windows.clear()
        return refs

    def _apply(self, start: int, run: _Run, name: str, refs: list[_Ref], live: np.ndarray,
               regions: list[tuple[Interval, Interval]]) -> list[_Ref]:
        """:meth:`MixedPrecision._apply <tinypatch.runtime.mixed.MixedPrecision.read>` on map ``name``'s
        piece ``regions[n]`` of ``refs[n]`` in tile ``live[n]`` for every n: per-tile max |q - zp| and
        statistics from the crops, a lowered piece the crop of its whole map lowered (elementwise, at
        the tile's own shift for a per-patch step)."""
        hook = self.hook
        rec = hook.record and name in hook.stats
        m = hook.maps.get(start, {}).get(name)
        low = m is not None and m.bits < 8
        if not (rec or low):
            run.set_bits(name, live, 8)
            return refs
        zp = int(hook.graph.tensors[name].quant.zero_point[0])  # type: ignore[union-attr]
        pm = np.zeros(len(refs), np.int64)
        by_key: dict[tuple, list[int]] = {}
        empty = np.array([(r[1] - r[0]) * (c[1] - c[0]) == 0 for r, c in regions])  # an empty piece stays as it is
        for n, ref in enumerate(refs):
            if not empty[n]:
                by_key.setdefault(ref[0], []).append(n)
        for key, ns in by_key.items():
            dev = run.dev(key, zp)
            for n in ns:
                pm[n] = int(run.crop(refs[n], *regions[n], dev).max())
        if rec:
            self._record(run, name, zp, refs, live, regions, by_key, pm)
        if not low:
            run.set_bits(name, live, 8)
            return refs
        assert m is not None
        outlier = (pm > m.threshold) & ~empty
        run.outlier[live] |= outlier
        if hook.scope == "rest":
            run.high[live] |= outlier
        keep = outlier | run.high[live] | empty
        run.set_bits(name, live, np.where(keep, 8, m.bits))
        out = list(refs)
        shifts = block_shift(pm, m.bits, m.signed) if m.step == "patch" else None
        for n in np.flatnonzero(~keep):
            key = refs[n][0]
            shift = int(shifts[n]) if shifts is not None else m.shift
            lkey = ("low", key, name, shift if m.step != "pixel" else None)
            if lkey not in run.paths:
                x = run.paths[key]
                run.paths[lkey] = requantize(x, zp, m.bits, shift, m.signed) if m.step != "pixel" else \
                    requantize_blocks(x, zp, m.bits, m.signed, "pixel")
                if key in run.whole:
                    run.whole.add(lkey)
            out[n] = (lkey, *refs[n][1:])
        return out

    def _record(self, run: _Run, name: str, zp: int, refs: list[_Ref], live: np.ndarray,
                regions: list[tuple[Interval, Interval]], by_key: dict[tuple, list[int]], pm: np.ndarray) -> None:
        """The calibration statistics of map ``name``'s pieces: histogram and sign from each array's
        pixels weighted by how many pieces hold them, per tile its max and sampled pixels (kept in
        ``run.events``, appended in the tile loop's order at the stage's end)."""
        s = self.hook.stats[name]
        got: dict[int, tuple[int, np.ndarray]] = {}
        for key, ns in by_key.items():
            x = run.paths[key]
            cover = np.zeros(x.shape[:3], np.int64)
            for n in ns:
                (a, b), (c, d) = regions[n]
                i, r, q = refs[n][1:]
                cover[i, a - r: b - r, c - q: d - q] += 1
                got[int(live[n])] = (int(pm[n]), sample_pixels(x[i, a - r: b - r, c - q: d - q]))
            weights = np.repeat(cover.ravel(), x.shape[-1])
            s.hist += np.bincount((x.astype(np.int32) + 128).ravel(), weights=weights, minlength=256).astype(np.int64)
            s.below_zero_point |= bool(((x < zp).any(axis=-1) & (cover > 0)).any())
        run.events.append((name, got))


# a piece's array (its key in _Run.paths), its index along the batch axis, where the array starts (row, column)
_Ref = tuple[tuple, int, int, int]


class _Run:
    """One stage run: the arrays tiles take their pieces from (whole maps, or the stacked pieces of a batched call),
    the hook's flags per tile (an outlier seen; scope ``rest``: every later map int8), each map's
    width as last applied per tile (8 where none was), and the recorded patches per map."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.paths: dict[tuple, np.ndarray] = {}
        self.whole: set[tuple] = set()  # the keys of whole maps (from a whole-image call, or lowered from one)
        self.devs: dict[tuple, np.ndarray] = {}
        self.windows: dict[int, tuple[np.ndarray, ...]] = {}
        self.high = np.zeros(n, bool)
        self.outlier = np.zeros(n, bool)
        self.bits: dict[str, np.ndarray] = {}
        self.events: list[tuple[str, dict[int, tuple[int, np.ndarray]]]] = []

    def crop(self, ref: _Ref, rows: Interval, cols: Interval, x: np.ndarray | None = None) -> np.ndarray:
        """Pixels ``rows`` x ``cols`` of ``ref``'s map (of ``x``, an array laid out as its)."""
        key, b, r, c = ref
        x = self.paths[key] if x is None else x
        return x[b: b + 1, rows[0] - r: rows[1] - r, cols[0] - c: cols[1] - c]

    def dev(self, key: tuple, zp: int) -> np.ndarray:
        """|q - zp| of array ``key``, its largest over each pixel's channels (kept: [N, H, W, 1])."""
        got = self.devs.get(key)
        if got is None:
            got = self.devs[key] = np.abs(self.paths[key].astype(np.int32) - zp).max(axis=-1, keepdims=True)
        return got

    def set_bits(self, name: str, tiles: np.ndarray, bits: np.ndarray | int) -> None:
        self.bits.setdefault(name, np.full(self.n, 8, np.int64))[tiles] = bits

    def width(self, name: str) -> np.ndarray:
        return self.bits.get(name, np.full(self.n, 8, np.int64))


def _stack(xs: list[np.ndarray]) -> np.ndarray:
    """Arrays of one shape [1, ...] stacked along the batch axis (one: itself)."""
    return xs[0] if len(xs) == 1 else np.concatenate(xs)


def values_runner(graph: Graph, plan: Plan, hook: MixedPrecision) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """What quantize runs for values and counts: :class:`MixedTiles` where a stage is
    :func:`recompute_only` (the others on the tile loop), else the plan executor with ``hook``."""
    fast = MixedTiles(graph, plan, hook)
    if fast.usable():
        return fast
    ex = fast.loop if fast.loop is not None else PlanExecutor(graph, plan, hook)
    return lambda x: ex([x]).outputs
