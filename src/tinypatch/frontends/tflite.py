"""Read an int8 (or float32) ``.tflite`` flatbuffer into the Graph IR.

Only the first subgraph is read. Every failure of the flatbuffer reader on a truncated or
corrupted file is turned into :class:`~tinypatch.errors.ModelLoadError`. Shape arithmetic
left by the converter (dynamic batch) is folded (:mod:`tinypatch.frontends.fold`); operators
still outside ``tinypatch.ir.ops.SUPPORTED_OPS`` raise one
:class:`~tinypatch.errors.UnsupportedOperatorError` naming every one of them and its index.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import tflite

from tinypatch.errors import GraphError, ModelLoadError, UnsupportedOperatorError
from tinypatch.frontends.fold import fold_shapes
from tinypatch.ir import Graph, Op, QuantParams, Tensor
from tinypatch.ir.graph import DTYPE_BYTES
from tinypatch.ir.ops import ACTIVATIONS
from tinypatch.ir.validate import DEFAULT_MAX_TENSOR_BYTES, validate

_TENSOR_TYPES = {
    tflite.TensorType.FLOAT32: "float32", tflite.TensorType.INT8: "int8",
    tflite.TensorType.UINT8: "uint8", tflite.TensorType.INT16: "int16",
    tflite.TensorType.INT32: "int32", tflite.TensorType.INT64: "int64",
    tflite.TensorType.BOOL: "bool",
}
_OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_PADDING = {tflite.Padding.SAME: "SAME", tflite.Padding.VALID: "VALID"}
_ACT = {v: k for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")}

# op type -> (options class, [(attr name, getter name, converter)])
_OPTIONS: dict[str, tuple[type, list[tuple[str, str, Any]]]] = {
    "CONV_2D": (tflite.Conv2DOptions, [
        ("padding", "Padding", _PADDING.get), ("stride_w", "StrideW", int), ("stride_h", "StrideH", int),
        ("dilation_w", "DilationWFactor", int), ("dilation_h", "DilationHFactor", int),
        ("fused_activation_function", "FusedActivationFunction", _ACT.get)]),
    "DEPTHWISE_CONV_2D": (tflite.DepthwiseConv2DOptions, [
        ("padding", "Padding", _PADDING.get), ("stride_w", "StrideW", int), ("stride_h", "StrideH", int),
        ("depth_multiplier", "DepthMultiplier", int),
        ("dilation_w", "DilationWFactor", int), ("dilation_h", "DilationHFactor", int),
        ("fused_activation_function", "FusedActivationFunction", _ACT.get)]),
    "AVERAGE_POOL_2D": (tflite.Pool2DOptions, [
        ("padding", "Padding", _PADDING.get), ("stride_w", "StrideW", int), ("stride_h", "StrideH", int),
        ("filter_w", "FilterWidth", int), ("filter_h", "FilterHeight", int),
        ("fused_activation_function", "FusedActivationFunction", _ACT.get)]),
    "FULLY_CONNECTED": (tflite.FullyConnectedOptions, [
        ("fused_activation_function", "FusedActivationFunction", _ACT.get),
        ("keep_num_dims", "KeepNumDims", bool)]),
    "ADD": (tflite.AddOptions, [("fused_activation_function", "FusedActivationFunction", _ACT.get)]),
    "MUL": (tflite.MulOptions, [("fused_activation_function", "FusedActivationFunction", _ACT.get)]),
    "CONCATENATION": (tflite.ConcatenationOptions, [
        ("axis", "Axis", int), ("fused_activation_function", "FusedActivationFunction", _ACT.get)]),
    "SOFTMAX": (tflite.SoftmaxOptions, [("beta", "Beta", float)]),
    "LEAKY_RELU": (tflite.LeakyReluOptions, [("alpha", "Alpha", float)]),
    "MEAN": (tflite.ReducerOptions, [("keep_dims", "KeepDims", bool)]),
    "RESIZE_NEAREST_NEIGHBOR": (tflite.ResizeNearestNeighborOptions, [
        ("align_corners", "AlignCorners", bool), ("half_pixel_centers", "HalfPixelCenters", bool)]),
    "RESIZE_BILINEAR": (tflite.ResizeBilinearOptions, [
        ("align_corners", "AlignCorners", bool), ("half_pixel_centers", "HalfPixelCenters", bool)]),
    "TRANSPOSE_CONV": (tflite.TransposeConvOptions, [
        ("padding", "Padding", _PADDING.get), ("stride_w", "StrideW", int), ("stride_h", "StrideH", int),
        ("fused_activation_function", "FusedActivationFunction", _ACT.get)]),
    "SPLIT": (tflite.SplitOptions, [("num_splits", "NumSplits", int)]),
    "SPLIT_V": (tflite.SplitVOptions, [("num_splits", "NumSplits", int)]),
    "STRIDED_SLICE": (tflite.StridedSliceOptions, [
        ("begin_mask", "BeginMask", int), ("end_mask", "EndMask", int), ("ellipsis_mask", "EllipsisMask", int),
        ("new_axis_mask", "NewAxisMask", int), ("shrink_axis_mask", "ShrinkAxisMask", int),
        ("offset", "Offset", bool)]),
    # shape arithmetic folded at import (frontends/fold.py)
    "PACK": (tflite.PackOptions, [("axis", "Axis", int)]),
    "GATHER": (tflite.GatherOptions, [("axis", "Axis", int), ("batch_dims", "BatchDims", int)]),
    "SQUEEZE": (tflite.SqueezeOptions, [
        ("squeeze_dims", "SqueezeDimsAsNumpy", lambda a: tuple(int(d) for d in a) if isinstance(a, np.ndarray) else ())]),
}
_OPTIONS["MAX_POOL_2D"] = _OPTIONS["AVERAGE_POOL_2D"]


def load_tflite(path: str | os.PathLike[str], max_tensor_bytes: int | None = None) -> Graph:
    """Read ``path`` into a validated :class:`Graph` (:func:`tinypatch.ir.validate.validate`,
    ``max_tensor_bytes`` its size limit). Raises ModelLoadError / UnsupportedOperatorError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelLoadError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise ModelLoadError(f"{path} is a directory, not a .tflite model file")
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from None
    return parse_tflite(buf, name=os.path.splitext(os.path.basename(path))[0], source=path,
                        max_tensor_bytes=max_tensor_bytes)


def parse_tflite(buf: bytes, name: str = "model", source: str = "<bytes>", max_tensor_bytes: int | None = None
                 ) -> Graph:
    """Parse flatbuffer bytes into a validated :class:`Graph`."""
    limit = DEFAULT_MAX_TENSOR_BYTES if max_tensor_bytes is None else max_tensor_bytes
    if len(buf) == 0:
        raise ModelLoadError(f"{source} is empty (0 bytes): not a TFLite model")
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelLoadError(f"{source} is not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        graph = _Reader(buf, name, limit).read()
    except (ModelLoadError, UnsupportedOperatorError):
        raise
    except GraphError as exc:  # operators or quantization that contradict each other
        raise ModelLoadError(f"{source} is corrupted: {exc}") from None
    except Exception as exc:  # the flatbuffer reader fails in many ways on corrupted bytes
        raise ModelLoadError(f"{source} is truncated or corrupted ({type(exc).__name__}: {exc})") from None
    try:
        return validate(graph, limit)
    except GraphError as exc:
        raise ModelLoadError(f"{source} is not a valid model: {exc}") from None


class _StrictBytes(bytes):
    """Bytes whose slices must end inside the buffer: flatbuffers would cut a string short silently."""

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice) and key.stop is not None and key.stop > len(self):
            raise IndexError(f"data runs past the end of the file ({key.stop} > {len(self)} bytes)")
        return super().__getitem__(key)


class _Reader:
    def __init__(self, buf: bytes, name: str, max_tensor_bytes: int) -> None:
        self.max_tensor_bytes = max_tensor_bytes
        self.buf = _StrictBytes(buf)
        self.model = tflite.Model.GetRootAs(self.buf, 0)
        self.graph = Graph(name)
        self.names: dict[int, str] = {}
        self.signatures: dict[str, tuple[int, ...]] = {}  # shape_signature where it differs from shape

    def read(self) -> Graph:
        m = self.model
        if m.SubgraphsLength() < 1:
            raise ModelLoadError("model has no subgraph")
        sg = m.Subgraphs(0)
        g = self.graph
        op_types = [self._op_name(i) for i in range(m.OperatorCodesLength())]
        used = {int(sg.Operators(i).OpcodeIndex()) for i in range(sg.OperatorsLength())}
        for k in sorted(used):
            if k >= len(op_types):
                raise ModelLoadError(f"operator code index {k} out of range")
        for i in range(sg.TensorsLength()):
            self._tensor(sg, i)
        g.inputs = [self._ref(int(i), "graph input") for i in _ints(sg, "Inputs")]
        g.outputs = [self._ref(int(i), "graph output") for i in _ints(sg, "Outputs")]
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            t = op_types[op.OpcodeIndex()]
            ins = [self._ref(k, f"operator {i} ({t}) input") if k != -1 else "" for k in _ints(op, "Inputs")]
            outs = [self._ref(k, f"operator {i} ({t}) output") for k in _ints(op, "Outputs")]
            g.add_op(Op(t, ins, outs, self._attrs(t, op, i), name=f"{i}_{t.lower()}"))
        # fold shape arithmetic, name every operator left unsupported; drops tensors nobody uses
        fold_shapes(g, self.signatures, lambda k, op: int(op.name.split("_", 1)[0]))
        g.meta["tflite_index"] = {v: k for k, v in self.names.items() if v in g.tensors}
        g.meta["description"] = (m.Description() or b"").decode("utf-8", "replace")
        return g

    def _ref(self, index: int, what: str) -> str:
        if index not in self.names:
            raise ModelLoadError(f"{what} refers to tensor {index}, but the subgraph has {len(self.names)} tensors")
        return self.names[index]

    def _op_name(self, i: int) -> str:
        oc = self.model.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == tflite.BuiltinOperator.CUSTOM:
            return "CUSTOM:" + (oc.CustomCode() or b"?").decode("utf-8", "replace")
        return _OP_NAMES.get(code, f"BUILTIN_{code}")

    def _tensor(self, sg: Any, i: int) -> None:
        t = sg.Tensors(i)
        raw = (t.Name() or b"").decode("utf-8", "replace") or f"tensor_{i}"
        name = self.graph.unique_name(raw)
        self.names[i] = name
        ttype = t.Type()
        if ttype not in _TENSOR_TYPES:
            raise ModelLoadError(f"tensor {i} ({raw}) has unsupported type {ttype}")
        dtype = _TENSOR_TYPES[ttype]
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if any(d < 0 for d in shape):
            raise ModelLoadError(f"tensor {i} ({raw}) has a dynamic shape {shape}; give it a fixed shape")
        if t.ShapeSignatureLength():
            sig = tuple(int(d) for d in t.ShapeSignatureAsNumpy())
            if sig != shape:
                self.signatures[name] = sig
        if math.prod(shape) * DTYPE_BYTES[dtype] > self.max_tensor_bytes:
            raise ModelLoadError(f"tensor {i} ({raw}) of shape {list(shape)} is over the tensor size limit of "
                                 f"{self.max_tensor_bytes:,} B (raise it with --max-tensor-bytes)")
        data = self._buffer(t.Buffer(), dtype, shape)
        self.graph.add_tensor(Tensor(name, shape, dtype, self._quant(t, shape), data))

    def _buffer(self, index: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray | None:
        if index <= 0 or index >= self.model.BuffersLength():
            return None
        b = self.model.Buffers(index)
        if b.Offset() > 1:  # large-model layout: data lives after the flatbuffer
            raw = self.buf[b.Offset(): b.Offset() + b.Size()]
        elif b.DataLength():
            raw = b.DataAsNumpy().tobytes()
        else:
            return None
        arr = np.frombuffer(raw, dtype=np.dtype(dtype))
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ModelLoadError(f"buffer {index} holds {arr.size} values, tensor shape {shape} needs "
                                 f"{int(np.prod(shape))}")
        return arr.reshape(shape).copy()

    @staticmethod
    def _quant(t: Any, shape: tuple[int, ...]) -> QuantParams | None:
        q = t.Quantization()
        if q is None or q.ScaleLength() == 0:
            return None
        scale = q.ScaleAsNumpy().astype(np.float32)
        zp = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros_like(scale, np.int64)
        axis = int(q.QuantizedDimension()) if scale.size > 1 else None
        # producer quirk (person_detect.tflite): 1-D per-channel bias carrying its weights' axis 3
        if axis is not None and axis >= len(shape) and len(shape) == 1:
            axis = 0
        if axis is not None and (axis >= len(shape) or shape[axis] != scale.size):
            raise ModelLoadError(f"{scale.size} per-channel scales on axis {axis} of a tensor of shape {shape}")
        return QuantParams(scale, zp, axis)

    @staticmethod
    def _attrs(op_type: str, op: Any, index: int) -> dict[str, Any]:
        if op_type not in _OPTIONS:
            return {}
        cls, fields = _OPTIONS[op_type]
        table = op.BuiltinOptions()
        if table is None:
            return {}
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        attrs = {}
        for attr, getter, conv in fields:
            raw = getattr(opts, getter)()
            value = conv(raw)
            if value is None or (attr == "fused_activation_function" and value not in ACTIVATIONS):
                raise UnsupportedOperatorError(op_type, index, f"{attr}={raw if value is None else value}")
            attrs[attr] = value
        return attrs


def _ints(op: Any, field: str) -> list[int]:
    if getattr(op, f"{field}Length")() == 0:
        return []
    return [int(x) for x in getattr(op, f"{field}AsNumpy")()]
