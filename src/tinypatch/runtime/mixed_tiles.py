"""Values-only runs of a precision plan over recompute-only patch stages, all tiles of an op at once.

The plan executor with a :class:`~tinypatch.runtime.mixed.MixedPrecision` hook walks every tile on
values, in its simulated arena, on every run: each tile's low-bit values depend on that tile's own
outlier tests. Where every op of every stage recomputes its halo (no cached part, line or window
buffer: tiles independent, each op's output region of a tile is computed whole from the tile's own
windows), :class:`MixedTiles` computes the same values op by op for all tiles together:

* an op's tile computations are grouped by their windows' shapes and paddings, each group one
  batched call (the windows stacked along the batch axis), the groups of an op one
  :meth:`~tinypatch.kernels.base.PreparedOp.run_calls` (the bytes of one call each: a kernel's
  output pixel depends only on its window);
* the hook's per-tile decisions are carried per tile, in the tile loop's order within a tile (an
  op's stage inputs in input order, then its output): max ``|q - zp|`` per tile, the outlier flag,
  the scope ``rest`` flag, the maps' widths (which weigh the BitOPs of their consumers), and the
  non-outlier tiles requantized together (elementwise, with one shift per tile for a per-patch step);
* recorded statistics (``record=True``) are appended per map in the tile loop's order (tile by tile,
  within a tile in call order); histograms are sums, order-free.

No arena is simulated: ``tinypatch run --precision`` keeps the plan executor, which measures it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinypatch.analysis.regions import reads_nchw, writes_nchw
from tinypatch.ir import Graph
from tinypatch.ir.optable import op_def
from tinypatch.kernels.lowbit import block_shift, requantize, requantize_blocks
from tinypatch.planning.plan import STREAM, Plan
from tinypatch.planning.precision import MapPrecision
from tinypatch.planning.rewrite import rewritten
from tinypatch.planning.tiles import StageTiling, tile_stage
from tinypatch.runtime.executor import Executor
from tinypatch.runtime.mixed import SAMPLE, WEIGHT_BITS, MixedPrecision
from tinypatch.runtime.plan_executor import PlanExecutor


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


class _TileState:
    """Per tile of one stage run: the hook's flags (an outlier seen; scope ``rest``: every later map
    int8) and each map's width as last applied (8 where none was)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.high = np.zeros(n, bool)
        self.outlier = np.zeros(n, bool)
        self.bits: dict[str, np.ndarray] = {}

    def set_bits(self, name: str, tiles: np.ndarray, bits: np.ndarray | int) -> None:
        got = self.bits.setdefault(name, np.full(self.n, 8, np.int64))
        got[tiles] = bits

    def width(self, name: str) -> np.ndarray:
        return self.bits.get(name, np.full(self.n, 8, np.int64))


class MixedTiles:
    """``MixedTiles(graph, plan, hook)(x)``: the model outputs the plan executor with ``hook`` gives
    on input ``x``, with the same counts and recorded statistics in ``hook`` (see the module
    docstring); every stage must be :func:`recompute_only` (PlanError-free check: :meth:`usable`)."""

    def __init__(self, graph: Graph, plan: Plan, hook: MixedPrecision) -> None:
        g = rewritten(graph, plan)
        self.graph, self.hook = g, hook
        self.ex = Executor(g)
        consumers = g.consumers()
        self.stages = {s.start: tile_stage(g, s, consumers) for s in plan.stages}
        self.producer = {op.outputs[0]: k for k, op in enumerate(g.ops) if op.outputs}  # map -> the op writing it

    def usable(self) -> bool:
        """Every stage :func:`recompute_only`."""
        return all(recompute_only(self.graph, st) for st in self.stages.values())

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        g = self.graph
        env = self.ex.check_inputs([x])
        k = 0
        while k < len(g.ops):
            st = self.stages.get(k)
            if st is not None:
                env[st.info.output] = self._stage(st, env)
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
        start = st.stage.start
        tiles = [(i, j) for i in range(st.stage.grid[0]) for j in range(st.stage.grid[1])]
        state = _TileState(len(tiles))
        events: list[tuple[str, dict[int, tuple[int, np.ndarray]]]] = []  # recorded _apply calls, in call order
        held: dict[str, list[np.ndarray | None]] = {}  # stage-internal map -> its (lowered) region per tile
        out_t = g.tensors[st.info.output]
        full = np.zeros(out_t.shape, out_t.np_dtype)
        counts = hook.counts[start]
        for k in st.info.tile_ops:
            op = g.ops[k]
            spans = [(st.h.spans[i][k], st.w.spans[j][k]) for i, j in tiles]
            live = np.array([n for n, (sh, sw) in enumerate(spans) if sh.out[0] < sh.out[1] and sw.out[0] < sw.out[1]],
                            np.int64)
            if not live.size:
                continue
            args: list[list[np.ndarray]] = []
            for n, t in enumerate(op.inputs):
                if not t or g.tensors[t].is_const:
                    continue
                if t in held:
                    p = self.producer[t]
                    xs = []
                    for u in live:
                        (sh, sw), (i, j) = spans[u], tiles[u]
                        r0, c0 = st.h.spans[i][p].need[0], st.w.spans[j][p].need[0]
                        (a, b), (c, d) = sh.reads[n], sw.reads[n]
                        xs.append(held[t][u][:, a - r0: b - r0, c - c0: d - c0])  # type: ignore[index]
                else:
                    src = env[t]
                    xs = [src[:, sh.reads[n][0]: sh.reads[n][1], sw.reads[n][0]: sw.reads[n][1]]
                          for sh, sw in (spans[u] for u in live)]
                    xs = self._apply(start, t, xs, live, state, events)
                args.append(xs)
            values = self._compute(k, args, [(*spans[u][0].pads, *spans[u][1].pads) for u in live])
            macs = hook.per_pixel[k]
            if macs:
                w = state.width(hook.graph.ops[k].inputs[0])[live]
                px = np.array([v.shape[1] * v.shape[2] for v in values], np.int64)
                counts.bitops += int((macs * px * WEIGHT_BITS * w).sum())
                counts.bitops_int8 += int((macs * px).sum()) * WEIGHT_BITS * 8
            name = op.outputs[0]
            if name == st.info.output:
                for u, v in zip(live, values):
                    sh, sw = spans[u]
                    full[:, sh.out[0]: sh.out[1], sw.out[0]: sw.out[1]] = v
            else:
                values = self._apply(start, name, values, live, state, events)
                per_tile: list[np.ndarray | None] = [None] * len(tiles)
                for u, v in zip(live, values):
                    per_tile[u] = v
                held[name] = per_tile
        counts.tiles += len(tiles)
        counts.outlier_tiles += int(state.outlier.sum())
        for u in range(len(tiles)):  # the recorded patches in the tile loop's order
            for name, got in events:
                if u in got:
                    pm, px = got[u]
                    s = hook.stats[name]
                    s.patch_max.append(pm)
                    s.pixels.append(px)
                    s.pixel_patch_max.append(np.full(len(px), pm, np.int32))
        return full

    def _compute(self, k: int, args: list[list[np.ndarray]], pads: list[tuple[int, ...]]) -> list[np.ndarray]:
        """Op k on each tile's windows (``args[input][tile]``) with its paddings: tiles of equal window
        shapes and paddings stacked as one call, an op's calls one ``run_calls``."""
        groups: dict[tuple, list[int]] = {}
        for u, p in enumerate(pads):
            groups.setdefault((tuple(a[u].shape for a in args), p), []).append(u)
        calls = [([_stack([a[u] for u in us]) for a in args], key[1]) for key, us in groups.items()]
        outs = self.ex.kernels[k].run_calls(calls)
        values: list[np.ndarray] = [None] * len(pads)  # type: ignore[list-item]
        for us, v in zip(groups.values(), outs):
            for b, u in enumerate(us):
                values[u] = v[b: b + 1]
        return values

    def _apply(self, start: int, name: str, xs: list[np.ndarray], live: np.ndarray, state: _TileState,
               events: list) -> list[np.ndarray]:
        """:meth:`MixedPrecision._apply <tinypatch.runtime.mixed.MixedPrecision.read>` on map ``name``'s
        piece ``xs[n]`` of tile ``live[n]`` for every n, tiles of equal shape together."""
        hook = self.hook
        rec = hook.record and name in hook.stats
        m = hook.maps.get(start, {}).get(name)
        low = m is not None and m.bits < 8
        if not (rec or low):
            state.set_bits(name, live, 8)
            return xs
        zp = int(hook.graph.tensors[name].quant.zero_point[0])  # type: ignore[union-attr]
        got: dict[int, tuple[int, np.ndarray]] = {}
        out = list(xs)
        shapes: dict[tuple[int, ...], list[int]] = {}
        for n, x in enumerate(xs):
            shapes.setdefault(x.shape, []).append(n)
        for shape, ns in shapes.items():
            tiles = live[ns]
            if not np.prod(shape):
                state.set_bits(name, tiles, 8)
                continue
            stack = _stack([xs[n] for n in ns])
            d = stack.astype(np.int32) - zp
            pm = np.abs(d).max(axis=(1, 2, 3))
            if rec:
                s = hook.stats[name]
                s.hist += np.bincount((stack.astype(np.int32) + 128).ravel(), minlength=256)
                s.below_zero_point |= bool(d.min() < 0)
                for n, u, v in zip(ns, tiles, pm):
                    px = xs[n].reshape(-1, shape[-1])
                    got[int(u)] = (int(v), px[:: max(1, len(px) // SAMPLE)][:SAMPLE].copy())
            if not low:
                state.set_bits(name, tiles, 8)
                continue
            assert m is not None
            outlier = pm > m.threshold
            state.outlier[tiles] |= outlier
            if hook.scope == "rest":
                state.high[tiles] |= outlier
            keep = outlier | state.high[tiles]
            state.set_bits(name, tiles, np.where(keep, 8, m.bits))
            lowered = np.flatnonzero(~keep)
            if lowered.size:
                q = _lower(stack[lowered], zp, m, pm[lowered])
                for b, c in enumerate(lowered):
                    out[ns[c]] = q[b: b + 1]
        if rec:
            events.append((name, got))
        return out


def _stack(xs: list[np.ndarray]) -> np.ndarray:
    """Arrays of one shape [1, ...] stacked along the batch axis (one: itself)."""
    return xs[0] if len(xs) == 1 else np.concatenate(xs)


def _lower(stack: np.ndarray, zp: int, m: MapPrecision, patch_max: np.ndarray) -> np.ndarray:
    """:func:`~tinypatch.runtime.mixed.lower` of each patch of ``stack`` (patches along the batch axis,
    ``patch_max`` their max |q - zp|): static and per-pixel steps are elementwise, a per-patch step one
    shift per patch."""
    if m.step == "static":
        return requantize(stack, zp, m.bits, m.shift, m.signed)
    if m.step == "patch":
        return requantize(stack, zp, m.bits, block_shift(patch_max, m.bits, m.signed)[:, None, None, None], m.signed)
    return requantize_blocks(stack, zp, m.bits, m.signed, m.step)


def values_runner(graph: Graph, plan: Plan, hook: MixedPrecision) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """What quantize runs for values and counts: :class:`MixedTiles` where every stage is
    :func:`recompute_only`, else the plan executor with ``hook`` (its outputs)."""
    fast = MixedTiles(graph, plan, hook)
    if fast.usable():
        return fast
    ex = PlanExecutor(graph, plan, hook)
    return lambda x: ex([x]).outputs
