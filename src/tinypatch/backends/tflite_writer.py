"""Write a :class:`~tinypatch.ir.Graph` to ``.tflite`` flatbuffer bytes (schema version 3).

The inverse of :mod:`tinypatch.frontends.tflite`: reading the written bytes back gives the
same tensors (shapes, dtypes, quantization, constant data) and the same operators and
attributes. One subgraph; buffer 0 is the empty sentinel that activations point to; every
constant gets its own buffer, 16-byte aligned like the TFLite converter's. Operator codes carry
both ``deprecated_builtin_code`` (capped at 127) and ``builtin_code``, and version 1: LiteRT's
resolvers register every kernel from version 1 and pick the int8 path from the tensor types.

The graph is not validated, and any TFLite builtin operator name can be written (not only the
ones tinypatch runs), so tests can build the broken or unsupported models the reader must refuse.
"""

from __future__ import annotations

import os
from typing import Any

import flatbuffers
import numpy as np
import tflite

from tinypatch.errors import GraphError, UnsupportedOperatorError
from tinypatch.frontends.tflite import _OPTIONS as READ_OPTIONS  # the writer mirrors the reader's table
from tinypatch.ir import Graph, Op, Tensor
from tinypatch.ir.ops import with_defaults
from tinypatch.safeio import write_bytes

SCHEMA_VERSION = 3
_ALIGN = 16  # Buffer.data is force_align: 16 in the schema

_TYPE_CODES = {
    "float32": tflite.TensorType.FLOAT32, "int8": tflite.TensorType.INT8,
    "uint8": tflite.TensorType.UINT8, "int16": tflite.TensorType.INT16,
    "int32": tflite.TensorType.INT32, "int64": tflite.TensorType.INT64,
    "bool": tflite.TensorType.BOOL,
}
_DEPRECATED_CODE_MAX = tflite.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES  # 127: int8 field
_BUILTIN_CODES = {k: v for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_ENUMS = {
    "padding": {k: v for k, v in vars(tflite.Padding).items() if not k.startswith("_")},
    "fused_activation_function": {
        k: v for k, v in vars(tflite.ActivationFunctionType).items() if not k.startswith("_")},
}
# Ops whose options table carries nothing the IR keeps: written empty, as the converter does.
_EMPTY_OPTIONS = {
    "PAD": "PadOptions", "QUANTIZE": "QuantizeOptions", "DEQUANTIZE": "DequantizeOptions",
    "TRANSPOSE": "TransposeOptions", "HARD_SWISH": "HardSwishOptions",
    "MAXIMUM": "MaximumMinimumOptions", "MINIMUM": "MaximumMinimumOptions", "SLICE": "SliceOptions",
    "SQUARED_DIFFERENCE": "SquaredDifferenceOptions",
}


def write_tflite(graph: Graph) -> bytes:
    """Serialise ``graph`` to ``.tflite`` bytes. Raises GraphError / UnsupportedOperatorError."""
    return _Writer(graph).write()


def save_tflite(graph: Graph, path: str | os.PathLike[str]) -> None:
    """Write ``graph`` to the file ``path`` as a ``.tflite`` model."""
    write_bytes(path, write_tflite(graph))


class _Writer:
    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.b = flatbuffers.Builder(1024)
        self.index = {name: i for i, name in enumerate(graph.tensors)}

    def write(self) -> bytes:
        b, g = self.b, self.g
        for i, op in enumerate(g.ops):
            if op.type not in _BUILTIN_CODES:
                raise UnsupportedOperatorError(op.type, i, "not a TFLite builtin operator")
        buffers, buffer_of = self._buffers()
        tensors = [self._tensor(t, buffer_of.get(t.name, 0)) for t in g.tensors.values()]
        op_types = list(dict.fromkeys(op.type for op in g.ops))
        ops = [self._op(i, op, op_types.index(op.type)) for i, op in enumerate(g.ops)]
        codes = [self._opcode(t) for t in op_types]

        sg_tensors = self._table_vector(tflite.SubGraphStartTensorsVector, tensors)
        sg_inputs = self._ints([self._ref(n) for n in g.inputs])
        sg_outputs = self._ints([self._ref(n) for n in g.outputs])
        sg_ops = self._table_vector(tflite.SubGraphStartOperatorsVector, ops)
        sg_name = b.CreateString(str(g.meta.get("subgraph_name", "main")))
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, sg_tensors)
        tflite.SubGraphAddInputs(b, sg_inputs)
        tflite.SubGraphAddOutputs(b, sg_outputs)
        tflite.SubGraphAddOperators(b, sg_ops)
        tflite.SubGraphAddName(b, sg_name)
        subgraph = tflite.SubGraphEnd(b)

        m_codes = self._table_vector(tflite.ModelStartOperatorCodesVector, codes)
        m_subgraphs = self._table_vector(tflite.ModelStartSubgraphsVector, [subgraph])
        m_buffers = self._table_vector(tflite.ModelStartBuffersVector, buffers)
        m_desc = b.CreateString(str(g.meta.get("description", "tinypatch")))
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, SCHEMA_VERSION)
        tflite.ModelAddOperatorCodes(b, m_codes)
        tflite.ModelAddSubgraphs(b, m_subgraphs)
        tflite.ModelAddDescription(b, m_desc)
        tflite.ModelAddBuffers(b, m_buffers)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    # --- pieces -------------------------------------------------------------------
    def _buffers(self) -> tuple[list[int], dict[str, int]]:
        """Buffer tables (index 0 empty) and the buffer index of every constant tensor."""
        b = self.b
        tflite.BufferStart(b)
        tables = [tflite.BufferEnd(b)]
        buffer_of: dict[str, int] = {}
        for t in self.g.tensors.values():
            if t.data is None:
                continue
            if tuple(t.data.shape) != t.shape:
                raise GraphError(f"tensor {t.name!r}: data shape {t.data.shape} != tensor shape {t.shape}")
            data = self._aligned_bytes(np.ascontiguousarray(t.data, dtype=t.np_dtype.newbyteorder("<")).tobytes())
            tflite.BufferStart(b)
            tflite.BufferAddData(b, data)
            buffer_of[t.name] = len(tables)
            tables.append(tflite.BufferEnd(b))
        return tables, buffer_of

    def _aligned_bytes(self, raw: bytes) -> int:
        b = self.b
        b.StartVector(1, len(raw), _ALIGN)
        b.head -= len(raw)
        b.Bytes[b.head: b.head + len(raw)] = raw
        return b.EndVector()

    def _tensor(self, t: Tensor, buffer: int) -> int:
        b = self.b
        if t.dtype not in _TYPE_CODES:
            raise GraphError(f"tensor {t.name!r}: dtype {t.dtype} has no TFLite type")
        name = b.CreateString(t.name)
        shape = self._ints(list(t.shape))
        quant = self._quant(t) if t.quant is not None else None
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, _TYPE_CODES[t.dtype])
        tflite.TensorAddBuffer(b, buffer)
        tflite.TensorAddName(b, name)
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        return tflite.TensorEnd(b)

    def _quant(self, t: Tensor) -> int:
        b, q = self.b, t.quant
        assert q is not None
        scale = b.CreateNumpyVector(q.scale.astype("<f4"))
        zero_point = b.CreateNumpyVector(q.zero_point.astype("<i8"))
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, scale)
        tflite.QuantizationParametersAddZeroPoint(b, zero_point)
        if q.axis is not None:
            axis = q.axis % len(t.shape) if t.shape else 0
            tflite.QuantizationParametersAddQuantizedDimension(b, axis)
        return tflite.QuantizationParametersEnd(b)

    def _op(self, i: int, op: Op, opcode_index: int) -> int:
        b = self.b
        inputs = self._ints([self._ref(n) if n else -1 for n in op.inputs])
        outputs = self._ints([self._ref(n) for n in op.outputs])
        options_type, options = self._options(i, op)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, opcode_index)
        tflite.OperatorAddInputs(b, inputs)
        tflite.OperatorAddOutputs(b, outputs)
        if options is not None:
            tflite.OperatorAddBuiltinOptionsType(b, options_type)
            tflite.OperatorAddBuiltinOptions(b, options)
        return tflite.OperatorEnd(b)

    def _options(self, i: int, op: Op) -> tuple[int, int | None]:
        """(BuiltinOptions type, table offset) for ``op``; (NONE, None) when it has no table."""
        b = self.b
        if op.type in READ_OPTIONS:
            cls_name = READ_OPTIONS[op.type][0].__name__
            attrs = with_defaults(op.type, op.attrs)
            values = [(getter, self._encode(i, op, attr, attrs[attr])) for attr, getter, _ in READ_OPTIONS[op.type][1]]
            getattr(tflite, f"{cls_name}Start")(b)
            for getter, value in values:
                getattr(tflite, f"{cls_name}Add{getter}")(b, value)
        elif op.type == "RESHAPE":  # legacy readers take new_shape from the options
            cls_name = "ReshapeOptions"
            new_shape = self._ints(list(self.g.tensors[op.outputs[0]].shape))
            tflite.ReshapeOptionsStart(b)
            tflite.ReshapeOptionsAddNewShape(b, new_shape)
        elif op.type in _EMPTY_OPTIONS:
            cls_name = _EMPTY_OPTIONS[op.type]
            getattr(tflite, f"{cls_name}Start")(b)
        else:
            return tflite.BuiltinOptions.NONE, None
        return getattr(tflite.BuiltinOptions, cls_name), getattr(tflite, f"{cls_name}End")(b)

    @staticmethod
    def _encode(i: int, op: Op, attr: str, value: Any) -> Any:
        if attr not in _ENUMS:
            return value
        if value not in _ENUMS[attr]:
            raise UnsupportedOperatorError(op.type, i, f"{attr}={value!r} has no TFLite encoding")
        return _ENUMS[attr][value]

    def _opcode(self, op_type: str) -> int:
        b = self.b
        code = _BUILTIN_CODES[op_type]
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, _DEPRECATED_CODE_MAX))
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, 1)
        return tflite.OperatorCodeEnd(b)

    # --- helpers ------------------------------------------------------------------
    def _ref(self, name: str) -> int:
        if name not in self.index:
            raise GraphError(f"graph refers to unknown tensor {name!r}")
        return self.index[name]

    def _ints(self, values: list[int]) -> int:
        return self.b.CreateNumpyVector(np.asarray(values, dtype="<i4"))

    def _table_vector(self, start: Any, offsets: list[int]) -> int:
        start(self.b, len(offsets))
        for off in reversed(offsets):
            self.b.PrependUOffsetTRelative(off)
        return self.b.EndVector()
