"""The prepared-operator protocol, the kernel registry and helpers shared by the kernels.

``prepare(graph, op)`` does the per-model work once (multipliers, shifts, reshaped
weights, lookup tables) and returns a :class:`PreparedOp`; calling it runs the operator on
numpy arrays. Spatial operators accept explicit ``pads=(top, bottom, left, right)`` so a
tile of the feature map can be computed with padding only where the tile touches the
image border.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from tinypatch.errors import InputError, UnsupportedOperatorError
from tinypatch.ir import Graph, Op, Tensor
from tinypatch.ir.ops import ACTIVATIONS, out_size, pad_before, with_defaults
from tinypatch.kernels.fixedpoint import roundf
from tinypatch.kernels.limits import check_op

Pads = tuple[int, int, int, int]  # (top, bottom, left, right)

_REGISTRY: dict[str, Callable[[Graph, Op], PreparedOp]] = {}


def register(*op_types: str) -> Callable[[type], type]:
    """Class decorator: the class prepares the listed op types (constructor ``(graph, op)``)."""

    def deco(cls: type) -> type:
        for t in op_types:
            _REGISTRY[t] = cls
        return cls

    return deco


def prepare(graph: Graph, op: Op) -> PreparedOp:
    """Precompute everything ``op`` needs and return it ready to run (QuantizationError for
    parameters the reference kernels refuse, :mod:`tinypatch.kernels.limits`)."""
    cls = _REGISTRY.get(op.type)
    if cls is None:
        raise UnsupportedOperatorError(op.type, _index(graph, op), "no kernel for this operator")
    check_op(graph, op, _index(graph, op))
    return cls(graph, op)


def supported_ops() -> tuple[str, ...]:
    """Operator types that have a kernel."""
    return tuple(sorted(_REGISTRY))


def _index(graph: Graph, op: Op) -> int | None:
    return next((i for i, o in enumerate(graph.ops) if o is op), None)


class PreparedOp:
    """One operator with its constants folded in.

    Call it with one array per entry of ``op.inputs`` (constant and absent entries are
    ignored, so ``None`` will do) or with just the non-constant inputs, ``input_names``.
    ``spatial`` ops honour ``pads``; the others ignore it. Returns one array per output.
    """

    spatial: ClassVar[bool] = False
    dtypes: ClassVar[tuple[str, ...]] = ("int8", "float32")

    def __init__(self, graph: Graph, op: Op) -> None:
        self.op = op
        self.graph = graph
        self.input_names = [t for t in op.inputs if t and not graph.tensors[t].is_const]
        self._runtime_positions = [k for k, t in enumerate(op.inputs) if t in self.input_names]
        self.output_names = list(op.outputs)
        self.out = graph.tensors[op.outputs[0]]
        self.dtype = self.out.dtype
        # which integer arithmetic to reproduce: "tflite" (fixed point) or "onnxruntime" (float scales)
        self.arith = graph.meta.get("arith", "tflite")
        if self.dtype not in self.dtypes:
            self.unsupported(f"output dtype {self.dtype}")

    # --- calling ---------------------------------------------------------------------
    def __call__(self, inputs: Sequence[np.ndarray], pads: Pads | None = None) -> list[np.ndarray]:
        if len(inputs) == len(self.op.inputs) != len(self.input_names):
            inputs = [inputs[k] for k in self._runtime_positions]
        elif len(inputs) != len(self.input_names):
            raise InputError(f"{self.op.name}: expected {len(self.input_names)} input arrays "
                             f"(or {len(self.op.inputs)} with constants), got {len(inputs)}")
        out = self.run([np.asarray(x) for x in inputs], pads)
        return out if isinstance(out, list) else [out]

    def run(self, inputs: list[np.ndarray], pads: Pads | None) -> np.ndarray | list[np.ndarray]:
        raise NotImplementedError

    def run_calls(self, calls: Sequence[tuple[Sequence[np.ndarray], Pads | None]]) -> list[np.ndarray]:
        """Several calls on the op's activation inputs, ``[(inputs, pads), ...]``: each call's first
        output, the bytes of one call each. Here one call each; kernels whose arithmetic gives the
        same bytes however rows are grouped run them as one (conv, depthwise)."""
        return [self(inputs, pads)[0] for inputs, pads in calls]

    # --- helpers for subclasses ------------------------------------------------------------
    def tensor(self, k: int) -> Tensor | None:
        """The op's k-th input tensor (None when absent)."""
        if k >= len(self.op.inputs) or not self.op.inputs[k]:
            return None
        return self.graph.tensors[self.op.inputs[k]]

    def const(self, k: int, what: str) -> np.ndarray:
        """Data of the k-th input, which must be a constant."""
        t = self.tensor(k)
        if t is None or not t.is_const:
            self.unsupported(f"{what} must be a constant tensor")
        return t.data

    def unsupported(self, detail: str) -> None:
        raise UnsupportedOperatorError(self.op.type, _index(self.graph, self.op), detail)

    def fused_activation(self) -> str:
        """The op's fused activation, checked to be one TFLite supports here."""
        act = with_defaults(self.op.type, self.op.attrs).get("fused_activation_function", "NONE")
        if act not in ACTIVATIONS:
            self.unsupported(f"fused activation {act}")
        return act

    def qparams(self, t: Tensor) -> tuple[np.float32, int]:
        """Per-tensor (scale, zero point) of an int8 tensor."""
        if t.quant is None:
            self.unsupported(f"int8 tensor {t.name!r} has no quantization parameters")
        return np.float32(t.quant.scale[0]), int(t.quant.zero_point[0])

    @property
    def quantized(self) -> bool:
        return self.dtype == "int8"

    @property
    def ort(self) -> bool:
        """Reproduce onnxruntime's CPU arithmetic instead of TFLite's (int8 only)."""
        return self.arith == "onnxruntime" and self.quantized


# --- activation ranges ----------------------------------------------------------------------
_FLOAT_ACT = {"NONE": (-np.inf, np.inf), "RELU": (0.0, np.inf), "RELU6": (0.0, 6.0),
              "RELU_N1_TO_1": (-1.0, 1.0)}


def activation_range_quantized(act: str, scale: np.float32, zero_point: int) -> tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized`` for an int8 output."""
    lo, hi = -128, 127

    def q(f: float) -> int:
        return zero_point + int(roundf(np.float32(f) / np.float32(scale)))

    if act == "RELU":
        return max(lo, q(0.0)), hi
    if act == "RELU6":
        return max(lo, q(0.0)), min(hi, q(6.0))
    if act == "RELU_N1_TO_1":
        return max(lo, q(-1.0)), min(hi, q(1.0))
    return lo, hi


def activation_float(x: np.ndarray, act: str) -> np.ndarray:
    """Apply a fused activation to a float32 result."""
    lo, hi = _FLOAT_ACT[act]
    if act == "NONE":
        return x.astype(np.float32, copy=False)
    return np.clip(x, np.float32(lo), np.float32(hi)).astype(np.float32, copy=False)


def saturate_int8(x: np.ndarray, lo: int = -128, hi: int = 127) -> np.ndarray:
    return np.clip(x, lo, hi).astype(np.int8)


# --- window geometry -------------------------------------------------------------------------
def conv_pads(in_hw: tuple[int, int], kernel_hw: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int], padding: str) -> Pads:
    """(top, bottom, left, right) zero padding TFLite applies for SAME/VALID on a full input.

    ``bottom``/``right`` are whatever the last output window needs (TFLite never reads them,
    it only clips windows at the border, which is the same thing).
    """
    pads = []
    for n, k, s, d in zip(in_hw, kernel_hw, stride, dilation):
        before = pad_before(n, k, s, d, padding)
        need = (out_size(n, k, s, d, padding) - 1) * s + (k - 1) * d + 1
        pads.append((before, max(need - n - before, 0)))
    return pads[0][0], pads[0][1], pads[1][0], pads[1][1]


def window_out_hw(in_hw: tuple[int, int], kernel_hw: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int], pads: Pads) -> tuple[int, int]:
    """Output size of a VALID window over the input padded by ``pads``."""
    oh = (in_hw[0] + pads[0] + pads[1] - (kernel_hw[0] - 1) * dilation[0] - 1) // stride[0] + 1
    ow = (in_hw[1] + pads[2] + pads[3] - (kernel_hw[1] - 1) * dilation[1] - 1) // stride[1] + 1
    if oh <= 0 or ow <= 0:
        raise InputError(f"input {in_hw} with pads {pads} is smaller than the {kernel_hw} window")
    return oh, ow


def pad_hw(x: np.ndarray, pads: Pads, value: float | int) -> np.ndarray:
    """Pad the H and W axes of an NHWC array with a constant."""
    top, bottom, left, right = pads
    if not any(pads):
        return x
    n, h, w, c = x.shape
    out = np.full((n, h + top + bottom, w + left + right, c), value, x.dtype)
    out[:, top: top + h, left: left + w] = x
    return out


def centered_padded(x: np.ndarray, zero_point: int, pads: Pads, dtype: type) -> np.ndarray:
    """``pad_hw(x.astype(dtype) - zero_point, pads, 0)`` in one pass over ``x``."""
    top, bottom, left, right = pads
    n, h, w, c = x.shape
    if not any(pads):
        return np.subtract(x, zero_point, dtype=dtype)
    out = np.zeros((n, h + top + bottom, w + left + right, c), dtype)
    np.subtract(x, zero_point, out=out[:, top: top + h, left: left + w], dtype=dtype)
    return out


def window_slices(xp: np.ndarray, out_hw: tuple[int, int], kernel_hw: tuple[int, int],
                  stride: tuple[int, int], dilation: tuple[int, int]):
    """Yield ((i, j), view) for each kernel tap: the [N, OH, OW, C] input view it reads."""
    oh, ow = out_hw
    sh, sw = stride
    dh, dw = dilation
    for i in range(kernel_hw[0]):
        for j in range(kernel_hw[1]):
            y0, x0 = i * dh, j * dw
            yield (i, j), xp[:, y0: y0 + (oh - 1) * sh + 1: sh, x0: x0 + (ow - 1) * sw + 1: sw, :]


def window_view(xp: np.ndarray, out_hw: tuple[int, int], kernel_hw: tuple[int, int],
                stride: tuple[int, int], dilation: tuple[int, int]) -> np.ndarray:
    """[N, OH, OW, KH, KW, C]: every output pixel's window of ``xp`` (a read-only strided view,
    element [n, y, x, i, j] being tap (i, j)'s view of :func:`window_slices` at (y, x))."""
    n, h, w, c = xp.shape
    oh, ow = out_hw
    (kh, kw), (sh, sw), (dh, dw) = kernel_hw, stride, dilation
    if min(n, oh, ow, c) <= 0:
        return np.zeros((max(n, 0), max(oh, 0), max(ow, 0), kh, kw, max(c, 0)), xp.dtype)
    if (oh - 1) * sh + (kh - 1) * dh >= h or (ow - 1) * sw + (kw - 1) * dw >= w:
        raise InputError(f"a {kh}x{kw} window at stride {stride} and dilation {dilation} giving {oh}x{ow} "
                         f"does not fit a {h}x{w} input")
    bn, bh, bw, bc = xp.strides
    shape, strides = (n, oh, ow, kh, kw, c), (bn, bh * sh, bw * sw, bh * dh, bw * dw, bc)
    if not xp.flags.c_contiguous:
        return np.lib.stride_tricks.as_strided(xp, shape, strides, writeable=False)
    v = np.ndarray(shape, xp.dtype, xp, 0, strides)  # the same view without as_strided's Python (small windows)
    v.flags.writeable = False
    return v


def window_matrix(xp: np.ndarray, out_hw: tuple[int, int], kernel_hw: tuple[int, int],
                  stride: tuple[int, int], dilation: tuple[int, int]) -> np.ndarray:
    """Im2col: [N * OH * OW, KH * KW * C], row (n, y, x) holding the taps of its window in the order of
    :func:`window_slices` (kernel row, kernel column, channel), in one copy of :func:`window_view`."""
    v = window_view(xp, out_hw, kernel_hw, stride, dilation)
    n, oh, ow, kh, kw, c = v.shape
    return v.reshape(n * oh * ow, kh * kw * c)


class SpatialOp(PreparedOp):
    """Base of conv/pool kernels: window geometry and explicit-padding resolution."""

    spatial = True
    kernel_hw: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    padding: str

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        self._geometry: dict[tuple, tuple[Pads, tuple[int, int]]] = {}  # (H, W, pads) -> see geometry

    def default_pads(self, in_hw: tuple[int, int]) -> Pads:
        """The op's own SAME/VALID padding for a full input of size ``in_hw``."""
        return conv_pads(in_hw, self.kernel_hw, self.stride, self.dilation, self.padding)

    def geometry(self, x: np.ndarray, pads: Pads | None) -> tuple[Pads, tuple[int, int]]:
        """The pads (``pads``, or the op's own for ``x``'s size) and the output size; worked out once per
        input size and pads (tiles call a kernel with few distinct ones)."""
        if x.ndim != 4:
            raise InputError(f"{self.op.name}: expected an NHWC array, got shape {x.shape}")
        key = (x.shape[1], x.shape[2], pads)
        try:
            return self._geometry[key]
        except KeyError:
            pass
        except TypeError:  # unhashable pads (a list): not kept
            key = None
        in_hw = (x.shape[1], x.shape[2])
        given = self.default_pads(in_hw) if pads is None else tuple(int(p) for p in pads)
        if len(given) != 4 or min(given) < 0:
            raise InputError(f"{self.op.name}: pads must be four non-negative ints, got {given}")
        got = given, window_out_hw(in_hw, self.kernel_hw, self.stride, self.dilation, given)
        if key is not None:
            self._geometry[key] = got
        return got


# --- gathers ---------------------------------------------------------------------------------
Tables = tuple[np.ndarray, np.ndarray, np.ndarray]  # (sources [n, m], used [n, m], weights [n, ...]) of n outputs


class GatherOp(PreparedOp):
    """An operator whose output row (column) ``o`` is computed from the input rows (columns) its index
    tables name (resizes, transpose conv): per axis, :meth:`whole_tables` gives for every output index
    ``m`` source indices (``used``: whether each one contributes) and its weights. Pixel (y, x) of the
    output depends on the input only at the used sources of row y and column x, with row y's and column
    x's weights (:meth:`gather`'s locality, as a window kernel's output pixel depends only on its window).

    :meth:`window` computes output rows ``[y0, y1)`` x columns ``[x0, x1)`` from an input slice whose
    top-left pixel is ``in_origin``: with the whole image's tables restricted to the window and their
    sources offset by the slice's origin (:meth:`tables`), so a slice holding the whole input's pixels
    there gives the whole image's output bytes there; a slice that misses a used source is an InputError.
    """

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        self._whole: dict[int, Tables] = {}  # per axis, the whole image's tables once made

    def whole_tables(self, ax: int) -> Tables:
        """The whole image's tables along axis ``ax`` (0: H, 1: W)."""
        raise NotImplementedError

    def gather(self, x: np.ndarray, rows: Tables, cols: Tables) -> np.ndarray:
        """The output of ``x`` (batch stacked) by row tables ``rows`` and column tables ``cols`` (sources
        relative to ``x``, every used one inside it)."""
        raise NotImplementedError

    def tables(self, ax: int, out: tuple[int, int], origin: int) -> Tables:
        """The tables of output interval ``out`` along axis ``ax`` for a slice starting at input index
        ``origin``: the whole image's, restricted to ``out``, sources offset by ``origin``."""
        whole = self._whole.get(ax)
        if whole is None:
            whole = self._whole[ax] = self.whole_tables(ax)
        src, used, weights = whole
        a, b = out
        return src[a:b] - origin, used[a:b], weights[a:b]

    def window(self, x_region: np.ndarray, in_origin: tuple[int, int],
               out_window: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
        """Output window ``out_window`` of the whole image from the input slice at ``in_origin``."""
        rows, cols = (self.tables(ax, out_window[ax], in_origin[ax]) for ax in (0, 1))
        for (src, used, _), size in ((rows, x_region.shape[1]), (cols, x_region.shape[2])):
            got = src[used]
            if got.size and (got.min() < 0 or got.max() >= size):
                raise InputError(f"{self.op.name}: input region at {in_origin} of size {x_region.shape[1:3]} "
                                 f"does not cover output window {out_window}")
        return self.gather(x_region, rows, cols)
