"""The TFLite reader raises only ModelLoadError / UnsupportedOperatorError on bad input.

A corrupted file may still parse (a flipped bit inside the weights is a valid model); then
the graph must validate. Any other exception type, or a hang, fails these tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import tflite
from conftest import MODELS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import assert_same_graph

from tinypatch.backends import write_tflite
from tinypatch.errors import ModelLoadError, UnsupportedOperatorError
from tinypatch.frontends.tflite import load_tflite, parse_tflite
from tinypatch.ir import Graph, Op, QuantParams, Tensor

FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


def parse_or_our_error(buf: bytes) -> Graph | None:
    """Parse ``buf``; None on one of our errors. Anything else propagates and fails the test."""
    try:
        g = parse_tflite(bytes(buf))
    except (ModelLoadError, UnsupportedOperatorError):
        return None
    g.validate()
    return g


def examples_for(size: int) -> int:
    """Fewer mutations for bigger models: parsing time grows with the file."""
    return max(20, min(600, 15_000_000 // size))


# --- files that are not models -------------------------------------------------------------
def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_tflite(tmp_path / "nope.tflite")
    with pytest.raises(ModelLoadError, match="directory"):
        load_tflite(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.tflite").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_tflite(tmp_path / "empty.tflite")


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(buf):
    assert parse_or_our_error(buf) is None


@settings(FUZZ, max_examples=300)
@given(st.binary(min_size=4, max_size=4096), st.integers(0, 2**32 - 1))
def test_random_bytes_with_identifier(body, root):
    """Past the 'TFL3' check: a random root offset and random tables."""
    buf = root.to_bytes(4, "little") + b"TFL3" + body
    parse_or_our_error(buf)


def test_zero_filled_flatbuffer():
    with pytest.raises(ModelLoadError, match="no subgraph"):
        parse_tflite(b"\x08\x00\x00\x00TFL3" + bytes(4096))


# --- damaged copies of the shared models ---------------------------------------------------
@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_truncated(path):
    """A prefix fails with our error, or, when only trailing padding was cut, reads the same graph."""
    buf = path.read_bytes()
    whole = parse_tflite(buf)
    cuts = {*np.linspace(0, len(buf) - 1, 48, dtype=int).tolist(), *range(1, 16), *range(len(buf) - 16, len(buf))}
    for cut in sorted(cuts):
        g = parse_or_our_error(buf[:cut])
        if g is not None:
            assert_same_graph(g, whole)


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_bit_flips(path):
    buf = path.read_bytes()

    @settings(FUZZ, max_examples=examples_for(len(buf)))
    @given(st.lists(st.tuples(st.integers(0, len(buf) - 1), st.integers(0, 7)), min_size=1, max_size=16))
    def check(flips):
        damaged = bytearray(buf)
        for pos, bit in flips:
            damaged[pos] ^= 1 << bit
        parse_or_our_error(damaged)

    check()


_EXTREMES = st.sampled_from([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x00010000, 0x7FFFFFF0])


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_word_overwrites(path):
    """Aligned 32-bit fields (offsets, lengths, indices, dims) set to extreme values."""
    buf = path.read_bytes()

    @settings(FUZZ, max_examples=examples_for(len(buf)))
    @given(st.lists(st.tuples(st.integers(0, len(buf) // 4 - 1), _EXTREMES | st.integers(0, 2**32 - 1)),
                    min_size=1, max_size=4))
    def check(words):
        damaged = bytearray(buf)
        for index, value in words:
            damaged[4 * index: 4 * index + 4] = value.to_bytes(4, "little")
        parse_or_our_error(damaged)

    check()


# --- well-formed flatbuffers that describe a broken or unsupported model -------------------
def _model(op_type: str = "CONV_2D", **attrs: object) -> Graph:
    """int8 1x5x5x2 -> op (3x3 conv weights, 2 per-channel scales) -> 1x5x5x2."""
    g = Graph("m")
    q = QuantParams.tensor(0.1, 0)
    g.add_tensor(Tensor("x", (1, 5, 5, 2), "int8", q))
    g.add_tensor(Tensor("w", (2, 3, 3, 2), "int8", QuantParams([0.01, 0.02], [0, 0], 0),
                        np.ones((2, 3, 3, 2), np.int8)))
    g.add_tensor(Tensor("b", (2,), "int32", QuantParams([0.001, 0.002], [0, 0], 0), np.zeros(2, np.int32)))
    g.add_tensor(Tensor("y", (1, 5, 5, 2), "int8", q))
    g.add_op(Op(op_type, ["x", "w", "b"] if op_type == "CONV_2D" else ["x"], ["y"], dict(attrs)))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def test_the_base_model_parses():
    assert parse_or_our_error(write_tflite(_model())) is not None


def test_unsupported_operator_is_named_with_its_index():
    g = _model()
    g.add_tensor(Tensor("z", (1, 5, 5, 2), "int8", QuantParams.tensor(1 / 128, 0)))
    g.add_op(Op("TANH", ["y"], ["z"]))
    g.outputs = ["z"]
    with pytest.raises(UnsupportedOperatorError, match="TANH at operator index 1") as info:
        parse_tflite(write_tflite(g))
    assert (info.value.op_type, info.value.index) == ("TANH", 1)


def test_unsupported_fused_activation():
    with pytest.raises(UnsupportedOperatorError, match="CONV_2D at operator index 0.*TANH"):
        parse_tflite(write_tflite(_model(fused_activation_function="TANH")))


@pytest.mark.parametrize("attr", ["stride_h", "stride_w", "dilation_h", "dilation_w"])
def test_zero_stride_or_dilation(attr):
    with pytest.raises(ModelLoadError, match=f"{attr}=0"):
        parse_tflite(write_tflite(_model(**{attr: 0})))


def test_per_channel_scales_that_do_not_match_the_channels():
    g = _model()
    g.tensors["w"].quant = QuantParams([0.01, 0.02, 0.03], [0, 0, 0], 0)
    with pytest.raises(ModelLoadError, match="3 per-channel scales on axis 0"):
        parse_tflite(write_tflite(g))


def test_huge_shape():
    g = _model()
    g.tensors["y"].shape = (1, 2**20, 2**20, 2)
    with pytest.raises(ModelLoadError, match="over the tensor size limit"):
        parse_tflite(write_tflite(g))


def test_tensor_read_before_it_is_written():
    g = _model()
    g.ops[0].inputs[0] = "y"  # the conv reads its own output
    with pytest.raises(ModelLoadError, match="before it is produced"):
        parse_tflite(write_tflite(g))


def test_constant_data_that_does_not_fill_its_shape():
    g = _model()
    bias = g.tensors["b"]
    bias.shape, bias.data, bias.quant = (3,), np.zeros(3, np.int32), None
    buf = bytearray(write_tflite(g))
    t = tflite.Model.GetRootAs(buf, 0).Subgraphs(0).Tensors(list(g.tensors).index("b"))
    dims = t._tab.Vector(t._tab.Offset(4))  # Tensor.shape is field 0 (vtable offset 4)
    buf[dims: dims + 4] = (2).to_bytes(4, "little")
    with pytest.raises(ModelLoadError, match="holds 3 values"):
        parse_tflite(bytes(buf))
