"""Hypothesis strategies: random small int8 CNNs (:mod:`tinypatch.frontends.random_cnn`, whose
choices hypothesis draws here, so examples shrink well), and :func:`assert_same_graph`, the
graph equality that round-trip tests use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from tinypatch.frontends import random_cnn as rc
from tinypatch.frontends.random_cnn import LAYER_KINDS, CnnBuilder  # noqa: F401  (re-exported for tests)
from tinypatch.ir import Graph


class _HypothesisDraw:
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
    """A random int8 CNN and a random int8 input for it (:func:`tinypatch.frontends.random_cnn.random_cnn`)."""
    return rc.random_cnn(_HypothesisDraw(draw), max_layers, kinds, head)


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
