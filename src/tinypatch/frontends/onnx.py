"""ONNX reader: int8 QDQ and QOperator models into the NHWC graph IR.

Both forms are folded into the same quantized IR operators: in QDQ form a float operator
whose operands are DequantizeLinear outputs and whose result feeds one QuantizeLinear
becomes one int8 operator (scales from the DQ/Q nodes); QOperator nodes (``QLinearConv``,
``QLinearAdd``, ``QGemm``...) carry their scales as inputs. The model's input
QuantizeLinear and output DequantizeLinear are stripped: the IR reads and writes int8,
like a TFLite int8 model (the float<->int8 parameters are in ``graph.meta["onnx"]``).

Layout: every rank-4 ONNX tensor (NCHW) is held as NHWC. Each IR tensor remembers the
permutation from its ONNX axes to its IR axes, so a Transpose is a renaming, never a copy,
unless a later operator needs a layout the data is not in. The IR records
``graph.meta["expected_arith"] = "onnxruntime"``: the arithmetic the model was validated with.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tinypatch.errors import ModelLoadError, TinypatchError, UnsupportedOperatorError
from tinypatch.ir import Graph, Op, QuantParams, Tensor
from tinypatch.ir.ops import out_size, pad_before

NCHW_TO_NHWC = (0, 2, 3, 1)
IDENTITY4 = (0, 1, 2, 3)
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool"}
# operators that only move int8 bytes (same quantization in and out)
_MOVE = ("MaxPool", "Reshape", "Flatten", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Pad", "Resize",
         "Slice")


def _onnx():
    try:
        import onnx  # noqa: PLC0415 (optional dependency)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ModelLoadError("reading .onnx files needs the 'onnx' package: pip install 'tinypatch[onnx]'") from e
    return onnx


@dataclass
class Operand:
    """An int8 (or int32 constant) value as an IR operator sees it."""

    name: str = ""  # IR tensor name of an activation ('' for a constant)
    quant: QuantParams | None = None
    data: np.ndarray | None = None  # ONNX-layout data of a constant
    perm: tuple[int, ...] = ()  # IR axes = ONNX axes permuted by perm (activations)

    @property
    def is_const(self) -> bool:
        return self.data is not None


def _q(scale: np.ndarray, zp: np.ndarray | None, axis: int | None = None) -> QuantParams:
    scale = np.atleast_1d(np.asarray(scale, np.float32))
    zp = np.zeros(scale.shape, np.int64) if zp is None else np.atleast_1d(np.asarray(zp)).astype(np.int64)
    return QuantParams(scale, zp, axis if scale.size > 1 else None)


def _inverse(p: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(p)
    for i, a in enumerate(p):
        inv[a] = i
    return tuple(inv)


class _Importer:
    def __init__(self, model: Any, name: str) -> None:
        onnx = _onnx()
        self.nh = onnx.numpy_helper
        self.model = model
        self.g = Graph(name)
        # quantized by onnxruntime unless our own quantizer (onnx_quantize.py) marked the file
        marks = {p.key: p.value for p in model.metadata_props}
        self.g.meta["expected_arith"] = marks.get("tinypatch.arith", "onnxruntime")
        self.g.meta["onnx"] = {"inputs": {}, "outputs": {}}
        graph = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: self.nh.to_array(t) for t in graph.initializer}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.elem: dict[str, int] = {}
        for vi in (*graph.value_info, *graph.input, *graph.output):
            tt = vi.type.tensor_type
            if tt.HasField("shape"):
                self.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
            self.elem[vi.name] = tt.elem_type
        self.acts: dict[str, Operand] = {}  # ONNX tensor -> int8 IR activation
        self.deq: dict[str, Operand] = {}  # float ONNX tensor -> the int8 value it dequantizes
        self.done: set[int] = set()
        self.nodes = list(graph.node)
        self.users: dict[str, list[int]] = {}
        for i, n in enumerate(self.nodes):
            for t in n.input:
                self.users.setdefault(t, []).append(i)

    # --- errors -----------------------------------------------------------------------
    def fail(self, node: Any, detail: str) -> None:
        raise UnsupportedOperatorError(node.op_type, self.nodes.index(node), f"{node.name or node.output[0]}: {detail}")

    # --- attributes and constants --------------------------------------------------------
    def attrs(self, node: Any) -> dict[str, Any]:
        return {a.name: _onnx().helper.get_attribute_value(a) for a in node.attribute}

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    # --- values -------------------------------------------------------------------------
    def operand(self, name: str, node: Any) -> Operand:
        """The int8 operand behind ONNX tensor ``name`` (an activation, a DQ'd value or a constant)."""
        if name in self.acts:
            return self.acts[name]
        if name in self.deq:
            return self.deq[name]
        if name in self.consts:
            return Operand(data=self.consts[name])
        self.fail(node, f"input {name!r} is a float tensor: float-only operators in an int8 model are not supported")
        raise AssertionError

    def new_act(self, onnx_name: str, ir_shape: tuple[int, ...], quant: QuantParams, perm: tuple[int, ...],
                dtype: str = "int8") -> Operand:
        name = self.g.unique_name(onnx_name or "t")
        self.g.add_tensor(Tensor(name, ir_shape, dtype, quant))
        op = Operand(name=name, quant=quant, perm=perm)
        self.acts[onnx_name] = op
        return op

    def add_const(self, base: str, data: np.ndarray, quant: QuantParams | None = None) -> str:
        name = self.g.unique_name(base)
        dtype = {np.dtype(np.int8): "int8", np.dtype(np.int32): "int32"}.get(data.dtype, str(data.dtype))
        self.g.add_tensor(Tensor(name, data.shape, dtype, quant, np.ascontiguousarray(data)))
        return name

    def ir_shape(self, a: Operand) -> tuple[int, ...]:
        return self.g.tensors[a.name].shape

    def onnx_shape(self, a: Operand) -> tuple[int, ...]:
        ir = self.ir_shape(a)
        out = [0] * len(ir)
        for i, ax in enumerate(a.perm):
            out[ax] = ir[i]
        return tuple(out)

    def as_layout(self, a: Operand, perm: tuple[int, ...], node: Any) -> Operand:
        """``a`` with its IR axes in ``perm`` order (a TRANSPOSE when they are not)."""
        if a.perm == perm:
            return a
        # ir_new = onnx.transpose(perm) = ir_old.transpose(q) with q[i] = position of perm[i] in a.perm
        q = tuple(a.perm.index(ax) for ax in perm)
        ir = self.ir_shape(a)
        shape = tuple(ir[i] for i in q)
        keep = next((k for k in range(len(q)) if q[k] != k), len(q))  # leading axes that stay put
        src, tq = a.name, q
        if len(q) > 4:  # merge the leading axes that stay put: a rank <= 4 transpose moves the rest
            if len(q) - keep > 3:
                self.fail(node, f"needs a rank-{len(q)} transpose")
            lead = int(np.prod(ir[:keep], dtype=np.int64))
            src = self._reshape_to(a.name, (lead, *ir[keep:]), a.quant)
            tq = (0, *(i - keep + 1 for i in q[keep:]))
        src_shape = self.g.tensors[src].shape
        t_shape = tuple(src_shape[i] for i in tq)
        perm_name = self.add_const(f"{a.name}_perm", np.array(tq, np.int32))
        out = self.g.unique_name(f"{a.name}_t")
        self.g.add_tensor(Tensor(out, t_shape, "int8", a.quant))
        self.g.add_op(Op("TRANSPOSE", [src, perm_name], [out]))
        if t_shape != shape:
            out = self._reshape_to(out, shape, a.quant)
        return Operand(name=out, quant=a.quant, perm=perm)

    def _reshape_to(self, name: str, shape: tuple[int, ...], quant: QuantParams | None) -> str:
        shape_name = self.add_const(f"{name}_shape", np.array(shape, np.int32))
        out = self.g.unique_name(f"{name}_r")
        self.g.add_tensor(Tensor(out, shape, "int8", quant))
        self.g.add_op(Op("RESHAPE", [name, shape_name], [out]))
        return out

    def emit(self, op_type: str, inputs: list[str], out: str, shape: tuple[int, ...], quant: QuantParams,
             perm: tuple[int, ...], attrs: dict[str, Any] | None = None, node: Any = None) -> Operand:
        o = self.new_act(out, shape, quant, perm)
        self.g.add_op(Op(op_type, inputs, [o.name], dict(attrs or {}), name=(node.name if node is not None else "")))
        return o


def _is_nhwc_input(imp: _Importer, name: str) -> bool:
    """Does a rank-4 graph input reach a Transpose(0,3,1,2) through only Q/DQ nodes (an NHWC model)?"""
    frontier = [name]
    while frontier:
        t = frontier.pop()
        for i in imp.users.get(t, []):
            n = imp.nodes[i]
            if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
                frontier.append(n.output[0])
            elif n.op_type == "Transpose" and t == name and tuple(imp.attrs(n).get("perm", ())) == (0, 3, 1, 2):
                return True
            elif n.op_type == "Transpose" and tuple(imp.attrs(n).get("perm", ())) == (0, 3, 1, 2):
                return True
    return False


# --- QOperator nodes: (float operator, [(data, scale, zp) input positions], (scale, zp) output positions)
_QOPS: dict[str, tuple[str, list[tuple[int, int, int]], tuple[int, int]]] = {
    "QLinearConv": ("Conv", [(0, 1, 2), (3, 4, 5), (8, -1, -1)], (6, 7)),
    "QLinearMatMul": ("MatMul", [(0, 1, 2), (3, 4, 5)], (6, 7)),
    "QGemm": ("Gemm", [(0, 1, 2), (3, 4, 5), (6, -1, -1)], (7, 8)),
    "QLinearAdd": ("Add", [(0, 1, 2), (3, 4, 5)], (6, 7)),
    "QLinearMul": ("Mul", [(0, 1, 2), (3, 4, 5)], (6, 7)),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", [(0, 1, 2)], (3, 4)),
    "QLinearAveragePool": ("AveragePool", [(0, 1, 2)], (3, 4)),
    "QLinearSigmoid": ("Sigmoid", [(0, 1, 2)], (3, 4)),
    "QLinearLeakyRelu": ("LeakyRelu", [(0, 1, 2)], (3, 4)),
}


def _window(imp: _Importer, node: Any, x: Operand, kernel: tuple[int, int], a: dict[str, Any],
            pad_value_ok: bool = True) -> tuple[Operand, dict[str, Any], tuple[int, int]]:
    """Stride/dilation attributes, SAME/VALID padding (a PAD op before when the ONNX pads are
    neither) and the output size."""
    _, h, w, _ = imp.ir_shape(x)
    strides = tuple(a.get("strides", (1, 1)))
    dil = tuple(a.get("dilations", (1, 1)))
    if a.get("ceil_mode", 0):
        imp.fail(node, "ceil_mode=1 is not supported")
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "VALID"):
        padding = "SAME" if auto == "SAME_UPPER" else "VALID"
        pads = None
    elif auto == "NOTSET":
        pads = tuple(a.get("pads", (0, 0, 0, 0)))
        padding = None
    else:
        imp.fail(node, f"auto_pad={auto} is not supported")
    attrs = dict(stride_h=strides[0], stride_w=strides[1])
    if pads is not None:
        (pt, pl, pb, pr) = pads
        same = all(
            (n + p0 + p1 - ((k - 1) * d + 1)) // s + 1 == out_size(n, k, s, d, "SAME")
            and p0 == pad_before(n, k, s, d, "SAME")
            for n, k, s, d, p0, p1 in zip((h, w), kernel, strides, dil, (pt, pl), (pb, pr)))
        if not any(pads):
            padding = "VALID"
        elif same:
            padding = "SAME"
        elif not pad_value_ok:
            imp.fail(node, f"pads {list(pads)} on a {h}x{w} input differ from TFLite's SAME padding")
        else:
            pname = imp.add_const(f"{x.name}_pads", np.array([[0, 0], [pt, pb], [pl, pr], [0, 0]], np.int32))
            shape = (1, h + pt + pb, w + pl + pr, imp.ir_shape(x)[3])
            x = imp.emit("PAD", [x.name, pname], f"{x.name}_padded", shape, x.quant, x.perm)
            h, w = shape[1:3]
            padding = "VALID"
    attrs["padding"] = padding
    oh, ow = (out_size(n, k, s, d, padding) for n, k, s, d in zip((h, w), kernel, strides, dil))
    return x, attrs, (oh, ow)


def _conv(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    a = imp.attrs(node)
    x = imp.as_layout(ops[0], NCHW_TO_NHWC, node)
    wt = ops[1]
    if not wt.is_const or wt.data.dtype != np.int8 or len(wt.data.shape) != 4:
        imp.fail(node, "weights must be a constant int8 [O, I, kh, kw] tensor")
    w = wt.data
    cin = imp.ir_shape(x)[3]
    cout, per_group, kh, kw = w.shape
    group = int(a.get("group", 1))
    dil = tuple(a.get("dilations", (1, 1)))
    x, attrs, (oh, ow) = _window(imp, node, x, (kh, kw), a)
    attrs.update(dilation_h=dil[0], dilation_w=dil[1], fused_activation_function="NONE")
    wq = wt.quant
    if group == 1:
        op_type, filt, axis = "CONV_2D", w.transpose(0, 2, 3, 1), 0
    elif group == cin and per_group == 1:
        op_type, filt, axis = "DEPTHWISE_CONV_2D", w.reshape(cout, kh, kw).transpose(1, 2, 0)[None], 3
        attrs["depth_multiplier"] = cout // cin
    else:
        imp.fail(node, f"grouped convolution (group={group}, {cin} input channels) is not supported")
    fq = QuantParams(wq.scale, wq.zero_point, axis if wq.scale.size > 1 else None)
    inputs = [x.name, imp.add_const(f"{node.name or out}_filter", filt, fq)]
    if len(ops) > 2 and ops[2].data is not None:
        b = ops[2].data
        if b.dtype != np.int32:
            imp.fail(node, f"bias must be int32, got {b.dtype}")
        bq = QuantParams(x.quant.scale[0] * wq.scale, np.zeros(wq.scale.size, np.int64), 0 if wq.scale.size > 1 else None)
        inputs.append(imp.add_const(f"{node.name or out}_bias", b, bq))
    imp.emit(op_type, inputs, out, (1, oh, ow, cout), oq, NCHW_TO_NHWC, attrs, node)


def _fc(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    a = imp.attrs(node)
    x, wt = ops[0], ops[1]
    if x.is_const or len(imp.ir_shape(x)) != 2 or not wt.is_const or wt.data.ndim != 2:
        imp.fail(node, "needs a [N, K] activation times a constant [K, N] or (transB) [N, K] int8 matrix")
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        imp.fail(node, "transA, alpha or beta other than the defaults")
    trans = node.op_type == "Gemm" and a.get("transB", 0)
    w = wt.data if trans else wt.data.T
    axis = 0 if trans else 1
    fq = QuantParams(wt.quant.scale, wt.quant.zero_point, 0 if wt.quant.scale.size > 1 and wt.quant.axis in (axis, None) else None)
    x = imp.as_layout(x, (0, 1), node)
    inputs = [x.name, imp.add_const(f"{node.name or out}_weights", np.ascontiguousarray(w), fq)]
    if len(ops) > 2 and ops[2].data is not None:
        inputs.append(imp.add_const(f"{node.name or out}_bias", ops[2].data.astype(np.int32)))
    imp.emit("FULLY_CONNECTED", inputs, out, (imp.ir_shape(x)[0], w.shape[0]), oq, (0, 1),
             dict(fused_activation_function="NONE", keep_num_dims=False), node)


def _ir_const(imp: _Importer, o: Operand, rank: int, base: str) -> str:
    """A constant operand of an element-wise op, broadcast to ``rank`` and laid out NHWC when 4-D."""
    d = o.data.reshape((1,) * (rank - o.data.ndim) + o.data.shape)
    if rank == 4:
        d = d.transpose(NCHW_TO_NHWC)
    return imp.add_const(base, np.ascontiguousarray(d), o.quant)


def _binary(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    acts = [o for o in ops if not o.is_const]
    if not acts:
        imp.fail(node, "both operands are constants")
    rank = max(len(imp.ir_shape(o)) for o in acts)
    target = NCHW_TO_NHWC if rank == 4 else tuple(range(rank))
    names, shapes = [], []
    for k, o in enumerate(ops):
        if o.is_const:
            if o.quant is None:
                imp.fail(node, "a constant operand must be quantized int8")
            names.append(_ir_const(imp, o, rank, f"{node.name or out}_c{k}"))
        else:
            if len(imp.ir_shape(o)) != rank:
                imp.fail(node, "operands of different ranks")
            names.append(imp.as_layout(o, target, node).name)
        shapes.append(imp.g.tensors[names[-1]].shape)
    op_type = {"Add": "ADD", "Mul": "MUL"}[node.op_type]
    imp.emit(op_type, names, out, tuple(np.broadcast_shapes(*shapes)), oq, target,
             dict(fused_activation_function="NONE"), node)


def _mean(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    x = ops[0]
    a = imp.attrs(node)
    if len(imp.ir_shape(x)) != 4:
        imp.fail(node, "needs a 4-D input")
    keep = True
    if node.op_type == "ReduceMean":
        axes = a.get("axes")
        if axes is None and len(node.input) > 1:
            axes = imp.const(node.input[1])
        if axes is None or sorted(int(v) % 4 for v in axes) != [2, 3]:
            imp.fail(node, f"only the mean over H and W (axes 2, 3) is supported, got {axes}")
        keep = bool(a.get("keepdims", 1))
    x = imp.as_layout(x, NCHW_TO_NHWC, node)
    n, _, _, c = imp.ir_shape(x)
    axes_name = imp.add_const(f"{x.name}_axes", np.array([1, 2], np.int32))
    shape, perm = ((n, 1, 1, c), NCHW_TO_NHWC) if keep else ((n, c), (0, 1))
    imp.emit("MEAN", [x.name, axes_name], out, shape, oq, perm, dict(keep_dims=keep), node)


def _pool(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    a = imp.attrs(node)
    x = imp.as_layout(ops[0], NCHW_TO_NHWC, node)
    k = tuple(a["kernel_shape"])
    is_max = node.op_type == "MaxPool"
    if is_max and (len(node.output) > 1 and node.output[1]):
        imp.fail(node, "the Indices output is not supported")
    if is_max and tuple(a.get("dilations", (1, 1))) != (1, 1):
        imp.fail(node, "dilated pooling is not supported")
    if not is_max and a.get("count_include_pad", 0) and any(a.get("pads", ())):
        imp.fail(node, "count_include_pad=1 with padding is not supported")
    x, attrs, (oh, ow) = _window(imp, node, x, k, {**a, "dilations": (1, 1)}, pad_value_ok=False)
    attrs.update(filter_h=k[0], filter_w=k[1], fused_activation_function="NONE")
    op_type = "MAX_POOL_2D" if is_max else "AVERAGE_POOL_2D"
    imp.emit(op_type, [x.name], out, (1, oh, ow, imp.ir_shape(x)[3]), oq, NCHW_TO_NHWC, attrs, node)


def _concat(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    if any(o.is_const for o in ops):
        imp.fail(node, "constant operands are not supported")
    rank = len(imp.ir_shape(ops[0]))
    target = NCHW_TO_NHWC if rank == 4 else tuple(range(rank))
    xs = [imp.as_layout(o, target, node) for o in ops]
    axis = int(imp.attrs(node)["axis"]) % rank
    ir_axis = target.index(axis)
    shape = list(imp.ir_shape(xs[0]))
    shape[ir_axis] = sum(imp.ir_shape(o)[ir_axis] for o in xs)
    imp.emit("CONCATENATION", [o.name for o in xs], out, tuple(shape), oq, target,
             dict(axis=ir_axis, fused_activation_function="NONE"), node)


def _same_memory_order(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """Are the bytes of an ONNX tensor of ``shape`` held in ``perm`` order the same as in ONNX order?"""
    big = [ax for ax in range(len(shape)) if shape[ax] != 1]
    return [ax for ax in perm if shape[ax] != 1] == big


def _reshape(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    x = ops[0]
    src = imp.onnx_shape(x)
    target = _target_shape(imp, node, src)
    split = (0, 3, 4, 1, 2)  # [N, g, C/g, H, W] held channel-last: [N, H, W, g, C/g]
    if (len(src) == 4 and x.perm == NCHW_TO_NHWC and len(target) == 5 and target[0] == src[0]
            and tuple(target[3:]) == tuple(src[2:]) and target[1] * target[2] == src[1]):
        shape = tuple(target[p] for p in split)
        imp.emit("RESHAPE", [x.name, imp.add_const(f"{x.name}_shape", np.array(shape, np.int32))], out, shape,
                 oq, split, {}, node)
        return
    if (len(src) == 5 and len(target) == 4 and target[0] == src[0] and tuple(target[2:]) == tuple(src[3:])
            and target[1] == src[1] * src[2]):  # channel groups merged back (a channel shuffle's end)
        x = imp.as_layout(x, split, node)
        shape = (target[0], target[2], target[3], target[1])
        imp.emit("RESHAPE", [x.name, imp.add_const(f"{x.name}_shape", np.array(shape, np.int32))], out, shape,
                 oq, NCHW_TO_NHWC, {}, node)
        return
    if not _same_memory_order(imp.onnx_shape(x), x.perm):
        x = imp.as_layout(x, tuple(range(len(x.perm))), node)
    perm = tuple(range(len(target)))
    if len(target) == 4 and _same_memory_order(target, NCHW_TO_NHWC):
        perm = NCHW_TO_NHWC
    shape = tuple(target[p] for p in perm)
    if shape == imp.ir_shape(x) and perm == x.perm:
        imp.acts[out] = x
        return
    shape_name = imp.add_const(f"{x.name}_shape", np.array(shape, np.int32))
    imp.emit("RESHAPE", [x.name, shape_name], out, shape, oq, perm, {}, node)


def _target_shape(imp: _Importer, node: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape of a Flatten/Reshape (computed: shape inference skips contrib-op outputs)."""
    if node.op_type == "Flatten":
        axis = int(imp.attrs(node).get("axis", 1)) % max(len(shape), 1)
        return (int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64)))
    spec = imp.const(node.input[1]) if node.op_type == "Reshape" and len(node.input) > 1 else None
    if spec is not None and not imp.attrs(node).get("allowzero", 0):
        dims = [shape[k] if int(d) == 0 else int(d) for k, d in enumerate(spec.ravel())]
        if dims.count(-1) == 1:
            known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
            dims[dims.index(-1)] = int(np.prod(shape, dtype=np.int64)) // max(known, 1)
        if min(dims, default=0) > 0 and np.prod(dims) == np.prod(shape):
            return tuple(dims)
    target = imp.shapes.get(node.output[0])
    if target is None or min(target, default=0) < 0:
        imp.fail(node, "output shape unknown (the new shape must be a constant)")
    return tuple(target)


def _slice(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    x = ops[0]
    shape = imp.onnx_shape(x)
    vals = [None if o.data is None or o.data.size == 0 else [int(v) for v in o.data.ravel()] for o in ops[1:]]
    if any(v is None for v in vals[:2]) or (len(vals) > 3 and vals[3] is not None and set(vals[3]) != {1}):
        imp.fail(node, "only constant starts/ends with step 1 are supported")
    starts, ends = vals[0], vals[1]
    axes = vals[2] if len(vals) > 2 and vals[2] is not None else list(range(len(starts)))
    begin, end = [0] * len(shape), list(shape)
    for a, s, e in zip(axes, starts, ends):
        a %= len(shape)
        n = shape[a]
        s, e = (v + n if v < 0 else v for v in (s, e))
        begin[a], end[a] = min(max(s, 0), n), min(max(e, 0), n)
    ir_begin = [begin[p] for p in x.perm]
    ir_size = [end[p] - begin[p] for p in x.perm]
    if min(ir_size) <= 0:
        imp.fail(node, "empty slice")
    b = imp.add_const(f"{x.name}_begin", np.array(ir_begin, np.int32))
    s = imp.add_const(f"{x.name}_size", np.array(ir_size, np.int32))
    imp.emit("SLICE", [x.name, b, s], out, tuple(ir_size), oq, x.perm, {}, node)


def _transpose(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    x = ops[0]
    q = tuple(imp.attrs(node).get("perm", tuple(reversed(range(len(x.perm))))))
    inv = _inverse(q)
    imp.acts[out] = Operand(name=x.name, quant=x.quant, perm=tuple(inv[p] for p in x.perm))


def _identity(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    imp.acts[out] = ops[0]


def _pad(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    a = imp.attrs(node)
    mode = a.get("mode", b"constant")
    pads = a.get("pads") if "pads" in a else (ops[1].data if len(ops) > 1 and ops[1].is_const else None)
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant" or pads is None:
        imp.fail(node, "only constant padding with constant pads is supported")
    value = ops[2].data if len(ops) > 2 and ops[2].is_const else None
    if value is not None and value.size and int(np.asarray(value).ravel()[0]) != (int(oq.zero_point[0]) if value.dtype == np.int8 else 0):
        imp.fail(node, "padding value other than zero is not supported")
    x = imp.as_layout(ops[0], NCHW_TO_NHWC, node)
    p = [int(v) for v in pads]
    if len(p) != 8 or p[0] or p[1] or p[4] or p[5]:
        imp.fail(node, "only H/W padding of a 4-D tensor is supported")
    pname = imp.add_const(f"{x.name}_pads", np.array([[0, 0], [p[2], p[6]], [p[3], p[7]], [0, 0]], np.int32))
    n, h, w, c = imp.ir_shape(x)
    imp.emit("PAD", [x.name, pname], out, (n, h + p[2] + p[6], w + p[3] + p[7], c), oq, NCHW_TO_NHWC, {}, node)


def _resize(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in imp.attrs(node).items()}
    if a.get("mode", "nearest") != "nearest":
        imp.fail(node, f"mode {a.get('mode')} (only nearest is supported)")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    nm = a.get("nearest_mode", "round_prefer_floor")
    if (ctm, nm) == ("asymmetric", "floor"):
        flags = dict(align_corners=False, half_pixel_centers=False)
    else:
        imp.fail(node, f"coordinate_transformation_mode={ctm}, nearest_mode={nm} (asymmetric/floor supported)")
    src = imp.onnx_shape(ops[0])
    scales = ops[2].data if len(ops) > 2 and ops[2].is_const and ops[2].data.size else None
    sizes = ops[3].data if len(ops) > 3 and ops[3].is_const and ops[3].data.size else None
    if sizes is not None:
        target = tuple(int(v) for v in sizes)
    elif scales is not None:
        target = tuple(int(np.floor(n * np.float32(s))) for n, s in zip(src, scales))
    else:
        target = imp.shapes.get(node.output[0])
    if target is None or len(target) != 4 or min(target) < 0:
        imp.fail(node, "needs a 4-D output of known shape")
    x = imp.as_layout(ops[0], NCHW_TO_NHWC, node)
    n, h, w, c = imp.ir_shape(x)
    if target[0] != n or target[1] != c:
        imp.fail(node, "only H and W may be resized")
    size = imp.add_const(f"{x.name}_size", np.array(target[2:], np.int32))
    imp.emit("RESIZE_NEAREST_NEIGHBOR", [x.name, size], out, (n, target[2], target[3], c), oq, NCHW_TO_NHWC,
             flags, node)


def _unary(imp: _Importer, node: Any, ops: list[Operand], out: str, oq: QuantParams) -> None:
    a = imp.attrs(node)
    x = ops[0]
    attrs: dict[str, Any] = {}
    if node.op_type == "Clip":
        lo = ops[1].data if len(ops) > 1 and ops[1].is_const else a.get("min")
        hi = ops[2].data if len(ops) > 2 and ops[2].is_const else a.get("max")
        lo = None if lo is None else float(np.asarray(lo).ravel()[0])
        hi = None if hi is None else float(np.asarray(hi).ravel()[0])
        if (lo, hi) == (0.0, 6.0):
            op_type = "RELU6"
        elif lo == 0.0 and hi is None:
            op_type = "RELU"
        else:
            imp.fail(node, f"Clip({lo}, {hi}): only Clip(0, 6) and Clip(0) are supported")
    elif node.op_type == "HardSigmoid":
        op_type = "HARD_SIGMOID"
        attrs = dict(alpha=float(np.float32(a.get("alpha", 0.2))), beta=float(np.float32(a.get("beta", 0.5))))
    elif node.op_type == "LeakyRelu":
        op_type, attrs = "LEAKY_RELU", dict(alpha=float(np.float32(a.get("alpha", 0.01))))
    else:
        op_type = {"Relu": "RELU", "HardSwish": "HARD_SWISH", "Sigmoid": "LOGISTIC"}[node.op_type]
    imp.emit(op_type, [x.name], out, imp.ir_shape(x), oq, x.perm, attrs, node)


_HANDLERS: dict[str, Callable[[_Importer, Any, list[Operand], str, QuantParams], None]] = {
    "Conv": _conv, "Gemm": _fc, "MatMul": _fc, "Add": _binary, "Mul": _binary,
    "GlobalAveragePool": _mean, "ReduceMean": _mean, "MaxPool": _pool, "AveragePool": _pool,
    "Concat": _concat, "Reshape": _reshape, "Flatten": _reshape, "Squeeze": _reshape, "Unsqueeze": _reshape,
    "Transpose": _transpose, "Identity": _identity, "Slice": _slice, "Pad": _pad, "Resize": _resize,
    "Relu": _unary, "Clip": _unary, "HardSigmoid": _unary, "HardSwish": _unary, "Sigmoid": _unary,
    "LeakyRelu": _unary,
}
_STRUCTURAL = ("QuantizeLinear", "DequantizeLinear", "Constant")
SUPPORTED_ONNX_OPS = tuple(sorted({*_HANDLERS, *_QOPS, *_STRUCTURAL, "QLinearConcat"}))


# --- the import loop -------------------------------------------------------------------
def _constant(imp: _Importer, node: Any) -> None:
    a = node.attribute[0] if node.attribute else None
    if a is None or a.name != "value":
        imp.fail(node, "only Constant nodes with a 'value' tensor are supported")
    imp.consts[node.output[0]] = imp.nh.to_array(a.t)


def _dequantize(imp: _Importer, node: Any) -> None:
    src = node.input[0]
    scale = imp.const(node.input[1])
    zp = imp.const(node.input[2]) if len(node.input) > 2 else None
    if scale is None:
        imp.fail(node, "the scale must be a constant")
    q = _q(scale, zp, int(imp.attrs(node).get("axis", 1)))
    if src in imp.consts:
        imp.deq[node.output[0]] = Operand(data=imp.consts[src], quant=q)
    elif src in imp.acts:
        a = imp.acts[src]
        imp.deq[node.output[0]] = Operand(name=a.name, quant=a.quant, perm=a.perm)
    else:
        imp.fail(node, f"input {src!r} is not an int8 tensor")


def _quantize(imp: _Importer, node: Any) -> None:
    """A QuantizeLinear not folded into its producer: DQ->Q pairs (a requantization)."""
    src = node.input[0]
    scale = imp.const(node.input[1])
    zp = imp.const(node.input[2]) if len(node.input) > 2 else None
    if src not in imp.deq or imp.deq[src].is_const or scale is None:
        imp.fail(node, f"quantizes {src!r}, a float tensor no supported operator produces")
    a = imp.deq[src]
    q = _q(scale, zp)
    if _same_quant(q, a.quant):
        imp.acts[node.output[0]] = a
    else:
        imp.emit("QUANTIZE", [a.name], node.output[0], imp.ir_shape(a), q, a.perm, {}, node)


def _out_quant(imp: _Importer, i: int, node: Any) -> tuple[str, QuantParams]:
    """The QuantizeLinear that must consume float node ``i``'s only output: its name and quantization."""
    users = imp.users.get(node.output[0], [])
    outputs = {o.name for o in imp.model.graph.output}
    if len(users) != 1 or imp.nodes[users[0]].op_type != "QuantizeLinear" or node.output[0] in outputs:
        imp.fail(node, "float-only operator in an int8 model: its float output is not quantized by one QuantizeLinear")
    qn = imp.nodes[users[0]]
    scale = imp.const(qn.input[1])
    zp = imp.const(qn.input[2]) if len(qn.input) > 2 else None
    if scale is None:
        imp.fail(qn, "the scale must be a constant")
    imp.done.add(users[0])
    return qn.output[0], _q(scale, zp)


def _node(imp: _Importer, i: int, node: Any) -> None:
    t = node.op_type
    if t == "Constant":
        return _constant(imp, node)
    if t == "DequantizeLinear":
        return _dequantize(imp, node)
    if t == "QuantizeLinear":
        return _quantize(imp, node)
    if node.op_type == "Identity" and node.input[0] in imp.consts:
        imp.consts[node.output[0]] = imp.consts[node.input[0]]
        return None
    if t in _QOPS:
        base, ins, (os_, oz) = _QOPS[t]
        ops = []
        for d, s, z in ins:
            if d >= len(node.input) or not node.input[d]:
                continue
            o = imp.operand(node.input[d], node)
            if s >= 0:
                q = _q(imp.const(node.input[s]), imp.const(node.input[z]) if z < len(node.input) else None,
                       1 if base == "MatMul" or (base == "Gemm" and not imp.attrs(node).get("transB", 0)) else 0)
                o = Operand(o.name, q if o.is_const else o.quant, o.data, o.perm)
            ops.append(o)
        if os_ >= len(node.input) or not node.input[os_]:
            imp.fail(node, "float output (no output scale) in an int8 model")
        oq = _q(imp.const(node.input[os_]), imp.const(node.input[oz]) if oz < len(node.input) else None)
        node_as = _Alias(node, base)
        return _HANDLERS[base](imp, node_as, ops, node.output[0], oq)
    if t == "QLinearConcat":
        oq = _q(imp.const(node.input[0]), imp.const(node.input[1]))
        ops = [imp.operand(node.input[k], node) for k in range(2, len(node.input), 3)]
        return _concat(imp, _Alias(node, "Concat"), ops, node.output[0], oq)
    ops = [imp.operand(n, node) if n else Operand(data=np.zeros(0, np.float32)) for n in node.input]
    if t in _MOVE and node.input[0] in imp.acts:
        return _HANDLERS[t](imp, node, ops, node.output[0], ops[0].quant)
    out, oq = _out_quant(imp, i, node)
    x = ops[0]
    if t in _MOVE and x.quant is not None and not _same_quant(x.quant, oq):
        # DQ -> data movement -> Q to another scale: move the int8 bytes, then requantize
        _HANDLERS[t](imp, node, ops, f"{out}_moved", x.quant)
        moved = imp.acts[f"{out}_moved"]
        return imp.emit("QUANTIZE", [moved.name], out, imp.ir_shape(moved), oq, moved.perm, {}, None)
    return _HANDLERS[t](imp, node, ops, out, oq)


def _same_quant(a: QuantParams, b: QuantParams) -> bool:
    return np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point)


class _Alias:
    """A QOperator node seen as the float operator it quantizes (same attributes, name and outputs)."""

    def __init__(self, node: Any, op_type: str) -> None:
        self._node = node
        self.op_type = op_type

    def __getattr__(self, item: str) -> Any:
        return getattr(self._node, item)

    def __eq__(self, other: object) -> bool:
        return other is self._node or other is self


def _check_ops(model: Any, path: str) -> None:
    bad: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type not in SUPPORTED_ONNX_OPS:
            bad[n.op_type] = bad.get(n.op_type, 0) + 1
    if bad:
        listed = ", ".join(f"{k} (x{v})" for k, v in sorted(bad.items()))
        raise ModelLoadError(f"{path}: unsupported ONNX operators: {listed}")
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith("QLinear")
               for n in model.graph.node):
        raise ModelLoadError(f"{path}: a float model (no QuantizeLinear/DequantizeLinear/QLinear* nodes): "
                             "quantize it first: `tinypatch quantize-float MODEL.onnx --calibration SAMPLES.npy -o MODEL-int8.onnx`")


def _inputs(imp: _Importer, path: str) -> None:
    inits = set(imp.consts)
    for vi in imp.model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        for ax, d in enumerate(dims):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                what = d.dim_param or "unknown"
                raise ModelLoadError(f"{path}: input {vi.name!r} has a dynamic dimension {what!r} at axis {ax}; "
                                     "export it with fixed shapes")
        shape = tuple(d.dim_value for d in dims)
        perm = tuple(range(len(shape)))
        if len(shape) == 4 and not _is_nhwc_input(imp, vi.name):
            perm = NCHW_TO_NHWC
        ir_shape = tuple(shape[p] for p in perm)
        input_perm = perm
        users = [imp.nodes[i] for i in imp.users.get(vi.name, [])]
        while len(users) == 1 and users[0].op_type == "Transpose":  # float layout change before quantizing
            q = tuple(imp.attrs(users[0]).get("perm", tuple(reversed(range(len(perm))))))
            perm = tuple(_inverse(q)[p] for p in perm)
            imp.done.add(imp.nodes.index(users[0]))
            users = [imp.nodes[i] for i in imp.users.get(users[0].output[0], [])]
        if vi.type.tensor_type.elem_type != 1 or len(users) != 1 or users[0].op_type != "QuantizeLinear":
            raise ModelLoadError(f"{path}: input {vi.name!r} must be float32 and feed exactly one QuantizeLinear")
        qn = users[0]
        q = _q(imp.const(qn.input[1]), imp.const(qn.input[2]) if len(qn.input) > 2 else None)
        if q.per_channel or np.asarray(imp.const(qn.input[2]) if len(qn.input) > 2 else np.int8(0)).dtype != np.int8:
            raise ModelLoadError(f"{path}: input {vi.name!r} must be quantized to per-tensor int8")
        o = imp.new_act(qn.output[0], ir_shape, q, perm)
        imp.g.inputs.append(o.name)
        imp.g.meta["onnx"]["inputs"][o.name] = {"name": vi.name, "shape": list(shape), "perm": list(input_perm)}
        imp.done.add(imp.nodes.index(qn))


def _outputs(imp: _Importer, path: str) -> None:
    for vi in imp.model.graph.output:
        o = imp.deq.get(vi.name) or imp.acts.get(vi.name)
        if o is None or o.is_const:
            raise ModelLoadError(f"{path}: output {vi.name!r} is not the DequantizeLinear of an int8 tensor")
        if o.name in imp.g.inputs or o.name in imp.g.outputs:
            raise ModelLoadError(f"{path}: output {vi.name!r} is a graph input or another output")
        imp.g.outputs.append(o.name)
        imp.g.meta["onnx"]["outputs"][o.name] = {"name": vi.name, "perm": list(o.perm),
                                                 "dequantized": vi.name in imp.deq}


def read_onnx_model(path: str) -> Any:
    """The parsed and shape-inferred ``ModelProto`` of ``path`` (typed errors for bad files)."""
    onnx = _onnx()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelLoadError(f"{path}: not a valid ONNX protobuf ({type(e).__name__})") from e
    if not model.graph.node:
        raise ModelLoadError(f"{path}: the ONNX graph has no nodes")
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as e:
        raise ModelLoadError(f"{path}: ONNX shape inference failed: {str(e).splitlines()[0][:200]}") from e


def load_onnx(path: str) -> Graph:
    """Import an int8 QDQ or QOperator ONNX model as an NHWC int8 graph."""
    model = read_onnx_model(path)
    _check_ops(model, path)
    try:
        imp = _Importer(model, os.path.splitext(os.path.basename(path))[0])
        _inputs(imp, path)
        for i, node in enumerate(imp.nodes):
            if i not in imp.done:
                _node(imp, i, node)
        _outputs(imp, path)
        _prune(imp.g)
        _fuse_reshapes(imp.g)
    except TinypatchError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError) as e:
        # a damaged file that still parses: inconsistent tensors, attributes or shapes
        raise ModelLoadError(f"{path}: malformed ONNX model ({type(e).__name__}: {str(e)[:200]})") from e
    float_ops, u8_ops = _onnxruntime_kernels(path)
    names = {op.name for op in imp.g.ops}
    imp.g.meta["onnx"]["float_ops"] = sorted(float_ops & names)
    imp.g.meta["onnx"]["u8_ops"] = sorted(u8_ops & names)
    imp.g.meta["onnx"]["path"] = os.path.abspath(path)  # for comparing with onnxruntime later
    imp.g.validate()
    return imp.g


# float operators onnxruntime may leave between DequantizeLinear and QuantizeLinear
_FLOAT_ARITH = ("Conv", "Gemm", "MatMul", "Add", "Mul", "GlobalAveragePool", "ReduceMean")
# fused integer GEMM kernels: the activation zero point is their third input
_INT_GEMMS = ("QLinearConv", "QGemm", "QLinearMatMul")
_FUSED_NAME = re.compile(r"_token_\d+$")  # what onnxruntime appends to a node it fused


def _onnxruntime_kernels(path: str) -> tuple[set[str], set[str]]:
    """Names of the nodes onnxruntime (CPU, default optimizations) runs in float32 rather than as fused
    int8 kernels, and of those it runs as fused GEMMs on uint8 activations (a QDQ model's int8
    activations moved to uint8 on x86, see :class:`~tinypatch.kernels.onnxruntime.U8S8Pairs`): its
    graph optimizer decides per node and per CPU, so we ask it (empty sets without onnxruntime)."""
    try:
        import onnxruntime as ort  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return set(), set()
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        try:
            ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            model = _onnx().load(opts.optimized_model_filepath)
        except Exception:  # onnxruntime refuses the model: no reference arithmetic to record
            return set(), set()
    uint8 = {i.name for i in model.graph.initializer if i.data_type == _onnx().TensorProto.UINT8}
    return ({n.name for n in model.graph.node if n.op_type in _FLOAT_ARITH},
            {_FUSED_NAME.sub("", n.name) for n in model.graph.node
             if n.op_type in _INT_GEMMS and len(n.input) > 2 and n.input[2] in uint8})


def _fuse_reshapes(g: Graph) -> None:
    """RESHAPE of a RESHAPE nothing else reads: one RESHAPE (no rank-5 tensor is left from a channel shuffle)."""
    users = g.consumers()
    producer = {t: op for op in g.ops for t in op.outputs}
    drop = set()
    for op in g.ops:
        first = producer.get(op.inputs[0]) if op.type == "RESHAPE" else None
        if first is not None and first.type == "RESHAPE" and len(users.get(first.outputs[0], [])) == 1 \
                and first.outputs[0] not in g.outputs:
            op.inputs[0] = first.inputs[0]
            drop.add(id(first))
    g.ops = [op for op in g.ops if id(op) not in drop]
    _prune(g)


def _prune(g: Graph) -> None:
    """Drop operators (and tensors) nothing reads: producers of values only QDQ bookkeeping used."""
    needed = set(g.outputs)
    keep = []
    for op in reversed(g.ops):
        if any(t in needed for t in op.outputs):
            keep.append(op)
            needed.update(t for t in op.inputs if t)
    g.ops = keep[::-1]
    used = needed | set(g.inputs)
    g.tensors = {n: t for n, t in g.tensors.items() if n in used}
