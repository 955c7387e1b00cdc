"""Structural mutations of an ONNX model, for ``benchmarks/fuzz.py``'s ``onnx:N`` cases.

Each mutation edits one thing a hostile or damaged file could hold, in the parsed
``ModelProto``: an operator type, an attribute value, a quantization scale or zero point, an
initializer's dims, data type or bytes, an input's shape (zero, negative, huge or symbolic), a
node's input name, a node dropped or duplicated; or flips bits of the serialized bytes. The
result is the serialized model (which may no longer parse at all).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

OP_TYPES = ("Conv", "QLinearConv", "Add", "QLinearAdd", "Relu", "Clip", "MaxPool", "AveragePool", "Concat",
            "Reshape", "Transpose", "Resize", "Gemm", "MatMul", "QuantizeLinear", "DequantizeLinear", "Softmax",
            "LSTM", "NotAnOp", "")
INTS = (-(1 << 31), -7, -1, 0, 1, 2, 3, 7, 64, 1 << 20, (1 << 31) - 1)
FLOATS = (0.0, -1.0, float("nan"), float("inf"), 1e-30, 1e30, 3.5e-9)


def _pick(rng: np.random.Generator, seq: Any) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _op_type(m: Any, rng: np.random.Generator) -> None:
    _pick(rng, m.graph.node).op_type = _pick(rng, OP_TYPES)


def _attribute(m: Any, rng: np.random.Generator) -> None:
    nodes = [n for n in m.graph.node if n.attribute]
    if not nodes:
        return
    a = _pick(rng, _pick(rng, nodes).attribute)
    if a.ints:
        a.ints[int(rng.integers(len(a.ints)))] = _pick(rng, INTS)
        if rng.random() < 0.3:
            del a.ints[-1]
    elif a.floats:
        a.floats[int(rng.integers(len(a.floats)))] = _pick(rng, FLOATS)
    elif a.type == a.FLOAT:
        a.f = _pick(rng, FLOATS)
    elif a.type == a.STRING:
        a.s = _pick(rng, (b"", b"NCHW", b"\xff\xfe", b"x" * 300))
    else:
        a.i = _pick(rng, INTS)


def _initializer(m: Any, rng: np.random.Generator) -> None:
    from onnx import TensorProto, numpy_helper

    if not m.graph.initializer:
        return
    t = _pick(rng, m.graph.initializer)
    kind = int(rng.integers(5))
    if kind == 0 and t.data_type == TensorProto.FLOAT:  # a scale: zero, negative, nan, inf, tiny, huge
        arr = numpy_helper.to_array(t).astype(np.float32).copy()
        if arr.size:
            arr.flat[int(rng.integers(arr.size))] = _pick(rng, FLOATS)
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
    elif kind == 1:  # dims that disagree with the data
        if t.dims:
            t.dims[int(rng.integers(len(t.dims)))] = _pick(rng, INTS)
        else:
            t.dims.append(_pick(rng, INTS))
    elif kind == 2:  # another element type
        t.data_type = _pick(rng, (TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32, TensorProto.INT64,
                                  TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.STRING, 0, 99))
    elif kind == 3 and t.raw_data:  # truncated bytes
        t.raw_data = t.raw_data[: int(rng.integers(len(t.raw_data)))]
    elif t.raw_data:  # zero points (and weights) out of range: random bytes
        raw = bytearray(t.raw_data)
        for i in rng.integers(0, len(raw), max(1, len(raw) // 50)):
            raw[int(i)] = int(rng.integers(256))
        t.raw_data = bytes(raw)


def _input_shape(m: Any, rng: np.random.Generator) -> None:
    inits = {t.name for t in m.graph.initializer}
    vis = [v for v in m.graph.input if v.name not in inits] or list(m.graph.input)
    if not vis:
        return
    dims = _pick(rng, vis).type.tensor_type.shape.dim
    if not dims:
        return
    d = dims[int(rng.integers(len(dims)))]
    if rng.random() < 0.3:
        d.dim_param = "N"
    else:
        d.dim_value = _pick(rng, (0, 1, 2, 3, 1 << 20, (1 << 62)))
    if rng.random() < 0.2:
        del dims[-1]


def _wiring(m: Any, rng: np.random.Generator) -> None:
    n = _pick(rng, m.graph.node)
    names = [t for node in m.graph.node for t in node.output] + [t.name for t in m.graph.initializer]
    if n.input:
        n.input[int(rng.integers(len(n.input)))] = _pick(rng, names + ["missing", ""])
    if rng.random() < 0.3:
        n.input.append(_pick(rng, names))


def _nodes(m: Any, rng: np.random.Generator) -> None:
    nodes = m.graph.node
    i = int(rng.integers(len(nodes)))
    if rng.random() < 0.5 and len(nodes) > 1:
        del nodes[i]
    else:
        nodes.add().CopyFrom(nodes[i])  # a second producer of the same tensor


STRUCTURAL: tuple[Callable[[Any, np.random.Generator], None], ...] = (
    _op_type, _attribute, _initializer, _initializer, _input_shape, _wiring, _nodes)


def mutate_onnx(data: bytes, rng: np.random.Generator) -> bytes:
    """``data`` (a serialized ModelProto) with 1 to 3 mutations; 1 in 8 cases flips raw bytes instead."""
    import onnx

    if rng.random() < 0.125:
        buf = bytearray(data)
        for i in rng.integers(0, len(buf), int(rng.integers(1, 9))):
            buf[int(i)] ^= 1 << int(rng.integers(8))
        return bytes(buf[: len(buf) if rng.random() < 0.8 else int(rng.integers(len(buf)))])
    model = onnx.load_model_from_string(data)
    for _ in range(int(rng.integers(1, 4))):
        _pick(rng, STRUCTURAL)(model, rng)
    return model.SerializeToString()
