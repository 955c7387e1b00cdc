"""The IR's contract: one validation pass every frontend runs before a graph is used.

A model file is input from a stranger. :func:`validate` checks, once, everything the rest of
tinypatch relies on, and raises :class:`~tinypatch.errors.GraphError` with one readable
sentence naming the operator or tensor otherwise:

* graph: inputs and outputs exist, at least one output, inputs are not constants nor written
  by an operator, outputs are computed by an operator (not constants, not graph inputs),
  every tensor written once and read after it is written;
* tensors: rank <= 6, no zero-size activations, no tensor above ``max_tensor_bytes``
  (:data:`DEFAULT_MAX_TENSOR_BYTES`), nor any padded conv/pool input or conv window matrix
  (im2col) above it at 8 bytes per element (the kernels' working copies), constant data matching the
  shape, quantization with finite scales > 0, zero points in the dtype's range,
  per-channel parameters only on constants along an existing axis of the right length;
* operators (:data:`OP_RULES`): arity, absent required inputs, ranks, attributes in range
  (strides, dilations, filter sizes, depth multiplier, paddings, axes), constant operands,
  and the declared output shape against the shape the operator computes.

Rules follow what TFLite's reference kernels check in ``Prepare`` (same conditions, our words),
and add what tinypatch needs to run a model in Python and in C: a depthwise
``depth_multiplier`` must agree with the channels (LiteRT ignores it) and the size limit. A
conv without a bias is accepted (TFLite Micro runs it; LiteRT's int8 conv insists on one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinypatch.errors import GraphError
from tinypatch.ir.graph import Graph, Op, Tensor
from tinypatch.ir.ops import ACTIVATIONS, out_size, pad_before, with_defaults
from tinypatch.ir.optable import OPS, op_def

DEFAULT_MAX_TENSOR_BYTES = 64 * 2**20  # 64 MiB: 30x the largest activation of the shared models
MAX_RANK = 6
INT16_MAX = 32767  # TFLite's reference kernels refuse larger strides and dilations
_ZP_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
_INT = ("int32", "int64")
ACTIVATION_DTYPES = ("int8", "float32", "int32")  # what the kernels compute and move
# ops whose activation inputs and output share one dtype (the others convert: QUANTIZE, DEQUANTIZE)
_SAME_DTYPE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MUL",
               "MEAN", "PAD", "RESHAPE", "SOFTMAX", "TRANSPOSE", "RESIZE_NEAREST_NEIGHBOR", "CONCATENATION",
               "LOGISTIC", "HARD_SWISH", "RELU", "RELU6")

Shape = tuple[int, ...]


class _Check:
    """One operator under validation: its tensors and a way to refuse it."""

    def __init__(self, graph: Graph, index: int, op: Op, limit: int) -> None:
        self.g, self.k, self.op, self.limit = graph, index, op, limit
        self.attrs = with_defaults(op.type, op.attrs)

    def fail(self, detail: str) -> GraphError:
        return GraphError(f"operator {self.k} ({self.op.type}): {detail}")

    def t(self, pos: int) -> Tensor | None:
        names = self.op.inputs
        return self.g.tensors[names[pos]] if pos < len(names) and names[pos] else None

    def need(self, pos: int, what: str) -> Tensor:
        t = self.t(pos)
        if t is None:
            raise self.fail(f"its {what} (input {pos}) is absent")
        return t

    def rank(self, t: Tensor, rank: int, what: str) -> Shape:
        if len(t.shape) != rank:
            raise self.fail(f"{what} must have rank {rank}, got shape {list(t.shape)}")
        return t.shape

    def const(self, pos: int, what: str, dtypes: tuple[str, ...] = _INT) -> np.ndarray:
        t = self.need(pos, what)
        if not t.is_const:
            raise self.fail(f"its {what} must be a constant tensor")
        if t.dtype not in dtypes:
            raise self.fail(f"its {what} must be {' or '.join(dtypes)}, got {t.dtype}")
        return np.asarray(t.data)

    def attr(self, name: str) -> int:
        """A stride, dilation, filter size or depth multiplier: TFLite's reference kernels take 1..INT16_MAX."""
        v = self.attrs.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= INT16_MAX:
            raise self.fail(f"{name}={v!r} (must be an integer from 1 to {INT16_MAX})")
        return int(v)

    def window(self, x: Shape, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int],
               esize: int) -> tuple[int, int]:
        """Output H, W of a SAME/VALID window op; refuses empty outputs and oversized padded inputs."""
        padding = self.attrs.get("padding")
        if padding not in ("SAME", "VALID"):
            raise self.fail(f"padding={padding!r} (must be SAME or VALID)")
        out, padded = [], []
        for n, k, s, d, axis in zip(x[1:3], kernel, stride, dilation, "HW"):
            o = out_size(n, k, s, d, padding)
            if o < 1:
                raise self.fail(f"the {(k - 1) * d + 1}-wide window (kernel {k}, dilation {d}) does not fit "
                                f"the {n}-wide input on axis {axis} with VALID padding")
            before = pad_before(n, k, s, d, padding)
            padded.append(max(n + before, (o - 1) * s + (k - 1) * d + 1))
            out.append(o)
        nbytes = x[0] * padded[0] * padded[1] * x[3] * max(esize, 8)  # kernels pad a 64-bit copy
        if nbytes > self.limit:
            raise self.fail(f"its padded input ({padded[0]}x{padded[1]}, kernel {kernel}, dilation {dilation}) "
                            f"needs {nbytes:,} B of working memory, over the limit of {self.limit:,} B")
        return out[0], out[1]

    def scale(self, t: Tensor) -> float:
        return float(np.max(t.quant.scale)) if t.quant is not None else 1.0

    def requant(self, real: float, what: str) -> None:
        """Fixed-point requantization (``QuantizeMultiplier``) needs a multiplier below 2^31:
        a larger one would shift an int32 left by 32 bits or more (undefined in C)."""
        if self.g.tensors[self.op.outputs[0]].dtype == "int8" and not real < 2.0**31:
            raise self.fail(f"its requantization multiplier {what} = {real:.3g} is not below 2^31")

    def activation(self) -> None:
        act = self.attrs.get("fused_activation_function", "NONE")
        if act not in ACTIVATIONS:
            raise self.fail(f"fused activation {act!r}")


# --- per-operator rules: (min inputs, max inputs, rule returning the output shape) -----------------
def _conv(c: _Check) -> Shape:
    x = c.rank(c.need(0, "input"), 4, "the input")
    w = c.rank(c.need(1, "filter"), 4, "the filter")
    _weights(c, "filter")
    c.activation()
    stride = (c.attr("stride_h"), c.attr("stride_w"))
    dilation = (c.attr("dilation_h"), c.attr("dilation_w"))
    if c.op.type == "CONV_2D":
        cout = w[0]
        if w[3] != x[3]:
            raise c.fail(f"the filter has {w[3]} input channels, the input {x[3]} "
                         "(grouped convolution is not supported)")
    else:
        cout, m = w[3], c.attr("depth_multiplier")
        if w[0] != 1:
            raise c.fail(f"a depthwise filter must be [1, kh, kw, channels], got {list(w)}")
        if x[3] * m != cout:
            raise c.fail(f"input channels {x[3]} x depth_multiplier {m} != filter channels {cout}")
    _bias(c, cout)
    out = c.g.tensors[c.op.outputs[0]]
    c.requant(c.scale(c.t(0)) * c.scale(c.t(1)) / c.scale(out), "input scale x filter scale / output scale")
    oh, ow = c.window(x, (w[1], w[2]), stride, dilation, c.t(0).nbytes // max(c.t(0).size, 1))
    if c.op.type == "CONV_2D":  # the kernel gathers every window into one (im2col) matrix
        nbytes = x[0] * oh * ow * w[1] * w[2] * w[3] * 8
        if nbytes > c.limit:
            raise c.fail(f"its {w[1]}x{w[2]}x{w[3]} windows at {oh}x{ow} output pixels need {nbytes:,} B of "
                         f"working memory, over the limit of {c.limit:,} B")
    return x[0], oh, ow, cout


def _weights(c: _Check, what: str) -> None:
    w, out = c.t(1), c.g.tensors[c.op.outputs[0]]
    if not w.is_const:
        raise c.fail(f"its {what} must be a constant tensor")
    want = "int8" if out.dtype == "int8" else "float32"
    if w.dtype != want:
        raise c.fail(f"the {what} is {w.dtype}, expected {want}")


def _bias(c: _Check, units: int) -> None:
    b = c.t(2)
    if b is not None:
        if not b.is_const:
            raise c.fail("its bias must be a constant tensor")
        want = "int32" if c.g.tensors[c.op.outputs[0]].dtype == "int8" else "float32"
        if b.dtype != want:
            raise c.fail(f"the bias is {b.dtype}, expected {want}")
        if b.shape != (units,):
            raise c.fail(f"the bias has shape {list(b.shape)}, expected [{units}]")


def _pool(c: _Check) -> Shape:
    x = c.rank(c.need(0, "input"), 4, "the input")
    c.activation()
    kernel = (c.attr("filter_h"), c.attr("filter_w"))
    oh, ow = c.window(x, kernel, (c.attr("stride_h"), c.attr("stride_w")), (1, 1), 1)
    return x[0], oh, ow, x[3]


def _fully_connected(c: _Check) -> Shape:
    x = c.need(0, "input")
    w = c.rank(c.need(1, "weights"), 2, "the weights")
    _weights(c, "weights")
    c.activation()
    units, depth = w
    _bias(c, units)
    if depth < 1 or x.size % depth:
        raise c.fail(f"the input's {x.size} values are not a whole number of rows of the weights' depth {depth}")
    if c.attrs.get("keep_num_dims"):
        if not x.shape or x.shape[-1] != depth:
            raise c.fail(f"keep_num_dims needs the input's last axis ({list(x.shape)}) equal to the depth {depth}")
        return (*x.shape[:-1], units)
    return x.size // depth, units


def _binary(c: _Check) -> Shape:
    ta, tb = c.need(0, "first operand"), c.need(1, "second operand")
    a, b = ta.shape, tb.shape
    c.activation()
    s_out = c.scale(c.g.tensors[c.op.outputs[0]])
    if c.op.type == "ADD":
        c.requant(2 * max(c.scale(ta), c.scale(tb)) / (2.0**20 * s_out), "2 max(input scales) / (2^20 output scale)")
    else:
        c.requant(c.scale(ta) * c.scale(tb) / s_out, "input scales / output scale")
    try:
        return tuple(int(d) for d in np.broadcast_shapes(a, b))
    except ValueError:
        raise c.fail(f"operand shapes {list(a)} and {list(b)} do not broadcast") from None


def _same(c: _Check) -> Shape:
    x = c.need(0, "input")
    for key, value in c.attrs.items():  # LEAKY_RELU's alpha, HARD_SIGMOID's alpha and beta
        if isinstance(value, float) and not math.isfinite(value):
            raise c.fail(f"{key}={value!r} (must be finite)")
    if c.op.type == "QUANTIZE" and x.dtype == "int8":
        c.requant(c.scale(x) / c.scale(c.g.tensors[c.op.outputs[0]]), "input scale / output scale")
    return x.shape


def _softmax(c: _Check) -> Shape:
    beta = c.attrs.get("beta")
    if not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise c.fail(f"beta={beta!r} (must be finite and > 0)")
    x = c.need(0, "input").shape
    if not x:
        raise c.fail("the input is a scalar")
    return x


def _mean(c: _Check) -> Shape:
    t = c.need(0, "input")
    x = t.shape
    c.requant(c.scale(t) / c.scale(c.g.tensors[c.op.outputs[0]]), "input scale / output scale")
    axes = c.const(1, "axes").ravel()
    if axes.size == 0 or np.any(axes < -len(x)) or np.any(axes >= len(x)):
        raise c.fail(f"axes {axes.tolist()} out of range for rank {len(x)}")
    reduced = {int(a) % len(x) for a in axes}
    if c.attrs.get("keep_dims"):
        return tuple(1 if i in reduced else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in reduced)


def _pad(c: _Check) -> Shape:
    x = c.need(0, "input").shape
    p = c.const(1, "paddings")
    if p.shape != (len(x), 2):
        raise c.fail(f"paddings of shape {list(p.shape)}, expected [{len(x)}, 2]")
    if np.any(p < 0):
        raise c.fail(f"negative paddings {p.tolist()}")
    if np.any(p > c.limit):
        raise c.fail(f"paddings {p.tolist()} are over the size limit")
    return tuple(int(d + lo + hi) for d, (lo, hi) in zip(x, p.tolist()))


def _reshape(c: _Check) -> Shape:
    x = c.need(0, "input")
    out = c.g.tensors[c.op.outputs[0]]
    if x.size != out.size:
        raise c.fail(f"reshapes {x.size} values ({list(x.shape)}) into {out.size} ({list(out.shape)})")
    return out.shape


def _transpose(c: _Check) -> Shape:
    x = c.need(0, "input").shape
    perm = c.const(1, "permutation").ravel()
    if sorted(perm.tolist()) != list(range(len(x))):
        raise c.fail(f"permutation {perm.tolist()} is not a permutation of the {len(x)} axes")
    return tuple(x[int(i)] for i in perm)


def _resize(c: _Check) -> Shape:
    x = c.rank(c.need(0, "input"), 4, "the input")
    size = c.const(1, "size", ("int32",))
    if size.shape != (2,) or np.any(size < 1):
        raise c.fail(f"size must be two positive integers, got {size.tolist()}")
    return x[0], int(size[0]), int(size[1]), x[3]


def _concat(c: _Check) -> Shape:
    operands = [c.need(i, f"operand {i}") for i in range(len(c.op.inputs))]
    shapes = [t.shape for t in operands]
    s_out = c.scale(c.g.tensors[c.op.outputs[0]])
    c.requant(max(c.scale(t) for t in operands) / s_out, "input scale / output scale")
    rank = len(shapes[0])
    axis = c.attrs.get("axis")
    if not isinstance(axis, (int, np.integer)) or not -rank <= axis < rank:
        raise c.fail(f"axis={axis!r} out of range for rank {rank}")
    c.activation()
    axis = int(axis) % rank
    for s in shapes:
        if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != axis):
            raise c.fail(f"operand shapes {[list(s) for s in shapes]} differ off the axis {axis}")
    return tuple(sum(s[axis] for s in shapes) if i == axis else d for i, d in enumerate(shapes[0]))


@dataclass(frozen=True)
class OpRule:
    """Arity and output-shape rule of one operator type."""

    min_inputs: int
    max_inputs: int
    shape: Callable[[_Check], Shape]


def _broadcast(c: _Check) -> Shape:
    a, b = c.need(0, "first operand").shape, c.need(1, "second operand").shape
    try:
        return tuple(int(d) for d in np.broadcast_shapes(a, b))
    except ValueError:
        raise c.fail(f"operand shapes {list(a)} and {list(b)} do not broadcast") from None


def _transpose_conv(c: _Check) -> Shape:
    c.need(1, "weights")
    c.rank(c.need(2, "input"), 4, "the input")
    shape = c.const(0, "output shape", ("int32",)).ravel()
    if shape.shape != (4,) or np.any(shape < 1):
        raise c.fail(f"output shape must be four positive integers, got {shape.tolist()}")
    return tuple(int(d) for d in shape)


def _declared(c: _Check) -> Shape:
    """Operators whose shapes the numpy kernel checks when prepared: the declared output shape."""
    return c.g.tensors[c.op.outputs[0]].shape


OP_RULES: dict[str, OpRule] = {
    "CONV_2D": OpRule(2, 3, _conv), "DEPTHWISE_CONV_2D": OpRule(2, 3, _conv),
    "FULLY_CONNECTED": OpRule(2, 3, _fully_connected),
    "AVERAGE_POOL_2D": OpRule(1, 1, _pool), "MAX_POOL_2D": OpRule(1, 1, _pool),
    "ADD": OpRule(2, 2, _binary), "MUL": OpRule(2, 2, _binary),
    "MEAN": OpRule(2, 2, _mean), "PAD": OpRule(2, 2, _pad), "RESHAPE": OpRule(1, 2, _reshape),
    "SOFTMAX": OpRule(1, 1, _softmax), "TRANSPOSE": OpRule(2, 2, _transpose),
    "RESIZE_NEAREST_NEIGHBOR": OpRule(2, 2, _resize), "CONCATENATION": OpRule(1, 64, _concat),
    **{t: OpRule(1, 1, _same) for t in ("QUANTIZE", "DEQUANTIZE", "LOGISTIC", "HARD_SWISH", "RELU", "RELU6",
                                         "LEAKY_RELU", "HARD_SIGMOID")},
    "RESIZE_BILINEAR": OpRule(2, 2, _resize), "TRANSPOSE_CONV": OpRule(3, 4, _transpose_conv),
    **{t: OpRule(2, 2, _broadcast) for t in ("MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "PRELU")},
}
_DECLARED = OpRule(1, 8, _declared)  # a table operator with no rule of its own (slices, splits)


# --- the pass ------------------------------------------------------------------------------------
def validate(graph: Graph, max_tensor_bytes: int | None = None) -> Graph:
    """Check ``graph`` against the IR's contract (see the module docstring); returns it.

    ``max_tensor_bytes``: the largest tensor (and padded conv/pool input) accepted, default
    :data:`DEFAULT_MAX_TENSOR_BYTES`. Raises GraphError.
    """
    limit = DEFAULT_MAX_TENSOR_BYTES if max_tensor_bytes is None else int(max_tensor_bytes)
    if limit < 1:
        raise GraphError(f"the tensor size limit must be positive, got {limit}")
    _check_io(graph)
    graph.validate()
    for t in graph.tensors.values():
        _check_tensor(t, limit)
    for k, op in enumerate(graph.ops):
        _check_op(graph, k, op, limit)
    return graph


def _check_io(g: Graph) -> None:
    if not g.outputs:
        raise GraphError("the graph has no outputs: nothing to compute")
    if len(set(g.inputs)) != len(g.inputs) or len(set(g.outputs)) != len(g.outputs):
        raise GraphError("a tensor is listed twice among the graph inputs or outputs")
    for kind, names in (("input", g.inputs), ("output", g.outputs)):
        for n in names:
            if n not in g.tensors:
                raise GraphError(f"graph {kind} {n!r} is not a tensor of the graph")
            if g.tensors[n].is_const:
                raise GraphError(f"graph {kind} {n!r} is a constant tensor")
    produced = {t for op in g.ops for t in op.outputs}
    for n in g.inputs:
        if n in produced:
            raise GraphError(f"graph input {n!r} is written by an operator")
    for n in g.outputs:
        if n in g.inputs:
            raise GraphError(f"graph output {n!r} is a graph input: no operator computes it")
        if n not in produced:
            raise GraphError(f"graph output {n!r} is never computed")


def _check_tensor(t: Tensor, limit: int) -> None:
    where = f"tensor {t.name!r}"
    if len(t.shape) > MAX_RANK:
        raise GraphError(f"{where} has rank {len(t.shape)} (at most {MAX_RANK})")
    if any(d < 0 for d in t.shape):
        raise GraphError(f"{where} has a negative dimension {list(t.shape)}")
    if t.nbytes > limit:
        raise GraphError(f"{where} of shape {list(t.shape)} needs {t.nbytes:,} B, over the tensor size limit "
                         f"of {limit:,} B (raise it with --max-tensor-bytes)")
    if t.is_const:
        if tuple(np.shape(t.data)) != t.shape or np.asarray(t.data).dtype != t.np_dtype:
            raise GraphError(f"{where}: its data ({np.asarray(t.data).dtype} {list(np.shape(t.data))}) does not "
                             f"match its type ({t.dtype} {list(t.shape)})")
    elif t.size == 0:
        raise GraphError(f"{where} is empty (shape {list(t.shape)})")
    elif t.dtype not in ACTIVATION_DTYPES:
        raise GraphError(f"{where} is a {t.dtype} activation (tinypatch runs {', '.join(ACTIVATION_DTYPES)})")
    if t.dtype == "int8" and t.quant is None:
        raise GraphError(f"int8 {where} has no quantization parameters")
    q = t.quant
    if q is None:
        return
    if not (np.all(np.isfinite(q.scale)) and np.all(q.scale > 0)):
        raise GraphError(f"{where} has quantization scale {q.scale[:4].tolist()} (must be finite and > 0)")
    lo, hi = _ZP_RANGE.get(t.dtype, (-(2**31), 2**31 - 1))
    if np.any(q.zero_point < lo) or np.any(q.zero_point > hi):
        raise GraphError(f"{where} has zero point {q.zero_point[:4].tolist()} outside the {t.dtype} range")
    if q.per_channel:
        if not t.is_const:
            raise GraphError(f"{where} is an activation with per-channel quantization")
        if q.axis is None or not 0 <= q.axis < len(t.shape) or t.shape[q.axis] != q.scale.size:
            raise GraphError(f"{where}: {q.scale.size} per-channel scales on axis {q.axis} of shape {list(t.shape)}")


def _check_op(g: Graph, k: int, op: Op, limit: int) -> None:
    c = _Check(g, k, op, limit)
    rule = OP_RULES.get(op.type) or (_DECLARED if op.type in OPS else None)
    if rule is None:
        raise c.fail("not a supported operator")
    n = len(op.inputs)
    if not rule.min_inputs <= n <= rule.max_inputs:
        want = rule.min_inputs if rule.min_inputs == rule.max_inputs else f"{rule.min_inputs} to {rule.max_inputs}"
        raise c.fail(f"has {n} inputs, expected {want}")
    if len(op.outputs) != 1 and not op_def(op.type).multi_output:
        raise c.fail(f"has {len(op.outputs)} outputs, expected 1")
    out = g.tensors[op.outputs[0]]
    acts = [g.tensors[t] for t in op.inputs if t and not g.tensors[t].is_const]
    if not acts:
        raise c.fail("reads no activation (only constants or absent inputs)")
    if op.type in _SAME_DTYPE and any(t.dtype != out.dtype for t in acts):
        raise c.fail(f"reads {'/'.join(t.dtype for t in acts)} but writes {out.dtype}")
    shape = tuple(int(d) for d in rule.shape(c))
    if shape != out.shape:
        raise c.fail(f"its output {out.name!r} is declared {list(out.shape)} but the operator computes {list(shape)}")
