"""Numpy reference kernels, bit-exact with TFLite's reference kernels (LiteRT BUILTIN_REF).

``prepare(graph, op)`` returns a :class:`PreparedOp`; call it with the op's non-constant
inputs (``prepared.input_names``) and optionally explicit ``pads=(top, bottom, left,
right)`` for spatial ops (conv, depthwise, pools, PAD) to compute a tile.
"""

from tinypatch.kernels import (
    activations,
    binary,
    conv,
    fully_connected,
    pool,
    quantize,
    reduce,
    resize,
    shape,
    slicing,
    softmax,
    transpose_conv,
)
from tinypatch.kernels.base import Pads, PreparedOp, SpatialOp, conv_pads, prepare, supported_ops, window_out_hw

__all__ = ["Pads", "PreparedOp", "SpatialOp", "conv_pads", "prepare", "supported_ops", "window_out_hw",
           "activations", "binary", "conv", "fully_connected", "pool", "quantize", "reduce", "resize", "shape",
           "slicing", "softmax", "transpose_conv"]
