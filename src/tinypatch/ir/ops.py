"""Operator attributes (TFLite schema names, defaults from :mod:`tinypatch.ir.optable`) and shared geometry helpers."""

from __future__ import annotations

from typing import Any

from tinypatch.ir.optable import op_def, registered_ops

SUPPORTED_OPS = registered_ops()

ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")


def with_defaults(op_type: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """The op's attributes with schema defaults (from the operator table) filled in."""
    return {**op_def(op_type).attrs, **attrs}


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
