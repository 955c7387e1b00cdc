"""Single-operator models, written with tinypatch's TFLite writer and run by LiteRT's reference
kernels (BUILTIN_REF): our int8 kernels must agree byte for byte over random shapes,
quantization parameters, options and inputs (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tinypatch.backends.tflite_writer import write_tflite
from tinypatch.ir import Graph, Op, QuantParams, Tensor
from tinypatch.ir.ops import out_size
from tinypatch.runtime import run

litert = pytest.importorskip("ai_edge_litert.interpreter")

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ACTS = st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])
SCALES = st.floats(1e-3, 1.0).map(np.float32)
ZPS = st.integers(-128, 127)


def q(scale, zp=0, axis=None) -> QuantParams:
    scale = np.atleast_1d(np.asarray(scale, np.float32))
    return QuantParams(scale, np.broadcast_to(np.asarray(zp, np.int64), scale.shape), axis)


def act_t(name: str, shape, dtype: str = "int8", quant: QuantParams | None = None) -> Tensor:
    return Tensor(name, tuple(shape), dtype, quant)


def const_t(name: str, data: np.ndarray, quant: QuantParams | None = None) -> Tensor:
    return Tensor(name, data.shape, str(data.dtype), quant, data)


def single_op(op_type: str, inputs: list[Tensor], output: Tensor, **attrs) -> Graph:
    g = Graph(op_type.lower())
    for t in (*inputs, output):
        g.add_tensor(t)
    g.inputs = [t.name for t in inputs if not t.is_const]
    g.outputs = [output.name]
    g.add_op(Op(op_type, [t.name for t in inputs], [output.name], attrs))
    return g


def litert_output(graph: Graph, feeds: list[np.ndarray]) -> np.ndarray | None:
    """LiteRT's output, or None when LiteRT refuses the model at prepare time."""
    it = litert.Interpreter(model_content=write_tflite(graph),
                            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    try:
        it.allocate_tensors()
    except RuntimeError:
        return None
    for d, x in zip(it.get_input_details(), feeds):
        it.set_tensor(d["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def assert_matches_litert(graph: Graph, feeds: list[np.ndarray]) -> None:
    ref = litert_output(graph, feeds)
    assume(ref is not None)
    ours = run(graph, feeds)[graph.outputs[0]]
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)


def int8_array(data, shape) -> np.ndarray:
    return data.draw(st.integers(0, 2**32 - 1).map(
        lambda s: np.random.default_rng(s).integers(-128, 128, shape).astype(np.int8)))


@st.composite
def window_case(draw, dilated: bool = True):
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilated else (1, 1)
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    if padding == "VALID":
        assume(h >= (kh - 1) * dh + 1 and w >= (kw - 1) * dw + 1)
    out_hw = (out_size(h, kh, sh, dh, padding), out_size(w, kw, sw, dw, padding))
    attrs = dict(padding=padding, stride_h=sh, stride_w=sw)
    if dilated:
        attrs.update(dilation_h=dh, dilation_w=dw)
    return (h, w), (kh, kw), out_hw, attrs


@SETTINGS
@given(data=st.data(), case=window_case(), cin=st.integers(1, 4), cout=st.integers(1, 4),
       si=SCALES, so=SCALES, zi=ZPS, zo=ZPS, act=ACTS)
def test_conv2d(data, case, cin, cout, si, so, zi, zo, act) -> None:
    (h, w), (kh, kw), (oh, ow), attrs = case
    ws = np.asarray(data.draw(st.lists(st.floats(1e-4, 0.1), min_size=cout, max_size=cout)), np.float32)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    g = single_op("CONV_2D", [
        act_t("x", (1, h, w, cin), quant=q(si, zi)),
        const_t("w", rng.integers(-127, 128, (cout, kh, kw, cin)).astype(np.int8), q(ws, 0, 0)),
        const_t("b", rng.integers(-5000, 5000, cout).astype(np.int32), q(ws * si, 0, 0)),
    ], act_t("y", (1, oh, ow, cout), quant=q(so, zo)), fused_activation_function=act, **attrs)
    assert_matches_litert(g, [int8_array(data, (1, h, w, cin))])


@SETTINGS
@given(data=st.data(), case=window_case(), cin=st.integers(1, 3), mult=st.integers(1, 3),
       si=SCALES, so=SCALES, zi=ZPS, zo=ZPS, act=ACTS)
def test_depthwise_conv2d(data, case, cin, mult, si, so, zi, zo, act) -> None:
    (h, w), (kh, kw), (oh, ow), attrs = case
    cout = cin * mult
    ws = np.asarray(data.draw(st.lists(st.floats(1e-4, 0.1), min_size=cout, max_size=cout)), np.float32)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    g = single_op("DEPTHWISE_CONV_2D", [
        act_t("x", (1, h, w, cin), quant=q(si, zi)),
        const_t("w", rng.integers(-127, 128, (1, kh, kw, cout)).astype(np.int8), q(ws, 0, 3)),
        const_t("b", rng.integers(-5000, 5000, cout).astype(np.int32), q(ws * si, 0, 0)),
    ], act_t("y", (1, oh, ow, cout), quant=q(so, zo)), fused_activation_function=act, depth_multiplier=mult,
        **attrs)
    assert_matches_litert(g, [int8_array(data, (1, h, w, cin))])


@SETTINGS
@given(data=st.data(), case=window_case(dilated=False), c=st.integers(1, 4), s=SCALES, z=ZPS, act=ACTS,
       op_type=st.sampled_from(["AVERAGE_POOL_2D", "MAX_POOL_2D"]))
def test_pools(data, case, c, s, z, act, op_type) -> None:
    (h, w), (kh, kw), (oh, ow), attrs = case
    g = single_op(op_type, [act_t("x", (1, h, w, c), quant=q(s, z))], act_t("y", (1, oh, ow, c), quant=q(s, z)),
                  filter_h=kh, filter_w=kw, fused_activation_function=act, **attrs)
    assert_matches_litert(g, [int8_array(data, (1, h, w, c))])


BROADCASTS = [((1, 4, 3, 5), (1, 1, 1, 5)), ((1, 4, 3, 5), (1, 4, 3, 5)), ((1, 1, 1, 5), (1, 4, 3, 5)),
              ((1, 4, 3, 5), (1, 4, 1, 1)), ((2, 3), (3,)), ((1, 2, 2, 3), ())]


@SETTINGS
@given(data=st.data(), shapes=st.sampled_from(BROADCASTS), op_type=st.sampled_from(["ADD", "MUL"]),
       s1=SCALES, s2=SCALES, so=SCALES, z1=ZPS, z2=ZPS, zo=ZPS, act=ACTS, const_b=st.booleans())
def test_add_mul_broadcast(data, shapes, op_type, s1, s2, so, z1, z2, zo, act, const_b) -> None:
    a, b = shapes
    if op_type == "ADD":  # LiteRT aborts (not refuses) when the output multiplier reaches 1
        so = max(so, np.float32(4 * max(s1, s2) / 2**20))
    xb = int8_array(data, b)
    tb = const_t("b", xb, q(s2, z2)) if const_b else act_t("b", b, quant=q(s2, z2))
    g = single_op(op_type, [act_t("a", a, quant=q(s1, z1)), tb],
                  act_t("y", np.broadcast_shapes(a, b), quant=q(so, zo)), fused_activation_function=act)
    feeds = [int8_array(data, a)] + ([] if const_b else [xb])
    assert_matches_litert(g, feeds)


@SETTINGS
@given(data=st.data(), batch=st.integers(1, 3), depth=st.integers(1, 40), units=st.integers(1, 12),
       keep=st.booleans(), per_channel=st.booleans(), si=SCALES, so=SCALES, zi=ZPS, zo=ZPS,
       act=st.sampled_from(["NONE", "RELU", "RELU6"]))
def test_fully_connected(data, batch, depth, units, keep, per_channel, si, so, zi, zo, act) -> None:
    n = units if per_channel else 1
    ws = np.asarray(data.draw(st.lists(st.floats(1e-4, 0.1), min_size=n, max_size=n)), np.float32)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    g = single_op("FULLY_CONNECTED", [
        act_t("x", (1, batch, depth), quant=q(si, zi)),
        const_t("w", rng.integers(-127, 128, (units, depth)).astype(np.int8), q(ws, 0, 0 if per_channel else None)),
        const_t("b", rng.integers(-5000, 5000, units).astype(np.int32),
                q(ws.astype(np.float64) * si, 0, 0 if per_channel else None)),
    ], act_t("y", (1, batch, units) if keep else (batch, units), quant=q(so, zo)),
        fused_activation_function=act, keep_num_dims=keep)
    assert_matches_litert(g, [int8_array(data, (1, batch, depth))])


@SETTINGS
@given(data=st.data(), axes=st.sampled_from([(1, 2), (2, 1), (1,), (2,), (3,), (0, 3), (-1,), (1, 2, 3)]),
       keep=st.booleans(), si=SCALES, so=SCALES, zi=ZPS, zo=ZPS, same=st.booleans())
def test_mean(data, axes, keep, si, so, zi, zo, same) -> None:
    shape = (1, data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9)), data.draw(st.integers(1, 5)))
    red = {a % 4 for a in axes}
    out = tuple(1 if i in red else d for i, d in enumerate(shape)) if keep else \
        tuple(d for i, d in enumerate(shape) if i not in red)
    so, zo = (si, zi) if same else (so, zo)
    g = single_op("MEAN", [act_t("x", shape, quant=q(si, zi)), const_t("axis", np.array(axes, np.int32))],
                  act_t("y", out, quant=q(so, zo)), keep_dims=keep)
    assert_matches_litert(g, [int8_array(data, shape)])


@SETTINGS
@given(data=st.data(), rows=st.integers(1, 4), depth=st.integers(1, 40), s=st.floats(1e-2, 2.0).map(np.float32),
       z=ZPS, beta=st.floats(0.1, 3.0).map(np.float32))
def test_softmax(data, rows, depth, s, z, beta) -> None:
    g = single_op("SOFTMAX", [act_t("x", (rows, depth), quant=q(s, z))],
                  act_t("y", (rows, depth), quant=q(1 / 256, -128)), beta=float(beta))
    assert_matches_litert(g, [int8_array(data, (rows, depth))])


ALL_INT8 = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)


@settings(max_examples=40, deadline=None)
@given(op_type=st.sampled_from(["RELU", "RELU6", "HARD_SWISH", "QUANTIZE", "LOGISTIC"]),
       si=st.floats(1e-3, 1.0).map(np.float32), so=st.floats(1e-3, 1.0).map(np.float32), zi=ZPS, zo=ZPS)
def test_unary_int8_over_every_input_value(op_type, si, so, zi, zo) -> None:
    if op_type == "LOGISTIC":
        so, zo = np.float32(1 / 256), -128
    g = single_op(op_type, [act_t("x", (1, 256), quant=q(si, zi))], act_t("y", (1, 256), quant=q(so, zo)))
    assert_matches_litert(g, [ALL_INT8])


@settings(max_examples=40, deadline=None)
@given(alpha=st.one_of(st.floats(0.0, 1.0), st.floats(-2.0, 3.0)).map(np.float32),
       si=st.floats(1e-3, 1.0).map(np.float32), so=st.floats(1e-3, 1.0).map(np.float32), zi=ZPS, zo=ZPS)
def test_leaky_relu_int8_over_every_input_value(alpha, si, so, zi, zo) -> None:
    g = single_op("LEAKY_RELU", [act_t("x", (1, 256), quant=q(si, zi))], act_t("y", (1, 256), quant=q(so, zo)),
                  alpha=float(alpha))
    assert_matches_litert(g, [ALL_INT8])


@settings(max_examples=30, deadline=None)
@given(scale=SCALES, zp=ZPS, seed=st.integers(0, 2**32 - 1), spread=st.floats(-3, 3))
def test_quantize_dequantize_float(scale, zp, seed, spread) -> None:
    x = (np.random.default_rng(seed).standard_normal((1, 64)) * 10.0**spread).astype(np.float32)
    x[0, :4] = np.float32([0.5, -0.5, 2.5, -1.5]) * scale  # exact ties
    g = single_op("QUANTIZE", [act_t("x", (1, 64), "float32")], act_t("y", (1, 64), quant=q(scale, zp)))
    assert_matches_litert(g, [x])
    g = single_op("DEQUANTIZE", [act_t("x", (1, 256), quant=q(scale, zp))], act_t("y", (1, 256), "float32"))
    assert_matches_litert(g, [ALL_INT8])


@SETTINGS
@given(data=st.data(), h=st.integers(1, 8), w=st.integers(1, 8), oh=st.integers(1, 20), ow=st.integers(1, 20),
       mode=st.sampled_from([(False, False), (True, False), (False, True)]))
def test_resize_nearest(data, h, w, oh, ow, mode) -> None:
    g = single_op("RESIZE_NEAREST_NEIGHBOR",
                  [act_t("x", (1, h, w, 2), quant=q(0.1)), const_t("size", np.array([oh, ow], np.int32))],
                  act_t("y", (1, oh, ow, 2), quant=q(0.1)), align_corners=mode[0], half_pixel_centers=mode[1])
    assert_matches_litert(g, [int8_array(data, (1, h, w, 2))])


@SETTINGS
@given(data=st.data(), s=SCALES, z=ZPS, axis=st.sampled_from([1, 2, 3, -1]))
def test_data_movement(data, s, z, axis) -> None:
    shape = (1, data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5)), data.draw(st.integers(1, 4)))
    x = int8_array(data, shape)
    pads = np.array([[0, 0]] + [data.draw(st.lists(st.integers(0, 2), min_size=2, max_size=2)) for _ in range(3)],
                    np.int32)
    padded = tuple(int(d + p.sum()) for d, p in zip(shape, pads))
    assert_matches_litert(single_op("PAD", [act_t("x", shape, quant=q(s, z)), const_t("p", pads)],
                                    act_t("y", padded, quant=q(s, z))), [x])
    other = list(shape)
    other[axis] += 1
    cat = list(shape)
    cat[axis] = shape[axis] + other[axis]
    assert_matches_litert(single_op("CONCATENATION", [act_t("a", shape, quant=q(s, z)),
                                                      act_t("b", other, quant=q(s, z))],
                                    act_t("y", cat, quant=q(s, z)), axis=axis), [x, int8_array(data, other)])
    perm = np.array(data.draw(st.permutations(range(4))), np.int32)
    assert_matches_litert(single_op("TRANSPOSE", [act_t("x", shape, quant=q(s, z)), const_t("perm", perm)],
                                    act_t("y", tuple(shape[p] for p in perm), quant=q(s, z))), [x])


def _float_cases() -> dict[str, tuple[list[Tensor], Tensor, dict]]:
    rng = np.random.default_rng(7)
    x = act_t("x", (1, 7, 6, 3), "float32")

    def c(name, shape):
        return const_t(name, rng.standard_normal(shape).astype(np.float32))

    return {
        "CONV_2D": ([x, c("w", (4, 3, 3, 3)), c("b", (4,))], act_t("y", (1, 4, 6, 4), "float32"),
                    dict(padding="SAME", stride_h=2, fused_activation_function="RELU6")),
        "DEPTHWISE_CONV_2D": ([x, c("w", (1, 3, 3, 6)), c("b", (6,))], act_t("y", (1, 7, 6, 6), "float32"),
                              dict(padding="SAME", depth_multiplier=2)),
        "AVERAGE_POOL_2D": ([x], act_t("y", (1, 4, 3, 3), "float32"),
                            dict(padding="SAME", stride_h=2, stride_w=2, filter_h=3, filter_w=3)),
        "MAX_POOL_2D": ([x], act_t("y", (1, 3, 2, 3), "float32"),
                        dict(padding="VALID", stride_h=2, stride_w=2, filter_h=3, filter_w=3)),
        "FULLY_CONNECTED": ([act_t("x", (2, 10), "float32"), c("w", (5, 10)), c("b", (5,))],
                            act_t("y", (2, 5), "float32"), dict(fused_activation_function="RELU")),
        "ADD": ([x, c("b", (1, 1, 1, 3))], act_t("y", (1, 7, 6, 3), "float32"), {}),
        "MUL": ([x, c("b", (1, 1, 1, 3))], act_t("y", (1, 7, 6, 3), "float32"), {}),
        "MEAN": ([x, const_t("axis", np.array([1, 2], np.int32))], act_t("y", (1, 3), "float32"), {}),
        "SOFTMAX": ([act_t("x", (2, 9), "float32")], act_t("y", (2, 9), "float32"), dict(beta=1.0)),
        "LOGISTIC": ([x], act_t("y", x.shape, "float32"), {}),
        "HARD_SWISH": ([x], act_t("y", x.shape, "float32"), {}),
        "RELU6": ([x], act_t("y", x.shape, "float32"), {}),
        "LEAKY_RELU": ([x], act_t("y", x.shape, "float32"), dict(alpha=0.2)),
    }


@pytest.mark.parametrize("op_type", list(_float_cases()))
def test_float_kernels_close_to_litert(op_type: str) -> None:
    """float32 ops agree to float rounding (sums are formed in another order, not bit-exact)."""
    inputs, output, attrs = _float_cases()[op_type]
    g = single_op(op_type, inputs, output, **attrs)
    feeds = [(np.random.default_rng(1).standard_normal(t.shape) * 3).astype(np.float32)
             for t in inputs if not t.is_const]
    ref = litert_output(g, feeds)
    ours = run(g, feeds)[g.outputs[0]]
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
