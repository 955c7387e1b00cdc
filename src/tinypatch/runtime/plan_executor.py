"""Run a :class:`~tinypatch.planning.plan.Plan` inside a simulated arena.

Layer-by-layer operators read and write whole tensors; a patch stage runs its operators tile
by tile, each tile reading only the region it needs (zero padding only at true image
borders) and writing its piece of the stage output into the full-size output buffer. All
activations live in one :class:`~tinypatch.runtime.sim_arena.Arena` at the planner's offsets,
and every array read from or written to it is reported to the arena:
:attr:`PlanRun.touched_high_water` is the highest byte actually touched, measured from the
bytes, and a read of a freed or never-written byte raises :class:`~tinypatch.errors.PlanError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinypatch.analysis.regions import reads_nchw, writes_nchw
from tinypatch.errors import InputError
from tinypatch.ir import Graph
from tinypatch.ir.optable import op_def
from tinypatch.kernels import prepare
from tinypatch.planning.memory import (
    accumulator_name,
    line_buffer_name,
    place_plan,
    plan_buffers,
)
from tinypatch.planning.columns import column_maps
from tinypatch.planning.plan import Plan
from tinypatch.planning.precision import PrecisionPlan
from tinypatch.planning.rewrite import rewritten
from tinypatch.planning.stream import (
    STEP_DST,
    STEP_HI,
    STEP_KEEP,
    STEP_LO,
    STEP_OP,
    STEP_PAD,
    STEP_SHIFT,
    column_steps,
)
from tinypatch.planning.tiles import OpSpan, StageTiling
from tinypatch.runtime.mixed import MixedPrecision
from tinypatch.runtime.sim_arena import Arena
from tinypatch.runtime.threads import blas_threads


@dataclass
class PlanRun:
    outputs: dict[str, np.ndarray]
    touched_high_water: int  # measured: one past the highest arena byte read or written
    arena_size: int  # the planned peak the arena was sized to
    alignment: int  # the arena's alignment

    @property
    def arena_high_water(self) -> int:
        """The touched high-water mark rounded up to the arena alignment (what a static arena
        holding those bytes needs)."""
        return -(-self.touched_high_water // self.alignment) * self.alignment


class PlanExecutor:
    """Prepare once, run many inputs: ``PlanExecutor(graph, plan)(inputs)``.

    ``mixed`` (a :class:`~tinypatch.runtime.mixed.MixedPrecision` hook, or a precision plan to
    make one from) runs tiled stages at per-patch mixed precision; without it every map is int8.
    """

    def __init__(self, graph: Graph, plan: Plan, mixed: MixedPrecision | PrecisionPlan | None = None) -> None:
        graph = rewritten(graph, plan)  # the graph the stages index (the model's unless the plan rewrites it)
        self.graph, self.plan = graph, plan
        self.mixed = MixedPrecision(graph, plan, mixed) if isinstance(mixed, PrecisionPlan) else mixed
        self.buffers = plan_buffers(graph, plan)
        self.placement = place_plan(self.buffers)
        self.kernels = [prepare(graph, op) for op in graph.ops]
        live = self.buffers.liveness
        self.buffer_of = live.tensor_buffer  # tensor -> arena buffer (absent: outside the arena)
        self.ends: dict[int, list[str]] = {}
        for b in live.buffers:
            self.ends.setdefault(b.end, []).append(b.name)
        self.starts = {b.name: b.start for b in live.buffers}
        self.stage_at = {st.stage.start: st for st in self.buffers.tilings}
        self.overwrites = {self.starts[out]: src for out, (src, _) in live.anchors.items()}  # op -> input buffer
        self.output_buffers = {self.buffer_of[t] for t in graph.outputs if t in self.buffer_of}
        self.producers = producers = graph.producers()
        self.tile_buffers = {  # per stage: buffers freed inside each tile (tile-local, not cached)
            st.stage.start: {self.buffer_of[t] for t in st.info.internal
                             if t in self.buffer_of and not st.cached(producers[t])}
            for st in self.buffers.tilings}

    # --- tensor storage -----------------------------------------------------------------
    def _put(self, arena: Arena, outside: dict[str, np.ndarray], name: str, value: np.ndarray) -> None:
        buf = self.buffer_of.get(name)
        if buf is None:
            outside[name] = value
            return
        if buf not in arena.live:
            arena.alloc(buf, self.placement.offsets[buf], value.nbytes)
        view = arena.view(buf, value.shape, value.dtype)
        view[...] = value
        arena.wrote(view)

    def _get(self, arena: Arena, outside: dict[str, np.ndarray], name: str) -> np.ndarray:
        t = self.graph.tensors[name]
        if t.is_const:
            return t.data  # type: ignore[return-value]
        if name in outside:
            return outside[name]
        return arena.view(self.buffer_of[name], t.shape, t.np_dtype)

    # --- running ------------------------------------------------------------------------
    def __call__(self, inputs: list[np.ndarray] | dict[str, np.ndarray], threads: int | None = 1) -> PlanRun:
        """Run one inference; ``threads``: numpy's BLAS threads meanwhile (as :class:`~tinypatch.runtime.executor.Executor`)."""
        with blas_threads(threads):
            return self._run(inputs)

    def _run(self, inputs: list[np.ndarray] | dict[str, np.ndarray]) -> PlanRun:
        g = self.graph
        if isinstance(inputs, np.ndarray):  # one array for a single-input model, as run() takes
            inputs = [inputs]
        if not isinstance(inputs, dict):
            inputs = dict(zip(g.inputs, inputs))
        arena = Arena(self.placement.peak, self.placement.alignment)
        outside: dict[str, np.ndarray] = {}
        for name in g.inputs:
            t = g.tensors[name]
            if name not in inputs:
                raise InputError(f"missing model input {name!r}")
            x = np.asarray(inputs[name])
            if x.shape != t.shape or x.dtype != t.np_dtype:
                raise InputError(f"input {name!r} must be {t.dtype} {t.shape}, got {x.dtype} {x.shape}")
            self._put(arena, outside, name, x)
        i = 0
        while i < len(g.ops):
            if i in self.stage_at:
                st = self.stage_at[i]
                self._run_stage(arena, outside, st)
                for k in range(st.stage.start, st.stage.end):
                    self._free(arena, k, st)
                i = st.stage.end
            else:
                self._run_op(arena, outside, i)
                self._free(arena, i, None)
                i += 1
        outputs = {name: np.array(arena.read(self._get(arena, outside, name), name)) for name in g.outputs}
        return PlanRun(outputs, arena.touched_high_water, arena.size, arena.alignment)

    def _run_op(self, arena: Arena, outside: dict[str, np.ndarray], i: int) -> None:
        """Layer-by-layer op ``i``: inputs read whole, then the output written whole (an in-place
        op's input is freed first, its output takes over those bytes)."""
        op = self.graph.ops[i]
        outs = self.kernels[i]([arena.read(self._get(arena, outside, t), t) if t else None for t in op.inputs])
        overwritten = self.overwrites.get(i)
        if overwritten:
            arena.free(overwritten)
        for name, value in zip(op.outputs, outs):
            self._put(arena, outside, name, value)

    def _free(self, arena: Arena, step: int, stage: StageTiling | None) -> None:
        """Free the buffers whose lifetime ends at ``step`` (outputs stay until they are read)."""
        skip = self.output_buffers | (self.tile_buffers[stage.stage.start] if stage else set())
        for buf in self.ends.get(step, []):
            if buf not in skip:
                arena.free(buf)

    def _run_stage(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling) -> None:
        g = self.graph
        out_t = g.tensors[st.info.output]
        out_buf = self.buffer_of.get(st.info.output)
        if out_buf is None:
            outside[st.info.output] = np.zeros(out_t.shape, out_t.np_dtype)
        else:
            arena.alloc(out_buf, self.placement.offsets[out_buf], out_t.nbytes)
        full_out = self._get(arena, outside, st.info.output)
        if writes_nchw(g, g.ops[st.info.ops[-1]]):  # a trailing TRANSPOSE: tiles write the NCHW output seen as NHWC
            full_out = full_out.transpose(0, 2, 3, 1)
        if st.stream:
            _Stream(self, arena, outside, st, full_out).run()
            return
        tile_bufs = self.tile_buffers[st.stage.start]
        sums = None
        if st.info.reduce is not None:  # per-channel int32 sums of the tiled map, accumulated tile by tile
            acc = accumulator_name(st.info.output)
            arena.alloc(acc, self.placement.offsets[acc], self.placement.sizes[acc])
            sums = arena.view(acc, (g.tensors[st.info.tiled].shape[3],), np.dtype(np.int32))
            sums[...] = 0
            arena.wrote(sums)
        persistent = [k for k in st.info.tile_ops if st.cached(k)]
        for k in persistent:  # cached outputs (and their line buffers) live across all tiles
            name = g.ops[k].outputs[0]
            arena.alloc(self.buffer_of[name], self.placement.offsets[self.buffer_of[name]],
                        self.placement.sizes[self.buffer_of[name]])
            if st.line_buffer(k):
                lb = line_buffer_name(name)
                if lb in self.placement.offsets:
                    arena.alloc(lb, self.placement.offsets[lb], self.placement.sizes[lb])
        held: dict[str, tuple[np.ndarray, int, int]] = {}  # tensor -> (region array, row0, col0)
        kept: dict[str, tuple[np.ndarray, int, int]] = {}  # cached tensor -> its last non-empty region
        # mixed precision classifies and lowers each tile as it runs: no batched tiles then
        batched = self._batched(arena, outside, st) if sums is None and not persistent and not self.mixed else {}
        for i in range(st.stage.grid[0]):
            for j in range(st.stage.grid[1]):
                if self.mixed:
                    self.mixed.begin_tile(st.stage.start)
                if (i, j) in batched:  # computed with its like tiles: store its values as the tile would
                    self._store_tile(arena, outside, st, i, j, batched[(i, j)], full_out, tile_bufs)
                    continue
                for k in st.info.tile_ops:
                    op = g.ops[k]
                    sh, sw = st.h.spans[i][k], st.w.spans[j][k]
                    name = op.outputs[0]
                    if name == st.info.output:
                        region = full_out[:, sh.need[0]: sh.need[1], sw.need[0]: sw.need[1]]
                    else:
                        region = self._region(arena, st, k, i, j, kept)
                        held[name] = (region, sh.need[0], sw.need[0])
                    if sh.out[0] < sh.out[1] and sw.out[0] < sw.out[1]:  # else all of it was cached
                        self._compute(arena, outside, st, k, i, j, region, held)
                    if st.cached(k) and region.size:  # an empty region leaves the buffer as it was
                        kept[name] = held[name]
                        if st.line_buffer(k):
                            self._save_lines(arena, st, k, i, j, region)
                    if sums is not None and name == st.info.tiled:
                        sums += arena.read(region, name).sum(axis=(0, 1, 2), dtype=np.int64).astype(np.int32)
                        arena.read(sums)
                        arena.free(self.buffer_of[name])
                    for buf in self.ends.get(k, []):
                        if buf in tile_bufs:
                            arena.free(buf)
        if self.mixed:
            self.mixed.end_stage()
        for k in persistent:
            if st.line_buffer(k):
                arena.free(line_buffer_name(g.ops[k].outputs[0]))
        if sums is not None:
            full_out[...] = self.kernels[st.info.reduce].finish(arena.read(sums).astype(np.int64))
            arena.wrote(full_out)
            arena.free(accumulator_name(st.info.output))

    def _signature(self, st: StageTiling, i: int, j: int) -> tuple | None:
        """What makes tile (i, j) of a recompute stage batchable with others: per op, its region
        sizes, paddings, and where it reads (relative to a producer's region inside the stage,
        or just how much from a full-size tensor). None: it computes only part of a region, or
        runs an op whose kernel does not batch (gathers, slices: see the operator table) or reads
        an NCHW input or writes an NCHW output."""
        g, producers = self.graph, self.producers
        sig = []
        for k in st.info.tile_ops:
            sh, sw = st.h.spans[i][k], st.w.spans[j][k]
            if sh.out != sh.need or sw.out != sw.need or sh.need[0] >= sh.need[1] or sw.need[0] >= sw.need[1] \
                    or not op_def(g.ops[k].type).batches or reads_nchw(g, g.ops[k]) or writes_nchw(g, g.ops[k]):
                return None
            reads = []
            for t, rh, rw in zip(g.ops[k].inputs, sh.reads, sw.reads):
                if rh is None or rw is None:
                    reads.append(None)
                elif producers.get(t) in st.h.spans[i]:  # a tile region of this stage
                    ph, pw = st.h.spans[i][producers[t]].need[0], st.w.spans[j][producers[t]].need[0]
                    reads.append((rh[0] - ph, rh[1] - ph, rw[0] - pw, rw[1] - pw))
                else:
                    reads.append((rh[1] - rh[0], rw[1] - rw[0]))
            sig.append((sh.need[1] - sh.need[0], sw.need[1] - sw.need[0], sh.pads, sw.pads, tuple(reads)))
        return tuple(sig)

    def _batched(self, arena: Arena, outside: dict[str, np.ndarray],
                 st: StageTiling) -> dict[tuple[int, int], dict[str, np.ndarray]]:
        """Tile (i, j) -> its op outputs, for the tiles of a recompute stage that have like tiles
        (same signature: interior tiles), each group run as one batched kernel call per op."""
        groups: dict[tuple, list[tuple[int, int]]] = {}
        for i in range(st.stage.grid[0]):
            for j in range(st.stage.grid[1]):
                sig = self._signature(st, i, j)
                if sig is not None:
                    groups.setdefault(sig, []).append((i, j))
        out: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for tiles in groups.values():
            if len(tiles) < 2:
                continue
            values = self._run_batch(arena, outside, st, tiles)
            for n, tile in enumerate(tiles):
                out[tile] = {name: v[n: n + 1] for name, v in values.items()}
        return out

    def _run_batch(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling,
                   tiles: list[tuple[int, int]]) -> dict[str, np.ndarray]:
        """The stage's op outputs for ``tiles`` (like tiles), stacked along the batch axis."""
        g = self.graph
        i0, j0 = tiles[0]
        values: dict[str, np.ndarray] = {}
        for k in st.info.tile_ops:
            op = g.ops[k]
            sh, sw = st.h.spans[i0][k], st.w.spans[j0][k]
            args = []
            for n, (t, rh, rw) in enumerate(zip(op.inputs, sh.reads, sw.reads)):
                if rh is None or rw is None:
                    args.append(g.tensors[t].data if t else None)
                elif t in values:
                    p = self.producers[t]
                    ph, pw = st.h.spans[i0][p].need[0], st.w.spans[j0][p].need[0]
                    args.append(values[t][:, rh[0] - ph: rh[1] - ph, rw[0] - pw: rw[1] - pw])
                else:
                    full = self._get(arena, outside, t)  # a full-size tensor: each tile's own window
                    windows = [(st.h.spans[i][k].reads[n], st.w.spans[j][k].reads[n]) for i, j in tiles]
                    args.append(np.concatenate([full[:, a[0]: a[1], b[0]: b[1]] for a, b in windows]))
            values[op.outputs[0]] = self.kernels[k](args, (*sh.pads, *sw.pads))[0]
        return values

    def _store_tile(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling, i: int, j: int,
                    values: dict[str, np.ndarray], full_out: np.ndarray, tile_bufs: set[str]) -> None:
        """Tile (i, j) computed in a batch: its regions claimed, read, written and freed as in the tile
        loop (the arena checks and touched bytes stay those of the tile-by-tile run)."""
        g = self.graph
        held: dict[str, tuple[np.ndarray, int, int]] = {}
        for k in st.info.tile_ops:
            op = g.ops[k]
            name = op.outputs[0]
            sh, sw = st.h.spans[i][k], st.w.spans[j][k]
            if name == st.info.output:
                region = full_out[:, sh.need[0]: sh.need[1], sw.need[0]: sw.need[1]]
            else:
                region = self._region(arena, st, k, i, j, {})
                held[name] = (region, sh.need[0], sw.need[0])
            for t, rh, rw in zip(op.inputs, sh.reads, sw.reads):
                if rh is None or rw is None:
                    continue
                if t in held:
                    arr, r0, c0 = held[t]
                    arena.read(arr[:, rh[0] - r0: rh[1] - r0, rw[0] - c0: rw[1] - c0], t)
                else:
                    arena.read(self._get(arena, outside, t)[:, rh[0]: rh[1], rw[0]: rw[1]], t)
            region[...] = values[name]
            arena.wrote(region)
            for buf in self.ends.get(k, []):
                if buf in tile_bufs:
                    arena.free(buf)

    def _compute(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling, k: int, i: int, j: int,
                 region: np.ndarray, held: dict[str, tuple[np.ndarray, int, int]]) -> None:
        """Run op k on the fresh part of tile (i, j) and write it into ``region``."""
        g = self.graph
        op = g.ops[k]
        sh, sw = st.h.spans[i][k], st.w.spans[j][k]
        args = []
        for t, rh, rw in zip(op.inputs, sh.reads, sw.reads):
            if rh is None or rw is None:
                args.append(g.tensors[t].data if t else None)
            elif t in held:
                arr, r0, c0 = held[t]
                args.append(arena.read(arr[:, rh[0] - r0: rh[1] - r0, rw[0] - c0: rw[1] - c0], t))
            elif reads_nchw(g, op):
                args.append(arena.read(self._get(arena, outside, t)[:, :, rh[0]: rh[1], rw[0]: rw[1]], t))
            else:
                piece = arena.read(self._get(arena, outside, t)[:, rh[0]: rh[1], rw[0]: rw[1]], t)
                args.append(self.mixed.read(t, piece) if self.mixed else piece)
        if op_def(op.type).gather:  # resizes, transpose conv: the kernel computes the window itself
            p = next(p for p, r in enumerate(sh.reads) if r is not None)
            value = self.kernels[k].window(args[p], (sh.reads[p][0], sw.reads[p][0]), (sh.out, sw.out))
        else:
            value = self.kernels[k](args, (*sh.pads, *sw.pads))[0]
        if writes_nchw(g, op):  # the NCHW tile goes into the output's NHWC view
            value = value.transpose(0, 2, 3, 1)
        if self.mixed:
            value = self.mixed.wrote(k, value, op.outputs[0] == st.info.output)
        fresh = region[:, sh.out[0] - sh.need[0]:, sw.out[0] - sw.need[0]:]
        fresh[...] = value
        arena.wrote(fresh)

    def _region(self, arena: Arena, st: StageTiling, k: int, i: int, j: int,
                kept: dict[str, tuple[np.ndarray, int, int]]) -> np.ndarray:
        """The buffer holding op k's output region for tile (i, j), cached parts filled in."""
        t = self.graph.tensors[self.graph.ops[k].outputs[0]]
        sh, sw = st.h.spans[i][k], st.w.spans[j][k]
        shape = (1, sh.need[1] - sh.need[0], sw.need[1] - sw.need[0], t.shape[3])
        buf = self.buffer_of[t.name]
        if not st.cached(k):
            arena.alloc(buf, self.placement.offsets[buf], int(np.prod(shape)) * t.np_dtype.itemsize)
            return arena.view(buf, shape, t.np_dtype)
        old = kept.get(t.name)
        region = arena.view(buf, shape, t.np_dtype)
        if old is None or not region.size:
            return region
        _, r0, c0 = old  # type: ignore[misc]
        keep = old[0].copy()  # a memmove on the MCU
        if j > 0 and sw.out[0] > sw.need[0]:  # same tile row: overlapping columns slide left
            arena.read(old[0][:, sh.need[0] - r0: sh.need[1] - r0, sw.need[0] - c0: sw.out[0] - c0], t.name)
            region[:, :, : sw.out[0] - sw.need[0]] = keep[:, sh.need[0] - r0: sh.need[1] - r0,
                                                          sw.need[0] - c0: sw.out[0] - c0]
            arena.wrote(region[:, :, : sw.out[0] - sw.need[0]])
        if i > 0 and sh.out[0] > sh.need[0]:  # next tile row: overlapping rows
            rows = sh.out[0] - sh.need[0]
            if st.line_buffer(k):
                lo = st.w.extent(t.name)[0]
                lines = arena.view(line_buffer_name(t.name), (1, st.h.overlap(k), st.w.extent(t.name)[1] - lo,
                                                              t.shape[3]), t.np_dtype)
                region[:, :rows, sw.out[0] - sw.need[0]:] = arena.read(
                    lines[:, :rows, sw.out[0] - lo: sw.need[1] - lo], line_buffer_name(t.name))
                arena.wrote(region[:, :rows, sw.out[0] - sw.need[0]:])
            else:  # a single tile column: the buffer rolls down
                arena.read(old[0][:, sh.need[0] - r0: sh.out[0] - r0, sw.need[0] - c0: sw.need[1] - c0], t.name)
                region[:, :rows] = keep[:, sh.need[0] - r0: sh.out[0] - r0, sw.need[0] - c0: sw.need[1] - c0]
                arena.wrote(region[:, :rows])
        return region

    def _save_lines(self, arena: Arena, st: StageTiling, k: int, i: int, j: int, region: np.ndarray) -> None:
        """Keep the rows of op k's output that the next tile row needing any of it takes from
        the line buffer (fresh columns only)."""
        t = self.graph.tensors[self.graph.ops[k].outputs[0]]
        sh, sw = st.h.spans[i][k], st.w.spans[j][k]
        later = [s[k] for s in st.h.spans[i + 1:] if s[k].need[0] < s[k].need[1]]
        if not later or later[0].out[0] <= later[0].need[0]:
            return
        nxt = later[0]
        lo = st.w.extent(t.name)[0]
        lines = arena.view(line_buffer_name(t.name), (1, st.h.overlap(k), st.w.extent(t.name)[1] - lo,
                                                      t.shape[3]), t.np_dtype)
        dst = lines[:, : nxt.out[0] - nxt.need[0], sw.out[0] - lo: sw.need[1] - lo]
        dst[...] = arena.read(region[:, nxt.need[0] - sh.need[0]: nxt.out[0] - sh.need[0], sw.out[0] - sw.need[0]:],
                              t.name)
        arena.wrote(dst)


class _Stream:
    """One stream stage run (see :mod:`tinypatch.planning.stream`): per row strip, the stage's
    step table (:func:`~tinypatch.planning.stream.column_steps`, the same one the generated C
    walks): each step one op computing one column into its window buffer (the last op: into
    the stage output), or one window buffer sliding its kept columns to the front."""

    def __init__(self, ex: PlanExecutor, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling,
                 full_out: np.ndarray) -> None:
        self.ex, self.arena, self.outside, self.st, self.full_out = ex, arena, outside, st, full_out
        self.producers = ex.graph.producers()
        self.steps = column_steps(ex.graph, st)
        self.window = {}  # op -> its column window map (None: point-wise)
        for k in st.info.tile_ops:
            maps = [m for m in column_maps(ex.graph, k) or [] if m is not None]
            self.window[k] = maps[0] if maps and maps[0].kind == "window" else None

    def run(self) -> None:
        g, st, ex = self.ex.graph, self.st, self.ex
        for k in st.info.tile_ops[:-1]:  # window buffers live across the whole stage
            buf = ex.buffer_of[g.ops[k].outputs[0]]
            self.arena.alloc(buf, ex.placement.offsets[buf], ex.placement.sizes[buf])
        for spans in st.h.spans:
            views = {}
            for k in st.info.tile_ops[:-1]:
                t = g.tensors[g.ops[k].outputs[0]]
                rows = spans[k].need[1] - spans[k].need[0]
                views[t.name] = self.arena.view(ex.buffer_of[t.name], (1, rows, st.rings[t.name], t.shape[3]),
                                                t.np_dtype)
            for step in self.steps:
                k = step[STEP_OP]
                if step[STEP_KEEP]:  # slide: kept columns to the front
                    view, keep, shift = views[g.ops[k].outputs[0]], step[STEP_KEEP], step[STEP_SHIFT]
                    view[:, :, :keep] = self.arena.read(view[:, :, shift: shift + keep]).copy()
                    self.arena.wrote(view[:, :, :keep])
                elif spans[k].out[0] < spans[k].out[1]:
                    self.compute(k, step, spans, views)

    def compute(self, k: int, step: tuple[int, ...], spans: dict[int, OpSpan], views: dict[str, np.ndarray]) -> None:
        """A compute step: op k's column ``step[STEP_DST]`` over the strip's rows."""
        g = self.ex.graph
        op = g.ops[k]
        sh = spans[k]
        lo, hi = step[STEP_LO], step[STEP_HI]
        args = []
        for t, rh in zip(op.inputs, sh.reads):
            if rh is None or g.tensors[t].is_const:
                args.append(g.tensors[t].data if t else None)
            elif t in views:  # a window buffer holds the consumer's columns from its column 0
                r0 = spans[self.producers[t]].need[0]
                args.append(self.arena.read(views[t][:, rh[0] - r0: rh[1] - r0, : hi - lo], t))
            else:
                args.append(self.arena.read(self.ex._get(self.arena, self.outside, t)[:, rh[0]: rh[1], lo:hi], t))
        m = self.window[k]  # one output column reads before + (hi - lo) + after = the window's extent
        wpads = (step[STEP_PAD], m.extent - step[STEP_PAD] - (hi - lo)) if m is not None else (0, 0)
        value = self.ex.kernels[k](args, (*sh.pads, *wpads))[0]
        name = op.outputs[0]
        dst = views[name] if name in views else self.full_out[:, sh.out[0]: sh.out[1]]
        dst[:, :, step[STEP_DST]: step[STEP_DST] + 1] = value
        self.arena.wrote(dst[:, :, step[STEP_DST]: step[STEP_DST] + 1])

