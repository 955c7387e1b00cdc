"""tinypatch: fit CNNs into microcontroller SRAM by running their first layers patch by patch.

Flow: frontends -> Graph IR -> passes / analysis -> planning -> runtime (numpy) / codegen (C).
"""

from tinypatch.ir import Graph, Op, QuantParams, Tensor

__all__ = ["Graph", "Op", "QuantParams", "Tensor"]
__version__ = "0.1.0"
