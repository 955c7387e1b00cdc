"""Kernels against naive loop references, and the explicit-padding (tile) contract: computing
an output window from the input region it reads, padded only where that region meets the
image border, gives exactly the same values as slicing the whole-image output."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tinypatch.errors import InputError, UnsupportedOperatorError
from tinypatch.ir import Graph, Op, QuantParams, Tensor
from tinypatch.ir.ops import out_size
from tinypatch.kernels import conv_pads, prepare

SETTINGS = settings(max_examples=30, deadline=None)


def q(scale, zp=0, axis=None) -> QuantParams:
    scale = np.atleast_1d(np.asarray(scale, np.float32))
    return QuantParams(scale, np.broadcast_to(np.asarray(zp, np.int64), scale.shape), axis)


def prepared(op_type: str, inputs: list[Tensor], out_shape, out_quant, **attrs):
    g = Graph("t")
    for t in inputs:
        g.add_tensor(t)
    g.add_tensor(Tensor("y", tuple(out_shape), "int8", out_quant))
    g.inputs = [t.name for t in inputs if not t.is_const]
    g.outputs = ["y"]
    return prepare(g, g.add_op(Op(op_type, [t.name for t in inputs], ["y"], attrs)))


def mbqm_scalar(x: int, m: int, shift: int) -> int:
    """MultiplyByQuantizedMultiplier written out from its C definition, one value at a time."""
    x = ((x << max(shift, 0)) + 2**31) % 2**32 - 2**31
    ab = x * m
    nudge = 2**30 if ab >= 0 else 1 - 2**30
    high = int((ab + nudge) / 2**31) if abs(ab + nudge) < 2**52 else (ab + nudge) // 2**31
    right = max(-shift, 0)
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if (high & mask) > threshold else 0)


@st.composite
def conv_case(draw, depthwise: bool):
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw, dh, dw = (draw(st.integers(1, 2)) for _ in range(4))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    if padding == "VALID":
        assume(h >= (kh - 1) * dh + 1 and w >= (kw - 1) * dw + 1)
    cin = draw(st.integers(1, 3))
    mult = draw(st.integers(1, 2)) if depthwise else 1
    cout = cin * mult if depthwise else draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(h=h, w=w, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, padding=padding, cin=cin, cout=cout,
                mult=mult, seed=seed, act=draw(st.sampled_from(["NONE", "RELU", "RELU6"])))


def build_conv(c: dict, depthwise: bool, bias: int = 3000):
    rng = np.random.default_rng(c["seed"])
    ws = rng.uniform(1e-3, 0.05, c["cout"]).astype(np.float32)
    si, so, zi, zo = np.float32(0.05), np.float32(0.1), int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    wshape = (1, c["kh"], c["kw"], c["cout"]) if depthwise else (c["cout"], c["kh"], c["kw"], c["cin"])
    w = rng.integers(-127, 128, wshape).astype(np.int8)
    b = rng.integers(-bias, bias, c["cout"]).astype(np.int32)
    oh = out_size(c["h"], c["kh"], c["sh"], c["dh"], c["padding"])
    ow = out_size(c["w"], c["kw"], c["sw"], c["dw"], c["padding"])
    attrs = dict(padding=c["padding"], stride_h=c["sh"], stride_w=c["sw"], dilation_h=c["dh"], dilation_w=c["dw"],
                 fused_activation_function=c["act"])
    if depthwise:
        attrs["depth_multiplier"] = c["mult"]
    k = prepared("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [
        Tensor("x", (1, c["h"], c["w"], c["cin"]), "int8", q(si, zi)),
        Tensor("w", wshape, "int8", q(ws, 0, 3 if depthwise else 0), w),
        Tensor("b", b.shape, "int32", q(ws * si, 0, 0), b),
    ], (1, oh, ow, c["cout"]), q(so, zo), **attrs)
    x = rng.integers(-128, 128, (1, c["h"], c["w"], c["cin"])).astype(np.int8)
    return k, x, w, b, zi, zo, (oh, ow)


def naive_conv(k, x, w, b, zi, zo, out_hw, c: dict, depthwise: bool) -> np.ndarray:
    """TFLite's ConvPerChannel / DepthwiseConvPerChannel loops, skipping taps outside the image."""
    top, _, left, _ = conv_pads((c["h"], c["w"]), (c["kh"], c["kw"]), (c["sh"], c["sw"]), (c["dh"], c["dw"]),
                                c["padding"])
    out = np.zeros((1, *out_hw, c["cout"]), np.int8)
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            for oc in range(c["cout"]):
                acc = 0
                for ky in range(c["kh"]):
                    for kx in range(c["kw"]):
                        iy, ix = oy * c["sh"] - top + ky * c["dh"], ox * c["sw"] - left + kx * c["dw"]
                        if not (0 <= iy < c["h"] and 0 <= ix < c["w"]):
                            continue
                        if depthwise:
                            acc += int(w[0, ky, kx, oc]) * (int(x[0, iy, ix, oc // c["mult"]]) - zi)
                        else:
                            acc += sum(int(w[oc, ky, kx, ic]) * (int(x[0, iy, ix, ic]) - zi) for ic in range(c["cin"]))
                acc += int(b[oc])
                y = mbqm_scalar(acc, int(k.multiplier[oc]), int(k.shift[oc])) + zo
                out[0, oy, ox, oc] = min(max(y, k.act_min), k.act_max)
    return out


@SETTINGS
@given(c=conv_case(depthwise=False))
def test_conv2d_matches_naive_loops(c: dict) -> None:
    k, x, w, b, zi, zo, out_hw = build_conv(c, False)
    np.testing.assert_array_equal(k([x])[0], naive_conv(k, x, w, b, zi, zo, out_hw, c, False))


@SETTINGS
@given(c=conv_case(depthwise=True))
def test_depthwise_matches_naive_loops(c: dict) -> None:
    k, x, w, b, zi, zo, out_hw = build_conv(c, True)
    np.testing.assert_array_equal(k([x])[0], naive_conv(k, x, w, b, zi, zo, out_hw, c, True))


@SETTINGS
@given(h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 4), kw=st.integers(1, 4),
       s=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_average_pool_matches_naive_loops(h, w, kh, kw, s, seed) -> None:
    x = np.random.default_rng(seed).integers(-128, 128, (1, h, w, 2)).astype(np.int8)
    oh, ow = out_size(h, kh, s, 1, "SAME"), out_size(w, kw, s, 1, "SAME")
    k = prepared("AVERAGE_POOL_2D", [Tensor("x", x.shape, "int8", q(0.1))], (1, oh, ow, 2), q(0.1),
                 padding="SAME", stride_h=s, stride_w=s, filter_h=kh, filter_w=kw)
    top, _, left, _ = conv_pads((h, w), (kh, kw), (s, s), (1, 1), "SAME")
    expected = np.zeros((1, oh, ow, 2), np.int8)
    for oy in range(oh):
        for ox in range(ow):
            ys = range(max(oy * s - top, 0), min(oy * s - top + kh, h))
            xs = range(max(ox * s - left, 0), min(ox * s - left + kw, w))
            for ch in range(2):
                vals = [int(x[0, iy, ix, ch]) for iy in ys for ix in xs]
                n, total = len(vals), sum(vals)
                expected[0, oy, ox, ch] = int((total + n // 2) / n) if total > 0 else int((total - n // 2) / n)
    np.testing.assert_array_equal(k([x])[0], expected)


# --- the explicit-padding contract used by patch-based execution ------------------------------
def tile_region(o0: int, o1: int, stride: int, span: int, pad_before: int, size: int) -> tuple[int, int, int, int]:
    """Input rows [i0, i1) read by output rows [o0, o1), and the padding needed (lo, hi)."""
    first, last = o0 * stride - pad_before, (o1 - 1) * stride - pad_before + span
    i0, i1 = max(first, 0), min(last, size)
    return i0, i1, i0 - first, last - i1


def check_tiles(kernel, x: np.ndarray, kernel_hw, stride, dilation, padding, data) -> None:
    full = kernel([x])[0]
    h, w = x.shape[1:3]
    pads = conv_pads((h, w), kernel_hw, stride, dilation, padding)
    oh, ow = full.shape[1:3]
    y0 = data.draw(st.integers(0, oh - 1))
    y1 = data.draw(st.integers(y0 + 1, oh))
    x0 = data.draw(st.integers(0, ow - 1))
    x1 = data.draw(st.integers(x0 + 1, ow))
    span_h, span_w = (kernel_hw[0] - 1) * dilation[0] + 1, (kernel_hw[1] - 1) * dilation[1] + 1
    r0, r1, pt, pb = tile_region(y0, y1, stride[0], span_h, pads[0], h)
    c0, c1, pl, pr = tile_region(x0, x1, stride[1], span_w, pads[2], w)
    assume(r1 > r0 and c1 > c0)
    tile = kernel([x[:, r0:r1, c0:c1]], pads=(pt, pb, pl, pr))[0]
    np.testing.assert_array_equal(tile, full[:, y0:y1, x0:x1])


@SETTINGS
@given(data=st.data(), c=conv_case(depthwise=False), depthwise=st.booleans())
def test_conv_tiles_equal_whole_image(data, c: dict, depthwise: bool) -> None:
    if depthwise:
        c = {**c, "cout": c["cin"] * c["mult"]}
    k, x, *_ = build_conv(c, depthwise)
    check_tiles(k, x, (c["kh"], c["kw"]), (c["sh"], c["sw"]), (c["dh"], c["dw"]), c["padding"], data)


@SETTINGS
@given(data=st.data(), h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
       s=st.integers(1, 3), padding=st.sampled_from(["SAME", "VALID"]),
       op_type=st.sampled_from(["AVERAGE_POOL_2D", "MAX_POOL_2D"]), seed=st.integers(0, 2**32 - 1))
def test_pool_tiles_equal_whole_image(data, h, w, kh, kw, s, padding, op_type, seed) -> None:
    assume(padding == "SAME" or (h >= kh and w >= kw))
    x = np.random.default_rng(seed).integers(-128, 128, (1, h, w, 3)).astype(np.int8)
    oh, ow = out_size(h, kh, s, 1, padding), out_size(w, kw, s, 1, padding)
    k = prepared(op_type, [Tensor("x", x.shape, "int8", q(0.1, 3))], (1, oh, ow, 3), q(0.1, 3),
                 padding=padding, stride_h=s, stride_w=s, filter_h=kh, filter_w=kw)
    check_tiles(k, x, (kh, kw), (s, s), (1, 1), padding, data)


@SETTINGS
@given(data=st.data(), c=conv_case(depthwise=False), depthwise=st.booleans(), big_bias=st.booleans())
def test_run_calls_give_the_bytes_of_one_call_each(data, c: dict, depthwise: bool, big_bias: bool) -> None:
    """``run_calls`` (the replay's batched padded-tile calls: conv and depthwise stack every call's
    windows into one GEMM / weighted sum and one requantization) returns what each call returns alone,
    for windows of any size and position, any pads, batches of several windows, and accumulators past
    the float requantization's limit (``big_bias``: the checked path)."""
    if depthwise:
        c = {**c, "cout": c["cin"] * c["mult"]}
    k, x, *_ = build_conv(c, depthwise, bias=2**30 if big_bias else 3000)
    span_h, span_w = (c["kh"] - 1) * c["dh"] + 1, (c["kw"] - 1) * c["dw"] + 1
    calls = []
    for _ in range(data.draw(st.integers(1, 4))):
        pads = tuple(data.draw(st.integers(0, 2)) for _ in range(4))
        r0 = data.draw(st.integers(0, c["h"] - 1))
        c0 = data.draw(st.integers(0, c["w"] - 1))
        r1, c1 = data.draw(st.integers(r0 + 1, c["h"])), data.draw(st.integers(c0 + 1, c["w"]))
        assume(r1 - r0 + pads[0] + pads[1] >= span_h and c1 - c0 + pads[2] + pads[3] >= span_w)
        n = data.draw(st.integers(1, 2))
        calls.append(([np.concatenate([x[:, r0:r1, c0:c1]] * n) if n > 1 else x[:, r0:r1, c0:c1]], pads))
    got = k.run_calls(calls)
    assert len(got) == len(calls)
    for (inputs, pads), value in zip(calls, got):
        want = k(inputs, pads)[0]
        assert value.dtype == want.dtype and value.shape == want.shape and value.tobytes() == want.tobytes()


def test_pad_op_with_explicit_pads_uses_them_on_hw_only() -> None:
    x = np.arange(12, dtype=np.int8).reshape(1, 2, 3, 2)
    paddings = np.array([[0, 0], [1, 1], [2, 2], [0, 1]], np.int32)
    k = prepared("PAD", [Tensor("x", x.shape, "int8", q(0.5, -7)), Tensor("p", (4, 2), "int32", None, paddings)],
                 (1, 4, 7, 3), q(0.5, -7))
    full = k([x])[0]
    assert full.shape == (1, 4, 7, 3) and full[0, 0, 0, 0] == -7  # pad value is the output zero point
    tile = k([x[:, 1:]], pads=(0, 1, 2, 0))[0]  # bottom rows of the image: pad below and left only
    np.testing.assert_array_equal(tile, full[:, 2:4, 0:5])


@settings(max_examples=40, deadline=None)
@given(data=st.data(), h=st.integers(1, 8), w=st.integers(1, 8), oh=st.integers(1, 20), ow=st.integers(1, 20),
       mode=st.sampled_from([(False, False), (True, False), (False, True)]))
def test_resize_window_equals_whole_image(data, h, w, oh, ow, mode) -> None:
    x = np.random.default_rng(0).integers(-128, 128, (1, h, w, 2)).astype(np.int8)
    k = prepared("RESIZE_NEAREST_NEIGHBOR", [Tensor("x", x.shape, "int8", q(0.1)),
                                             Tensor("s", (2,), "int32", None, np.array([oh, ow], np.int32))],
                 (1, oh, ow, 2), q(0.1), align_corners=mode[0], half_pixel_centers=mode[1])
    full = k([x])[0]
    y0, x0 = data.draw(st.integers(0, oh - 1)), data.draw(st.integers(0, ow - 1))
    y1, x1 = data.draw(st.integers(y0 + 1, oh)), data.draw(st.integers(x0 + 1, ow))
    rows, cols = k.source_indices((h, w))
    r0, r1, c0, c1 = rows[y0:y1].min(), rows[y0:y1].max() + 1, cols[x0:x1].min(), cols[x0:x1].max() + 1
    window = k.window(x[:, r0:r1, c0:c1], (r0, c0), ((y0, y1), (x0, x1)))
    np.testing.assert_array_equal(window, full[:, y0:y1, x0:x1])
    if r0 > 0:
        with pytest.raises(InputError):
            k.window(x[:, r0:r1, c0:c1], (r0 - 1, c0), ((y0, y1), (x0, x1)))


# --- loose float references ------------------------------------------------------------------
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), s1=st.floats(0.01, 0.2), s2=st.floats(0.01, 0.2),
       op_type=st.sampled_from(["ADD", "MUL"]))
def test_add_mul_close_to_float_math(seed, s1, s2, op_type) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (1, 3, 4, 5)).astype(np.int8)
    b = rng.integers(-128, 128, (1, 1, 1, 5)).astype(np.int8)
    fa, fb = np.float32(s1) * (a.astype(np.float64) - 3), np.float32(s2) * (b.astype(np.float64) + 5)
    real = fa + fb if op_type == "ADD" else fa * fb
    so = np.float32(np.abs(real).max() / 100 + 1e-3)
    k = prepared(op_type, [Tensor("a", a.shape, "int8", q(s1, 3)), Tensor("b", b.shape, "int8", q(s2, -5))],
                 a.shape, q(so, 0))
    got = so * k([a, b])[0].astype(np.float64)
    assert np.abs(got - real).max() <= so * 1.01


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.02, 0.5))
def test_softmax_close_to_float_math(seed, scale) -> None:
    x = np.random.default_rng(seed).integers(-128, 128, (2, 10)).astype(np.int8)
    k = prepared("SOFTMAX", [Tensor("x", x.shape, "int8", q(scale, 0))], x.shape, q(1 / 256, -128), beta=1.0)
    xi = x.astype(np.float64)
    e = np.exp(np.float32(scale) * (xi - xi.max(axis=1, keepdims=True)))
    real = e / e.sum(axis=1, keepdims=True)
    assert np.abs((k([x])[0].astype(np.float64) + 128) / 256 - real).max() <= 2 / 256


def test_concatenation_requantizes_like_a_quantize_op() -> None:
    a = np.arange(-128, 128, dtype=np.int8).reshape(1, 2, 128)
    b = a[:, :, ::-1].copy()
    cat = prepared("CONCATENATION", [Tensor("a", a.shape, "int8", q(0.1, 0)), Tensor("b", b.shape, "int8", q(0.37, 9))],
                   (1, 2, 256), q(0.1, 0), axis=2)
    requant = prepared("QUANTIZE", [Tensor("b", b.shape, "int8", q(0.37, 9))], b.shape, q(0.1, 0))
    out = cat([a, b])[0]
    np.testing.assert_array_equal(out[:, :, :128], a)
    np.testing.assert_array_equal(out[:, :, 128:], requant([b])[0])
    assert not np.array_equal(out[:, :, 128:], b)


def test_unsupported_operator_and_dtype_are_typed_errors() -> None:
    with pytest.raises(UnsupportedOperatorError, match="TANH"):
        prepared("TANH", [Tensor("x", (1, 4), "int8", q(0.1))], (1, 4), q(0.1))
    g = Graph("t")
    g.add_tensor(Tensor("x", (1, 4), "int16", q(0.1)))
    g.add_tensor(Tensor("y", (1, 4), "int16", q(0.1)))
    with pytest.raises(UnsupportedOperatorError, match="int16"):
        prepare(g, g.add_op(Op("RELU", ["x"], ["y"])))


def test_prepared_op_accepts_full_input_list_with_constants() -> None:
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (2, 1, 1, 3)).astype(np.int8)
    k = prepared("CONV_2D", [Tensor("x", (1, 2, 2, 3), "int8", q(0.1)), Tensor("w", w.shape, "int8", q(0.01), w)],
                 (1, 2, 2, 2), q(0.05), padding="VALID")
    x = rng.integers(-128, 128, (1, 2, 2, 3)).astype(np.int8)
    assert k.input_names == ["x"]
    np.testing.assert_array_equal(k([x, None])[0], k([x])[0])
    with pytest.raises(InputError):
        k([x, x, x])
