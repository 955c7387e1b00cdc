"""The graph IR at the centre of tinypatch."""

from tinypatch.ir.graph import DTYPE_BYTES, Graph, Op, QuantParams, Tensor

__all__ = ["DTYPE_BYTES", "Graph", "Op", "QuantParams", "Tensor"]
