"""CONV_2D and DEPTHWISE_CONV_2D (TFLite ``reference_integer_ops::ConvPerChannel`` /
``DepthwiseConvPerChannel`` for int8, plain float math for float32).

int8: ``acc = sum(w * (x - zp_in)) + bias`` in int32 (wrapping), then per-channel
``MultiplyByQuantizedMultiplier`` with ``double(s_in) * double(s_w[c]) / double(s_out)``
(``PopulateConvolutionQuantizationParams``), plus ``zp_out``, clamped to the fused
activation range. Padded cells hold the input zero point, i.e. they contribute nothing.
Conv sums are formed with a float matmul, which is exact: every partial sum is an integer
bounded by ``255 * sum|w|``, below 2^24 (float32 is then used) or 2^53 (float64).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import with_defaults
from tinypatch.kernels.base import (
    Pads,
    SpatialOp,
    activation_float,
    activation_range_quantized,
    centered_padded,
    pad_hw,
    register,
    saturate_int8,
    window_matrix,
    window_view,
    window_slices,
)
from tinypatch.kernels.fixedpoint import (
    float_requantizer,
    multiply_by_quantized_multiplier,
    quantize_multipliers,
    requantize_float64,
    wrap32,
)
from tinypatch.kernels.onnxruntime import (
    conv_scale,
    im2col_block_k,
    requantize_float,
    sgemm,
    U8S8Pairs,
    u8s8_saturates,
)


def per_channel_multipliers(in_scale: np.float32, w_scales: np.ndarray, out_scale: np.float32,
                            channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Conv/depthwise/per-channel-FC requantization: multipliers and shifts per out channel."""
    ws = np.broadcast_to(np.asarray(w_scales, np.float32), (channels,)).astype(np.float64)
    real = np.float64(in_scale) * ws / np.float64(out_scale)
    return quantize_multipliers(real)


class _ConvBase(SpatialOp):
    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        a = with_defaults(op.type, op.attrs)
        self.act = self.fused_activation()
        self.stride = (a["stride_h"], a["stride_w"])
        self.dilation = (a["dilation_h"], a["dilation_w"])
        self.padding = a["padding"]
        x = self.tensor(0)
        w = self.tensor(1)
        self.weights = self.const(1, "filter")
        bias_t = self.tensor(2)
        self.cout = self.out.shape[-1]
        self.kernel_hw = (w.shape[1], w.shape[2])
        bias = self.const(2, "bias") if bias_t is not None else np.zeros(self.cout)
        if self.quantized:
            if x.dtype != "int8" or w.dtype != "int8":
                self.unsupported(f"int8 output needs int8 input and filter, got {x.dtype}/{w.dtype}")
            in_scale, self.in_zp = self.qparams(x)
            out_scale, self.out_zp = self.qparams(self.out)
            if w.quant is None:
                self.unsupported("int8 filter has no quantization parameters")
            self.multiplier, self.shift = per_channel_multipliers(in_scale, w.quant.scale, out_scale, self.cout)
            self.act_min, self.act_max = activation_range_quantized(self.act, out_scale, self.out_zp)
            self.bias = np.asarray(bias, np.int64)
            if self.ort:
                ws = np.broadcast_to(np.asarray(w.quant.scale, np.float32), (self.cout,))
                self.ort_scale = conv_scale(in_scale, ws, out_scale)
                # onnxruntime left this Conv in float: DQ -> float conv -> Q (``float_taps``)
                self.float_op = op.name in graph.meta.get("onnx", {}).get("float_ops", ())
                # onnxruntime runs it on uint8 activations, in int16 pairs on this CPU (Conv2D's U8S8Pairs)
                self.u8_pairs = op.name in graph.meta.get("onnx", {}).get("u8_ops", ()) and u8s8_saturates()
                self.in_scale, self.out_scale, self.w_scales = in_scale, out_scale, ws
                bias_scale = np.float32(in_scale) * ws
                self.float_bias = (np.asarray(bias, np.int64).astype(np.float32) * bias_scale).astype(np.float64)
        else:
            self.in_zp = 0
            self.bias = np.asarray(bias, np.float64)

    def channel_weights(self) -> np.ndarray:
        """The filter as [cout, taps] (one row of weights per output channel)."""
        raise NotImplementedError

    def _prepare_requant(self) -> None:
        """The float64 requantization (:func:`float_requantizer`), and whether it is exact for every
        accumulator plus bias the op can produce (|bias| + 255 * sum |w| per channel); where it is
        not, each call checks its own accumulators against the limit."""
        self.requant = None
        if self.quantized and not self.ort:
            self.requant = float_requantizer(self.multiplier, self.shift)
            self.bias_f = self.bias.astype(np.float64)
            bound = np.abs(self.bias) + 255 * np.abs(self.channel_weights().astype(np.int64)).sum(axis=1)
            self.requant_always = self.requant is not None and float(bound.max(initial=0)) < self.requant[2]
            if self.requant_always:  # see _requantize
                self.biased_half = self.bias_f * self.requant[0] + 0.5
                self.clip_range = (float(self.act_min - self.out_zp), float(self.act_max - self.out_zp))

    @property
    def _fits32(self) -> bool:
        """Does every accumulator plus bias stay in int32 (|bias| + 255 * sum |w| < 2^31)?"""
        if not hasattr(self, "_fits32_cache"):
            bound = np.abs(self.bias).max(initial=0) + 255 * np.abs(self.channel_weights().astype(np.int64)).sum(
                axis=1).max(initial=0)
            self._fits32_cache = bool(bound < 2**31)
        return self._fits32_cache

    def fast_path(self) -> bool:
        """Do the optimised C kernels (DSP, Helium) run this op? Quantized, dilation 1, depth
        multiplier 1, and a requantization that :func:`requant_bound_ok` proves exact."""
        return (self.quantized and self.dilation == (1, 1) and getattr(self, "depth_multiplier", 1) == 1
                and requant_bound_ok(self.bias, self.shift, self.channel_weights()))

    def _float_inputs(self, x: np.ndarray) -> np.ndarray:
        """DequantizeLinear of the input (float32 values held in float64)."""
        return ((x.astype(np.int64) - self.in_zp).astype(np.float32) * np.float32(self.in_scale)).astype(np.float64)

    def _float_weights(self, w: np.ndarray, channel_axis: int) -> np.ndarray:
        shape = [1] * w.ndim
        shape[channel_axis] = -1
        return (w.astype(np.float32) * self.w_scales.reshape(shape)).astype(np.float64)

    def _finish_float(self, acc: np.ndarray) -> np.ndarray:
        """Float conv result (products of dequantized values, summed exactly) plus bias, quantized."""
        y = (acc.astype(np.float32) + self.float_bias.astype(np.float32)).astype(np.float32)
        q = np.rint(y / np.float32(self.out_scale)) + self.out_zp
        return np.clip(q, self.act_min, self.act_max).astype(np.int8)

    def _finish(self, acc: np.ndarray) -> np.ndarray:
        """Requantize (int8) or activate (float) an accumulator [..., cout]."""
        if not self.quantized:
            return activation_float((acc + self.bias).astype(np.float32), self.act)
        if self.requant is not None:
            if self.requant_always:
                return self._requantize(acc)
            z = np.add(acc, self.bias_f, dtype=np.float64)
            if np.abs(z).max(initial=0.0) < self.requant[2]:
                y = requantize_float64(z, *self.requant[:2])
                y += self.out_zp  # then clipped to the activation range (in place: small tiles pay per call)
                np.maximum(y, self.act_min, out=y)
                return np.minimum(y, self.act_max, out=y).astype(np.int8)
        acc = acc.astype(np.int64) + self.bias
        if not self._fits32:  # the sum may leave int32: wrap it as C does
            acc = wrap32(acc)
        if self.ort:
            return requantize_float(acc, self.ort_scale, self.out_zp, self.act_min, self.act_max)
        y = multiply_by_quantized_multiplier(acc, self.multiplier, self.shift, int32=True) + self.out_zp
        return saturate_int8(y, self.act_min, self.act_max)

    def _requantize(self, acc: np.ndarray) -> np.ndarray:
        """:meth:`_finish` where every accumulator plus bias is below the float requantization's limit
        (``requant_always``), in fewer passes (small tiles pay per pass): ``acc * scale`` and
        ``bias * scale + 1/2`` are exact in float64 (integers under the limit times ``m 2^(left - 31)``,
        the sum of the two held in 53 bits), so their sum is :func:`requantize_float64`'s
        ``x * scale + 1/2``; ``trunc(v + copysign(1/2, v))`` is its ``copysign(floor(|v| + 1/2), v)``
        (round to nearest is symmetric), and clipping to ``[act_min - zp, act_max - zp]`` before adding
        the zero point is clipping after it."""
        scale, post, _ = self.requant
        v = np.multiply(acc, scale, dtype=np.float64)
        v += self.biased_half
        np.floor(v, out=v)
        v *= post
        v += np.copysign(0.5, v)
        np.trunc(v, out=v)
        np.maximum(v, self.clip_range[0], out=v)
        np.minimum(v, self.clip_range[1], out=v)
        v += self.out_zp
        return v.astype(np.int8)

    def _stacked_windows(self, calls: Sequence[tuple[list[np.ndarray], Pads | None]], dtype: np.dtype,
                         channels: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """Each call's input centred and padded with its own pads, and the windows of all its output
        pixels stacked with the other calls' (rows, kh, kw, channels); with each call's (n, oh, ow)."""
        kh, kw = self.kernel_hw
        items, rows = [], 0
        for inputs, pads in calls:
            x = np.asarray(inputs[0])
            pads, (oh, ow) = self.geometry(x, pads)
            items.append((centered_padded(x, self.in_zp, pads, dtype), (x.shape[0], oh, ow)))
            rows += x.shape[0] * oh * ow
        windows = np.empty((rows, kh, kw, channels), dtype)
        r = 0
        for xp, (n, oh, ow) in items:
            windows[r: r + n * oh * ow].reshape(n, oh, ow, kh, kw, channels)[...] = \
                window_view(xp, (oh, ow), self.kernel_hw, self.stride, self.dilation)
            r += n * oh * ow
        return windows, [shape for _, shape in items]

    def _split(self, y: np.ndarray, shapes: list[tuple[int, int, int]]) -> list[np.ndarray]:
        """The stacked outputs ``y`` (rows, cout) cut back into each call's (n, oh, ow, cout)."""
        out, r = [], 0
        for n, oh, ow in shapes:
            out.append(y[r: r + n * oh * ow].reshape(n, oh, ow, self.cout))
            r += n * oh * ow
        return out

    def _batched(self) -> bool:
        """Does :meth:`run_calls` batch this op's calls? Quantized with the TFLite arithmetic: its sums
        are integers held exactly in the accumulator type, so any grouping of rows and any summation
        order gives the same bytes."""
        return self.quantized and not self.ort


def requant_bound_ok(bias: np.ndarray, shift: np.ndarray, w_per_channel: np.ndarray) -> bool:
    """Does every accumulator a channel can produce, |bias| + 255 * sum |w|, stay below
    2^(30 - left shift), with right shifts of at most 31? (The optimised C kernels' requantization
    is then exact.)"""
    w = np.asarray(w_per_channel, np.int64)
    bias = np.broadcast_to(np.asarray(bias, np.int64), (w.shape[0],))
    left = np.maximum(shift, 0)
    bound = np.abs(bias) + 255 * np.abs(w).sum(axis=1)
    return not (np.any(bound >= np.left_shift(np.int64(1), 30 - left)) or np.any(np.maximum(-shift, 0) > 31))


@register("CONV_2D")
class Conv2D(_ConvBase):
    """Im2col over the (virtually) padded input, then one exact float GEMM."""

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        w = self.weights
        self.cin = w.shape[3]
        # [cout, kh, kw, cin] -> [kh*kw*cin, cout], matching the im2col column order
        w_mat = w.reshape(self.cout, -1).T.astype(np.float64)
        worst = 255.0 * np.abs(w_mat).sum(axis=0).max(initial=0.0)
        self.gemm_dtype = np.float32 if self.quantized and worst < 2.0**24 else np.float64
        self.w_mat = np.ascontiguousarray(w_mat.astype(self.gemm_dtype))
        # onnxruntime's int16 pair saturation on this CPU: its risky pairs found once, from the weights
        self.pairs = U8S8Pairs(w_mat) if self.quantized and self.ort and self.u8_pairs else None
        self._prepare_requant()

    def channel_weights(self) -> np.ndarray:
        return self.weights.reshape(self.cout, -1)

    def run_calls(self, calls: Sequence[tuple[list[np.ndarray], Pads | None]]) -> list[np.ndarray]:
        """Quantized (:meth:`_batched`): every call's im2col rows (:meth:`_stacked_windows`), then one GEMM
        and one requantization for all; the same bytes."""
        if not self._batched() or len(calls) < 2:
            return super().run_calls(calls)
        windows, shapes = self._stacked_windows(calls, self.gemm_dtype, self.cin)
        return self._split(self._finish(windows.reshape(len(windows), -1) @ self.w_mat), shapes)

    def run(self, inputs: list[np.ndarray], pads: Pads | None) -> np.ndarray:
        x = inputs[0]
        pads, (oh, ow) = self.geometry(x, pads)
        float_path = self.ort and self.float_op
        xp = pad_hw(self._float_inputs(x), pads, 0.0) if float_path else \
            centered_padded(x, self.in_zp, pads, self.gemm_dtype)
        n = x.shape[0]
        if self.kernel_hw == (1, 1) and self.stride == (1, 1) and xp.shape[1:3] == (oh, ow):
            cols = xp.reshape(-1, self.cin)
        else:
            cols = window_matrix(xp, (oh, ow), self.kernel_hw, self.stride, self.dilation)
        if float_path:  # onnxruntime's NCHW im2col (channel, kernel row, kernel column) and SGEMM
            kh, kw = self.kernel_hw
            order = np.arange(kh * kw * self.cin).reshape(kh, kw, self.cin).transpose(2, 0, 1).ravel()
            w_f = self._float_weights(self.w_mat.astype(np.int64), 1)[order].astype(np.float32)
            block = None if self.kernel_hw == (1, 1) else im2col_block_k(oh * ow)
            acc = sgemm(cols[:, order].astype(np.float32), w_f, block=block)
            return self._finish_float(acc.reshape(n, oh, ow, self.cout))
        acc = cols @ self.w_mat
        if self.pairs is not None:
            excess = self.pairs.excess(cols, self.in_zp)
            if excess is not None:
                acc = acc.astype(np.int64) + excess
        return self._finish(acc.reshape(n, oh, ow, self.cout))


@register("DEPTHWISE_CONV_2D")
class DepthwiseConv2D(_ConvBase):
    """Quantized: one pass over every output pixel's window (:func:`window_view`), exact in any
    summation order; float: one multiply-add per kernel tap, vectorised over the whole output."""

    def __init__(self, graph: Graph, op: Op) -> None:
        super().__init__(graph, op)
        self.depth_multiplier = with_defaults(op.type, op.attrs)["depth_multiplier"]
        w = self.weights[0]  # [kh, kw, cout], cout = cin * depth_multiplier
        # quantized: float32 holds every partial sum exactly while 255 * sum |w| < 2^24 (faster than int64)
        exact32 = self.quantized and 255 * np.abs(w.astype(np.int64)).sum(axis=(0, 1)).max(initial=0) < 2**24
        self.acc_dtype = np.float32 if exact32 else np.int64 if self.quantized else np.float64
        self.taps = w.astype(self.acc_dtype)
        self._prepare_requant()

    def channel_weights(self) -> np.ndarray:
        return self.weights[0].reshape(-1, self.cout).T

    def run_calls(self, calls: Sequence[tuple[list[np.ndarray], Pads | None]]) -> list[np.ndarray]:
        """Quantized, depth multiplier 1 (:meth:`_batched`): every output pixel's window
        (:meth:`_stacked_windows`), then one weighted sum and one requantization for all; the same bytes."""
        if not self._batched() or self.depth_multiplier != 1 or len(calls) < 2:
            return super().run_calls(calls)
        windows, shapes = self._stacked_windows(calls, self.acc_dtype, self.cout)
        return self._split(self._finish(np.einsum("rijc,ijc->rc", windows, self.taps)), shapes)

    def run(self, inputs: list[np.ndarray], pads: Pads | None) -> np.ndarray:
        x = inputs[0]
        pads, (oh, ow) = self.geometry(x, pads)
        float_path = self.ort and self.float_op
        if float_path or self.depth_multiplier != 1:
            xc = self._float_inputs(x) if float_path else x.astype(self.acc_dtype) - self.acc_dtype(self.in_zp)
            if self.depth_multiplier != 1:  # output channel ic * m + k reads input channel ic
                xc = np.repeat(xc, self.depth_multiplier, axis=3)
            xp = pad_hw(xc, pads, 0)
        else:
            xp = centered_padded(x, self.in_zp, pads, self.acc_dtype)
        if float_path:  # an FMA chain over the taps in float32, per output
            taps = self._float_weights(self.taps, 2).astype(np.float32)
            acc32 = np.zeros((x.shape[0], oh, ow, self.cout), np.float32)
            for (i, j), view in window_slices(xp, (oh, ow), self.kernel_hw, self.stride, self.dilation):
                acc32 = (acc32.astype(np.float64) + view * taps[i, j].astype(np.float64)).astype(np.float32)
            return self._finish_float(acc32)
        if self.quantized:  # integer products and sums, exact in any order (acc_dtype): one pass
            acc = np.einsum("nhwijc,ijc->nhwc", window_view(xp, (oh, ow), self.kernel_hw, self.stride, self.dilation),
                            self.taps)
            return self._finish(acc)
        acc = np.zeros((x.shape[0], oh, ow, self.cout), xp.dtype)
        for (i, j), view in window_slices(xp, (oh, ow), self.kernel_hw, self.stride, self.dilation):
            acc += view * self.taps[i, j]
        return self._finish(acc)
