"""Run a :class:`~tinypatch.planning.plan.Plan` inside a simulated arena.

Layer-by-layer operators read and write whole tensors; a patch stage runs its operators tile
by tile, each tile reading only the region it needs (zero padding only at true image
borders) and writing its piece of the stage output into the full-size output buffer. All
activations live in one :class:`~tinypatch.runtime.sim_arena.Arena` at the planner's offsets,
and every array read from or written to it is reported to the arena:
:attr:`PlanRun.touched_high_water` is the highest byte actually touched, measured from the
bytes, and a read of a freed or never-written byte raises :class:`~tinypatch.errors.PlanError`.
Batched (the default), a stage is walked so once, on provenance (in an
:class:`~tinypatch.runtime.sim_arena.IdArena`, no kernel run), and every run replays that walk's
arena effect and computes the stage's values in batches (:mod:`~tinypatch.runtime.stage_replay`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from tinypatch.analysis.regions import reads_nchw, writes_nchw
from tinypatch.errors import InputError, PlanError
from tinypatch.ir import Graph
from tinypatch.ir.optable import op_def
from tinypatch.kernels import prepare
from tinypatch.planning.columns import column_maps
from tinypatch.planning.memory import (
    accumulator_name,
    line_buffer_name,
    place_plan,
    plan_buffers,
)
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
from tinypatch.planning.tiles import AxisTiling, OpSpan, StageTiling
from tinypatch.runtime.mixed import MixedPrecision
from tinypatch.runtime.sim_arena import Arena, ArenaEffect, IdArena
from tinypatch.runtime.stage_replay import TiledChecks
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
    ``batch=False`` runs every tile (and every stream column) on its own, with its own arena
    accounting: the reference the batched run is tested against (same bytes, same arena figures).
    Batched, a stage's first run walks it on provenance (:meth:`_walk_ids`: no kernel runs, every
    window a tile reads must hold the ids of the pixels it needs) to record its arena effect; every
    run, the first included, replays that effect and computes and checks the stage's values in batches
    (:mod:`~tinypatch.runtime.stage_replay`). Stages that cannot replay (mixed precision, kernels that
    neither batch nor gather, an NCHW transpose) walk on values every run.
    """

    def __init__(self, graph: Graph, plan: Plan, mixed: MixedPrecision | PrecisionPlan | None = None,
                 batch: bool = True) -> None:
        graph = rewritten(graph, plan)  # the graph the stages index (the model's unless the plan rewrites it)
        self.graph, self.plan, self.batch = graph, plan, batch
        self.mixed = MixedPrecision(graph, plan, mixed) if isinstance(mixed, PrecisionPlan) else mixed
        self.buffers = plan_buffers(graph, plan)
        self.placement = place_plan(self.buffers)
        self.sizes = self.placement.sizes  # aligned buffer sizes (a property that builds the dict on each call)
        self.peak = self.placement.peak
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
        # per tile op: the tile buffers that die at it (freed after it, tile by tile: see _end_op)
        self.tile_frees = {k: [b for b in self.ends.get(k, []) if b in self.tile_buffers[st.stage.start]]
                           for st in self.buffers.tilings for k in st.info.tile_ops}
        # per op with its first output in the arena: (output, its buffer and offset, dtype, item size, channels)
        self.out_buf = {k: (t.name, self.buffer_of[t.name], self.placement.offsets[self.buffer_of[t.name]],
                            t.np_dtype, t.np_dtype.itemsize, t.shape[-1])
                        for k, op in enumerate(graph.ops) if op.outputs and op.outputs[0] in self.buffer_of
                        for t in (graph.tensors[op.outputs[0]],)}
        # per op: its activation inputs (position, name)
        self.act_inputs = [[(n, t) for n, t in enumerate(op.inputs) if t and not graph.tensors[t].is_const]
                           for op in graph.ops]
        self._arena_views: dict[str, tuple[str, tuple[int, ...], np.dtype]] = {}  # tensor -> see _get
        # per op: (reads NCHW, writes NCHW, gathers): looked up once, not per tile
        self.layout = [(reads_nchw(graph, op), writes_nchw(graph, op), op_def(op.type).gather) for op in graph.ops]
        self.streams = {st.stage.start: _Stream(self, st) for st in self.buffers.tilings if st.stream}
        # (stage, grouped on provenance only: see _group_key) -> groups of like recompute tiles, the tiles
        # stored with their batch, per group its later tiles' merged windows
        self.tile_groups: dict[tuple[int, bool], list[list[tuple[int, int]]]] = {}
        self.stored: dict[tuple[int, bool], set[tuple[int, int]]] = {}
        self.like_windows: dict[tuple[int, bool], list[tuple[list, list]]] = {}
        self.shadowed: dict[int, bool] = {}  # stage -> whether it takes the shadow path (cached stages)
        self.skips: dict[int, tuple] = {}  # stage -> its tiles that need no walk, their merged reads and writes, runs
        self._next_rows: dict[tuple[int, int, int], OpSpan | None] = {}  # (stage, op, tile row) -> see _next_row
        # stage -> (its arena effect, recorded by its first run's walk on provenance, and what computes
        # its values; see :mod:`~tinypatch.runtime.stage_replay`), or None where every run walks it
        self.replays: dict[int, tuple[ArenaEffect, TiledChecks] | None] = {}
        self._ids: dict[str, np.ndarray] | None = None  # on a walk on provenance: the ids of the stage's tensors
        self._id_base: dict[str, int] = {}  # activation -> the id of its first byte (ids: see IdArena)
        base = 0
        for t in graph.tensors.values():
            if not t.is_const:
                self._id_base[t.name], base = base, base + t.nbytes
        self._id_dtype = np.int32 if base < np.iinfo(np.int32).max else np.int64  # ids below IdArena.FOREIGN
        self._id_maps: dict[str, np.ndarray] = {}  # the last walked stage's id maps (see _id_map)

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
        spec = self._arena_views.get(name)
        if spec is None:
            t = self.graph.tensors[name]
            if t.is_const:
                return t.data  # type: ignore[return-value]
            if name in outside:
                return outside[name]
            spec = self._arena_views[name] = (self.buffer_of[name], t.shape, t.np_dtype)
        elif name in outside:
            return outside[name]
        return arena.view(*spec)

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
        arena = Arena(self.peak, self.placement.alignment)
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
                if i not in self.replays:  # the first run records (a PlanError leaves later runs recording again)
                    self.replays[i] = self._replayable(arena, outside, st)
                replay = self.replays[i]
                if replay is not None and replay[0].applies(arena):
                    self._replay_stage(arena, outside, st, *replay)
                else:
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

    def run_stage(self, start: int, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Patch stage ``start`` alone, on values: ``inputs`` (by name; at least the stage's
        ``info.inputs``, the tensors it reads from before it) put in a fresh arena at their planned places, the stage run as a whole run
        runs it (a mixed-precision hook classifying its tiles); returns its output."""
        st = self.stage_at[start]
        arena, outside = Arena(self.peak, self.placement.alignment), {}
        for t in st.info.inputs:
            self._put(arena, outside, t, inputs[t])
        self._run_stage(arena, outside, st)
        return np.array(self._get(arena, outside, st.info.output))

    def _replayable(self, arena: Arena, outside: dict[str, np.ndarray],
                    st: StageTiling) -> tuple[ArenaEffect, TiledChecks] | None:
        """Stage ``st``'s arena effect from ``arena``'s state (a walk on provenance, :meth:`_walk_ids`) and
        what computes its values, or None where every run walks it (mixed precision, a kernel that neither
        batches nor gathers, a tile op reading other than its receptive field, an effect on other bytes)."""
        if not self.batch or self.mixed:
            return None
        if not self._shadows(st, gathers=True) or st.stream and self.streams[st.stage.start].rows is None:
            return None
        values = TiledChecks(self.graph, self.kernels, st)
        if not values.usable:
            return None
        walked, before = self._walk_ids(arena, outside, st)
        buf = self.buffer_of.get(st.info.output)
        out = (self.placement.offsets[buf], self.graph.tensors[st.info.output].nbytes) if buf is not None else None
        effect = ArenaEffect(arena, walked, before, out)
        return (effect, values) if effect.replayable else None

    def _walk_ids(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling) -> tuple[IdArena, np.ndarray]:
        """Walk stage ``st`` on provenance: in an :class:`~tinypatch.runtime.sim_arena.IdArena` made of
        ``arena`` (the stage inputs' bytes holding their ids), every tile op (stream step) writes the ids
        of the pixels it computes, runs no kernel, and checks that every window it reads (stage inputs,
        cached parts, line and window buffers) holds exactly the ids of the pixels it needs: a stronger
        check than comparing values, which can agree by chance (flat inputs). Returns the walked id
        arena and its cells before the walk."""
        g = self.graph
        names = {t for k in st.info.tile_ops for t in (*g.ops[k].inputs, *g.ops[k].outputs)
                 if t and not g.tensors[t].is_const} | {st.info.output}
        ids = self._id_maps = {t: self._id_map(t) for t in names}
        inputs = {t for k in st.info.tile_ops for t in g.ops[k].inputs if t in names and self.producers.get(t) not in
                  st.info.tile_ops}
        walked = IdArena.of(arena, [(self.placement.offsets[self.buffer_of[t]], ids[t]) for t in inputs
                                    if t in self.buffer_of and t not in outside], self._id_dtype)
        before = walked.memory.copy()
        self._ids = ids
        try:
            self._run_stage(walked, {t: ids[t] for t in inputs if t in outside}, st)
            for k in range(st.stage.start, st.stage.end):
                self._free(walked, k, st)
        finally:
            self._ids = None
        return walked, before

    def _id_map(self, name: str) -> np.ndarray:
        """The ids of tensor ``name``'s bytes, shaped as an :class:`~tinypatch.runtime.sim_arena.IdArena` sees it
        (read-only; the previous walk's map where it made one: a stage's output is the next stage's input)."""
        got = self._id_maps.get(name)
        if got is None:
            t = self.graph.tensors[name]
            base = self._id_base[name]
            got = np.arange(base, base + t.nbytes, dtype=self._id_dtype).reshape(*t.shape[:-1],
                                                                                 t.shape[-1] * t.np_dtype.itemsize)
            got.flags.writeable = False
        return got

    def _read(self, arena: Arena, got: np.ndarray, t: str, rows: tuple[int, int], cols: tuple[int, int],
              st: StageTiling, who: str, *args: object) -> np.ndarray:
        """Read ``got`` (pixels ``rows`` x ``cols`` of tensor ``t``) from ``arena``; on a walk on provenance
        it must hold their ids (PlanError naming ``who.format(*args)`` otherwise; ids that match hold no
        freed byte and need no other check: a read never raises the high-water mark). Returns ``got``."""
        if self._ids is None:
            return arena.read(got, t)
        if not _same(got, self._ids[t][:, rows[0]: rows[1], cols[0]: cols[1]]):
            arena.read(got, t)  # a freed or never-written byte is named as such
            raise PlanError(f"patch stage at op {st.stage.start}: {who.format(*args)} reads other bytes than pixels "
                            f"[{rows[0]}, {rows[1]}) x [{cols[0]}, {cols[1]}) of {t!r} (a cached part, line "
                            f"or window buffer out of step, or a placement overlap)")
        return got

    def _replay_stage(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling, effect: ArenaEffect,
                      values: TiledChecks) -> None:
        """Stage ``st`` on a later run (see :mod:`~tinypatch.runtime.stage_replay`): its output
        computed and checked, then the arena effect of its recorded walk applied (its frees included)."""
        out = values.values(self._shadow(arena, outside, st), lambda t: self._get(arena, outside, t))
        t = self.graph.tensors[st.info.output]
        out = np.asarray(out, t.np_dtype).reshape(t.shape)
        buf = self.buffer_of.get(st.info.output)
        if buf is None:
            outside[st.info.output] = out
        else:
            off = self.placement.offsets[buf]
            arena.memory[off: off + out.nbytes].view(out.dtype).reshape(out.shape)[...] = out
        effect.apply(arena)

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
            outside[st.info.output] = np.zeros(out_t.shape, out_t.np_dtype) if self._ids is None else \
                np.full(self._ids[st.info.output].shape, IdArena.NOTHING, self._id_dtype)
        else:
            arena.alloc(out_buf, self.placement.offsets[out_buf], out_t.nbytes)
        full_out = self._get(arena, outside, st.info.output)
        if writes_nchw(g, g.ops[st.info.ops[-1]]):  # a trailing TRANSPOSE: tiles write the NCHW output seen as NHWC
            full_out = full_out.transpose(0, 2, 3, 1)
        if st.stream:
            self.streams[st.stage.start].run(arena, outside, full_out)
            return
        tile_bufs = self.tile_buffers[st.stage.start]
        sums = None
        if st.info.reduce is not None:  # per-channel int32 sums of the tiled map, accumulated tile by tile
            acc = accumulator_name(st.info.output)
            arena.alloc(acc, self.placement.offsets[acc], self.sizes[acc])
            sums = arena.view(acc, (g.tensors[st.info.tiled].shape[3],), np.dtype(np.int32))
            sums[...] = 0
            arena.wrote(sums)
        persistent = [k for k in st.info.tile_ops if st.cached(k)]
        for k in persistent:  # cached outputs (and their line buffers) live across all tiles
            name = g.ops[k].outputs[0]
            arena.alloc(self.buffer_of[name], self.placement.offsets[self.buffer_of[name]],
                        self.sizes[self.buffer_of[name]])
            if st.line_buffer(k):
                lb = line_buffer_name(name)
                if lb in self.placement.offsets:
                    arena.alloc(lb, self.placement.offsets[lb], self.sizes[lb])
        held: dict[str, tuple[np.ndarray, int, int]] = {}  # tensor -> (region array, row0, col0)
        kept: dict[str, tuple[np.ndarray, int, int]] = {}  # cached tensor -> its last non-empty region
        # mixed precision classifies and lowers each tile as it runs: no batched tiles then
        batched = self._batched(arena, outside, st, full_out, sums) \
            if not persistent and not self.mixed and self.batch else {}
        stored = self.stored.get(self._group_key(st), set()) if batched else set()
        if st.stage.start not in self.shadowed:
            self.shadowed[st.stage.start] = bool(persistent) and self.batch and self._shadows(st)
        # on provenance no kernel runs: a gather's tile ops walk as any op's (ids), its stage skips tiles too
        shadowed = (self.shadowed[st.stage.start] or self._ids is not None and bool(persistent)
                    and self._shadows(st, gathers=True)) and not self.mixed
        # on a walk on provenance the ids are the shadow: every tile checks all it reads
        shadow = self._ids if self._ids is not None else self._shadow(arena, outside, st) if shadowed else None
        skip: set[tuple[int, int]] = set()
        runs: dict[tuple[int, int], _SkipRun] = {}
        if shadowed:
            if st.stage.start not in self.skips:
                self.skips[st.stage.start] = self._like_tiles(st)
            *like, runs = self.skips[st.stage.start]
            skip = self._skip_tiles(arena, outside, st, full_out, shadow, *like, sums)  # type: ignore[arg-type]
        pending: dict[int, tuple[int, int]] = {}  # cached op -> the skipped tile whose region its walk would hold
        lined = [k for k in st.info.tile_ops if st.line_buffer(k)]
        # a walk on provenance of NHWC ops: no kernel arguments gathered (see _compute_ids)
        on_ids = self._ids is not None and not self.mixed and not any(
            self.layout[k][0] or self.layout[k][1] for k in st.info.tile_ops)
        for i in range(st.stage.grid[0]):
            for j in range(st.stage.grid[1]):
                if (i, j) in skip:
                    run = runs.get((i, j))
                    if run is not None:  # the first of a run of skipped tiles: the lines they all keep
                        for k, c0, c1 in run.saves:
                            sh = st.h.spans[i][k]
                            self._save_lines(arena, st, k, i, j, shadow[g.ops[k].outputs[0]][  # type: ignore[index]
                                :, sh.need[0]: sh.need[1], c0:c1], (c0, c1))
                        pending.update(run.last)
                    continue
                if pending:  # the cached regions skipped tiles left, as their walks leave them
                    self._restore(arena, st, pending, kept, shadow)  # type: ignore[arg-type]
                    pending = {}
                if self.mixed:
                    self.mixed.begin_tile(st.stage.start)
                if (i, j) in batched:  # the first of its like tiles (the others were stored with the batch)
                    self._store_tile(arena, outside, st, i, j, batched[(i, j)], full_out, tile_bufs, sums)
                    continue
                if (i, j) in stored:
                    continue
                hs, ws = st.h.spans[i], st.w.spans[j]
                for k in st.info.tile_ops:
                    sh, sw = hs[k], ws[k]
                    name = g.ops[k].outputs[0]
                    if name == st.info.output:
                        region = full_out[:, sh.need[0]: sh.need[1], sw.need[0]: sw.need[1]]
                    else:
                        region = self._region(arena, st, k, i, j, kept)
                        held[name] = (region, sh.need[0], sw.need[0])
                    if sh.out[0] < sh.out[1] and sw.out[0] < sw.out[1]:  # else all of it was cached
                        if on_ids:
                            self._compute_ids(arena, outside, st, k, i, j, region, held)
                        else:
                            self._compute(arena, outside, st, k, i, j, region, held, shadow)
                    if k in persistent and region.size:  # an empty region leaves the buffer as it was
                        kept[name] = held[name]
                        if k in lined:
                            self._save_lines(arena, st, k, i, j, region)
                    if sums is not None or self.tile_frees[k]:
                        self._end_op(arena, k, name, region, st, sums, tile_bufs)
        if self.mixed:
            self.mixed.end_stage()
        for k in persistent:
            if st.line_buffer(k):
                arena.free(line_buffer_name(g.ops[k].outputs[0]))
        if sums is not None:
            arena.read(sums)
            full_out[...] = self.kernels[st.info.reduce].finish(sums.astype(np.int64)) if self._ids is None else \
                self._ids[st.info.output]
            arena.wrote(full_out)
            arena.free(accumulator_name(st.info.output))

    def _group_key(self, st: StageTiling) -> tuple[int, bool]:
        """Where recompute stage ``st``'s like tiles are kept: its first op, and whether they are grouped
        on provenance only (a walk on provenance, of a stage holding an op whose kernel gathers instead
        of batching: grouped there by geometry, :meth:`_signatures`; on values not at all)."""
        return st.stage.start, self._ids is not None and not all(
            op_def(self.graph.ops[k].type).batches for k in st.info.tile_ops)

    def _signatures(self, st: StageTiling, gathers: bool = False) -> list[list[tuple | None]]:
        """Per axis, what makes a tile row (column) of a recompute stage batchable with others: per op,
        its region size, paddings, and where it reads (relative to a producer's region inside the
        stage, or just how much of a full-size tensor; :func:`_axis_keys`). Like tiles are those with
        the same row and column signatures. None: an op computes only part of its region, or none;
        every signature is None where an op's kernel does not batch (gathers unless ``gathers``, slices:
        see the operator table) or it reads an NCHW input or writes an NCHW output. ``gathers`` (on
        provenance, where no kernel runs): like tiles need only the same geometry, which the signature
        is, whatever the kernel (a gather's windows included, see :meth:`_batched`)."""
        g, ops = self.graph, st.info.tile_ops
        if not all((op_def(g.ops[k].type).batches or gathers and self.layout[k][2])
                   and not reads_nchw(g, g.ops[k]) and not writes_nchw(g, g.ops[k]) for k in ops):
            return [[None] * len(st.h.spans), [None] * len(st.w.spans)]
        return [[key if all(sp[k].out == sp[k].need and sp[k].need[0] < sp[k].need[1] for k in ops) else None
                 for key, sp in zip(_axis_keys(g, ops, spans, self.producers), spans)]
                for spans in (st.h.spans, st.w.spans)]

    def _batched(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling, full_out: np.ndarray,
                 sums: np.ndarray | None) -> dict[tuple[int, int], dict[str, np.ndarray]]:
        """The first tile of each group of like tiles of a recompute stage (same signature) -> its op
        outputs, each group run as one batched kernel call per op. The other tiles of a group are
        stored here (:meth:`_store_like`); the first one claims, writes, reads and frees the tile
        buffers in the tile loop (:meth:`_store_tile`), for all of them: every like tile touches the
        same tile-buffer bytes in the same order, each starting with them unclaimed. That rests on the
        geometry alone (the signature: sizes, paddings, windows read relative to the producer's region),
        not on the kernels: on provenance, where no kernel runs, the first tile's walk checks that its
        windows hold the ids of the pixels it needs, and a like tile's windows, at the same places of
        the same buffers, hold its own pixels' ids (its reads of full-size tensors are checked window by
        window, :meth:`_store_like`); so there a stage holding a gather groups too, by geometry
        (:meth:`_group_key`), where on values its tiles run one by one."""
        key = self._group_key(st)
        groups = self.tile_groups.get(key)
        if groups is None:  # the plan's, worked out on the first run
            sigs: dict[tuple[int, int], list[tuple[int, int]]] = {}
            ids: dict[tuple, int] = {}  # signatures as small ints: a nested tuple's hash is not kept
            rows, cols = ([None if sig is None else ids.setdefault(sig, len(ids)) for sig in axis]
                          for axis in self._signatures(st, gathers=key[1]))
            for i, row in enumerate(rows):
                for j, col in enumerate(cols):
                    if row is not None and col is not None:
                        sigs.setdefault((row, col), []).append((i, j))
            groups = self.tile_groups[key] = [t for t in sigs.values() if len(t) > 1]
            self.stored[key] = {t for tiles in groups for t in tiles[1:]}
            self.like_windows[key] = [self._like_windows(st, tiles[1:]) for tiles in groups]
        out: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        for tiles, (reads, outs) in zip(groups, self.like_windows[key]):
            if self._ids is not None:  # on provenance: the first tile's ids (the others' are written as windows)
                i, j = tiles[0]
                values = {name: self._ids[name][:, sh.need[0]: sh.need[1], sw.need[0]: sw.need[1]]
                          for name, sh, sw in ((self.graph.ops[k].outputs[0], st.h.spans[i][k], st.w.spans[j][k])
                                               for k in st.info.tile_ops)}
            else:
                values = self._run_batch(arena, outside, st, tiles)
            out[tiles[0]] = {name: v[:1] for name, v in values.items()}
            self._store_like(arena, outside, st, tiles[1:], values, reads, outs, full_out, sums)
        return out

    def _like_windows(self, st: StageTiling, tiles: list[tuple[int, int]]) -> tuple[list, list]:
        """The windows of full-size tensors ``tiles`` read and the stage-output windows they write,
        merged (:func:`_merge`)."""
        g, inside = self.graph, set(st.info.tile_ops)
        reads: dict[str, list[tuple[int, int, int, int]]] = {}
        for i, j in tiles:
            for k in st.info.tile_ops:
                sh, sw = st.h.spans[i][k], st.w.spans[j][k]
                for t, rh, rw in zip(g.ops[k].inputs, sh.reads, sw.reads):
                    if rh is not None and rw is not None and self.producers.get(t) not in inside:
                        reads.setdefault(t, []).append((*rh, *rw))
        last = st.info.tile_ops[-1]
        outs = [(*st.h.spans[i][last].out, *st.w.spans[j][last].out) for i, j in tiles]
        return [(t, _merge(w)) for t, w in reads.items()], _merge(outs)

    def _store_like(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling,
                    tiles: list[tuple[int, int]], values: dict[str, np.ndarray], reads: list, outs: list,
                    full_out: np.ndarray, sums: np.ndarray | None) -> None:
        """The later tiles of a batch (``values``: the whole batch's op outputs, these from index 1):
        their reads of full-size tensors recorded and their pieces of the stage output written, as
        merged windows (the same bytes); their tile buffers are left to the group's first tile
        (:meth:`_batched`). Their sums (stages ending in an average) are added in one go: int32
        additions wrap, so the order does not matter."""
        self._read_windows(arena, outside, st, reads, "a batch of like tiles")
        name = st.info.output
        if name in values:
            last = st.info.tile_ops[-1]
            if self._ids is None:
                for n, (i, j) in enumerate(tiles, 1):
                    sh, sw = st.h.spans[i][last], st.w.spans[j][last]
                    full_out[:, sh.out[0]: sh.out[1], sw.out[0]: sw.out[1]] = values[name][n: n + 1]
            for r0, r1, c0, c1 in outs:
                if self._ids is not None:  # on provenance: the ids of the pixels these tiles compute
                    full_out[:, r0:r1, c0:c1] = self._ids[name][:, r0:r1, c0:c1]
                arena.wrote(full_out[:, r0:r1, c0:c1])
        if sums is not None:
            if self._ids is None:
                sums += values[st.info.tiled][1:].sum(axis=(0, 1, 2), dtype=np.int64).astype(np.int32)
            arena.read(sums)

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
                    values: dict[str, np.ndarray], full_out: np.ndarray, tile_bufs: set[str],
                    sums: np.ndarray | None) -> None:
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
                    got = arr[:, rh[0] - r0: rh[1] - r0, rw[0] - c0: rw[1] - c0]
                else:
                    got = self._get(arena, outside, t)[:, rh[0]: rh[1], rw[0]: rw[1]]
                self._read(arena, got, t, rh, rw, st, "tile ({}, {}) of op {}", i, j, k)
            region[...] = values[name]
            arena.wrote(region)
            self._end_op(arena, k, name, region, st, sums, tile_bufs)

    def _shadows(self, st: StageTiling, gathers: bool = False) -> bool:
        """Whether a cached stage takes the shadow path: every op's kernel batches (or, with ``gathers``,
        gathers: a replay checks those tile ops by their index tables, see
        :mod:`~tinypatch.runtime.stage_replay`) and works in NHWC."""
        g = self.graph
        return all((op_def(g.ops[k].type).batches or gathers and self.layout[k][2])
                   and not reads_nchw(g, g.ops[k]) and not writes_nchw(g, g.ops[k]) for k in st.info.tile_ops)

    def _like_tiles(self, st: StageTiling) -> tuple[set[tuple[int, int]], list, list, dict[tuple[int, int], _SkipRun]]:
        """Tiles of a shadow-path stage that need no walk, with the windows of full-size tensors they
        read and the stage-output windows they write, merged (:func:`_merge`), and their runs in each
        tile row (:meth:`_skip_runs`), by their first tile.

        A tile is skipped where a walked tile had the same key: its row's and its column's. What a
        tile's walk claims, slides, checks, saves and frees is fixed by: its own rows and columns (per
        op: sizes, paddings, where the fresh part starts, reads relative to the producer's region; an op
        with an empty region does nothing); for a cached op, the region it slides from (its left
        neighbour's: the step between their starts and that region's size are in the column key; what it
        holds, the ids of its pixels, its own walk checked or the shadow restored, below) or rolls down
        from (one tile column: the row above's, likewise in the row key); the line-buffer rows it takes
        (rows 0 to its fresh start, its own columns: fixed by its key; what they hold is what the row
        above kept, fixed by that row's key); and the rows it keeps for the next tile row needing any of
        it (found as :meth:`_save_lines` finds them; in the key as a count and where they start in its
        region). So it touches the same bytes of every stage buffer (each region at its buffer's start,
        line-buffer columns those of its tile column) as the walked tile of its key, which found there
        the ids of the pixels it needs; its neighbours left it those ids too (a walked one as its walk
        checked what it read, a skipped one from the shadow, below). A skipped tile therefore writes its
        pieces of the stage output (or, into an average, its sums) from the shadow
        (:meth:`_skip_tiles`), keeps its lines from the shadow where its walk would (:meth:`_skip_runs`:
        one copy per op for a run of skipped tiles), and the next walked tile starts from the regions
        the skipped tiles' walks would leave (per cached op, the last skipped tile with a region of it),
        restored from the shadow (:meth:`_restore`); its claims and frees are those of the walked tile
        of its key (the same bytes: the arena and its high-water mark end the same). Conservative where
        that is not shown: a tile row (column) whose cached op takes kept rows (columns) from before a
        row (column) with an empty region for it (the kept region then comes from further back) gets a
        key of its own (walked). Where no op carries anything from one tile row to the next but through
        line buffers, fewer tiles walk: the first tile row taking lines of each line-buffered op as
        above, tile row 0 so too unless one of those rows has every op computing, then one per new row
        key (column 0) and a tile holding each op's largest region (:meth:`_separable`)."""
        g, producers, inside = self.graph, self.producers, set(st.info.tile_ops)
        ops = st.info.tile_ops
        rolls = st.stage.grid[1] == 1 and any(k in st.h.cached for k in ops)  # cached rows roll down

        def keys(axis: AxisTiling, owns: list[tuple], chained: bool, lined: list[int]) -> list[tuple]:
            alone = set()  # it takes a region kept before an empty one: walked
            cached = [k for k in ops if k in axis.cached]
            for k in cached:
                empty = [_empty(spans[k]) for spans in axis.spans]
                alone.update(n for n in range(1, len(empty)) if empty[n - 1] and not empty[n]
                             and axis.spans[n][k].out[0] > axis.spans[n][k].need[0])
            out: list[tuple] = []
            for n, spans in enumerate(axis.spans):
                if n in alone:
                    out.append(("alone", n))
                    continue
                before = axis.spans[n - 1]  # the previous region of each cached op: the step from it, its size
                prev = None if not n or not chained else tuple([
                    (spans[k].need[0] - before[k].need[0], before[k].need[1] - before[k].need[0]) for k in cached])
                out.append((owns[n], prev, tuple(self._saves(st, k, n) for k in lined)))
            return out
        owns = _axis_keys(g, ops, st.h.spans, producers, True)
        rows = keys(st.h, owns, rolls, [k for k in ops if st.line_buffer(k)])
        if st.w.spans != st.h.spans:  # (a square stage's columns are its rows)
            owns = _axis_keys(g, ops, st.w.spans, producers, True)
        cols = keys(st.w, owns, True, [])
        seen: dict[int, set[int]] = {}  # row key -> the column keys walked with it
        skipped: list[list[int]] = []  # per tile row, its skipped tile columns
        row_ids: dict[tuple, int] = {}  # keys as small ints: a nested tuple's hash is not kept
        col_ids: dict[tuple, int] = {}
        col_keys = [col_ids.setdefault(ck, len(col_ids)) for ck in cols]
        row_keys = [row_ids.setdefault(rk, len(row_ids)) for rk in rows]
        for rk in row_keys:
            walked = seen.setdefault(rk, set())
            skipped.append([j for j, ck in enumerate(col_keys) if ck in walked or walked.add(ck)])  # type: ignore[func-returns-value]
        forced = self._separable(st)
        if forced is not None:  # rows carry nothing: tile row 0 as above, then one tile per new row key
            keyed = [list(js) for js in skipped]  # both walks are sound: the one skipping more tiles is taken
            firsts = {rk: n for n, rk in reversed(list(enumerate(row_keys)))}
            rest, every = list(range(1, len(cols))), list(range(len(cols)))  # shared: rows are replaced, not changed
            lined = self._lined_rows(st)  # (their keyed columns, as above: line-buffer columns checked)
            skipped[1:] = [skipped[i] if i in lined else rest if firsts[rk] == i else every
                           for i, rk in enumerate(row_keys) if i]
            if self._full_row(st, lined) is not None:  # it shows tile row 0's columns: row 0 as a new row key
                skipped[0] = rest
            for i, j in forced:  # each op's largest region: its claim (collisions, high-water mark) made
                skipped[i] = [c for c in skipped[i] if c != j]
            if sum(map(len, skipped)) < sum(map(len, keyed)):  # (two row keys, many column keys)
                skipped = keyed
        # the skipped tiles' windows, by rows (as _merge groups them): reads where an op computes (as
        # the walk's), the stage output where the stage writes it (not into an average's sums)
        reads: dict[str, dict[tuple[int, int], list[tuple[int, int]]]] = {}
        last = st.info.tile_ops[-1]
        full = [(k, n, t) for k in st.info.tile_ops for n, t in enumerate(g.ops[k].inputs)
                if t and producers.get(t) not in inside and not g.tensors[t].is_const]  # reads of full-size tensors
        written = [(None, last, -1)] if st.info.reduce is None else []  # None: the stage output
        pattern_ids: dict[tuple[int, ...], int] = {}  # skipped columns as small ints (hashed once)
        patterns = [pattern_ids.setdefault(tuple(js), len(pattern_ids)) if js else -1 for js in skipped]
        for what, k, n in [(t, k, n) for k, n, t in full] + written:
            col = [sw[k].out if n < 0 else sw[k].reads[n] if sw[k].out[0] < sw[k].out[1] else None
                   for sw in st.w.spans]
            by_rows = reads.setdefault(what, {})  # type: ignore[arg-type]
            joined: dict[int, list[tuple[int, int]]] = {}  # skipped columns -> their windows, joined
            for sh, js, pid in zip(st.h.spans, skipped, patterns):
                rh = sh[k].out if n < 0 else sh[k].reads[n] if sh[k].out[0] < sh[k].out[1] else None
                if rh is None or pid < 0:
                    continue
                cs = joined.get(pid)
                if cs is None:
                    cs = joined[pid] = _union([col[j] for j in js if col[j] is not None])  # type: ignore[misc]
                if cs:
                    by_rows.setdefault(rh, []).extend(cs)
        skip = {(i, j) for i, js in enumerate(skipped) for j in js}
        outs = reads.pop(None, {})  # type: ignore[call-overload]
        runs: dict[tuple[int, int], _SkipRun] = {}
        made: dict[tuple[int, int], list] = {}  # (row key, skipped columns) -> the row's runs (alike rows: alike)
        held = {k: [not _empty(sw[k]) for sw in st.w.spans] for k in ops if st.cached(k)}  # columns with a region
        for i, (rk, js, pid) in enumerate(zip(row_keys, skipped, patterns)):
            if pid >= 0:
                if (rk, pid) not in made:
                    made[(rk, pid)] = self._skip_runs(st, i, tuple(js), held)
                for j, saves, last in made[(rk, pid)]:
                    runs[(i, j)] = _SkipRun(saves, {k: (i, c) for k, c in last.items()})
        return skip, [(t, _merge_rows(w)) for t, w in reads.items() if w], _merge_rows(outs), runs

    def _separable(self, st: StageTiling) -> set[tuple[int, int]] | None:
        """Where no op of shadow-path stage ``st`` carries anything from one tile row to the next but
        through line buffers, the tiles whose walk makes each op's largest region (None: the stage is
        not of that kind).

        Such a stage (every op's rows computed afresh in every tile, but a line-buffered op's first rows
        in tile rows after the first, taken from its line buffer: every op cached along the rows is
        line-buffered, so there is more than one tile column; every region non-empty in tile row 0 and
        in tile column 0, both computed whole, every window it reads non-empty, no average, no NCHW op,
        every tile buffer freed within its tile) walks the first tile row taking lines of each
        line-buffered op (:meth:`_lined_rows`) as :meth:`_like_tiles` does (one tile per column key),
        and tile row 0 so too unless one of those rows has every op computing in it (the full row,
        :meth:`_full_row`), then one tile per row key not yet walked (column 0), skipping all others.
        Why that is the walk of every tile: in the tile loop every region is an (H_i x W_j x C) view at
        its buffer's start, written whole in its tile (fresh rows and columns; a cached op's columns
        slid from the last region it held before in the same tile row, all of its rows, or at column 0
        computed; a line-buffered op's first rows at its fresh columns taken from its line buffer), by
        copies of index rectangles. A line buffer's columns are pixel columns (less its first): a tile
        keeps there its fresh columns' rows that the next tile row takes, and that row's tile in the
        same column takes those columns back, the rows a function of the tile rows only, the columns of
        the tile column only. So op k's region in tile (i, j) holds at (a, b) the ids of pixel
        (row_i(a), c_j(b)): its rows a map that depends on tile row i's history only, the same in every
        tile column (its line buffer's rows were kept alike by every tile of the row above, walked or
        skipped: :meth:`_skip_runs`), its columns a map that depends on column j's history only, the
        same in every tile row, but for one part fixed by the column that only later tile rows use:
        which line-buffer columns it takes, and where. An op may hold nothing in a later tile row or
        column (an empty region: ops before a pooling, or ones a cached successor needs no fresh row or
        column of): there it claims 0 bytes at its offset (or views none) and reads, computes, writes,
        keeps and takes nothing. Which ops those are is fixed by the row and by the column (empty in
        tile (i, j) where empty in row i or in column j), so the histories are too (which earlier column
        of the same tile row left each cached op's region; which earlier tile row kept its line-buffer
        rows, :meth:`_next_row`; a row taking them from before an empty one has a key of its own), and
        every tile makes the same claims and frees of the same buffers, only their sizes H_i x W_j x C
        differ (0 where H_i or W_j is). A gathering op (resize, transpose conv) walks as any op: it
        reads index rectangles (in the keys), and writes the ids of its pixels. A read (its window
        non-empty) then holds the ids it needs exactly where its row slice is in bounds and holds the
        right rows (fixed by the row key; tile column 0, where every op computing in that tile row
        computes and reads the rows it reads in any of its columns, shows it) and its column slice is in
        bounds and holds the right columns (fixed by column j: as in the row walked at every column key
        where every op computes, the full row or else tile row 0, the same column maps and reads, and
        for the line-buffer columns as in the first tile row taking lines of that op, walked likewise:
        tile row 0 takes none, so it alone would not show them): the tile's checks pass where those
        walked tiles' checks pass. Reads of full-size tensors are recorded and checked as merged windows
        (:meth:`_skip_tiles`), writes of the stage output go there from the shadow. What does not
        separate: a claim (or a cached region's view) of op k, H_i x W_j x C bytes at offset o_k,
        against a buffer B live then at o_B (the same buffers in every tile: the cached ones and line
        buffers, those outside the stage, this tile's claims made earlier, 0-byte ones included): where
        o_B > o_k it collides iff k's claim reaches o_B, where o_B < o_k iff B's claim (or fixed size)
        reaches past o_k, each monotone in one op's size, so where that op's largest claim does; where
        o_B = o_k iff both are non-empty, fixed by the row and the column: shown in the row walked at
        every column key (no op empty there) for each column key and in column 0 for each row key. A
        view past its cached buffer, an overflow of the arena and the touched high-water mark are those
        of the largest regions too (a line buffer's cells are written where the tile loop writes them,
        by walked and skipped tiles alike). The largest is max H_i x max W_j (every pair is a tile):
        such a tile is walked for every op (one for all ops whose largest regions it holds). Freed
        bytes end FREED whatever they held, so the arena ends the same."""
        g, ops = self.graph, st.info.tile_ops
        nchw = any(self.layout[k][0] or self.layout[k][1] for k in ops)  # (a gather walks as any op: see above)
        if st.info.reduce is not None or st.stream or nchw or st.h.cached and st.stage.grid[1] < 2:
            return None  # (one tile column: cached rows roll down in their region)
        frees = {b for k in ops for b in self.tile_frees[k]}  # tile buffers freed within the tile
        for k in ops:
            name = g.ops[k].outputs[0]
            if name != st.info.output and not st.cached(k) and self.buffer_of.get(name) not in frees:
                return None
            if st.w.spans[0][k].out != st.w.spans[0][k].need or st.h.spans[0][k].out != st.h.spans[0][k].need:
                return None
        lined = st.h.cached  # (line-buffered: more than one tile column)
        # one pass over the spans, not one per op (a square stage's columns are its rows: one pass then)
        for rows, axis in ((True, st.h),) if st.w.spans is st.h.spans else ((True, st.h), (False, st.w)):
            for n, spans in enumerate(axis.spans):
                for k in ops:
                    sp = spans[k]
                    need, out = sp.need, sp.out
                    if need[0] >= need[1]:
                        if not n:  # empty regions only in tile rows and columns after the first
                            return None
                        continue
                    if rows and out != need and (k not in lined or out[1] != need[1]):  # fresh rows last
                        return None
                    if out[0] < out[1]:
                        for r in sp.reads:
                            if r is not None and r[0] >= r[1]:
                                return None
        largest = []  # per op: the tile rows and columns of its largest region
        for k in ops:
            if g.ops[k].outputs[0] != st.info.output:
                rows, cols = ([sp[k].need[1] - sp[k].need[0] for sp in a.spans] for a in (st.h, st.w))
                top_h, top_w = max(rows), max(cols)
                largest.append(([i for i, n in enumerate(rows) if n == top_h], [j for j, n in enumerate(cols) if n == top_w]))
        forced: set[tuple[int, int]] = set()
        for rows, cols in largest:  # one tile for as many ops as share it (the row, column most share)
            if not any(i in rows and j in cols for i, j in forced):
                forced.add((max(rows, key=lambda i: sum(i in r for r, _ in largest)),
                            max(cols, key=lambda j: sum(j in c for _, c in largest))))
        return forced

    @staticmethod
    def _full_row(st: StageTiling, lined: set[int]) -> int | None:
        """The first of tile rows ``lined`` in which every op of ``st`` computes (None: none is)."""
        return next((i for i in sorted(lined) if all(st.h.spans[i][k].out[0] < st.h.spans[i][k].out[1]
                                                     for k in st.info.tile_ops)), None)

    @staticmethod
    def _lined_rows(st: StageTiling) -> set[int]:
        """Per line-buffered op of ``st``, the first tile row that takes rows from its line buffer
        (walked at every column key by a separable walk, :meth:`_separable`)."""
        firsts = (next((i for i, sp in enumerate(st.h.spans) if i and sp[k].out[0] > sp[k].need[0]), None)
                  for k in st.info.tile_ops if st.line_buffer(k))
        return {i for i in firsts if i is not None}

    def _saves(self, st: StageTiling, k: int, i: int) -> tuple[int, int] | None:
        """Where line-buffered op k's region in tile row i holds the rows it keeps for the next tile row
        needing any of it (:meth:`_save_lines`): how many, from which of its rows; None: none."""
        sh = st.h.spans[i][k]
        nxt = None if _empty(sh) else self._next_row(st, k, i)
        return None if nxt is None else (nxt.out[0] - nxt.need[0], nxt.need[0] - sh.need[0])

    def _next_row(self, st: StageTiling, k: int, i: int) -> OpSpan | None:
        """Op k's rows in the next tile row after row i needing any of it, where that row takes some
        from the line buffer (None: none does); looked up once per plan."""
        key = (st.stage.start, k, i)
        if key not in self._next_rows:  # every tile row's at once, from the last one up
            nxt: OpSpan | None = None
            for n in range(len(st.h.spans) - 1, -1, -1):
                self._next_rows[(st.stage.start, k, n)] = None if nxt is None or nxt.out[0] <= nxt.need[0] else nxt
                if not _empty(st.h.spans[n][k]):
                    nxt = st.h.spans[n][k]
        return self._next_rows[key]

    def _skip_runs(self, st: StageTiling, i: int, cols: tuple[int, ...],
                   held: dict[int, list[bool]]) -> list[tuple[int, list, dict[int, int]]]:
        """The runs of consecutive skipped tiles ``cols`` of tile row i: each run's first column, the
        line-buffer columns [c0, c1) its tiles keep for the next tile row, as (op, c0, c1) (their fresh
        columns, as :meth:`_save_lines` keeps them tile by tile, joined), and per cached op the column
        of the last of them with a region of it (whose region the walk would leave in its buffer, for
        :meth:`_restore`; ``held``: per cached op, which tile columns have a region of it)."""
        sh = st.h.spans[i]
        ops = [(k, st.line_buffer(k) and self._saves(st, k, i) is not None) for k in held if not _empty(sh[k])]
        out = []
        for j, end in _runs(list(cols)):
            saves: list[tuple[int, int, int]] = []
            last: dict[int, int] = {}
            for k, keeps in ops:
                mine = [c for c in range(j, end) if held[k][c]]
                if not mine:
                    continue
                last[k] = mine[-1]
                if keeps:
                    saves.extend((k, c0, c1) for c0, c1 in _union([(st.w.spans[c][k].out[0], st.w.spans[c][k].need[1])
                                                                  for c in mine]) if c0 < c1)
            out.append((j, saves, last))
        return out

    def _skip_tiles(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling, full_out: np.ndarray,
                    shadow: dict[str, np.ndarray], skip: set[tuple[int, int]], reads: list,
                    outs: list, sums: np.ndarray | None = None) -> set[tuple[int, int]]:
        """Record the skipped tiles' reads of full-size tensors and write their pieces of the stage output
        from ``shadow`` (both as merged windows: the same bytes); a stage ending in an average adds their
        tiles' sums (int32 additions wrap: the order does not matter). Returns ``skip``. A tensor outside
        the arena has no bytes to record, and on provenance holds its own ids: its reads are left out."""
        self._read_windows(arena, outside, st, [(t, w) for t, w in reads if t not in outside],
                           "a tile that skips its walk")
        for r0, r1, c0, c1 in outs:
            dst = full_out[:, r0:r1, c0:c1]
            dst[...] = shadow[st.info.output][:, r0:r1, c0:c1]
            arena.wrote(dst)
        if sums is not None and skip:
            if self._ids is None:
                k, tiled = self.producers[st.info.tiled], shadow[st.info.tiled]
                for i, j in skip:
                    sh, sw = st.h.spans[i][k], st.w.spans[j][k]
                    sums += tiled[:, sh.need[0]: sh.need[1], sw.need[0]: sw.need[1]].sum(
                        axis=(0, 1, 2), dtype=np.int64).astype(np.int32)
            arena.read(sums)
        return skip

    def _read_windows(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling, reads: list,
                      who: str) -> None:
        """Record reads of full-size tensors' windows ``reads`` ((tensor, windows r0, r1, c0, c1) pairs),
        checked on provenance (:meth:`_read`)."""
        for t, windows in reads:
            full = self._get(arena, outside, t)
            for r0, r1, c0, c1 in windows:
                self._read(arena, full[:, r0:r1, c0:c1], t, (r0, r1), (c0, c1), st, who)

    def _restore(self, arena: Arena, st: StageTiling, tiles: dict[int, tuple[int, int]],
                 kept: dict[str, tuple[np.ndarray, int, int]], shadow: dict[str, np.ndarray]) -> None:
        """Cached op k's region in skipped tile ``tiles[k]`` (the last tile before the next walked one with
        a region of it, :meth:`_like_tiles`) as its walk leaves it (all of the region written, with the
        shadow's values), for the next tile's walk to slide or roll from."""
        g = self.graph
        for k, (i, j) in tiles.items():
            t = g.tensors[g.ops[k].outputs[0]]
            sh, sw = st.h.spans[i][k], st.w.spans[j][k]
            region = arena.view(self.buffer_of[t.name], (1, sh.need[1] - sh.need[0], sw.need[1] - sw.need[0],
                                                         t.shape[3]), t.np_dtype)
            region[...] = shadow[t.name][:, sh.need[0]: sh.need[1], sw.need[0]: sw.need[1]]
            arena.wrote(region)
            kept[t.name] = (region, sh.need[0], sw.need[0])

    def _shadow(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling) -> dict[str, np.ndarray]:
        """Every op of a cached stage run on the whole image, one kernel call each: the values the tiles
        compute (a kernel's output pixel depends only on its input window, padded only at the image
        border). The stage inputs are read whole here, unrecorded: each tile records its own reads."""
        g = self.graph
        shadow: dict[str, np.ndarray] = {}
        for k in st.info.tile_ops:
            op = g.ops[k]
            args = [None if not t else shadow[t] if t in shadow else self._get(arena, outside, t) for t in op.inputs]
            shadow[op.outputs[0]] = self.kernels[k](args)[0]
        return shadow

    def _end_op(self, arena: Arena, k: int, name: str, region: np.ndarray, st: StageTiling,
                sums: np.ndarray | None, tile_bufs: set[str]) -> None:
        """After op k wrote ``region`` of tile buffer ``name``: add it to an accumulated average's
        sums (then free it), and free the tile buffers that die at op k."""
        if sums is not None and name == st.info.tiled:
            arena.read(region, name)
            if self._ids is None:
                sums += region.sum(axis=(0, 1, 2), dtype=np.int64).astype(np.int32)
            arena.read(sums)
            arena.free(self.buffer_of[name])
        for buf in self.ends.get(k, []):
            if buf in tile_bufs:
                arena.free(buf)

    def _compute(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling, k: int, i: int, j: int,
                 region: np.ndarray, held: dict[str, tuple[np.ndarray, int, int]],
                 shadow: dict[str, np.ndarray] | None = None) -> None:
        """Run op k on the fresh part of tile (i, j) from the tile's own window and write it into
        ``region``; with ``shadow`` (the shadow path) also check that every byte the tile reads
        from a stage buffer (its cached parts, line buffers included) and every byte it computes
        equal the whole-image values: the walked tile of each like-tile group is computed for real."""
        g = self.graph
        op = g.ops[k]
        nchw_in, nchw_out, gather = self.layout[k]
        sh, sw = st.h.spans[i][k], st.w.spans[j][k]
        args = []
        for t, rh, rw in zip(op.inputs, sh.reads, sw.reads):
            if rh is None or rw is None:
                args.append(g.tensors[t].data if t else None)
            elif t in held:
                arr, r0, c0 = held[t]
                got = arr[:, rh[0] - r0: rh[1] - r0, rw[0] - c0: rw[1] - c0]
                if shadow is None or self._ids is None:  # on provenance the ids say it (see _read)
                    arena.read(got, t)
                if shadow is not None:
                    self._check_held(arena, st, got, shadow[t][:, rh[0]: rh[1], rw[0]: rw[1]], t, i, j, k)
                args.append(got)
            elif nchw_in:
                args.append(arena.read(self._get(arena, outside, t)[:, :, rh[0]: rh[1], rw[0]: rw[1]], t))
            else:
                piece = self._read(arena, self._get(arena, outside, t)[:, rh[0]: rh[1], rw[0]: rw[1]], t, rh, rw, st,
                                   "tile ({}, {}) of op {}", i, j, k)
                args.append(self.mixed.read(t, piece) if self.mixed else piece)
        if self._ids is not None:  # on provenance: no kernel, the tile's pixels' ids
            value = self._ids[op.outputs[0]][:, sh.out[0]: sh.out[1], sw.out[0]: sw.out[1]]
        elif gather:  # resizes, transpose conv: the kernel computes the window itself
            p = next(p for p, r in enumerate(sh.reads) if r is not None)
            value = self.kernels[k].window(args[p], (sh.reads[p][0], sw.reads[p][0]), (sh.out, sw.out))
        else:
            value = self.kernels[k](args, (*sh.pads, *sw.pads))[0]
        if shadow is not None and self._ids is None and \
                not _same(value, shadow[op.outputs[0]][:, sh.out[0]: sh.out[1], sw.out[0]: sw.out[1]]):
            raise PlanError(f"patch stage at op {st.stage.start}: tile ({i}, {j}) of op {k} computes other bytes "
                            f"than the whole image from its window (a region or padding out of step)")
        if nchw_out:  # the NCHW tile goes into the output's NHWC view
            value = value.transpose(0, 2, 3, 1)
        if self.mixed:
            value = self.mixed.wrote(k, value, op.outputs[0] == st.info.output)
        fresh = region[:, sh.out[0] - sh.need[0]:, sw.out[0] - sw.need[0]:]
        fresh[...] = value
        if self._ids is None:  # on provenance the ids written say so (IdArena.wrote)
            arena.wrote(fresh)

    @staticmethod
    def _check_held(arena: Arena, st: StageTiling, got: np.ndarray, want: np.ndarray, t: str, i: int, j: int,
                    k: int) -> None:
        """Tile (i, j) of op k read ``got`` of ``t`` from a stage buffer (a cached part, a line buffer):
        it must equal ``want`` (the shadow's values or the pixels' ids), else PlanError naming the tile."""
        if not _same(got, want):
            arena.read(got, t)  # a freed or never-written byte is named as such
            raise PlanError(f"patch stage at op {st.stage.start}: tile ({i}, {j}) of op {k} reads wrong "
                            f"bytes of {t!r} (a cached part or line buffer out of step)")

    def _compute_ids(self, arena: Arena, outside: dict[str, np.ndarray], st: StageTiling, k: int, i: int, j: int,
                     region: np.ndarray, held: dict[str, tuple[np.ndarray, int, int]]) -> None:
        """:meth:`_compute` on provenance (NHWC maps): every window tile (i, j) of op k reads must
        hold the ids of the pixels it needs (:meth:`_read`), then the ids of its fresh pixels go into
        ``region``; no kernel runs and no argument is gathered."""
        ids = self._ids
        assert ids is not None
        sh, sw = st.h.spans[i][k], st.w.spans[j][k]
        for n, t in self.act_inputs[k]:
            rh, rw = sh.reads[n], sw.reads[n]
            if rh is None or rw is None:
                continue
            if t in held:
                arr, r0, c0 = held[t]
                got = arr[:, rh[0] - r0: rh[1] - r0, rw[0] - c0: rw[1] - c0]
                self._check_held(arena, st, got, ids[t][:, rh[0]: rh[1], rw[0]: rw[1]], t, i, j, k)
            else:
                got = self._get(arena, outside, t)[:, rh[0]: rh[1], rw[0]: rw[1]]
                if not _same(got, ids[t][:, rh[0]: rh[1], rw[0]: rw[1]]):  # _read raises, naming it
                    self._read(arena, got, t, rh, rw, st, "tile ({}, {}) of op {}", i, j, k)
        region[:, sh.out[0] - sh.need[0]:, sw.out[0] - sw.need[0]:] = \
            ids[self.graph.ops[k].outputs[0]][:, sh.out[0]: sh.out[1], sw.out[0]: sw.out[1]]

    def _region(self, arena: Arena, st: StageTiling, k: int, i: int, j: int,
                kept: dict[str, tuple[np.ndarray, int, int]]) -> np.ndarray:
        """The buffer holding op k's output region for tile (i, j), cached parts filled in."""
        name, buf, offset, dtype, itemsize, channels = self.out_buf[k]
        sh, sw = st.h.spans[i][k], st.w.spans[j][k]
        shape = (1, sh.need[1] - sh.need[0], sw.need[1] - sw.need[0], channels)
        if not st.cached(k):
            arena.alloc(buf, offset, shape[1] * shape[2] * channels * itemsize)
            return arena.view(buf, shape, dtype)
        old = kept.get(name)
        region = arena.view(buf, shape, dtype)
        if old is None or not region.size:
            return region
        _, r0, c0 = old  # type: ignore[misc]
        slide = j > 0 and sw.out[0] > sw.need[0]
        rows = sh.out[0] - sh.need[0] if i > 0 else 0
        # kept bytes move within the buffer (a memmove on the MCU; numpy copies overlapping views as if
        # through a temporary): a copy only where the second move reads what the first one moved
        keep = old[0].copy() if slide and rows > 0 and not st.line_buffer(k) else old[0]
        # on provenance a copy of bytes its read found valid needs no recording (IdArena.wrote)
        record = self._ids is None
        if slide:  # same tile row: overlapping columns slide left
            arena.read(old[0][:, sh.need[0] - r0: sh.need[1] - r0, sw.need[0] - c0: sw.out[0] - c0], name)
            region[:, :, : sw.out[0] - sw.need[0]] = keep[:, sh.need[0] - r0: sh.need[1] - r0,
                                                          sw.need[0] - c0: sw.out[0] - c0]
            if record:
                arena.wrote(region[:, :, : sw.out[0] - sw.need[0]])
        if rows > 0:  # next tile row: overlapping rows
            if st.line_buffer(k):
                lines, lo = self._lines(arena, st, k)
                region[:, :rows, sw.out[0] - sw.need[0]:] = arena.read(lines[:, :rows, sw.out[0] - lo: sw.need[1] - lo],
                                                                       line_buffer_name(name))
                if record:
                    arena.wrote(region[:, :rows, sw.out[0] - sw.need[0]:])
            else:  # a single tile column: the buffer rolls down
                arena.read(old[0][:, sh.need[0] - r0: sh.out[0] - r0, sw.need[0] - c0: sw.need[1] - c0], name)
                region[:, :rows] = keep[:, sh.need[0] - r0: sh.out[0] - r0, sw.need[0] - c0: sw.need[1] - c0]
                if record:
                    arena.wrote(region[:, :rows])
        return region

    def _lines(self, arena: Arena, st: StageTiling, k: int) -> tuple[np.ndarray, int]:
        """Op k's line buffer (the rows a tile row keeps for the next, over the columns any tile of it
        covers) and the first of those columns."""
        name, _, _, dtype, _, channels = self.out_buf[k]
        lo, hi = st.w.extent(name)
        return arena.view(line_buffer_name(name), (1, st.h.overlap(k), hi - lo, channels), dtype), lo

    def _save_lines(self, arena: Arena, st: StageTiling, k: int, i: int, j: int, region: np.ndarray,
                    cols: tuple[int, int] | None = None) -> None:
        """Keep the rows of op k's output that the next tile row needing any of it takes from
        the line buffer: tile (i, j)'s fresh columns from its ``region``, or (skipped tiles,
        :meth:`_skip_runs`) columns ``cols`` from ``region``, the shadow's rows of tile row i there."""
        nxt = self._next_row(st, k, i)
        if nxt is None:
            return
        sh, sw = st.h.spans[i][k], st.w.spans[j][k]
        c0, c1 = cols or (sw.out[0], sw.need[1])
        base = c0 if cols else sw.need[0]  # the column region starts at
        lines, lo = self._lines(arena, st, k)
        dst = lines[:, : nxt.out[0] - nxt.need[0], c0 - lo: c1 - lo]
        src = region[:, nxt.need[0] - sh.need[0]: nxt.out[0] - sh.need[0], c0 - base: c1 - base]
        if cols is None:  # the shadow is no arena bytes
            arena.read(src, self.out_buf[k][0])
        dst[...] = src
        if self._ids is None:  # on provenance the ids copied say so (read valid, or the shadow's: IdArena.wrote)
            arena.wrote(dst)


@dataclass
class _SkipRun:
    """A run of consecutive skipped tiles in a tile row (:meth:`PlanExecutor._skip_runs`)."""

    saves: list[tuple[int, int, int]]  # (op, c0, c1): line-buffer columns [c0, c1) it keeps for op
    last: dict[int, tuple[int, int]]  # cached op -> its last tile with a region of it


class _Stream:
    """One stream stage run (see :mod:`tinypatch.planning.stream`): per row strip, the stage's
    step table (:func:`~tinypatch.planning.stream.column_steps`, the same one the generated C
    walks): each step one op computing one column into its window buffer (the last op: into
    the stage output), or one window buffer sliding its kept columns to the front.

    Batched (the executor's default, where every op's kernel batches and computes a contiguous
    run of columns whose input windows touch): like strips (same rows per op, paddings and
    relative reads) compute each op's whole row of columns in one kernel call for all of them,
    from the stage input read out of the arena, which gives the column-by-column values (a
    kernel's output column depends only on its input window, padded only at the image border).
    The stage's first strip then walks the step table moving those columns through the (fresh)
    window buffers, and every read of a window buffer is compared with the columns the op needs
    (a wrong slide or slot raises PlanError; a slot read before it is written, a read of
    never-written bytes). The table is the same for every strip and each step writes all rows of
    its slot, so that holds at any rows: the other strips record the window-buffer bytes the walk
    writes at their rows (:meth:`touch`, once per group of like strips, which touch the same
    bytes), their reads of the stage input and their rows of the stage output.
    """

    def __init__(self, ex: PlanExecutor, st: StageTiling) -> None:
        self.ex, self.st = ex, st
        self.producers = ex.producers
        self.steps = column_steps(ex.graph, st)
        self.window = {}  # op -> its column window map (None: point-wise)
        for k in st.info.tile_ops:
            maps = [m for m in column_maps(ex.graph, k) or [] if m is not None]
            self.window[k] = maps[0] if maps and maps[0].kind == "window" else None
        self.rows = self._rows() if ex.batch else None
        written: dict[str, set[int]] = {t: set() for t in st.rings}  # window buffer -> the slots steps write
        for step in self.steps:
            name = ex.graph.ops[step[STEP_OP]].outputs[0]
            if name in written:
                written[name].update(range(step[STEP_KEEP]) if step[STEP_KEEP] else (step[STEP_DST],))
        self.slots = {t: _runs(sorted(c)) for t, c in written.items()}  # as runs [a, b) of slots
        self.groups: dict[tuple, list[int]] = {}  # like strips (batched), in order
        if self.rows is not None:
            for s, spans in enumerate(st.h.spans):
                sig = self._signature(spans)
                if sig is not None:
                    self.groups.setdefault(sig, []).append(s)

    def _rows(self) -> dict[int, tuple[int, int, int, int, int]] | None:
        """Op -> (first output column, input columns lo, hi, left and right padding) of its
        whole-row computation, or None when some op computes columns with gaps between them or
        its kernel does not batch (see :meth:`PlanExecutor._signature`)."""
        g = self.ex.graph
        if any(not op_def(g.ops[k].type).batches or reads_nchw(g, g.ops[k]) or writes_nchw(g, g.ops[k])
               for k in self.st.info.tile_ops):
            return None
        computes: dict[int, list[tuple[int, ...]]] = {k: [] for k in self.st.info.tile_ops}
        for step in self.steps:
            if not step[STEP_KEEP]:
                computes[step[STEP_OP]].append(step)
        last = self.st.info.tile_ops[-1]
        first = {last: 0}  # op -> the first column it computes (its consumer's first input column)
        reads: dict[int, tuple[int, int]] = {}  # op -> the input columns its computed columns read
        for k, cs in computes.items():
            # columns reading only padding (an explicit PAD's borders) may lead or trail, not split the rest
            body = [n for n, c in enumerate(cs) if c[STEP_LO] < c[STEP_HI]]
            if not body or body[-1] - body[0] + 1 != len(body) or (len(body) < len(cs) and self.window[k] is None) \
                    or any(b[STEP_LO] > a[STEP_HI] for a, b in pairwise(cs)):
                return None
            reads[k] = (cs[body[0]][STEP_LO], cs[body[-1]][STEP_HI])
            for t in g.ops[k].inputs:
                if t in self.st.rings:
                    p = self.producers[t]
                    if len(computes[p]) != reads[k][1] - reads[k][0]:
                        return None
                    first[p] = reads[k][0]
        out = {}
        for k, cs in computes.items():
            m, (lo, hi) = self.window[k], reads[k]
            left = right = 0
            if m is not None:  # the whole row's window: its input columns and paddings
                span, left, right = m.input_span((first[k], first[k] + len(cs)))
                if span != (lo, hi):
                    return None
            out[k] = (first[k], lo, hi, left, right)
        return out

    def _signature(self, spans: dict[int, OpSpan]) -> tuple | None:
        """What makes a strip batchable with others: per op its rows, paddings and reads (relative
        to the producer's rows inside the stage, or how many rows of a full-size tensor). None: an
        op computes only part of its rows, or none."""
        g, sig = self.ex.graph, []
        for k in self.st.info.tile_ops:
            sh = spans[k]
            if sh.out != sh.need or sh.need[0] >= sh.need[1]:
                return None
            reads = []
            for t, rh in zip(g.ops[k].inputs, sh.reads):
                if rh is None or g.tensors[t].is_const:
                    reads.append(None)
                elif t in self.st.rings:
                    r0 = spans[self.producers[t]].need[0]
                    reads.append((rh[0] - r0, rh[1] - r0))
                else:
                    reads.append((rh[1] - rh[0],))
            sig.append((sh.need[1] - sh.need[0], sh.pads, tuple(reads)))
        return tuple(sig)

    def run(self, arena: Arena, outside: dict[str, np.ndarray], full_out: np.ndarray) -> None:
        """Run the stage in ``arena`` (tensors outside it in ``outside``), writing ``full_out``."""
        self.arena, self.outside, self.full_out = arena, outside, full_out
        g, st, ex = self.ex.graph, self.st, self.ex
        for k in st.info.tile_ops[:-1]:  # window buffers live across the whole stage
            buf = ex.buffer_of[g.ops[k].outputs[0]]
            self.arena.alloc(buf, ex.placement.offsets[buf], ex.sizes[buf])
        groups = self.groups
        batch = {s: (group, n) for group, strips in enumerate(groups.values()) for n, s in enumerate(strips)}
        values: dict[int, dict[str, np.ndarray] | None] = {}  # group -> its op outputs (on provenance: None)
        walked = False
        for s, spans in enumerate(st.h.spans):
            if s not in batch:
                self.walk(spans, None, 0)
                walked = True
                continue
            group, n = batch[s]
            if n == 0:  # the group's first strip: compute the group; the stage's first strip walks the table
                values[group] = self.compute_rows(list(groups.values())[group])
            if n == 0 and not walked:
                self.walk(spans, values[group], 0)
                walked = True
            else:
                if n == 0:
                    self.touch(spans)
                sh = spans[st.info.tile_ops[-1]]
                dst = self.full_out[:, sh.out[0]: sh.out[1]]
                name, got = g.ops[st.info.tile_ops[-1]].outputs[0], values[group]
                # on provenance: the ids of the pixels the strip computes
                dst[...] = got[name][n: n + 1] if got is not None else self.ex._ids[name][  # type: ignore[index]
                    :, sh.out[0]: sh.out[1]]
                self.arena.wrote(dst)

    def touch(self, spans: dict[int, OpSpan]) -> None:
        """Record the window-buffer bytes a strip's walk writes (and so reads) at these rows: every
        row of each slot the step table writes. The first strip's walk showed the table reads a
        slot only after writing it (the buffers were fresh) and always the columns the op needs;
        a compute step writes all rows of its slot, so both hold at any rows."""
        g, st = self.ex.graph, self.st
        for k in st.info.tile_ops[:-1]:
            t = g.tensors[g.ops[k].outputs[0]]
            rows = spans[k].need[1] - spans[k].need[0]
            view = self.arena.view(self.ex.buffer_of[t.name], (1, rows, st.rings[t.name], t.shape[3]), t.np_dtype)
            for a, b in self.slots[t.name]:
                self.arena.wrote(view[:, :, a:b])

    def compute_rows(self, strips: list[int]) -> dict[str, np.ndarray] | None:
        """Every op's whole row of columns for ``strips`` (like strips), stacked along the batch axis. On
        provenance only their reads of full-size tensors, checked (None: the values are the ids)."""
        g, st, rows, ids = self.ex.graph, self.st, self.rows, self.ex._ids
        assert rows is not None
        if ids is not None:
            for k in st.info.tile_ops:
                lo, hi = rows[k][1:3]
                for n, t in enumerate(g.ops[k].inputs):
                    if t and not g.tensors[t].is_const and t not in st.rings and st.h.spans[strips[0]][k].reads[n]:
                        full = self.ex._get(self.arena, self.outside, t)
                        for s in strips:
                            a = st.h.spans[s][k].reads[n]
                            self.ex._read(self.arena, full[:, a[0]: a[1], lo:hi], t, a, (lo, hi), st,
                                          "strip {} of op {}", s, k)
            return None
        values: dict[str, np.ndarray] = {}
        for k in st.info.tile_ops:
            op = g.ops[k]
            sh = st.h.spans[strips[0]][k]
            _, lo, hi, left, right = rows[k]
            args = []
            for n, (t, rh) in enumerate(zip(op.inputs, sh.reads)):
                if rh is None or g.tensors[t].is_const:
                    args.append(g.tensors[t].data if t else None)
                elif t in values:
                    p = self.producers[t]
                    r0, c0 = st.h.spans[strips[0]][p].need[0], rows[p][0]
                    args.append(values[t][:, rh[0] - r0: rh[1] - r0, lo - c0: hi - c0])
                else:
                    full = self.ex._get(self.arena, self.outside, t)
                    args.append(np.concatenate([self.arena.read(full[:, a[0]: a[1], lo:hi], t) for a in
                                                (st.h.spans[s][k].reads[n] for s in strips)]))
            values[op.outputs[0]] = self.ex.kernels[k](args, (*sh.pads, left, right))[0]
        return values

    def walk(self, spans: dict[int, OpSpan], values: dict[str, np.ndarray] | None, n: int) -> None:
        """One strip's step table: ops computing columns (``values`` None), or moving the columns of
        strip ``n`` of ``values`` through the window buffers, checking what each step reads."""
        g, st = self.ex.graph, self.st
        views = {}
        for k in st.info.tile_ops[:-1]:
            t = g.tensors[g.ops[k].outputs[0]]
            rows = spans[k].need[1] - spans[k].need[0]
            views[t.name] = self.arena.view(self.ex.buffer_of[t.name], (1, rows, st.rings[t.name], t.shape[3]),
                                            t.np_dtype)
        done = dict.fromkeys(st.info.tile_ops, 0)  # columns each op has computed so far
        for step in self.steps:
            k = step[STEP_OP]
            if step[STEP_KEEP]:  # slide: kept columns to the front
                view, keep, shift = views[g.ops[k].outputs[0]], step[STEP_KEEP], step[STEP_SHIFT]
                view[:, :, :keep] = self.arena.read(view[:, :, shift: shift + keep]).copy()
                self.arena.wrote(view[:, :, :keep])
            elif spans[k].out[0] < spans[k].out[1]:
                self.compute(k, step, spans, views, values, n, done[k])
                done[k] += 1

    def compute(self, k: int, step: tuple[int, ...], spans: dict[int, OpSpan], views: dict[str, np.ndarray],
                values: dict[str, np.ndarray] | None, n: int, col: int) -> None:
        """A compute step: op k's column ``step[STEP_DST]`` over the strip's rows (its ``col``-th
        column, taken from ``values`` when given)."""
        g, ids = self.ex.graph, self.ex._ids
        op = g.ops[k]
        sh = spans[k]
        lo, hi = step[STEP_LO], step[STEP_HI]
        args = []
        for t, rh in zip(op.inputs, sh.reads):
            if rh is None or g.tensors[t].is_const:
                args.append(g.tensors[t].data if t else None)
            elif t in views:  # a window buffer holds the consumer's columns from its column 0
                p = self.producers[t]
                r0 = spans[p].need[0]
                got = views[t][:, rh[0] - r0: rh[1] - r0, : hi - lo]
                if ids is None:  # on provenance the ids say it (see PlanExecutor._read)
                    self.arena.read(got, t)
                if ids is not None or values is not None:
                    c0 = self.rows[p][0]  # type: ignore[index]
                    want = ids[t][0, rh[0]: rh[1], lo:hi] if ids is not None else \
                        values[t][n, rh[0] - r0: rh[1] - r0, lo - c0: hi - c0]  # type: ignore[index]
                    if not _same(got[0], want):
                        self.arena.read(got, t)  # a freed or never-written byte is named as such
                        raise PlanError(f"stream stage: the window buffer of {t!r} does not hold columns "
                                        f"[{lo}, {hi}) when op {k} reads them")
                args.append(got)
            else:
                args.append(self.ex._read(self.arena, self.ex._get(self.arena, self.outside, t)[:, rh[0]: rh[1], lo:hi],
                                          t, rh, (lo, hi), self.st, "stream op {}", k))
        name = op.outputs[0]
        if values is not None:
            value = values[name][n: n + 1, :, col: col + 1]
        elif ids is not None:  # on provenance: no kernel, the column's pixels' ids
            c = self.rows[k][0] + col  # type: ignore[index]
            value = ids[name][:, sh.out[0]: sh.out[1], c: c + 1]
        else:
            m = self.window[k]  # one output column reads before + (hi - lo) + after = the window's extent
            wpads = (step[STEP_PAD], m.extent - step[STEP_PAD] - (hi - lo)) if m is not None else (0, 0)
            value = self.ex.kernels[k](args, (*sh.pads, *wpads))[0]
        dst = views[name] if name in views else self.full_out[:, sh.out[0]: sh.out[1]]
        dst[:, :, step[STEP_DST]: step[STEP_DST] + 1] = value
        if ids is None:  # on provenance the ids written say so (IdArena.wrote)
            self.arena.wrote(dst[:, :, step[STEP_DST]: step[STEP_DST] + 1])


def _empty(span: OpSpan) -> bool:
    """Does the op hold none of its output for the tile (along this axis)?"""
    return span.need[0] >= span.need[1]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape, dtype and values (``np.array_equal`` costs some 20 times more on small tiles)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _axis_keys(g: Graph, ops: list[int], tiles: list[dict[int, OpSpan]], producers: dict[str, int],
               fresh: bool = False) -> list[tuple]:
    """Each tile's geometry along one axis, per op: its size, paddings and reads (relative to the
    producer's region when the stage computes it, else just their size); ``fresh``: also where its
    fresh part starts (columns may be cached)."""
    inside = set(ops)
    links = [(k, [p if p in inside else None for p in (producers.get(t) for t in g.ops[k].inputs)]) for k in ops]
    keys = []
    for spans in tiles:  # plain loops: this runs per tile and op on a plan executor's first run
        key = []
        for k, parents in links:
            sp = spans[k]
            n0, n1 = sp.need
            reads = []
            for p, r in zip(parents, sp.reads):
                if r is None:
                    reads.append(None)
                elif p is None:
                    reads.append((r[1] - r[0],))
                else:
                    base = spans[p].need[0]
                    reads.append((r[0] - base, r[1] - base))
            key.append((n1 - n0, sp.pads, tuple(reads), sp.out[0] - n0 if fresh else 0))
        keys.append(tuple(key))
    return keys


def _merge(windows: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Windows (rows r0:r1, columns c0:c1) as fewer windows covering exactly the same pixels: per row
    range its column ranges merged, then row ranges with the same column ranges merged."""
    by_rows: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for r0, r1, c0, c1 in windows:
        by_rows.setdefault((r0, r1), []).append((c0, c1))
    return _merge_rows(by_rows)


def _merge_rows(by_rows: dict[tuple[int, int], list[tuple[int, int]]]) -> list[tuple[int, int, int, int]]:
    """:func:`_merge` of windows given as their column ranges per row range."""
    by_cols: dict[tuple, list[tuple[int, int]]] = {}
    for r, cs in by_rows.items():
        by_cols.setdefault(tuple(_union(cs)), []).append(r)
    return [(r0, r1, c0, c1) for cs, rs in by_cols.items() for r0, r1 in _union(rs) for c0, c1 in cs]


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open intervals merged where they overlap or touch, sorted."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Sorted distinct integers as runs [a, b) of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][1] == v:
            runs[-1] = (runs[-1][0], v + 1)
        else:
            runs.append((v, v + 1))
    return runs
