"""The analytic MCUNetV2 memory figure of layer-by-layer inference.

Analytic convention (MCUNetV2, Fig. 1), used for the ``analytic`` figures only:

* every activation costs 1 byte per element (int8), whatever its dtype in the graph;
* an op costs its non-constant inputs plus its outputs; weights stay in flash;
* a DEPTHWISE_CONV_2D with one output channel per input channel runs in place: max(in, out);
* a residual block's skip tensor (the input of an ADD that also feeds the chain of ops ending
  at the ADD's other input) is added to every op of that chain that does not read it
  itself, except the chain's last op (the projection conv). So in an inverted residual block
  it is counted while the depthwise conv (and any SE ops) run; at the expand conv it is that
  op's own input, counted once;
* ``include_input`` / ``include_output`` = False count the model input / output as 0 bytes
  (e.g. a patch-based first stage streams the input image).

The layer-by-layer memory report, which also places the activations in an arena, is
:mod:`tinypatch.report.layer_memory`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinypatch.ir import Graph, Op
from tinypatch.ir.optable import op_def

ACT_BYTES = 1  # analytic convention: int8 activations


@dataclass(frozen=True)
class AnalyticMemory:
    """Analytic bytes of each op (schedule order) and the peak."""

    per_op: list[int]
    skip_bytes: list[int]  # the part of per_op due to live residual skip tensors
    peak: int
    peak_index: int  # op index of the (first) peak; -1 for an empty graph


def _ancestors(graph: Graph, tensor: str, producers: dict[str, int]) -> set[str]:
    """Activation tensors from which ``tensor`` is computed (itself included)."""
    seen, stack = {tensor}, [tensor]
    while stack:
        t = stack.pop()
        if t in producers:
            for s in graph.ops[producers[t]].inputs:
                if s and not graph.tensors[s].is_const and s not in seen:
                    seen.add(s)
                    stack.append(s)
    return seen


def residual_skips(graph: Graph) -> dict[int, list[str]]:
    """Op index -> skip tensors counted as live at that op under the analytic convention.

    A skip is an input of a two-activation ADD from which the ADD's other input is computed;
    the ops on the paths between them form the chain.
    """
    producers = graph.producers()
    skips: dict[int, list[str]] = {}
    for op in graph.ops:
        acts = [t for t in op.inputs if t and not graph.tensors[t].is_const]
        if not op_def(op.type).residual_join or len(acts) != 2 or acts[0] == acts[1]:
            continue
        for skip, main in (acts, acts[::-1]):
            anc = _ancestors(graph, main, producers)
            if main in producers and skip in anc:
                last = producers[main]
                desc = {skip}
                for i in range(producers.get(skip, -1) + 1, last):
                    cur = graph.ops[i]
                    if any(t in desc for t in cur.inputs):
                        desc.update(cur.outputs)
                        if skip not in cur.inputs and any(t in anc for t in cur.outputs):
                            skips.setdefault(i, []).append(skip)
                break
    return skips


def op_bytes(graph: Graph, op: Op, nbytes: dict[str, int]) -> int:
    """Analytic bytes of one op: inputs + outputs, or max(in, out) for an in-place depthwise conv."""
    ins = [nbytes[t] for t in op.inputs if t and not graph.tensors[t].is_const]
    outs = [nbytes[t] for t in op.outputs]
    in_place = (op_def(op.type).analytic_inplace and len(ins) == 1 and op.outputs
                and graph.tensors[op.inputs[0]].shape[-1] == graph.tensors[op.outputs[0]].shape[-1])
    return max(sum(ins), sum(outs)) if in_place else sum(ins) + sum(outs)


def analytic_memory(graph: Graph, include_input: bool = True, include_output: bool = True,
                    elements: dict[str, int] | None = None, extra: list[int] | None = None) -> AnalyticMemory:
    """Per-op bytes and peak under the analytic MCUNetV2 convention (module docstring).

    ``elements`` overrides the element count of some tensors (a patch stage's tile regions);
    ``extra`` adds bytes held at each op besides its inputs, outputs and skips (buffers a
    patch stage keeps across tiles).
    """
    nbytes = {n: t.size * ACT_BYTES for n, t in graph.tensors.items() if not t.is_const}
    nbytes.update({n: e * ACT_BYTES for n, e in (elements or {}).items()})
    for t in (graph.inputs if not include_input else []) + (graph.outputs if not include_output else []):
        nbytes[t] = 0
    skips = residual_skips(graph)
    skip_bytes = [sum(nbytes[s] for s in skips.get(i, [])) for i in range(len(graph.ops))]
    per_op = [op_bytes(graph, op, nbytes) + skip_bytes[i] + (extra[i] if extra else 0)
              for i, op in enumerate(graph.ops)]
    peak = max(per_op, default=0)
    return AnalyticMemory(per_op, skip_bytes, peak, per_op.index(peak) if per_op else -1)
