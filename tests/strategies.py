"""Hypothesis strategies: thin wrappers over :mod:`tinypatch.frontends.random_cnn`, the one random
CNN generator (also used by ``benchmarks/fuzz.py`` with a seeded numpy generator).

``random_cnn()`` / ``random_multi_output_cnn()`` draw the structure (image size, layer kinds,
kernels, strides, paddings, activations) with hypothesis, so examples shrink well, and the
weights, biases and quantization from a drawn seed. Also :func:`unet_step` (a fixed small U-Net
step) and :func:`assert_same_graph`, the graph equality that round-trip tests use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from tinypatch.frontends import random_cnn as gen
from tinypatch.frontends.random_cnn import FUSED, LAYER_KINDS, NEW_KINDS, CnnBuilder
from tinypatch.ir import Graph

__all__ = ["FUSED", "LAYER_KINDS", "NEW_KINDS", "CnnBuilder", "HypothesisDraw", "assert_same_graph", "random_cnn",
           "random_multi_output_cnn", "unet_step"]


class HypothesisDraw:
    """The generator's :class:`~tinypatch.frontends.random_cnn.Draw` on hypothesis' ``draw``."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def integers(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def sampled_from(self, values: Sequence[Any]) -> Any:
        return self.draw(st.sampled_from(values))

    def booleans(self) -> bool:
        return self.draw(st.booleans())


@st.composite
def random_cnn(draw: st.DrawFn, max_layers: int = 6, kinds: tuple[str, ...] = LAYER_KINDS,
               head: bool | None = None) -> tuple[Graph, np.ndarray]:
    """:func:`tinypatch.frontends.random_cnn.random_cnn` drawn by hypothesis."""
    return gen.random_cnn(HypothesisDraw(draw), max_layers, kinds, head)


@st.composite
def random_multi_output_cnn(draw: st.DrawFn, max_layers: int = 5) -> tuple[Graph, np.ndarray]:
    """:func:`tinypatch.frontends.random_cnn.random_multi_output_cnn` drawn by hypothesis."""
    return gen.random_multi_output_cnn(HypothesisDraw(draw), max_layers)


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
