"""Hypothesis strategies: random small int8 CNNs built directly in the Graph IR.

``random_cnn()`` draws the structure (image size, layer kinds, kernels, strides, paddings,
activations) with hypothesis and fills weights, biases and quantization from a drawn seed,
so examples shrink well and stay cheap. Every graph follows TFLite's int8 rules, so LiteRT's
reference kernels accept it once written with :func:`tinypatch.backends.write_tflite`:
symmetric per-channel conv weights (zero point 0), int32 bias with scale
``input_scale * weight_scale``, pools / pad / resize / concatenation keep their input's
quantization, softmax outputs (1/256, -128).

Also :func:`assert_same_graph`, the graph equality that round-trip tests use.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from tinypatch.ir import Graph, Op, QuantParams, Tensor
from tinypatch.ir.ops import out_size

LAYER_KINDS = ("conv", "depthwise", "avg_pool", "max_pool", "pad", "residual_add", "mul", "resize", "concat")
# issue 10's operators (drawn only where a test asks for them)
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
        n, h, w, c = self.shape()
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


def unet_step() -> tuple[Graph, np.ndarray]:
    """A small U-Net step (24x20x3 input): conv, stride-2 conv, stride-2 TRANSPOSE_CONV back up, channel
    concat with the skip, PRELU, bilinear upsampling (half-pixel centres) to 36x30, MAXIMUM with a 1x1
    branch, conv; and a seeded input."""
    rng = np.random.default_rng(11)
    b = CnnBuilder(rng, (1, 24, 20, 3), "unet_step")
    b.conv(8, 3, 3, (1, 1), (1, 1), "SAME", "RELU")
    skip = b.cur
    b.conv(16, 3, 3, (2, 2), (1, 1), "SAME", "RELU")
    b.transpose_conv(8, 3, 3, (2, 2), "SAME", True, "RELU")
    b.concat(skip, 3)
    b.prelu()
    b.resize_bilinear(36, 30, False, True)
    branch = b.cur
    b.conv(16, 1, 1, (1, 1), (1, 1), "SAME", out_quant=b.quant(branch))
    b.binary("MAXIMUM", branch)
    b.conv(4, 3, 3, (1, 1), (1, 1), "SAME")
    return b.finish(), rng.integers(-128, 128, (1, 24, 20, 3), dtype=np.int8)


# --- hypothesis strategies -------------------------------------------------------------
def _odd(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.integers(lo // 2, (hi - 1) // 2).map(lambda k: 2 * k + 1)


def _window(draw: st.DrawFn, size: int, max_kernel: int, max_stride: int, max_dilation: int,
            padding: str) -> tuple[int, int, int]:
    """(kernel, stride, dilation) along one axis, with at least one output element."""
    dilation = draw(st.integers(1, max_dilation))
    limit = max_kernel if padding == "SAME" else min(max_kernel, (size - 1) // dilation + 1)
    return draw(st.integers(1, limit)), draw(st.integers(1, max_stride)), dilation


def _conv_params(draw: st.DrawFn, b: CnnBuilder, max_stride: int = 3) -> dict[str, object]:
    _, h, w, _ = b.shape()
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    kh, sh, dh = _window(draw, h, 7, max_stride, 3, padding)
    kw, sw, dw = _window(draw, w, 7, max_stride, 3, padding)
    return {"kh": kh, "kw": kw, "stride": (sh, sw), "dilation": (dh, dw), "padding": padding,
            "act": draw(st.sampled_from(FUSED))}


def _same_shape_layer(draw: st.DrawFn, b: CnnBuilder) -> None:
    """A stride-1 SAME layer that keeps the current shape (the body of a residual / product)."""
    c = b.shape()[3]
    kind = draw(st.sampled_from(["conv", "depthwise", "max_pool"]))
    p = _conv_params(draw, b, max_stride=1) | {"padding": "SAME"}
    if kind == "conv":
        b.conv(c, **p)
    elif kind == "depthwise":
        b.depthwise(1, **p)
    else:
        b.pool("MAX_POOL_2D", p["kh"], p["kw"], (1, 1), "SAME", p["act"])


def _layer(draw: st.DrawFn, b: CnnBuilder, kind: str) -> None:
    _, h, w, c = b.shape()
    if kind == "conv":
        b.conv(draw(st.integers(1, _MAX_CHANNELS)), **_conv_params(draw, b))
    elif kind == "depthwise":
        b.depthwise(draw(st.sampled_from([1, 2] if c <= _MAX_CHANNELS else [1])), **_conv_params(draw, b))
    elif kind in ("avg_pool", "max_pool"):
        padding = draw(st.sampled_from(["SAME", "VALID"]))
        fh, sh, _ = _window(draw, h, 4, 3, 1, padding)
        fw, sw, _ = _window(draw, w, 4, 3, 1, padding)
        b.pool("AVERAGE_POOL_2D" if kind == "avg_pool" else "MAX_POOL_2D", fh, fw, (sh, sw), padding,
               draw(st.sampled_from(FUSED)))
    elif kind == "pad":
        b.pad(*(draw(st.integers(0, 2)) for _ in range(4)))
    elif kind in ("residual_add", "mul"):
        skip = b.cur
        for _ in range(draw(st.integers(1, 2))):
            _same_shape_layer(draw, b)
        if kind == "mul" and draw(st.booleans()):  # squeeze-excite style: broadcast [1,1,1,C]
            b.mean(keep_dims=True)
        (b.add if kind == "residual_add" else b.mul)(skip, draw(st.sampled_from(FUSED)))
    elif kind == "resize":
        align, half = draw(st.sampled_from([(False, False), (True, False), (False, True)]))
        b.resize(draw(st.integers((h + 1) // 2, min(2 * h, 40))), draw(st.integers((w + 1) // 2, min(2 * w, 40))),
                 align, half)
    elif kind == "concat":
        first = b.cur
        p = _conv_params(draw, b, max_stride=1) | {"padding": "SAME"}
        b.conv(draw(st.integers(1, _MAX_CHANNELS)), out_quant=b.quant(), **p)
        b.concat(first, draw(st.sampled_from([3, -1])))
    elif kind == "bilinear":
        align, half = draw(st.sampled_from([(False, False), (True, False), (False, True)]))
        b.resize_bilinear(draw(st.integers((h + 1) // 2, min(2 * h, 40))),
                          draw(st.integers((w + 1) // 2, min(2 * w, 40))), align, half)
    elif kind == "transpose_conv":
        padding = draw(st.sampled_from(["SAME", "VALID"]))
        stride = (draw(st.sampled_from([1, 2, 2, 3])), draw(st.sampled_from([1, 2, 2, 3])))
        assume(h * stride[0] <= 48 and w * stride[1] <= 48)
        b.transpose_conv(draw(st.integers(1, _MAX_CHANNELS)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), stride,
                         padding, draw(st.booleans()), draw(st.sampled_from(FUSED)))
    elif kind in ("maximum", "minimum", "squared_difference"):
        skip = b.cur
        _same_shape_layer(draw, b)
        if kind != "squared_difference":  # MAXIMUM/MINIMUM compare stored values: give both one quantization
            b.conv(c, 1, 1, (1, 1), (1, 1), "SAME", out_quant=b.quant(skip))
        b.binary(kind.upper(), skip)
    elif kind == "prelu":
        b.prelu()
    elif kind == "channel_slice":
        assume(c > 1)
        begin = draw(st.integers(0, c - 1))
        b.channel_slice(begin, draw(st.integers(1, c - begin)), draw(st.booleans()))
    elif kind == "split":
        v = draw(st.booleans())
        divisors = [k for k in range(1, c + 1) if c % k == 0]
        if v:
            cuts = sorted(draw(st.sets(st.integers(1, c - 1), max_size=3))) if c > 1 else []
            sizes = [b - a for a, b in zip([0, *cuts], [*cuts, c])]
        else:
            parts = draw(st.sampled_from(divisors))
            sizes = [c // parts] * parts
        b.split_swap(sizes, v)
    else:
        raise ValueError(f"unknown layer kind {kind!r}")


@st.composite
def random_cnn(draw: st.DrawFn, max_layers: int = 6, kinds: tuple[str, ...] = LAYER_KINDS,
               head: bool | None = None) -> tuple[Graph, np.ndarray]:
    """A random int8 CNN and a random int8 input for it.

    ``max_layers`` (1..) layer blocks drawn from ``kinds`` (see LAYER_KINDS) on an odd,
    non-square 5..33 image with 1..8 channels; ``head`` adds MEAN (+ FULLY_CONNECTED
    (+ SOFTMAX)) at the end (None: drawn).
    """
    h = draw(_odd(5, 33))
    w = draw(_odd(5, 33).filter(lambda v: v != h))
    c = draw(st.integers(1, _MAX_CHANNELS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = CnnBuilder(rng, (1, h, w, c))
    for _ in range(draw(st.integers(1, max_layers))):
        _layer(draw, b, draw(st.sampled_from(kinds)))
    if head if head is not None else draw(st.booleans()):
        b.mean(keep_dims=False)
        depth = draw(st.integers(0, 2))
        if depth >= 1:
            b.fully_connected(draw(st.integers(2, 10)))
        if depth == 2:
            b.softmax()
    x = rng.integers(-128, 128, (1, h, w, c), dtype=np.int8)
    return b.finish(), x


@st.composite
def random_multi_output_cnn(draw: st.DrawFn, max_layers: int = 5) -> tuple[Graph, np.ndarray]:
    """A random int8 CNN with 2..4 graph outputs, like a detector: after some layers a head (a conv
    or a pool) branches off the trunk into a graph output made in the middle of the graph, or the
    trunk tensor itself becomes an output that later layers still read; the last layer's output is
    an output too. Layers as :func:`random_cnn` (no global head)."""
    h = draw(_odd(5, 25))
    w = draw(_odd(5, 25).filter(lambda v: v != h))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = CnnBuilder(rng, (1, h, w, draw(st.integers(1, _MAX_CHANNELS))), name="random_multi_output_cnn")
    outputs: list[str] = []
    for i in range(draw(st.integers(2, max_layers))):
        _layer(draw, b, draw(st.sampled_from(LAYER_KINDS)))
        tap = draw(st.sampled_from(["none", "head", "trunk"]))
        if tap == "trunk" and b.cur not in outputs:
            outputs.append(b.cur)
        elif tap == "head":
            trunk = b.cur
            if draw(st.booleans()):
                b.conv(draw(st.integers(1, _MAX_CHANNELS)), **_conv_params(draw, b, max_stride=2))
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


# --- graph equality --------------------------------------------------------------------
def assert_same_graph(a: Graph, b: Graph) -> None:
    """Assert two graphs hold the same tensors (shape, dtype, quant, data bytes), ops and I/O."""
    assert list(a.tensors) == list(b.tensors)
    for name, ta in a.tensors.items():
        tb = b.tensors[name]
        assert (ta.shape, ta.dtype) == (tb.shape, tb.dtype), name
        assert (ta.quant is None) == (tb.quant is None), name
        if ta.quant is not None and tb.quant is not None:
            assert ta.quant.scale.tobytes() == tb.quant.scale.tobytes(), name
            assert ta.quant.zero_point.tolist() == tb.quant.zero_point.tolist(), name
            assert ta.quant.axis == tb.quant.axis, name
        assert (ta.data is None) == (tb.data is None), name
        if ta.data is not None and tb.data is not None:
            assert ta.data.dtype == tb.data.dtype and ta.data.tobytes() == tb.data.tobytes(), name
    def ops(g: Graph) -> list[tuple]:
        return [(o.type, o.inputs, o.outputs, o.attrs) for o in g.ops]

    assert ops(a) == ops(b)
    assert (a.inputs, a.outputs) == (b.inputs, b.outputs)
