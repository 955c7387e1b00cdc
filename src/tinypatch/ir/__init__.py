"""The graph IR at the centre of tinypatch."""

from tinypatch.ir.graph import Graph, Op, QuantParams, Tensor

__all__ = ["Graph", "Op", "QuantParams", "Tensor"]
