"""Build int8 graphs layer by layer with deterministic synthetic weights.

:class:`Builder` appends TFLite-style int8 operators to a :class:`~tinypatch.ir.Graph`. Weights
are int8 with per-channel symmetric scales (zero point 0; axis 0 for ``CONV_2D`` ``[out, kh, kw,
in]``, axis 3 for ``DEPTHWISE_CONV_2D`` ``[1, kh, kw, c]``, one scale for ``FULLY_CONNECTED``),
biases int32 with scale ``input_scale * weight_scale``. Each layer draws its values from
``numpy.random.default_rng([seed, crc32(op name)])``, so a layer's weights depend only on the
seed, its name and its shape.

Activation quantization follows an estimate of each tensor's real RMS: weights are scaled so
that a layer's pre-activation standard deviation is ``gain * rms(input)`` (He gain sqrt(2)
before ReLU), and its output range covers about four standard deviations, so activations
neither collapse to one value nor saturate. ``SOFTMAX`` and ``LOGISTIC`` use TFLite's fixed
output quantization (1/256, -128); pooling, ``MEAN``, ``RESHAPE``, ``PAD`` and resizing keep their
input's quantization, as the TFLite converter does.

Names: an op's output tensor carries the op's name (``blocks.3.dw``); its constants add a
suffix (``.weight``, ``.bias``, ``.axis``, ``.shape``, ``.paddings``, ``.size``, ``.perm``); an explicit pad in front
of a conv is ``<conv name>.pad``. :meth:`Builder.finish` records ``graph.meta["roles"]``
(op name -> role) and ``graph.meta["blocks"]`` ((block name, [op indices]) in graph order)
for the ops added inside :meth:`Builder.block`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from tinypatch.errors import GraphError
from tinypatch.ir import Graph, Op, QuantParams, Tensor
from tinypatch.ir.ops import out_size, pad_before
from tinypatch.ir.validate import DEFAULT_MAX_TENSOR_BYTES

Padding = str | int  # "SAME", "VALID", or a symmetric explicit pad in pixels (PyTorch style)

_RELU_GAIN = math.sqrt(2.0)  # He gain: keeps the RMS steady through conv + ReLU
_RANGE_STDS = 4.0  # quantized output range covers this many standard deviations
_FIXED_Q = QuantParams.tensor(1.0 / 256.0, -128)  # TFLite's int8 SOFTMAX / LOGISTIC output


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never below 90 % of ``value``.

    The rounding rule of torchvision's MobileNetV2 and MCUNet.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class Builder:
    """Append int8 layers with synthetic weights to a new graph; ``finish`` returns it."""

    def __init__(self, name: str, seed: int = 0) -> None:
        self.graph = Graph(name)
        self.seed = seed
        self._rms: dict[str, float] = {}  # estimated RMS of each activation's real value
        self._roles: dict[str, str] = {}
        self._blocks: list[tuple[str, list[int]]] = []
        self._block: list[int] | None = None

    # --- structure --------------------------------------------------------------------
    def input(self, shape: tuple[int, ...], scale: float = 1.0 / 128, zero_point: int = 0,
              name: str = "input") -> str:
        """Add a graph input (int8). Its RMS is that of a uniform int8 signal."""
        self.graph.add_tensor(Tensor(name, shape, "int8", QuantParams.tensor(scale, zero_point)))
        self.graph.inputs.append(name)
        self._rms[name] = 128 * scale / math.sqrt(3.0)
        return name

    @contextmanager
    def block(self, name: str) -> Iterator[None]:
        """Record the ops added inside the ``with`` as one block of ``graph.meta["blocks"]``."""
        if self._block is not None:
            raise GraphError(f"block {name!r} opened inside another block")
        self._block = []
        try:
            yield
        finally:
            if self._block:
                self._blocks.append((name, self._block))
            self._block = None

    def finish(self, outputs: list[str]) -> Graph:
        """Set the graph outputs, record roles and blocks in ``meta``, validate and return."""
        g = self.graph
        g.outputs = list(outputs)
        g.meta["roles"] = dict(self._roles)
        g.meta["blocks"] = [(n, list(ix)) for n, ix in self._blocks]
        g.meta["seed"] = self.seed
        g.validate()
        return g

    def shape(self, x: str) -> tuple[int, ...]:
        return self.graph.tensors[x].shape

    # --- layers with weights ------------------------------------------------------------
    def conv(self, x: str, out_channels: int, kernel: int = 1, stride: int = 1, *, name: str,
             dilation: int = 1, padding: Padding = "SAME", act: str = "RELU6", role: str = "conv",
             gain: float | None = None) -> str:
        """``CONV_2D`` with a square ``kernel``; ``padding`` as in :data:`Padding`; ``gain``: the weights'
        norm (default: the He gain with a ReLU, else 1)."""
        rng = self._rng(name)
        cin = self.shape(x)[3]
        x, pad = self._padding(x, kernel, stride, dilation, padding, name)
        q = _int8_weights(rng, (out_channels, kernel, kernel, cin), name)
        attrs = dict(padding=pad, stride_h=stride, stride_w=stride, dilation_h=dilation, dilation_w=dilation)
        shape = self._spatial_out(x, kernel, stride, dilation, pad, out_channels)
        return self._weighted("CONV_2D", x, q, 0, attrs, shape, act, name, role, rng, gain)

    def depthwise(self, x: str, kernel: int = 3, stride: int = 1, *, name: str, dilation: int = 1,
                  padding: Padding = "SAME", act: str = "RELU6", role: str = "dw") -> str:
        """``DEPTHWISE_CONV_2D`` with depth multiplier 1."""
        rng = self._rng(name)
        c = self.shape(x)[3]
        x, pad = self._padding(x, kernel, stride, dilation, padding, name)
        q = _int8_weights(rng, (1, kernel, kernel, c), name)
        attrs = dict(padding=pad, stride_h=stride, stride_w=stride, dilation_h=dilation, dilation_w=dilation,
                     depth_multiplier=1)
        return self._weighted("DEPTHWISE_CONV_2D", x, q, 3, attrs,
                              self._spatial_out(x, kernel, stride, dilation, pad, c), act, name, role, rng)

    def fully_connected(self, x: str, out_features: int, *, name: str, act: str = "NONE", role: str = "fc",
                        out_std: float | None = None) -> str:
        """``FULLY_CONNECTED`` on a ``[1, features]`` input, one weight scale (per tensor).

        ``out_std`` sets the spread of the real outputs (e.g. logits before SOFTMAX: TFLite's
        int8 softmax needs well-separated logits when there are hundreds of classes).
        """
        shape = self.shape(x)
        if len(shape) != 2:
            raise GraphError(f"{name}: FULLY_CONNECTED wants a [batch, features] input, got {shape}")
        rng = self._rng(name)
        q = _int8_weights(rng, (out_features, shape[1]), name)
        gain = None if out_std is None else out_std / self._rms[x]
        return self._weighted("FULLY_CONNECTED", x, q, None, {}, (shape[0], out_features), act, name, role, rng,
                              gain)

    # --- layers without weights -----------------------------------------------------------
    def add(self, a: str, b: str, *, name: str, act: str = "NONE", role: str = "add") -> str:
        """Element-wise ``ADD`` of two same-shape tensors (a residual connection)."""
        if self.shape(a) != self.shape(b):
            raise GraphError(f"{name}: ADD of shapes {self.shape(a)} and {self.shape(b)}")
        sigma = math.hypot(self._rms[a], self._rms[b])
        return self._op("ADD", [a, b], self.shape(a), self._act_quant(sigma, act), name, role,
                        dict(fused_activation_function=act), rms=self._act_rms(sigma, act))

    def mul(self, x: str, gate: str, *, name: str, role: str = "mul") -> str:
        """``MUL`` of ``x`` by a gate in [0, 1] broadcast over it (e.g. ``[1, 1, 1, c]``).

        The output keeps ``x``'s quantization: gating never leaves ``x``'s range.
        """
        q = self.graph.tensors[x].quant
        return self._op("MUL", [x, gate], self.shape(x), q, name, role, dict(fused_activation_function="NONE"),
                        rms=self._rms[x] * self._rms[gate])

    def squeeze_excite(self, x: str, mid_channels: int, *, name: str, role: str = "se") -> str:
        """SE gate: MEAN -> 1x1 conv + ReLU -> 1x1 conv -> LOGISTIC -> MUL with ``x``.

        LOGISTIC stands in for MCUNet's hard sigmoid (TFLite has no int8 hard sigmoid op).
        """
        pooled = self.mean(x, name=f"{name}.pool", keep_dims=True, role=role)
        reduced = self.conv(pooled, mid_channels, 1, name=f"{name}.reduce", act="RELU", role=role)
        expanded = self.conv(reduced, self.shape(x)[3], 1, name=f"{name}.expand", act="NONE", role=role)
        gate = self.logistic(expanded, name=f"{name}.gate", role=role)
        return self.mul(x, gate, name=f"{name}.mul", role=role)

    def logistic(self, x: str, *, name: str, role: str = "logistic") -> str:
        return self._op("LOGISTIC", [x], self.shape(x), _FIXED_Q, name, role, {}, rms=0.5)

    def softmax(self, x: str, *, name: str, role: str = "softmax", beta: float = 1.0) -> str:
        return self._op("SOFTMAX", [x], self.shape(x), _FIXED_Q, name, role, dict(beta=beta), rms=0.5)

    def pool(self, x: str, kind: str, kernel: int, stride: int | None = None, *, name: str,
             padding: str = "VALID", role: str = "pool") -> str:
        """``AVERAGE_POOL_2D`` (``kind="avg"``) or ``MAX_POOL_2D`` (``kind="max"``)."""
        op_type = {"avg": "AVERAGE_POOL_2D", "max": "MAX_POOL_2D"}[kind]
        stride = kernel if stride is None else stride
        attrs = dict(padding=padding, stride_h=stride, stride_w=stride, filter_h=kernel, filter_w=kernel,
                     fused_activation_function="NONE")
        shape = self._spatial_out(x, kernel, stride, 1, padding, self.shape(x)[3])
        return self._same_quant_op(op_type, [x], shape, name, role, attrs)

    def global_pool(self, x: str, kind: str = "avg", *, name: str, role: str = "pool") -> str:
        """A pool whose window is the whole feature map: output ``[1, 1, 1, c]``."""
        h, w = self.shape(x)[1:3]
        if h != w:
            raise GraphError(f"{name}: global pool of a non-square {h}x{w} map")
        return self.pool(x, kind, h, h, name=name, role=role)

    def mean(self, x: str, *, name: str, keep_dims: bool = False, role: str = "pool") -> str:
        """``MEAN`` over height and width (axis tensor ``[1, 2]``): global average pooling."""
        n, _, _, c = self.shape(x)
        axis = self._const(f"{name}.axis", np.array([1, 2], np.int32))
        shape = (n, 1, 1, c) if keep_dims else (n, c)
        return self._same_quant_op("MEAN", [x, axis], shape, name, role, dict(keep_dims=keep_dims))

    def reshape(self, x: str, shape: tuple[int, ...], *, name: str, role: str = "reshape") -> str:
        if math.prod(shape) != math.prod(self.shape(x)):
            raise GraphError(f"{name}: cannot reshape {self.shape(x)} to {shape}")
        target = self._const(f"{name}.shape", np.array(shape, np.int32))
        return self._same_quant_op("RESHAPE", [x, target], shape, name, role, {})

    def resize_nearest(self, x: str, size: tuple[int, int], *, name: str, role: str = "upsample") -> str:
        """``RESIZE_NEAREST_NEIGHBOR`` to ``size`` = (height, width) (TFLite defaults: no align_corners,
        no half-pixel centres)."""
        n, _, _, c = self.shape(x)
        target = self._const(f"{name}.size", np.array(size, np.int32))
        return self._same_quant_op("RESIZE_NEAREST_NEIGHBOR", [x, target], (n, *size, c), name, role,
                                   dict(align_corners=False, half_pixel_centers=False))

    def transpose(self, x: str, perm: tuple[int, ...], *, name: str, role: str = "transpose") -> str:
        """``TRANSPOSE`` by ``perm`` (e.g. (0, 2, 3, 1): NCHW -> NHWC, a PyTorch export's first op)."""
        src = self.shape(x)
        if sorted(perm) != list(range(len(src))):
            raise GraphError(f"{name}: {perm} is not a permutation of {len(src)} axes")
        target = self._const(f"{name}.perm", np.array(perm, np.int32))
        return self._same_quant_op("TRANSPOSE", [x, target], tuple(src[p] for p in perm), name, role, {})

    def pad(self, x: str, top: int, bottom: int, left: int, right: int, *, name: str, role: str = "pad") -> str:
        """``PAD`` of height and width; int8 pads with the zero point (a real 0)."""
        n, h, w, c = self.shape(x)
        paddings = self._const(f"{name}.paddings", np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32))
        return self._same_quant_op("PAD", [x, paddings], (n, h + top + bottom, w + left + right, c), name, role, {})

    # --- internals ------------------------------------------------------------------------
    def _rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(name.encode())])

    def _const(self, name: str, data: np.ndarray, quant: QuantParams | None = None) -> str:
        self.graph.add_tensor(Tensor(name, data.shape, str(data.dtype), quant, data))
        return name

    def _op(self, op_type: str, inputs: list[str], shape: tuple[int, ...], quant: QuantParams | None,
            name: str, role: str, attrs: dict, rms: float) -> str:
        self.graph.add_tensor(Tensor(name, shape, "int8", quant))
        self.graph.add_op(Op(op_type, inputs, [name], attrs, name=name))
        self._rms[name] = rms
        self._roles[name] = role
        if self._block is not None:
            self._block.append(len(self.graph.ops) - 1)
        return name

    def _same_quant_op(self, op_type: str, inputs: list[str], shape: tuple[int, ...], name: str, role: str,
                       attrs: dict) -> str:
        src = self.graph.tensors[inputs[0]]
        return self._op(op_type, inputs, shape, src.quant, name, role, attrs, rms=self._rms[inputs[0]])

    def _spatial_out(self, x: str, kernel: int, stride: int, dilation: int, padding: str,
                     channels: int) -> tuple[int, int, int, int]:
        n, h, w, _ = self.shape(x)
        oh, ow = (out_size(d, kernel, stride, dilation, padding) for d in (h, w))
        if oh < 1 or ow < 1:
            raise GraphError(f"{x}: a {kernel}x{kernel} window does not fit a {h}x{w} input")
        return n, oh, ow, channels

    def _padding(self, x: str, kernel: int, stride: int, dilation: int, padding: Padding,
                 name: str) -> tuple[str, str]:
        """Resolve ``padding`` to SAME/VALID, inserting a ``PAD`` op when SAME differs.

        An explicit symmetric pad ``p`` equals SAME when SAME gives the same output size and
        pads ``p`` before the first pixel along both axes; otherwise the input is padded by
        ``p`` on every side and the conv is VALID (PyTorch geometry, as TFLite converters do).
        """
        if isinstance(padding, str):
            return x, padding
        if padding == 0:
            return x, "VALID"
        eff = (kernel - 1) * dilation + 1
        sizes = self.shape(x)[1:3]
        if all(out_size(d, kernel, stride, dilation, "SAME") == (d + 2 * padding - eff) // stride + 1
               and pad_before(d, kernel, stride, dilation, "SAME") == padding for d in sizes):
            return x, "SAME"
        p = padding
        return self.pad(x, p, p, p, p, name=f"{name}.pad"), "VALID"

    def _weighted(self, op_type: str, x: str, q: np.ndarray, axis: int | None, attrs: dict,
                  shape: tuple[int, ...], act: str, name: str, role: str, rng: np.random.Generator,
                  gain: float | None = None) -> str:
        """Add a conv/FC: scale the int8 weights ``q`` (per channel along ``axis``), add bias and op."""
        xq = self.graph.tensors[x].quant
        if gain is None:
            gain = _RELU_GAIN if act in ("RELU", "RELU6") else 1.0
        channels = q.shape[0 if axis is None else axis]
        flat = np.moveaxis(q, 0 if axis is None else axis, 0).reshape(channels, -1).astype(np.float64)
        # real weights of one output channel get L2 norm ``gain`` (per channel) or RMS norm ``gain``
        norms = np.maximum(np.sqrt((flat ** 2).sum(axis=1)), 1.0)
        if axis is None:
            w_scale = np.array([gain / math.sqrt((norms ** 2).mean())])
        else:
            w_scale = gain * rng.uniform(0.75, 1.25, channels) / norms
        w_quant = QuantParams(w_scale, np.zeros(w_scale.size, np.int64), axis)
        weight = self._const(f"{name}.weight", q, w_quant)
        sigma = gain * self._rms[x]
        if op_type != "FULLY_CONNECTED":  # taps falling on SAME padding add nothing
            sigma *= math.sqrt(self._tap_fraction(x, q.shape[1], attrs))
        b_scale = float(xq.scale[0]) * w_quant.scale.astype(np.float64)
        b_real = rng.uniform(-0.2, 0.2, channels) * sigma
        b_q = np.round(b_real / np.broadcast_to(b_scale, (channels,))).astype(np.int32)
        bias = self._const(f"{name}.bias", b_q, QuantParams(b_scale, np.zeros(b_scale.size, np.int64),
                                                            0 if axis is not None else None))
        attrs = {**attrs, "fused_activation_function": act}
        if op_type == "FULLY_CONNECTED":
            attrs["keep_num_dims"] = False
        return self._op(op_type, [x, weight, bias], shape, self._act_quant(sigma, act), name, role, attrs,
                        rms=self._act_rms(sigma, act))

    def _tap_fraction(self, x: str, kernel: int, attrs: dict) -> float:
        """Mean fraction of a conv window's taps that land inside the input (not on padding)."""
        frac = 1.0
        for size, stride, dil in zip(self.shape(x)[1:3], (attrs["stride_h"], attrs["stride_w"]),
                                     (attrs["dilation_h"], attrs["dilation_w"])):
            n_out = out_size(size, kernel, stride, dil, attrs["padding"])
            start = np.arange(n_out)[:, None] * stride - pad_before(size, kernel, stride, dil, attrs["padding"])
            taps = start + np.arange(kernel)[None, :] * dil
            frac *= float(((taps >= 0) & (taps < size)).mean())
        return frac

    @staticmethod
    def _act_quant(sigma: float, act: str) -> QuantParams:
        """Output quantization covering about four standard deviations (and the clamp)."""
        if act == "NONE":
            return QuantParams.tensor(2 * _RANGE_STDS * sigma / 255, 0)
        if act == "RELU":
            return QuantParams.tensor(_RANGE_STDS * sigma / 255, -128)
        if act == "RELU6":
            return QuantParams.tensor(min(6.0, _RANGE_STDS * sigma) / 255, -128)
        raise GraphError(f"unsupported fused activation {act!r} (use NONE, RELU or RELU6)")

    @staticmethod
    def _act_rms(sigma: float, act: str) -> float:
        """RMS of ``act(z)`` for z ~ N(0, sigma^2): ReLU halves the power, RELU6 also clamps at 6."""
        if act == "NONE":
            return sigma
        if act == "RELU" or sigma <= 0:
            return sigma / math.sqrt(2.0)
        a = 6.0 / sigma  # E[min(z+, a)^2] for z ~ N(0, 1), scaled back by sigma^2
        cdf, pdf = 0.5 * (1 + math.erf(a / math.sqrt(2))), math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
        return sigma * math.sqrt(cdf - 0.5 - a * pdf + a * a * (1 - cdf))


def _int8_weights(rng: np.random.Generator, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Random int8 weights, refused (before allocating) above the IR's default tensor size limit."""
    if math.prod(shape) > DEFAULT_MAX_TENSOR_BYTES:
        raise GraphError(f"{name}: weights of shape {list(shape)} are over the tensor size limit of "
                         f"{DEFAULT_MAX_TENSOR_BYTES:,} B")
    return rng.integers(-127, 128, size=shape, dtype=np.int8)
