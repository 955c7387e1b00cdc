"""Operator types, their attributes (TFLite schema names) and shared geometry helpers."""

from __future__ import annotations

from typing import Any

# Spatial operators: their output pixel depends on a window of input pixels.
CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
POOL_OPS = ("AVERAGE_POOL_2D", "MAX_POOL_2D")

SUPPORTED_OPS = (
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "AVERAGE_POOL_2D",
    "MAX_POOL_2D", "MEAN", "PAD", "RESHAPE", "SOFTMAX", "QUANTIZE", "DEQUANTIZE", "TRANSPOSE",
    "RESIZE_NEAREST_NEIGHBOR", "CONCATENATION", "LOGISTIC", "HARD_SWISH", "RELU", "RELU6",
    "RESIZE_BILINEAR", "TRANSPOSE_CONV", "SPLIT", "SPLIT_V", "SLICE", "STRIDED_SLICE", "MAXIMUM", "MINIMUM",
    "PRELU", "SQUARED_DIFFERENCE",
)

ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")

# Attributes per op type (defaults). Conv-like ops use ``padding`` = "SAME" | "VALID".
ATTR_DEFAULTS: dict[str, dict[str, Any]] = {
    "CONV_2D": dict(padding="SAME", stride_h=1, stride_w=1, dilation_h=1, dilation_w=1,
                    fused_activation_function="NONE"),
    "DEPTHWISE_CONV_2D": dict(padding="SAME", stride_h=1, stride_w=1, dilation_h=1, dilation_w=1,
                              depth_multiplier=1, fused_activation_function="NONE"),
    "AVERAGE_POOL_2D": dict(padding="VALID", stride_h=1, stride_w=1, filter_h=1, filter_w=1,
                            fused_activation_function="NONE"),
    "MAX_POOL_2D": dict(padding="VALID", stride_h=1, stride_w=1, filter_h=1, filter_w=1,
                        fused_activation_function="NONE"),
    "FULLY_CONNECTED": dict(fused_activation_function="NONE", keep_num_dims=False),
    "ADD": dict(fused_activation_function="NONE"),
    "MUL": dict(fused_activation_function="NONE"),
    "CONCATENATION": dict(axis=-1, fused_activation_function="NONE"),
    "SOFTMAX": dict(beta=1.0),
    "MEAN": dict(keep_dims=False),
    "RESIZE_NEAREST_NEIGHBOR": dict(align_corners=False, half_pixel_centers=False),
    "RESIZE_BILINEAR": dict(align_corners=False, half_pixel_centers=False),
    "TRANSPOSE_CONV": dict(padding="SAME", stride_h=1, stride_w=1, fused_activation_function="NONE"),
    "SPLIT": dict(num_splits=1),
    "SPLIT_V": dict(num_splits=1),
    "STRIDED_SLICE": dict(begin_mask=0, end_mask=0, ellipsis_mask=0, new_axis_mask=0, shrink_axis_mask=0,
                          offset=False),
}


def with_defaults(op_type: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """The op's attributes with schema defaults filled in."""
    return {**ATTR_DEFAULTS.get(op_type, {}), **attrs}


def out_size(in_size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """Output length of a conv/pool along one axis (TFLite's ComputeOutSize)."""
    eff = (kernel - 1) * dilation + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    if padding == "VALID":
        return (in_size - eff + stride) // stride
    raise ValueError(f"unknown padding {padding!r}")


def pad_before(in_size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    """Zero padding before the first input element along one axis (TFLite's ComputePadding)."""
    if padding == "VALID":
        return 0
    eff = (kernel - 1) * dilation + 1
    out = out_size(in_size, kernel, stride, dilation, padding)
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2
