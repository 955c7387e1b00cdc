"""Derived geometry of a patch stage: legality, and per-tile regions of every tensor.

H and W are handled separately (:class:`AxisTiling`); a tile (i, j) combines row tile i with
column tile j. For every tile and every operator of the stage we know the output interval it
computes, the interval it reads from each activation input, and the zero padding at true
image borders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

from tinypatch.analysis.regions import (
    AxisMap,
    Interval,
    axis_maps,
    hull,
    is_global_reduce,
    nhwc_shape,
)
from tinypatch.errors import PlanError
from tinypatch.ir import Graph, Op
from tinypatch.ir.optable import Region, op_def
from tinypatch.planning.columns import ring_columns
from tinypatch.planning.plan import STREAM, Stage


@dataclass(frozen=True)
class OpSpan:
    """What one operator does for one tile along one axis.

    ``need`` is the interval of its output that the tile holds (what the consumers read);
    ``out`` the part it computes now. They differ only when the output is cached: the rest
    of ``need`` was computed by the previous tile along this axis and kept.
    """

    need: Interval
    out: Interval
    reads: tuple[Interval | None, ...]  # interval read from each input (None: constant input)
    pads: tuple[int, int]  # zero padding (before, after) of its windowed input


@dataclass
class AxisTiling:
    """Per-tile regions along one axis: ``spans[tile][op_index]`` and ``regions[tile][tensor]``."""

    cuts: list[int]
    spans: list[dict[int, OpSpan]]
    regions: list[dict[str, Interval]]
    cached: frozenset[int] = frozenset()  # ops whose output halo is kept between tiles on this axis
    maps: dict[int, list[AxisMap | None]] | None = field(default=None, repr=False, compare=False)  # input_maps
    # memoized :meth:`overlap` and :meth:`extent` (a tiling is not changed once made: they depend on it only)
    _overlaps: dict[int, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _extents: dict[str, Interval] = field(default_factory=dict, init=False, repr=False, compare=False)

    def max_len(self, tensor: str) -> int:
        return max(r[tensor][1] - r[tensor][0] for r in self.regions)

    def total_len(self, op_index: int) -> int:
        """Sum over tiles of the op's computed output length."""
        return sum(s[op_index].out[1] - s[op_index].out[0] for s in self.spans)

    def max_out_len(self, op_index: int) -> int:
        return max(s[op_index].out[1] - s[op_index].out[0] for s in self.spans)

    def overlap(self, op_index: int) -> int:
        """Most output positions one tile hands to the next (the halo a cache must keep)."""
        got = self._overlaps.get(op_index)
        if got is None:
            got = self._overlaps[op_index] = max((s[op_index].out[0] - s[op_index].need[0] for s in self.spans),
                                                 default=0)
        return got

    def extent(self, tensor: str) -> Interval:
        """Union of the tensor's non-empty regions over all tiles ((0, 0) if none)."""
        got = self._extents.get(tensor)
        if got is None:
            spans = [r[tensor] for r in self.regions if r[tensor][0] < r[tensor][1]]
            got = self._extents[tensor] = (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else (0, 0)
        return got


@dataclass
class StageInfo:
    """The tensors of a legal stage.

    Usually the tiles cut the stage output, which tiles write into a full-size buffer. A stage
    may also end with a global average (``reduce``): the tiles then cut that op's input, and
    per-channel sums are accumulated tile by tile, so the feature map is never held whole.
    """

    ops: list[int]
    output: str  # the stage's result, used after it
    inputs: list[str]  # full tensors the stage reads (produced before it, or graph inputs)
    internal: list[str]  # tensors living only inside a tile
    tiled: str = ""  # the tensor the tiles cut (the output, or the reduce op's input)
    reduce: int | None = None  # index of an accumulating global-average op ending the stage

    def __post_init__(self) -> None:
        self.tiled = self.tiled or self.output

    @property
    def tile_ops(self) -> list[int]:
        """The ops run for every tile (all but an accumulating reduce)."""
        return self.ops[:-1] if self.reduce is not None else self.ops


def stage_info(graph: Graph, start: int, end: int, consumers: dict[str, list[int]] | None = None,
               local: list[bool] | None = None) -> StageInfo:
    """Check that ops ``[start, end)`` can run patch by patch and name their tensors (``consumers``:
    ``graph.consumers()`` if already at hand; ``local``: per op, whether :func:`axis_maps` has maps for
    it, if at hand)."""
    n = len(graph.ops)
    if not 0 <= start < end <= n:
        raise PlanError(f"stage ops [{start}, {end}) out of range: the model has {n} operators")
    ops = list(range(start, end))
    last = graph.ops[end - 1]
    reduce = end - 1 if end - 1 > start and is_global_reduce(graph, last) else None
    for i in ops:
        op = graph.ops[i]
        if i != reduce and not (local[i] if local is not None else axis_maps(graph, op) is not None):
            raise PlanError(f"operator {i} ({op.type}) needs its whole input and cannot be inside a patch stage "
                            f"[{start}, {end}): end the stage at operator {i} (exclusive) or start it after it")
    produced = {t: i for i in ops for t in graph.ops[i].outputs}
    users = graph.consumers() if consumers is None else consumers
    exits = {t for t in produced if t in graph.outputs or any(u >= end for u in users.get(t, []))}
    output = last.outputs[0]
    if exits != {output}:
        raise PlanError(_illegal_exit(graph, start, end, exits - {output}, produced))
    tiled = last.inputs[0] if reduce is not None else output
    if reduce is not None and (produced.get(tiled) != end - 2 or users.get(tiled) != [end - 1]):
        raise PlanError(f"stage [{start}, {end}): the global average's input must come from the op before it "
                        f"and feed nothing else")
    if len(graph.tensors[tiled].shape) != 4:
        raise PlanError(f"stage [{start}, {end}): its output {output!r} is not a 4-D feature map to cut into "
                        f"tiles; end the stage at an operator with a 1xHxWxC output")
    inputs: list[str] = []
    for i in ops:
        for t in graph.ops[i].inputs:
            if t and t not in produced and not graph.tensors[t].is_const and t not in inputs:
                inputs.append(t)
    return StageInfo(ops, output, inputs, [t for t in produced if t != output], tiled, reduce)


def _illegal_exit(graph: Graph, start: int, end: int, others: set[str], produced: dict[str, int]) -> str:
    """What is wrong with a stage whose tensors other than its last output leave it, and what to change."""
    where = f"stage [{start}, {end})"
    if not others:
        return f"{where}: the output of its last operator {end - 1} is used by nothing; end the stage elsewhere"
    names = sorted(others, key=lambda t: produced[t])
    ks = sorted({produced[t] for t in names})
    outs = [t for t in names if t in graph.outputs]
    rest = [t for t in names if t not in graph.outputs]
    what = "; ".join(([f"it swallows graph output(s) {outs}"] if outs else [])
                     + ([f"tensors {rest} are used after it"] if rest else []))
    return (f"{where} is not a legal cut: {what} (made by operator(s) {ks}); only the last operator's output may "
            f"leave a stage: end the stage at operator {ks[0] + 1} (exclusive) or start it after operator {ks[-1]}")


def first_local_op(graph: Graph) -> int | None:
    """Index of the first operator that can run on a tile (where a first stage starts)."""
    return next((i for i, op in enumerate(graph.ops) if axis_maps(graph, op) is not None), None)


def legal_ends(graph: Graph, start: int) -> list[int]:
    """Every ``end`` such that ``[start, end)`` is a legal stage."""
    ends = []
    for end in range(start + 1, len(graph.ops) + 1):
        if axis_maps(graph, graph.ops[end - 1]) is None and not is_global_reduce(graph, graph.ops[end - 1]):
            break
        try:
            stage_info(graph, start, end)
        except PlanError:
            continue
        ends.append(end)
    return ends


def input_maps(graph: Graph, ops: list[int], axis: int) -> dict[int, list[AxisMap | None]]:
    """Per op, the axis map applying to each of its inputs (None for constants)."""
    return {i: _input_maps(graph, graph.ops[i], axis) for i in ops}


def _input_maps(graph: Graph, op: Op, axis: int) -> list[AxisMap | None]:
    maps = axis_maps(graph, op)
    assert maps is not None
    m = maps[axis]
    result: list[AxisMap | None] = []
    for t in op.inputs:
        if not t or graph.tensors[t].is_const:
            result.append(None)
        elif op_def(op.type).region in (Region.IDENTITY, Region.CONCAT):
            size = graph.tensors[t].shape[1 + axis]
            result.append(AxisMap("identity", size, m.out_size))
        else:
            result.append(m)
    return result


def tile_axis(graph: Graph, info: StageInfo, axis: int, cuts: list[int],
              cached: frozenset[int] = frozenset(),
              maps: dict[int, list[AxisMap | None]] | None = None) -> AxisTiling:
    """Propagate each tile of the stage output backwards through the stage along ``axis``.

    Tiles run in order along the axis. An op in ``cached`` keeps the part of its output that
    the next tile needs again, so it only computes what is new; without caching it
    recomputes its whole needed region for every tile (MCUNetV2's halo recomputation).

    A cached op's buffer holds a window of its output that only slides forward: from the
    least start that this or a later tile needs to the furthest end computed so far (its
    ``need`` here; a tile that needs none of it leaves the buffer alone). So the part a tile
    reuses was computed by earlier tiles and kept ever since; when it was not (a tile reaching
    back before a gap in what was computed), PlanError says to recompute that op.
    """
    size = nhwc_shape(graph, info.tiled)[1 + axis]
    check_cuts(cuts, size, "rows" if axis == 0 else "cols", info.tiled)
    if maps is None:
        maps = input_maps(graph, info.tile_ops, axis)
    spans, regions = [], []
    done: dict[int, int] = {}  # cached op -> end of what previous tiles computed
    run: dict[int, int] = {}  # cached op -> start of the gap-free computed run ending at done
    for a, b in zip(cuts[:-1], cuts[1:]):
        need: dict[str, Interval] = {info.tiled: (a, b)}
        tile: dict[int, OpSpan] = {}
        for i in reversed(info.tile_ops):
            op = graph.ops[i]
            held = need.setdefault(op.outputs[0], (0, 0))  # (0, 0): nothing of it is needed
            out = held
            if i in cached and held[0] < held[1] and done.get(i, 0) > held[0]:  # reuses kept outputs
                if held[0] < run[i]:
                    raise PlanError(f"cannot cache the halo of operator {i} ({op.type}) on this grid: tile "
                                    f"{len(spans)} needs {held[0]}..{run[i]} of its output again, which was "
                                    f"not computed next to the rest; recompute it instead")
                out = (min(done[i], held[1]), held[1])
            reads: list[Interval | None] = []
            pads = (0, 0)
            for t, m in zip(op.inputs, maps[i]):
                if m is None:
                    reads.append(None)
                    continue
                span, lo, hi = m.input_span(out)
                reads.append(span)
                if m.kind == "window":
                    pads = (lo, hi)
                need[t] = hull(need.get(t), span)
            tile[i] = OpSpan(held, out, tuple(reads), pads)
        for i in cached:
            lo, hi = tile[i].need
            if lo < hi:
                if lo > done.get(i, -1):
                    run[i] = lo
                done[i] = max(done.get(i, 0), hi)
        spans.append(tile)
        regions.append(need)
    for i in cached:
        _slide_window(spans, regions, i, graph.ops[i].outputs[0])
    return AxisTiling(list(cuts), spans, regions, frozenset(cached), maps)


def _slide_window(spans: list[dict[int, OpSpan]], regions: list[dict[str, Interval]], i: int, tensor: str) -> None:
    """Widen cached op i's per-tile need to the window its buffer holds (see :func:`tile_axis`);
    a tile computing nothing of it gets an empty ``out`` at the window's end."""
    used = [t for t, s in enumerate(spans) if s[i].need[0] < s[i].need[1]]
    starts, lo = {}, None
    for t in reversed(used):
        lo = spans[t][i].need[0] if lo is None else min(lo, spans[t][i].need[0])
        starts[t] = lo
    hi = None
    for t in used:
        s = spans[t][i]
        hi = s.need[1] if hi is None else max(hi, s.need[1])
        out = s.out if s.out[0] < s.out[1] else (hi, hi)
        spans[t][i] = OpSpan((starts[t], hi), out, s.reads, s.pads)
        regions[t][tensor] = (starts[t], hi)


def check_cuts(cuts: list[int], size: int, what: str, tensor: str) -> None:
    """Tile cut points must start at 0, end at ``size`` and strictly increase."""
    if len(cuts) < 2 or cuts[0] != 0 or cuts[-1] != size:
        raise PlanError(f"{what} cut points {cuts} must start at 0 and end at {size}, the size of the tiled map "
                        f"{tensor!r}")
    if any(b <= a for a, b in zip(cuts[:-1], cuts[1:])):
        raise PlanError(f"{what} cut points {cuts} must strictly increase (tiles may not overlap or be empty)")


@dataclass
class StageTiling:
    """A stage with its per-axis tilings (``rings``: window-buffer widths of a stream stage)."""

    stage: Stage
    info: StageInfo
    h: AxisTiling
    w: AxisTiling
    rings: dict[str, int] = field(default_factory=dict)

    @property
    def stream(self) -> bool:
        return bool(self.rings)

    def buffer_cols(self, tensor: str) -> int:
        """Columns of a stage-internal tensor's buffer: its window (stream) or its widest region."""
        return self.rings.get(tensor) or self.w.max_len(tensor)

    def cached(self, op_index: int) -> bool:
        """Does the op's output buffer persist across tiles (to keep its halo)?"""
        return op_index in self.w.cached or op_index in self.h.cached

    def line_buffer(self, op_index: int) -> bool:
        """Are its overlapping rows kept in a separate full-width line buffer?"""
        return op_index in self.h.cached and self.stage.grid[1] > 1


_TILINGS: WeakKeyDictionary[Graph, dict[tuple, StageTiling]] = WeakKeyDictionary()  # graph -> stage key -> tiling


def tile_stage(graph: Graph, stage: Stage, consumers: dict[str, list[int]] | None = None) -> StageTiling:
    """The tiling of ``stage`` (checked; raises PlanError). Tilings are kept per graph, so the search,
    the in-place pass and the costs of one plan command tile each stage once (``consumers``:
    ``graph.consumers()`` if already at hand, for plans of many stages)."""
    key = (len(graph.ops), stage.start, stage.end, tuple(stage.rows), tuple(stage.cols),
           tuple(sorted(stage.halo.items())))
    known = _TILINGS.setdefault(graph, {})
    hit = known.get(key)
    if hit is not None:
        return hit
    if len(known) > max(512, 16 * len(graph.ops)):  # the plans of a front of long graphs have many stages
        known.clear()
    known[key] = st = _tile_stage(graph, stage, consumers)
    return st


def _tile_stage(graph: Graph, stage: Stage, consumers: dict[str, list[int]] | None) -> StageTiling:
    info = stage_info(graph, stage.start, stage.end, consumers)
    last = info.tile_ops[-1]  # writes the tiled tensor: nothing to keep between tiles
    rings = _stream_rings(graph, info, stage)
    cache_h = frozenset(k for k in info.tile_ops if stage.mode(k) == "cache" and k != last)
    cache_w = frozenset(k for k in info.tile_ops if stage.mode(k) in ("cache", "cache_w", STREAM) and k != last)
    h = tile_axis(graph, info, 0, stage.rows, cache_h)
    maps_w = input_maps(graph, info.tile_ops, 1)
    if stage.cols == stage.rows and cache_w == cache_h and maps_w == h.maps:
        # a square stage cut alike: its columns are its rows (the lists shared, read-only once made,
        # so the executors' comparisons of the two axes cost nothing)
        w = AxisTiling(h.cuts, h.spans, h.regions, h.cached, h.maps)
    else:
        w = tile_axis(graph, info, 1, stage.cols, cache_w, maps_w)
    return StageTiling(stage, info, h, w, rings)


def _stream_rings(graph: Graph, info: StageInfo, stage: Stage) -> dict[str, int]:
    """Window-buffer widths of a stream stage ({} if the stage does not stream); checks the stage."""
    body = info.tile_ops[:-1]
    streamed = [k for k in info.tile_ops if stage.mode(k) == STREAM]
    if not streamed:
        return {}
    where = f"stage [{stage.start}, {stage.end})"
    if info.reduce is not None or streamed != body or not body:
        raise PlanError(f"{where}: \"stream\" is a whole-stage mode: every op but the last streams (and the stage "
                        f"may not end with an accumulated average)")
    width = nhwc_shape(graph, info.tiled)[2]
    if stage.cols != list(range(width + 1)):
        raise PlanError(f"{where}: a stream stage has one-column tiles: cols must be 0, 1, ..., {width}")
    return ring_columns(graph, info.tile_ops)
