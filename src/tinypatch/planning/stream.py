"""Column streaming inside a patch stage (halo mode "stream").

A stream stage cuts its output into row strips and, within a strip, computes it one column
at a time, pulling columns through the stage on demand (depth-first): when an operator needs
a window of columns of its input, the producer computes the columns of that window that are
new, one by one, each pulling in turn what it needs. So every stage-internal tensor lives in a
small *window buffer* holding only the columns its consumer reads for one output column (the
consumer's kernel width), at the rows of the strip; columns are computed once per strip
(column halos reused), rows are recomputed between strips (MCUNetV2 along H).

This is msf-CNN's horizontally cached fused block. Unlike ``cache_w`` with one-column tiles,
whose buffers keep each tensor's whole receptive-field window of the stage's output column,
a window buffer keeps only its consumer's kernel width. The stage's geometry (rows per strip,
columns computed) is a ``cache_w`` tiling with one-column tiles; only the buffer sizes and
the execution order differ.

Supported where pulling one column at a time is well defined: every internal tensor has
exactly one consumer, every operator's column map is a window (conv, pool, pad) or a
same-size identity (point-wise), and the stage does not end with an accumulated average.

The pull order does not depend on a strip's rows, so :func:`column_steps` flattens it once
into a table of steps, which the Python plan executor and the generated C both walk, one flat
loop per strip (no recursion on the target). Each step is ``STEP_WIDTH`` int16 values:

* compute ``{k, 0, 0, dst, lo, hi, pad}``: op k computes one output column, written at column
  ``dst`` of its window buffer (of the stage output itself for the last op), from columns
  ``[lo, hi)`` of its activation inputs (tensor coordinates; a window buffer always holds
  them from its column 0 on) with ``pad`` zero columns before them;
* slide ``{k, keep, shift, 0, 0, 0, 0}``: before op k computes new columns into its window
  buffer, its ``keep`` columns starting at column ``shift`` move to the front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tinypatch.analysis.regions import AxisMap, axis_maps, reads_nchw
from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.planning.plan import STREAM

if TYPE_CHECKING:  # tiles imports this module
    from tinypatch.planning.tiles import StageTiling

__all__ = ["STREAM", "column_maps", "column_steps", "output_window", "ring_columns", "single_consumer",
           "window_columns"]


def window_columns(m: AxisMap) -> int:
    """Most input columns ``m`` reads for one output column (the window buffer's width)."""
    if m.kind == "identity":
        return 1
    c = np.arange(m.out_size)
    lo = c * m.stride - m.pad
    hi = lo + m.extent
    width = np.clip(hi, 0, m.in_size) - np.clip(lo, 0, m.in_size)
    return int(width.max(initial=0))


def column_maps(graph: Graph, k: int) -> list[AxisMap | None] | None:
    """Column map of each input of op ``k`` (None for constants), or None if op k cannot stream."""
    op = graph.ops[k]
    maps = axis_maps(graph, op)
    if maps is None or len(op.outputs) != 1 or reads_nchw(graph, op):
        return None
    m = maps[1]
    if m.kind not in ("window", "identity"):
        return None
    out: list[AxisMap | None] = []
    for t in op.inputs:
        if not t or graph.tensors[t].is_const:
            out.append(None)
        elif m.kind == "window":  # convolutions, pools and pads read one activation
            out.append(m)
        elif len(graph.tensors[t].shape) == 4 and graph.tensors[t].shape[2] == m.out_size:  # no broadcast along W
            out.append(AxisMap("identity", m.out_size, m.out_size))
        else:
            return None
    return out


def single_consumer(graph: Graph, tensor: str) -> int | None:
    """The one op reading ``tensor`` (None if it has several, none, or is a model output)."""
    users = set(graph.consumers().get(tensor, []))
    return next(iter(users)) if len(users) == 1 and tensor not in graph.outputs else None


def output_window(graph: Graph, k: int) -> int:
    """Window-buffer width of op k's output streamed into its one consumer (0: it cannot stream)."""
    op = graph.ops[k]
    q = single_consumer(graph, op.outputs[0]) if len(op.outputs) == 1 else None
    maps = column_maps(graph, q) if q is not None else None
    if maps is None:
        return 0
    return max(window_columns(m) for x, m in zip(graph.ops[q].inputs, maps) if x == op.outputs[0] and m is not None)


def ring_columns(graph: Graph, ops: list[int]) -> dict[str, int]:
    """Window-buffer width (columns) of every tensor produced by ``ops[:-1]``, the internal tensors
    of a legal stage over ``ops``; raises PlanError if the ops cannot stream."""
    for k in ops:
        if column_maps(graph, k) is None:
            raise PlanError(f"operator {k} ({graph.ops[k].type}) cannot stream column by column: only convolutions, "
                            f"pools, pads and same-size point-wise ops can")
    rings = {graph.ops[k].outputs[0]: output_window(graph, k) for k in ops[:-1]}
    shared = [t for t, w in rings.items() if not w]
    if shared:
        raise PlanError(f"cannot stream {shared}: a streamed tensor needs exactly one consumer")
    return rings


# columns of a step-table row
STEP_OP, STEP_KEEP, STEP_SHIFT, STEP_DST, STEP_LO, STEP_HI, STEP_PAD = range(7)
STEP_WIDTH = 7


def column_steps(graph: Graph, st: StageTiling) -> list[tuple[int, ...]]:
    """Steps computing one row strip of stream stage ``st``: the depth-first column pulls, in order."""
    maps = {k: column_maps(graph, k) for k in st.info.tile_ops}
    producers = graph.producers()
    last = st.info.tile_ops[-1]
    width = graph.tensors[graph.ops[last].outputs[0]].shape[2]
    window = {t: [0, 0] for t in st.rings}  # columns [w0, w1) of t that its window buffer holds
    steps: list[tuple[int, ...]] = []

    def fill(t: str, lo: int, hi: int) -> None:
        w0, w1 = window[t]
        if lo < w0:
            raise PlanError(f"stream stage: columns of {t!r} are needed again after they were dropped")
        if w0 < lo < w1:
            steps.append((producers[t], w1 - lo, lo - w0, 0, 0, 0, 0))
        window[t] = [lo, max(w1, lo)]
        for col in range(max(w1, lo), hi):
            pull(producers[t], col)
            window[t][1] = col + 1

    def pull(k: int, c: int) -> None:
        op = graph.ops[k]
        spans, pad = set(), 0
        for t, m in zip(op.inputs, maps[k]):  # type: ignore[arg-type]
            if m is None:
                continue
            (lo, hi), before, _ = m.input_span((c, c + 1))
            spans.add((lo, hi))
            if m.kind == "window":
                pad = before
            if t in window and lo < hi:
                fill(t, lo, hi)
        assert len(spans) == 1, f"op {k}: activation inputs read different columns {spans}"
        lo, hi = spans.pop()
        name = op.outputs[0]
        dst = c - window[name][0] if name in window else c
        assert name not in window or 0 <= dst < st.rings[name]
        steps.append((k, 0, 0, dst, lo, hi, pad))

    for c in range(width):
        pull(last, c)
    return steps
