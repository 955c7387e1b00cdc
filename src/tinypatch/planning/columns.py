"""Column geometry of a stream stage (:mod:`tinypatch.planning.stream`): which operators can
stream column by column and how wide each internal tensor's window buffer is."""

from __future__ import annotations

import numpy as np

from tinypatch.analysis.regions import AxisMap, axis_maps, reads_nchw, writes_nchw
from tinypatch.errors import PlanError
from tinypatch.ir import Graph


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
    if maps is None or len(op.outputs) != 1 or reads_nchw(graph, op) or writes_nchw(graph, op):
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


def single_consumer(graph: Graph, tensor: str, consumers: dict[str, list[int]] | None = None) -> int | None:
    """The one op reading ``tensor`` (None if it has several, none, or is a model output);
    ``consumers``: ``graph.consumers()`` if already at hand."""
    users = set((graph.consumers() if consumers is None else consumers).get(tensor, []))
    return next(iter(users)) if len(users) == 1 and tensor not in graph.outputs else None


def output_window(graph: Graph, k: int, consumers: dict[str, list[int]] | None = None) -> int:
    """Window-buffer width of op k's output streamed into its one consumer (0: it cannot stream)."""
    op = graph.ops[k]
    q = single_consumer(graph, op.outputs[0], consumers) if len(op.outputs) == 1 else None
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
