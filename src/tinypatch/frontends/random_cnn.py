"""Random small int8 CNNs built directly in the Graph IR, for property tests and fuzzing: the one
generator (the tests' hypothesis strategies in ``tests/strategies.py`` wrap it).

:func:`random_cnn` (and :func:`random_multi_output_cnn`, detector-like) draws the structure (image size, layer kinds, kernels, strides, paddings,
activations) through a :class:`Draw` (hypothesis in the tests, :class:`RngDraw` with a seed
in ``benchmarks/fuzz.py``) and fills weights, biases and quantization from a drawn seed. Every
graph follows TFLite's int8 rules, so LiteRT's reference kernels accept it once written with
:func:`tinypatch.backends.write_tflite`: symmetric per-channel conv weights (zero point 0),
int32 bias with scale ``input_scale * weight_scale``, pools / pad / resize / concatenation keep
their input's quantization, softmax outputs (1/256, -128).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from tinypatch.ir import Graph, Op, QuantParams, Tensor
from tinypatch.ir.ops import out_size

LAYER_KINDS = ("conv", "depthwise", "avg_pool", "max_pool", "pad", "residual_add", "mul", "resize", "concat")
# issue 10's operators (drawn only where a caller asks for them)
NEW_KINDS = ("bilinear", "transpose_conv", "maximum", "minimum", "squared_difference", "prelu", "channel_slice",
             "split")
FUSED = ("NONE", "RELU", "RELU6")
_TARGET_STD = 40.0  # aim activations at about this many quantization steps of spread
_MAX_CHANNELS = 8


class CnnBuilder:
    """Appends int8 layers to a single-input graph, tracking the current tensor ``cur``.

    Weights, biases and scales come from ``rng``. ``stds`` holds the rough standard deviation
    of ``q - zero_point`` of every activation; output scales are picked from it so that the
    activations stay away from both saturation and all-zero.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int, int, int], name: str = "random_cnn"):
        self.rng = rng
        self.g = Graph(name)
        quant = QuantParams.tensor(float(rng.uniform(0.005, 0.05)), int(rng.integers(-20, 21)))
        self.cur = self._activation(shape, quant)
        self.stds = {self.cur: 74.0}  # uniform int8 input
        self.g.inputs = [self.cur]

    # --- tensors ------------------------------------------------------------------
    def _activation(self, shape: tuple[int, ...], quant: QuantParams) -> str:
        name = f"t{len(self.g.tensors)}"
        self.g.add_tensor(Tensor(name, shape, "int8", quant))
        return name

    def _const(self, data: np.ndarray, quant: QuantParams | None = None) -> str:
        name = f"c{len(self.g.tensors)}"
        self.g.add_tensor(Tensor(name, data.shape, str(data.dtype), quant, data))
        return name

    def _fresh_quant(self, real_std: float, act: object = "NONE") -> QuantParams:
        scale = real_std / _TARGET_STD * float(self.rng.uniform(0.5, 2.0))
        if act == "RELU6":  # keep [0, 6] wider than a few steps
            scale = min(scale, 6.0 / 64)
        return QuantParams.tensor(max(scale, 1e-6), int(self.rng.integers(-30, 31)))

    def shape(self, name: str | None = None) -> tuple[int, ...]:
        return self.g.tensors[name or self.cur].shape

    def quant(self, name: str | None = None) -> QuantParams:
        q = self.g.tensors[name or self.cur].quant
        assert q is not None
        return q

    @property
    def std(self) -> float:
        return self.stds[self.cur]

    def _real_std(self, name: str) -> float:
        return self.stds[name] * float(self.quant(name).scale[0])

    def _emit(self, op_type: str, inputs: list[str], shape: tuple[int, ...], quant: QuantParams,
              std: float, **attrs: object) -> str:
        out = self._activation(shape, quant)
        self.g.add_op(Op(op_type, inputs, [out], dict(attrs)))
        self.cur, self.stds[out] = out, std
        return out

    # --- layers -------------------------------------------------------------------
    def conv(self, out_c: int, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int],
             padding: str, act: str = "NONE", out_quant: QuantParams | None = None) -> str:
        c = self.shape()[3]
        weights = self.rng.integers(-127, 128, (out_c, kh, kw, c), dtype=np.int8)
        return self._weighted("CONV_2D", weights, 0, kh * kw * c,
                              self._window_out(kh, kw, stride, dilation, padding, out_c), out_quant,
                              **self._window_attrs(stride, dilation, padding, act))

    def depthwise(self, multiplier: int, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int],
                  padding: str, act: str = "NONE") -> str:
        out_c = self.shape()[3] * multiplier
        weights = self.rng.integers(-127, 128, (1, kh, kw, out_c), dtype=np.int8)
        return self._weighted("DEPTHWISE_CONV_2D", weights, 3, kh * kw,
                              self._window_out(kh, kw, stride, dilation, padding, out_c), None,
                              depth_multiplier=multiplier, **self._window_attrs(stride, dilation, padding, act))

    def _window_out(self, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int], padding: str,
                    channels: int) -> tuple[int, int, int, int]:
        n, h, w, _ = self.shape()
        return (n, out_size(h, kh, stride[0], dilation[0], padding), out_size(w, kw, stride[1], dilation[1], padding),
                channels)

    @staticmethod
    def _window_attrs(stride: tuple[int, int], dilation: tuple[int, int], padding: str, act: str) -> dict[str, object]:
        return {"padding": padding, "stride_h": stride[0], "stride_w": stride[1], "dilation_h": dilation[0],
                "dilation_w": dilation[1], "fused_activation_function": act}

    def _weighted(self, op_type: str, weights: np.ndarray, axis: int, fan_in: int, shape: tuple[int, ...],
                  out_quant: QuantParams | None, **attrs: object) -> str:
        out_c = weights.shape[axis]
        s_in = float(self.quant().scale[0])
        w_scale = (self.rng.uniform(0.25, 1.0, out_c) * 0.01).astype(np.float32)
        acc_std = self.std * 73.0 * math.sqrt(fan_in)  # int32 accumulator spread
        bias = self.rng.integers(-int(acc_std), int(acc_std) + 1, out_c).astype(np.int32)
        bias_scale = np.float32(s_in) * w_scale
        per_channel = out_c > 1  # one scale reads back as per-tensor, like the TFLite reader does
        w = self._const(weights, QuantParams(w_scale, np.zeros(out_c, np.int64), axis if per_channel else None))
        b = self._const(bias, QuantParams(bias_scale, np.zeros(out_c, np.int64), 0 if per_channel else None))
        act = attrs["fused_activation_function"]
        quant = out_quant or self._fresh_quant(acc_std * s_in * float(w_scale.mean()), act)
        return self._emit(op_type, [self.cur, w, b], shape, quant, _TARGET_STD, **attrs)

    def pool(self, op_type: str, fh: int, fw: int, stride: tuple[int, int], padding: str, act: str = "NONE") -> str:
        n, h, w, c = self.shape()
        shape = (n, out_size(h, fh, stride[0], 1, padding), out_size(w, fw, stride[1], 1, padding), c)
        return self._emit(op_type, [self.cur], shape, self.quant(), self.std, padding=padding, stride_h=stride[0],
                          stride_w=stride[1], filter_h=fh, filter_w=fw, fused_activation_function=act)

    def pad(self, top: int, bottom: int, left: int, right: int) -> str:
        n, h, w, c = self.shape()
        paddings = self._const(np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32))
        shape = (n, h + top + bottom, w + left + right, c)
        return self._emit("PAD", [self.cur, paddings], shape, self.quant(), self.std)

    def add(self, other: str, act: str = "NONE") -> str:
        real = math.hypot(self._real_std(self.cur), self._real_std(other))
        return self._emit("ADD", [other, self.cur], self.shape(), self._fresh_quant(real, act), _TARGET_STD,
                          fused_activation_function=act)

    def mul(self, other: str, act: str = "NONE") -> str:
        real = self._real_std(self.cur) * self._real_std(other)
        return self._emit("MUL", [other, self.cur], self.shape(other), self._fresh_quant(real, act), _TARGET_STD,
                          fused_activation_function=act)

    def mean(self, keep_dims: bool) -> str:
        n, _, _, c = self.shape()
        axis = self._const(np.array([1, 2], np.int32))
        shape = (n, 1, 1, c) if keep_dims else (n, c)
        real = self._real_std(self.cur)
        return self._emit("MEAN", [self.cur, axis], shape, self._fresh_quant(real), _TARGET_STD, keep_dims=keep_dims)

    def resize(self, out_h: int, out_w: int, align_corners: bool, half_pixel_centers: bool) -> str:
        n, _, _, c = self.shape()
        size = self._const(np.array([out_h, out_w], np.int32))
        return self._emit("RESIZE_NEAREST_NEIGHBOR", [self.cur, size], (n, out_h, out_w, c), self.quant(), self.std,
                          align_corners=align_corners, half_pixel_centers=half_pixel_centers)

    def resize_bilinear(self, out_h: int, out_w: int, align_corners: bool, half_pixel_centers: bool) -> str:
        n, _, _, c = self.shape()
        size = self._const(np.array([out_h, out_w], np.int32))
        return self._emit("RESIZE_BILINEAR", [self.cur, size], (n, out_h, out_w, c), self.quant(), self.std,
                          align_corners=align_corners, half_pixel_centers=half_pixel_centers)

    def transpose_conv(self, out_c: int, kh: int, kw: int, stride: tuple[int, int], padding: str, bias: bool,
                       act: str = "NONE") -> str:
        """Upsampling transpose conv: ``in * stride`` (SAME) or ``(in - 1) * stride + k`` (VALID)."""
        n, h, w, c = self.shape()
        oh, ow = (h * stride[0], w * stride[1]) if padding == "SAME" else \
            ((h - 1) * stride[0] + kh, (w - 1) * stride[1] + kw)
        shape = self._const(np.array([n, oh, ow, out_c], np.int32))
        s_in = float(self.quant().scale[0])
        w_scale = (self.rng.uniform(0.25, 1.0, out_c) * 0.01).astype(np.float32)
        per_channel = out_c > 1
        weights = self._const(self.rng.integers(-127, 128, (out_c, kh, kw, c), dtype=np.int8),
                              QuantParams(w_scale, np.zeros(out_c, np.int64), 0 if per_channel else None))
        fan_in = max(1, kh * kw * c // (stride[0] * stride[1]))
        acc_std = self.std * 73.0 * math.sqrt(fan_in)
        inputs = [shape, weights, self.cur]
        if bias:
            inputs.append(self._const(self.rng.integers(-int(acc_std), int(acc_std) + 1, out_c).astype(np.int32),
                                      QuantParams(np.float32(s_in) * w_scale, np.zeros(out_c, np.int64),
                                                  0 if per_channel else None)))
        quant = self._fresh_quant(acc_std * s_in * float(w_scale.mean()), act)
        return self._emit("TRANSPOSE_CONV", inputs, (n, oh, ow, out_c), quant, _TARGET_STD, padding=padding,
                          stride_h=stride[0], stride_w=stride[1], fused_activation_function=act)

    def binary(self, op_type: str, other: str) -> str:
        """MAXIMUM / MINIMUM (one quantization, so the comparison means something) or SQUARED_DIFFERENCE."""
        if op_type != "SQUARED_DIFFERENCE":
            return self._emit(op_type, [other, self.cur], self.shape(), self.quant(), self.std)
        real = self._real_std(self.cur) ** 2 + self._real_std(other) ** 2
        return self._emit(op_type, [other, self.cur], self.shape(), self._fresh_quant(real), _TARGET_STD)

    def prelu(self) -> str:
        c = self.shape()[3]
        alpha = self._const(self.rng.integers(-128, 128, (1, 1, c), dtype=np.int8),
                            QuantParams.tensor(float(self.rng.uniform(0.002, 0.01)), int(self.rng.integers(-20, 21))))
        return self._emit("PRELU", [self.cur, alpha], self.shape(), self._fresh_quant(self._real_std(self.cur)),
                          _TARGET_STD)

    def channel_slice(self, begin: int, size: int, strided: bool) -> str:
        n, h, w, _ = self.shape()
        if strided:
            ins = [self._const(np.array(v, np.int32)) for v in ([0, 0, 0, begin], [0, 0, 0, begin + size], [1, 1, 1, 1])]
            return self._emit("STRIDED_SLICE", [self.cur, *ins], (n, h, w, size), self.quant(), self.std,
                              begin_mask=7, end_mask=7, ellipsis_mask=0, new_axis_mask=0, shrink_axis_mask=0,
                              offset=False)
        ins = [self._const(np.array(v, np.int32)) for v in ([0, 0, 0, begin], [-1, -1, -1, size])]
        return self._emit("SLICE", [self.cur, *ins], (n, h, w, size), self.quant(), self.std)

    def split_swap(self, sizes: list[int], v: bool) -> str:
        """SPLIT (equal parts) or SPLIT_V of the channels, then the parts concatenated in reverse order."""
        n, h, w, c = self.shape()
        outs = [self._activation((n, h, w, k), self.quant()) for k in sizes]
        axis = self._const(np.array([3] if v else 3, np.int32))
        if v:
            ins = [self.cur, self._const(np.array(sizes, np.int32)), axis]
        else:
            ins = [axis, self.cur]
        self.g.add_op(Op("SPLIT_V" if v else "SPLIT", ins, outs, {"num_splits": len(sizes)}))
        for o in outs:
            self.stds[o] = self.std
        return self._emit("CONCATENATION", outs[::-1], (n, h, w, c), self.quant(), self.std, axis=3,
                          fused_activation_function="NONE")

    def concat(self, first: str, axis: int) -> str:
        n, h, w, c = self.shape()
        shape = (n, h, w, self.shape(first)[3] + c)
        return self._emit("CONCATENATION", [first, self.cur], shape, self.quant(), self.std,
                          axis=axis, fused_activation_function="NONE")

    def fully_connected(self, units: int) -> str:
        n, c = self.shape()
        s_in = float(self.quant().scale[0])
        w_scale = float(self.rng.uniform(0.0025, 0.01))
        weights = self._const(self.rng.integers(-127, 128, (units, c), dtype=np.int8), QuantParams.tensor(w_scale, 0))
        acc_std = self.std * 73.0 * math.sqrt(c)
        bias = self._const(self.rng.integers(-int(acc_std), int(acc_std) + 1, units).astype(np.int32),
                           QuantParams.tensor(float(np.float32(s_in) * np.float32(w_scale)), 0))
        return self._emit("FULLY_CONNECTED", [self.cur, weights, bias], (n, units),
                          self._fresh_quant(acc_std * s_in * w_scale), _TARGET_STD,
                          fused_activation_function="NONE", keep_num_dims=False)

    def softmax(self) -> str:
        return self._emit("SOFTMAX", [self.cur], self.shape(), QuantParams.tensor(1 / 256, -128), 64.0, beta=1.0)

    def finish(self) -> Graph:
        self.g.outputs = [self.cur]
        self.g.validate()
        return self.g


# --- drawing the structure ----------------------------------------------------------------
class Draw(Protocol):
    """Where the random choices come from."""

    def integers(self, lo: int, hi: int) -> int: ...  # inclusive bounds
    def sampled_from(self, values: Sequence[Any]) -> Any: ...
    def booleans(self) -> bool: ...


class RngDraw:
    """Choices from a numpy generator (reproducible from its seed)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def integers(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def sampled_from(self, values: Sequence[Any]) -> Any:
        return values[int(self.rng.integers(len(values)))]

    def booleans(self) -> bool:
        return bool(self.rng.integers(2))


def _odd(draw: Draw, lo: int, hi: int) -> int:
    return 2 * draw.integers(lo // 2, (hi - 1) // 2) + 1


def _window(draw: Draw, size: int, max_kernel: int, max_stride: int, max_dilation: int,
            padding: str) -> tuple[int, int, int]:
    """(kernel, stride, dilation) along one axis, with at least one output element."""
    dilation = draw.integers(1, max_dilation)
    limit = max_kernel if padding == "SAME" else min(max_kernel, (size - 1) // dilation + 1)
    return draw.integers(1, limit), draw.integers(1, max_stride), dilation


def _conv_params(draw: Draw, b: CnnBuilder, max_stride: int = 3) -> dict[str, object]:
    _, h, w, _ = b.shape()
    padding = draw.sampled_from(["SAME", "VALID"])
    kh, sh, dh = _window(draw, h, 7, max_stride, 3, padding)
    kw, sw, dw = _window(draw, w, 7, max_stride, 3, padding)
    return {"kh": kh, "kw": kw, "stride": (sh, sw), "dilation": (dh, dw), "padding": padding,
            "act": draw.sampled_from(FUSED)}


def _same_shape_layer(draw: Draw, b: CnnBuilder) -> None:
    """A stride-1 SAME layer that keeps the current shape (the body of a residual / product)."""
    c = b.shape()[3]
    kind = draw.sampled_from(["conv", "depthwise", "max_pool"])
    p = _conv_params(draw, b, max_stride=1) | {"padding": "SAME"}
    if kind == "conv":
        b.conv(c, **p)
    elif kind == "depthwise":
        b.depthwise(1, **p)
    else:
        b.pool("MAX_POOL_2D", p["kh"], p["kw"], (1, 1), "SAME", p["act"])


def _layer(draw: Draw, b: CnnBuilder, kind: str) -> None:
    _, h, w, c = b.shape()
    if kind == "conv":
        b.conv(draw.integers(1, _MAX_CHANNELS), **_conv_params(draw, b))
    elif kind == "depthwise":
        b.depthwise(draw.sampled_from([1, 2] if c <= _MAX_CHANNELS else [1]), **_conv_params(draw, b))
    elif kind in ("avg_pool", "max_pool"):
        padding = draw.sampled_from(["SAME", "VALID"])
        fh, sh, _ = _window(draw, h, 4, 3, 1, padding)
        fw, sw, _ = _window(draw, w, 4, 3, 1, padding)
        b.pool("AVERAGE_POOL_2D" if kind == "avg_pool" else "MAX_POOL_2D", fh, fw, (sh, sw), padding,
               draw.sampled_from(FUSED))
    elif kind == "pad":
        b.pad(*(draw.integers(0, 2) for _ in range(4)))
    elif kind in ("residual_add", "mul"):
        skip = b.cur
        for _ in range(draw.integers(1, 2)):
            _same_shape_layer(draw, b)
        if kind == "mul" and draw.booleans():  # squeeze-excite style: broadcast [1,1,1,C]
            b.mean(keep_dims=True)
        (b.add if kind == "residual_add" else b.mul)(skip, draw.sampled_from(FUSED))
    elif kind == "resize":
        align, half = draw.sampled_from([(False, False), (True, False), (False, True)])
        b.resize(draw.integers((h + 1) // 2, min(2 * h, 40)), draw.integers((w + 1) // 2, min(2 * w, 40)),
                 align, half)
    elif kind == "concat":
        first = b.cur
        p = _conv_params(draw, b, max_stride=1) | {"padding": "SAME"}
        b.conv(draw.integers(1, _MAX_CHANNELS), out_quant=b.quant(), **p)
        b.concat(first, draw.sampled_from([3, -1]))
    elif kind == "bilinear":
        align, half = draw.sampled_from([(False, False), (True, False), (False, True)])
        b.resize_bilinear(draw.integers((h + 1) // 2, min(2 * h, 40)), draw.integers((w + 1) // 2, min(2 * w, 40)),
                          align, half)
    elif kind == "transpose_conv":  # output at most 48 x 48 (stride 1 where even that is larger)
        padding = draw.sampled_from(["SAME", "VALID"])
        stride = tuple(draw.sampled_from([s for s in (1, 2, 2, 3) if n * s <= 48] or [1]) for n in (h, w))
        b.transpose_conv(draw.integers(1, _MAX_CHANNELS), draw.integers(1, 4), draw.integers(1, 4), stride,
                         padding, draw.booleans(), draw.sampled_from(FUSED))
    elif kind in ("maximum", "minimum", "squared_difference"):
        skip = b.cur
        _same_shape_layer(draw, b)
        if kind != "squared_difference":  # MAXIMUM/MINIMUM compare stored values: give both one quantization
            b.conv(c, 1, 1, (1, 1), (1, 1), "SAME", out_quant=b.quant(skip))
        b.binary(kind.upper(), skip)
    elif kind == "prelu":
        b.prelu()
    elif kind == "channel_slice":  # one channel: the whole of it
        begin = draw.integers(0, c - 1)
        b.channel_slice(begin, draw.integers(1, c - begin), draw.booleans())
    elif kind == "split":
        if draw.booleans():  # SPLIT_V at up to 3 drawn cuts
            cuts = sorted({draw.integers(1, c - 1) for _ in range(draw.integers(0, 3))}) if c > 1 else []
            b.split_swap([hi - lo for lo, hi in zip([0, *cuts], [*cuts, c])], True)
        else:
            parts = draw.sampled_from([k for k in range(1, c + 1) if c % k == 0])
            b.split_swap([c // parts] * parts, False)
    else:
        raise ValueError(f"unknown layer kind {kind!r}")


def random_cnn(draw: Draw, max_layers: int = 6, kinds: tuple[str, ...] = LAYER_KINDS,
               head: bool | None = None) -> tuple[Graph, np.ndarray]:
    """A random int8 CNN and a random int8 input for it.

    ``max_layers`` (1..) layer blocks drawn from ``kinds`` (see LAYER_KINDS) on an odd,
    non-square 5..33 image with 1..8 channels; ``head`` adds MEAN (+ FULLY_CONNECTED
    (+ SOFTMAX)) at the end (None: drawn).
    """
    h = _odd(draw, 5, 33)
    w = _odd(draw, 5, 31)
    w += 2 if w >= h else 0  # any odd width in 5..33 but h
    c = draw.integers(1, _MAX_CHANNELS)
    rng = np.random.default_rng(draw.integers(0, 2**32 - 1))
    b = CnnBuilder(rng, (1, h, w, c))
    for _ in range(draw.integers(1, max_layers)):
        _layer(draw, b, draw.sampled_from(kinds))
    if head if head is not None else draw.booleans():
        b.mean(keep_dims=False)
        depth = draw.integers(0, 2)
        if depth >= 1:
            b.fully_connected(draw.integers(2, 10))
        if depth == 2:
            b.softmax()
    x = rng.integers(-128, 128, (1, h, w, c), dtype=np.int8)
    return b.finish(), x


def random_multi_output_cnn(draw: Draw, max_layers: int = 5) -> tuple[Graph, np.ndarray]:
    """A random int8 CNN with 2..4 graph outputs, like a detector: after some layers a head (a conv
    or a pool) branches off the trunk into a graph output made in the middle of the graph, or the
    trunk tensor itself becomes an output that later layers still read; the last layer's output is
    an output too. Layers as :func:`random_cnn` (no global head)."""
    h = _odd(draw, 5, 25)
    w = _odd(draw, 5, 23)
    w += 2 if w >= h else 0  # any odd width in 5..25 but h
    rng = np.random.default_rng(draw.integers(0, 2**32 - 1))
    b = CnnBuilder(rng, (1, h, w, draw.integers(1, _MAX_CHANNELS)), name="random_multi_output_cnn")
    outputs: list[str] = []
    for _ in range(draw.integers(2, max_layers)):
        _layer(draw, b, draw.sampled_from(LAYER_KINDS))
        tap = draw.sampled_from(["none", "head", "trunk"])
        if tap == "trunk" and b.cur not in outputs:
            outputs.append(b.cur)
        elif tap == "head":
            trunk = b.cur
            if draw.booleans():
                b.conv(draw.integers(1, _MAX_CHANNELS), **_conv_params(draw, b, max_stride=2))
            else:
                b.pool("MAX_POOL_2D", 2, 2, (2, 2), "SAME")
            outputs.append(b.cur)
            b.cur = trunk
    if b.cur not in outputs:
        outputs.append(b.cur)
    if len(outputs) == 1:  # one more head on the last layer
        b.pool("MAX_POOL_2D", 3, 3, (1, 1), "SAME")
        outputs.append(b.cur)
    b.g.outputs = outputs
    b.g.validate()
    return b.g, rng.integers(-128, 128, b.shape(b.g.inputs[0]), dtype=np.int8)
