"""Fast runs of a patch stage by the plan executor: the arena effect replayed, the tiles'
computations checked in batches.

What a stage does to the simulated arena (the bytes it claims, writes, reads and frees, the
high-water mark) depends on the plan, never on the input values. The executor's first run of a
stage walks its tiles on provenance
(:meth:`~tinypatch.runtime.plan_executor.PlanExecutor._walk_ids`, in an
:class:`~tinypatch.runtime.sim_arena.IdArena`): no kernel runs, each tile op writes the ids of the
pixels it computes and every window it reads must hold exactly the ids of the pixels it needs,
with every arena check. That records the effect (:class:`~tinypatch.runtime.sim_arena.ArenaEffect`);
every run that finds the arena in the recorded state before the stage (the first included) applies
it and computes the values here:

* a tiled stage (:class:`TiledChecks`): every op once on the whole image (the shadow), and every
  tile's computation of every op checked. Every tile op reads exactly the receptive field of the
  pixels it computes, padded where the image border is (checked once per plan for every tile and
  op against :meth:`~tinypatch.analysis.regions.AxisMap.input_span`). Where along each axis its
  window is not padded, or is the whole axis, its kernel does the arithmetic of the whole-image
  call on those pixels: their whole-image values are its own. A tile op whose window is padded
  at a border of an axis it does not span whole runs its kernel with its own paddings on its own
  window (one of like tile ops: same op, sizes and paddings, the same call at another place),
  in one batched call per op and paddings (:class:`TiledChecks`), an op's calls run as one batch
  (:meth:`~tinypatch.kernels.base.PreparedOp.run_calls`: each call padded with its own paddings, the
  bytes of one call each), compared byte for byte with the whole-image values.
  A stream stage is checked so too, its strips computing whole rows (its columns' walk through
  the window buffers is what the walk on provenance checks).
* a gather tile op (resize, transpose conv: :class:`~tinypatch.kernels.base.GatherOp`) computes
  ``gather(slice, rows, cols)``: its index tables along each axis name, per output index, the input
  indices (sources) it reads and their weights, and its output pixel (y, x) depends on the slice only
  at the used sources of row y and column x, with their weights (the gather's locality, as a window
  kernel's pixel depends only on its window). Its arithmetic per pixel does not depend on the call's
  size: copies (nearest), element-wise int64 or float32 operations in one order (bilinear), sums of
  int8 products exact in float64 whatever their order (transpose conv), then element-wise
  requantization. The whole-image call uses the whole image's tables; a tile op's uses the tables
  of its pixels with sources relative to its slice's start (:meth:`~tinypatch.kernels.base.GatherOp.tables`).
  Where those are the whole image's restricted to its pixels, sources offset by the slice's start,
  and every used source lies inside the slice (checked once per plan, per tile row and column, by
  bytes), each of its pixels reads the input pixels the whole image's does (the slice holds them:
  the walk on provenance checked their ids) with the same weights: the whole-image call's
  arithmetic, its bytes. A tile op not shown so runs ``window`` on its own slice of the whole-image
  input on every run (one of its like tile ops: same op, slice sizes and tables, the same ``gather``
  call on another slice), compared byte for byte with the whole-image values (an InputError where a
  used source lies outside its slice, as in the tile loop).

What the walk on provenance checks, a replay does not redo: the cached parts, line buffers and
window buffers every tile reads (their ids: stronger than comparing values, which can agree by
chance where the input is flat) and the arena's checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tinypatch.analysis.regions import AxisMap, Interval
from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.ir.optable import op_def
from tinypatch.kernels.base import GatherOp
from tinypatch.planning.tiles import OpSpan, StageTiling, input_maps

_NOTHING = (False, False, False)  # a tile op computing no pixel (see _kinds)


class _Group:
    """Like tile computations of one op: the tiles, and per activation input the windows of the
    tiles (each tile's first row and column, and the windows' size), then those of its output."""

    def __init__(self, k: int, pads: tuple[int, ...], tiles: list[tuple[int, int]],
                 windows: list[tuple[str, list[tuple[int, int]], tuple[int, int]] | None],
                 out: tuple[list[tuple[int, int]], tuple[int, int]]) -> None:
        self.k, self.pads, self.tiles, self.windows, self.out = k, pads, tiles, windows, out


def _gather(x: np.ndarray, starts: list[tuple[int, int]], size: tuple[int, int]) -> np.ndarray:
    """The windows of ``size`` (rows, columns) at ``starts`` of map ``x`` [1, H, W, C], stacked along
    the batch axis (a single window: a view)."""
    h, w = size
    if len(starts) == 1:
        r, c = starts[0]
        return x[:, r: r + h, c: c + w]
    return np.concatenate([x[:, r: r + h, c: c + w] for r, c in starts])


def reads_exactly(maps: list[AxisMap | None], span: OpSpan) -> bool:
    """Does a tile op read along this axis exactly the receptive field of what it computes, padded as
    the whole image is there (:meth:`~tinypatch.analysis.regions.AxisMap.input_span`)?"""
    out, pads = span.out, span.pads
    for m, r in zip(maps, span.reads):
        if m is not None:
            s = m.input_span(out)
            if s[0] != r or (s[1], s[2]) != (pads if m.kind == "window" else (0, 0)):
                return False
    return True


def _whole(maps: list[AxisMap | None]) -> OpSpan:
    """An op computing the whole axis."""
    m0 = next(m for m in maps if m is not None)
    spans = [None if m is None else m.input_span((0, m.out_size)) for m in maps]
    pads = next((s[1:] for s, m in zip(spans, maps) if m is not None and m.kind == "window"), (0, 0))
    return OpSpan((0, m0.out_size), (0, m0.out_size), tuple(None if s is None else s[0] for s in spans), pads)


def _kinds(maps: dict[int, list[AxisMap | None]], spans: dict[int, OpSpan],
           sizes: dict[int, int]) -> dict[int, tuple[bool, bool, bool]]:
    """Per op of one tile row (column): (computes any pixel, :func:`reads_exactly`, whole-like: an exact tile
    op's window along this axis is read as the whole-image call reads it there, not padded or the whole
    axis of ``sizes[op]`` pixels, then padded as the whole image is)."""
    out = {}
    for k, sp in spans.items():
        a, b = sp.out
        if a < b:
            p0, p1 = sp.pads
            out[k] = (True, reads_exactly(maps[k], sp), not (p0 or p1) or (a == 0 and b == sizes[k]))
        else:
            out[k] = _NOTHING
    return out


def _firsts(kinds: list[dict[int, tuple[bool, bool, bool]]], spans: list[dict[int, OpSpan]], k: int) -> set[int]:
    """The tile rows (columns) where op k computes pixels, reads exactly, and is the first with its
    size, paddings and kinds (:func:`_kinds`)."""
    seen, out = set(), set()
    for i, kind in enumerate(kinds):
        c = kind[k]
        if c[0] and c[1]:
            sp = spans[i][k]
            key = (sp.out[1] - sp.out[0], sp.pads, c)
            if key not in seen:
                seen.add(key)
                out.add(i)
    return out


def _widen(maps: list[AxisMap | None], span: OpSpan, size: int) -> Interval | None:
    """``span.out`` grown to ``size`` away from its padded end, where the window of the grown
    interval keeps the same paddings (it then holds the tile's own window where the kernel reads
    it for the tile's own pixels); None where neither way does."""
    a, b = span.out
    m0 = next(m for m in maps if m is not None)
    for out in ((a, a + size), (b - size, b)) if span.pads[1] == 0 else ((b - size, b), (a, a + size)):
        if 0 <= out[0] and out[1] <= m0.out_size and all(
                m is None or m.input_span(out)[1:] == (span.pads if m.kind == "window" else (0, 0)) for m in maps):
            return out
    return None


def _gather_keys(kernel: GatherOp, k: int, ax: int, spans: list[dict[int, OpSpan]]) -> list[tuple[bool, int | None]]:
    """Per tile row (column) of gather op k along axis ``ax``: whether its tables are shown to be the
    whole image's restricted to its pixels with sources offset by its slice's start, every used
    source inside the slice (:meth:`~tinypatch.kernels.base.GatherOp.tables`), and its like class
    (slice size and tables, as a small int; None: it computes no pixel)."""
    whole = kernel.tables(ax, (0, kernel.out.shape[1 + ax]), 0)
    p = next(n for n, r in enumerate(spans[0][k].reads) if r is not None)  # the activation input
    ids: dict[tuple, int] = {}
    out: list[tuple[bool, int | None]] = []
    for sp in spans:
        a, b = sp[k].out
        if a >= b:
            out.append((False, None))
            continue
        r0, r1 = sp[k].reads[p]
        got = kernel.tables(ax, (a, b), r0)
        src, used = got[0], got[1]
        shown = _same_table(got, (whole[0][a:b] - r0, whole[1][a:b], whole[2][a:b])) and \
            bool(((src >= 0) & (src < r1 - r0) | ~used).all())
        key = (r1 - r0, *((t.shape, t.dtype.str, t.tobytes()) for t in got))
        out.append((shown, ids.setdefault(key, len(ids))))
    return out


def _same_table(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    """Equal tables: the same shapes, dtypes and bytes."""
    return all(x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b))


class TiledChecks:
    """A tiled stage's fast run (see the module docstring): the batched groups of padded tile ops and
    the gather tile ops not shown by their tables (:attr:`gathers`: the first of each like class,
    each run on its own slice), worked out once per plan. Padded tile ops of one op with the same
    paddings run as one call: each grown to the group's largest size away from its padded image
    border (:func:`_widen`; a kernel's output pixel depends only on its window, so the tile's own
    pixels come out of its own window) and compared with the whole-image values over all it
    computes; :attr:`by_op` lists each op's groups, whose calls run as one batch (``run_calls``).
    :attr:`usable` is False where a tile op without padding reads other than the receptive field of
    its pixels, or a stage ending in an average sums pixels twice or never."""

    def __init__(self, graph: Graph, kernels: Sequence[Callable], st: StageTiling) -> None:
        self.graph, self.kernels, self.st = graph, kernels, st
        g, ops = graph, st.info.tile_ops
        maps = (st.h.maps or input_maps(g, ops, 0), st.w.maps or input_maps(g, ops, 1))  # those tile_axis used
        # a stream stage's strips compute whole rows (the walks checked its columns)
        self.cols = [{k: _whole(maps[1][k]) for k in ops}] if st.stream else st.w.spans
        padded: dict[tuple, list[tuple[int, int, OpSpan, OpSpan]]] = {}  # (op, paddings) -> its exact tile ops
        odd: dict[tuple, list[tuple[int, int, Interval, Interval]]] = {}  # tile ops read otherwise: as they are
        seen: set[tuple] = set()
        self.usable = True
        # per axis, tile row (column) and op: (computes any pixel, reads exactly, reads as the whole image)
        sizes = [{k: next(m for m in maps[a][k] if m is not None).out_size for k in ops} for a in (0, 1)]
        # a square stage cut alike along both axes (the same maps and spans): its columns are its rows
        same = maps[0] == maps[1] and st.h.spans == self.cols
        rows = [_kinds(maps[0], sp, sizes[0]) for sp in st.h.spans]
        kinds = [rows, rows if same else [_kinds(maps[1], sp, sizes[1]) for sp in self.cols]]
        # in tile order, the tile ops computing pixels but those exact and read as the whole image along
        # both axes (their whole-image values are their own, see the module docstring); of the exact ones
        # only the first of each like class (same sizes, paddings and kinds along each axis: every later
        # one would find its like tile op seen below)
        todo = []
        for k in ops:
            ck = [kind[k] for kind in kinds[1]]
            cols = [j for j, c in enumerate(ck) if c[0]]
            if not cols:
                continue
            odd_cols = [j for j in cols if not (ck[j][1] and ck[j][2])]
            first_cols = _firsts(kinds[1], self.cols, k)  # exact columns first of their class
            # per row kind: the columns of a row first of its class (whole-like or not), of a later one
            firsts = ([j for j in cols if j in first_cols or not ck[j][1]],
                      [j for j in odd_cols if j in first_cols or not ck[j][1]])
            later = ([j for j in cols if not ck[j][1]], [j for j in odd_cols if not ck[j][1]])
            first_rows = first_cols if same else _firsts(kinds[0], st.h.spans, k)
            for i, kind in enumerate(kinds[0]):
                r = kind[k]
                if r[0]:
                    # not exact: every one; exact, a like row came first: only its tile ops not exact along the columns
                    js = cols if not r[1] else (firsts if i in first_rows else later)[r[2]]
                    if js:
                        todo.extend([(i, j, k) for j in js])
        hs, ws = st.h.spans, self.cols
        for i, j, k in sorted(todo):
            sh, sw = hs[i][k], ws[j][k]
            if kinds[0][i][k][1] and kinds[1][j][k][1]:  # exact
                like = (k, sh.out[1] - sh.out[0], sw.out[1] - sw.out[0], sh.pads, sw.pads)
                if like not in seen:  # the first of its like tile ops computes for them all
                    seen.add(like)
                    padded.setdefault((k, sh.pads, sw.pads), []).append((i, j, sh, sw))
            else:
                self.usable = self.usable and bool(any(sh.pads) or any(sw.pads))
                reads = tuple(None if rh is None else (rh[1] - rh[0], rw[1] - rw[0])
                              for rh, rw in zip(sh.reads, sw.reads))
                odd.setdefault((k, sh.out[1] - sh.out[0], sw.out[1] - sw.out[0], sh.pads, sw.pads, reads),
                               []).append((i, j, sh.out, sw.out))
        windows: set[tuple] = set()  # (group, rows, columns): the windows the groups compute
        # (op, tile row, size) -> its grown rows (a row's tiles share them); likewise columns
        grown_h: dict[tuple[int, int, int], Interval | None] = {}
        grown_w: dict[tuple[int, int, int], Interval | None] = {}
        for (k, ph, pw), tiles in padded.items():
            size_h = max(sh.out[1] - sh.out[0] for _, _, sh, _ in tiles)
            size_w = max(sw.out[1] - sw.out[0] for _, _, _, sw in tiles)
            for i, j, sh, sw in tiles:
                oh = grown_h.get((k, i, size_h), False)
                if oh is False:
                    oh = grown_h[k, i, size_h] = _widen(maps[0][k], sh, size_h)
                ow = grown_w.get((k, j, size_w), False)
                if ow is False:
                    ow = grown_w[k, j, size_w] = _widen(maps[1][k], sw, size_w)
                if oh is None or ow is None:
                    oh, ow = sh.out, sw.out
                key = (k, oh[1] - oh[0], ow[1] - ow[0], ph, pw, None)
                if (key, oh, ow) not in windows:  # tiles grown to the same window: computed once
                    windows.add((key, oh, ow))
                    odd.setdefault(key, []).append((i, j, oh, ow))
        self.groups = [self._group(k, maps, (*ph, *pw), tiles) for (k, _, _, ph, pw, _), tiles in odd.items()]
        self.by_op: dict[int, list[int]] = {}  # op -> its groups (indices), run as one batch of calls
        for n, grp in enumerate(self.groups):
            self.by_op.setdefault(grp.k, []).append(n)
        # gather tile ops: the first of each like class (same op, tables and slice sizes), in tile order
        self.gathers = sorted(t for k in ops if op_def(g.ops[k].type).gather for t in self._like_gathers(k))
        if st.info.reduce is not None:  # the sums add every pixel of the tiled map once
            last = ops[-1]
            count = np.zeros(g.tensors[st.info.tiled].shape[1:3], np.int64)
            for rows in st.h.spans:
                for cols in self.cols:
                    sh, sw = rows[last], cols[last]
                    count[sh.need[0]: sh.need[1], sw.need[0]: sw.need[1]] += 1
            self.usable = self.usable and bool((count == 1).all())

    def _like_gathers(self, k: int) -> list[tuple[int, int, int]]:
        """Gather op k's tile ops that compute pixels and are not shown to compute the whole image's
        (:func:`_gather_keys`), the first of each like class: (tile row, column, k). Like tile ops read
        slices of the same size with the same tables along each axis, so their ``window`` calls make
        the same ``gather`` call on another slice."""
        kernel = self.kernels[k]
        rows, cols = _gather_keys(kernel, k, 0, self.st.h.spans), _gather_keys(kernel, k, 1, self.cols)
        seen: set[tuple[int, int]] = set()
        firsts = []
        for i, (row_shown, row) in enumerate(rows):
            for j, (col_shown, col) in enumerate(cols):
                if row is not None and col is not None and not (row_shown and col_shown) and (row, col) not in seen:
                    seen.add((row, col))
                    firsts.append((i, j, k))
        return firsts

    def _group(self, k: int, maps: tuple[dict, dict], pads: tuple[int, ...],
               tiles: list[tuple[int, int, Interval, Interval]]) -> _Group:
        """One call's windows: each tile op computes ``out`` (rows, columns) from the windows
        its maps give (its own reads where ``out`` is its own)."""
        g, st = self.graph, self.st
        op = g.ops[k]
        windows: list[tuple[str, list[tuple[int, int]], tuple[int, int]] | None] = []
        for n, t in enumerate(op.inputs):
            if not t or g.tensors[t].is_const:
                windows.append(None)
                continue
            reads = []
            for i, j, oh, ow in tiles:
                sh, sw = st.h.spans[i][k], self.cols[j][k]
                reads.append((sh.reads[n] if oh == sh.out else maps[0][k][n].input_span(oh)[0],
                              sw.reads[n] if ow == sw.out else maps[1][k][n].input_span(ow)[0]))
            windows.append((t, [(rh[0], rw[0]) for rh, rw in reads],
                            (reads[0][0][1] - reads[0][0][0], reads[0][1][1] - reads[0][1][0])))
        oh, ow = tiles[0][2], tiles[0][3]
        return _Group(k, pads, [(i, j) for i, j, _, _ in tiles], windows,
                      ([(h[0], w[0]) for _, _, h, w in tiles], (oh[1] - oh[0], ow[1] - ow[0])))

    def values(self, shadow: dict[str, np.ndarray], get: Callable[[str], np.ndarray]) -> np.ndarray:
        """The stage output from ``shadow`` (the stage's maps computed on the whole image; ``get``
        reads a map from outside the stage), every tile's computation checked (PlanError names the
        first tile whose kernel on its own window computes other bytes than the whole image)."""
        st, g = self.st, self.graph
        values: list[np.ndarray] = [None] * len(self.groups)  # type: ignore[list-item]
        for k, numbers in self.by_op.items():  # each op's groups as one batch (run_calls: the bytes of one call each)
            op, kernel = g.ops[k], self.kernels[k]
            calls = [([_gather(shadow[t] if t in shadow else get(t), *w[1:])
                       for t, w in zip(op.inputs, self.groups[n].windows) if w is not None], self.groups[n].pads)
                     for n in numbers]
            run_calls = getattr(kernel, "run_calls", None)
            outs = run_calls(calls) if run_calls is not None else [kernel(*call)[0] for call in calls]
            for n, value in zip(numbers, outs):
                values[n] = value
        for grp, value in zip(self.groups, values):  # checked in tile order: the first tile gone wrong is named
            want = _gather(shadow[g.ops[grp.k].outputs[0]], *grp.out)
            if value.shape != want.shape or value.dtype != want.dtype or value.tobytes() != want.tobytes():
                bad = next((n for n in range(len(grp.tiles)) if value.shape != want.shape
                            or not np.array_equal(value[n], want[n])), 0)
                i, j = grp.tiles[bad]
                raise PlanError(f"patch stage at op {st.stage.start}: tile ({i}, {j}) of op {grp.k} computes other "
                                f"bytes than the whole image from its window (a region or padding out of step)")
        for i, j, k in self.gathers:
            self._check_gather(i, j, k, shadow, get)
        if st.info.reduce is None:
            return shadow[st.info.output]
        sums = shadow[st.info.tiled].sum(axis=(0, 1, 2), dtype=np.int64).astype(np.int32)  # int32 wraps, as tile by tile
        return self.kernels[st.info.reduce].finish(sums.astype(np.int64))

    def _check_gather(self, i: int, j: int, k: int, shadow: dict[str, np.ndarray],
                      get: Callable[[str], np.ndarray]) -> None:
        """Tile (i, j) of gather op k as the tile loop computes it (``window`` on its own slice of
        the whole-image input), compared with the whole image's bytes (PlanError otherwise)."""
        op = self.graph.ops[k]
        sh, sw = self.st.h.spans[i][k], self.cols[j][k]
        p = next(n for n, r in enumerate(sh.reads) if r is not None)
        (r0, r1), (c0, c1) = sh.reads[p], sw.reads[p]
        t = op.inputs[p]
        value = self.kernels[k].window((shadow[t] if t in shadow else get(t))[:, r0:r1, c0:c1], (r0, c0),
                                       (sh.out, sw.out))
        want = shadow[op.outputs[0]][:, sh.out[0]: sh.out[1], sw.out[0]: sw.out[1]]
        if value.shape != want.shape or value.dtype != want.dtype or value.tobytes() != want.tobytes():
            raise PlanError(f"patch stage at op {self.st.stage.start}: tile ({i}, {j}) of op {k} computes other "
                            f"bytes than the whole image from its window (a region or index table out of step)")
