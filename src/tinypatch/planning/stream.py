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

from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.planning.columns import column_maps
from tinypatch.planning.tiles import StageTiling

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
