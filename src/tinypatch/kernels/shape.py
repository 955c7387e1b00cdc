"""Data-movement operators: RESHAPE, TRANSPOSE, CONCATENATION and PAD."""

from __future__ import annotations

import numpy as np

from tinypatch.ir import Graph, Op, Tensor
from tinypatch.ir.ops import with_defaults
from tinypatch.kernels.base import Pads, PreparedOp, register
from tinypatch.kernels.onnxruntime import float_lut
from tinypatch.kernels.quantize import requantize, requantizer


@register("RESHAPE")
class Reshape(PreparedOp):
    dtypes = ("int8", "float32", "int32")

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        return inputs[0].reshape(self.out.shape)


@register("TRANSPOSE")
class Transpose(PreparedOp):
    dtypes = ("int8", "float32", "int32")

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        self.perm = tuple(int(p) for p in self.const(1, "perm"))

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(inputs[0], self.perm))


@register("CONCATENATION")
class Concatenation(PreparedOp):
    """int8 inputs whose quantization differs from the output's are first requantized
    exactly like an int8 -> int8 QUANTIZE op (LiteRT itself rejects such models)."""

    dtypes = ("int8", "float32", "int32")

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        a = with_defaults(op.type, op.attrs)
        if self.fused_activation() != "NONE":
            self.unsupported("fused activation on CONCATENATION")
        self.axis = int(a["axis"]) % len(self.out.shape)
        self.sources = [graph.tensors[t] for t in op.inputs]
        self.rescale = [self._requant_params(t) if self.quantized else None for t in self.sources]
        # onnxruntime (QLinearConcat, or DQ -> Concat -> Q): dequantize, quantize to the output scale
        self.ort_tables = [None if rq is None else float_lut(*self.qparams(t), *self.qparams(self.out), lambda v: v)
                           for t, rq in zip(self.sources, self.rescale)] if self.ort else None

    def _requant_params(self, t: Tensor) -> tuple[int, int, int, int] | None:
        """(zp_in, zp_out, multiplier, shift) when ``t`` needs requantizing, else None."""
        in_scale, in_zp = self.qparams(t)
        out_scale, out_zp = self.qparams(self.out)
        if in_scale == out_scale and in_zp == out_zp:
            return None
        return (in_zp, out_zp, *requantizer(in_scale, out_scale))

    def run(self, inputs: list[np.ndarray], pads: object = None) -> np.ndarray:
        it = iter(inputs)
        parts = []
        for k, (t, rq) in enumerate(zip(self.sources, self.rescale)):
            x = t.data if t.is_const else next(it)
            if rq is not None and self.ort_tables is not None:
                parts.append(self.ort_tables[k][x.astype(np.int64) + 128])
            else:
                parts.append(x if rq is None else requantize(x, *rq))
        return np.concatenate(parts, axis=self.axis)


@register("PAD")
class Pad(PreparedOp):
    """Constant padding: zero for float, the output zero point for int8.

    With explicit ``pads`` the H/W amounts come from the caller (a tile only pads where it
    touches the image border); paddings on other axes still come from the paddings tensor.
    """

    spatial = True

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        self.paddings = [tuple(int(v) for v in row) for row in self.const(1, "paddings")]
        self.value = self.qparams(self.out)[1] if self.quantized else 0.0

    def default_pads(self, in_hw: tuple[int, int] | None = None) -> Pads:
        (top, bottom), (left, right) = self.paddings[1], self.paddings[2]
        return top, bottom, left, right

    def run(self, inputs: list[np.ndarray], pads: Pads | None = None) -> np.ndarray:
        x = inputs[0]
        widths = list(self.paddings)
        if pads is not None:
            if x.ndim != 4:
                self.unsupported("explicit H/W pads need an NHWC input")
            widths[1], widths[2] = (pads[0], pads[1]), (pads[2], pads[3])
        return np.pad(x, widths, mode="constant", constant_values=np.array(self.value, x.dtype))
