"""Per-operator compute and size figures: MACs, element operations, activation and parameter bytes.

MACs count multiply-accumulates of the matrix ops only:

* ``CONV_2D``: out_h * out_w * out_c * kh * kw * in_c (``in_c`` read from the filter, so a
  grouped filter counts its group width);
* ``DEPTHWISE_CONV_2D``: out_h * out_w * out_c * kh * kw;
* ``FULLY_CONNECTED``: out_elements * in_features (in * out for batch 1);
* ``TRANSPOSE_CONV``: (input row, tap row) pairs landing inside the output times the same
  along W, times in_c * out_c (what the scatter computes).

Every other op reports 0 MACs; its arithmetic is in ``elem_ops`` (one per output element
for element-wise ops, kh*kw per output element for pools, one per input element for MEAN/SOFTMAX).
Activation bytes use each tensor's own dtype; parameter bytes are the op's constant
inputs (weights, bias, shape/axis tensors), which live in flash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinypatch.analysis.regions import transpose_geometry, window_geometry
from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import pad_before
from tinypatch.ir.optable import ElemOps, Macs, op_def


@dataclass(frozen=True)
class OpCost:
    """Compute and size figures of one operator."""

    index: int
    op_type: str
    name: str
    out_shape: tuple[int, ...]
    in_bytes: int  # non-constant inputs, own dtype
    out_bytes: int
    macs: int
    param_bytes: int  # constant inputs (flash)
    elem_ops: int = 0  # non-MAC arithmetic (adds, muls, pool/mean sums, softmax)


@dataclass(frozen=True)
class CostTotals:
    """Sums over a list of :class:`OpCost` (``param_bytes`` counts a shared constant per use)."""

    macs: int
    elem_ops: int
    param_bytes: int


def _elems(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def op_macs(graph: Graph, op: Op) -> int:
    """Multiply-accumulates of one op (0 for ops other than conv, depthwise, transpose conv and FC)."""
    rule = op_def(op.type).macs
    if rule == Macs.NONE:
        return 0
    out = graph.tensors[op.outputs[0]]
    w = graph.tensors[op.inputs[1]].shape
    if rule == Macs.TRANSPOSE:  # filter [out_c, kh, kw, in_c]; (input, tap) pairs landing inside the output
        x, (kernel, stride, padding) = graph.tensors[op.inputs[2]].shape, transpose_geometry(graph, op)
        taps = [_scatter_taps(x[1 + ax], out.shape[1 + ax], kernel[ax], stride[ax], padding) for ax in (0, 1)]
        return x[0] * taps[0] * taps[1] * w[0] * w[3]
    if rule == Macs.CONV:  # filter [out_c, kh, kw, in_c]
        return _elems(out.shape) * w[1] * w[2] * w[3]
    if rule == Macs.DEPTHWISE:  # filter [1, kh, kw, out_c]
        return _elems(out.shape) * w[1] * w[2]
    return out.size * w[-1]  # FC filter [out, in]


def _scatter_taps(in_size: int, out_size: int, kernel: int, stride: int, padding: str) -> int:
    """(input index, tap) pairs of a transpose conv that land inside the output along one axis."""
    pad = pad_before(out_size, kernel, stride, 1, padding)
    pos = np.arange(in_size)[:, None] * stride - pad + np.arange(kernel)[None, :]
    return int(((pos >= 0) & (pos < out_size)).sum())


def op_elem_ops(graph: Graph, op: Op) -> int:
    """Arithmetic outside MACs: element-wise, pooling, reduction and softmax work."""
    d = op_def(op.type)
    out_n = sum(graph.tensors[t].size for t in op.outputs)
    if d.elem_ops == ElemOps.PER_OUTPUT:
        return out_n
    if d.elem_ops == ElemOps.PER_WINDOW:
        assert d.window is not None
        kh, kw = window_geometry(graph, op, d.window)[0]
        return out_n * kh * kw
    if d.elem_ops == ElemOps.PER_INPUT:
        return graph.tensors[op.inputs[0]].size
    return 0


def op_costs(graph: Graph) -> list[OpCost]:
    """One :class:`OpCost` per op, in schedule order."""
    costs = []
    for i, op in enumerate(graph.ops):
        ins = [graph.tensors[t] for t in op.inputs if t]
        outs = [graph.tensors[t] for t in op.outputs]
        costs.append(OpCost(
            index=i, op_type=op.type, name=op.name,
            out_shape=outs[0].shape if outs else (),
            in_bytes=sum(t.nbytes for t in ins if not t.is_const),
            out_bytes=sum(t.nbytes for t in outs),
            macs=op_macs(graph, op),
            param_bytes=sum(t.nbytes for t in ins if t.is_const),
            elem_ops=op_elem_ops(graph, op),
        ))
    return costs


def cost_totals(costs: list[OpCost]) -> CostTotals:
    """Total MACs, element operations and per-op parameter bytes."""
    return CostTotals(
        macs=sum(c.macs for c in costs),
        elem_ops=sum(c.elem_ops for c in costs),
        param_bytes=sum(c.param_bytes for c in costs),
    )


def flash_bytes(graph: Graph) -> int:
    """Bytes of every constant tensor the ops read, each counted once (weights stay in flash)."""
    used = {t for op in graph.ops for t in op.inputs if t and graph.tensors[t].is_const}
    return sum(graph.tensors[t].nbytes for t in used)
