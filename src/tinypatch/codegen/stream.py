"""The pull order of a stream stage, flattened into a constant step table for C.

A stream stage (:mod:`tinypatch.planning.stream`) computes each row strip of its output
column by column, each operator pulling the new columns of its input windows from their
producers depth first (``_Stream`` in :mod:`tinypatch.runtime.plan_executor`). That order
does not depend on the strip's rows, so it is simulated here once, at generation time, and
the C code walks it with a flat loop per strip: no recursion on the target.

Each row of the table is one step, ``STEP_WIDTH`` int16 values:

* compute ``{k, 0, 0, dst, lo, hi, pad}``: op k computes one output column, written at column
  ``dst`` of its window buffer (of the stage output itself for the last op), from columns
  ``[lo, hi)`` of its activation inputs (tensor coordinates; a window buffer always holds
  them from its column 0 on) with ``pad`` zero columns before them;
* slide ``{k, keep, shift, 0, 0, 0, 0}``: before op k computes new columns into its window
  buffer, its ``keep`` columns starting at column ``shift`` move to the front (a memmove per row).
"""

from __future__ import annotations

from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.planning.stream import column_maps
from tinypatch.planning.tiles import StageTiling

# columns of a step-table row
STEP_OP, STEP_KEEP, STEP_SHIFT, STEP_DST, STEP_LO, STEP_HI, STEP_PAD = range(7)
STEP_WIDTH = 7


def column_steps(graph: Graph, st: StageTiling) -> list[tuple[int, ...]]:
    """Steps computing one row strip of stream stage ``st``, in the Python executor's order."""
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
