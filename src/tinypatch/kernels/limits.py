"""Quantization parameters that TFLite's reference kernels refuse, refused here too.

Where LiteRT's reference kernels (and TFLite Micro's) fail to prepare a model, or abort in a
``TFLITE_CHECK``, there is no reference to be bit-exact against, so tinypatch refuses the
model as well, with :class:`~tinypatch.errors.QuantizationError` naming the operator, the
tensor and the value. :func:`check_limits` checks a whole graph (model loading calls it, so
``run`` and ``codegen`` refuse the same models); the kernels call :func:`check_op` when they
are prepared. Limits (int8; found in LiteRT's ``activations.cc``, ``add.cc`` and
``quantization_util.cc`` and confirmed by running LiteRT):

* SOFTMAX: ``beta * input_scale * 2^26 > 1`` (``PreprocessSoftmaxScaling`` calls
  ``QuantizeMultiplierGreaterThanOne``, which aborts otherwise); output zero point -128 and
  scale within 0.1 % of 1/256;
* LOGISTIC: output scale exactly 1/256;
* HARD_SWISH: output multiplier ``input_scale / 128 / output_scale`` below 1 (its exponent <= 0);
* ADD: output multiplier ``2 * max(input scales) / (2^20 * output_scale)`` below 1
  (``QuantizeMultiplierSmallerThanOneExp`` aborts otherwise).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tinypatch.errors import QuantizationError
from tinypatch.ir import Graph, Op
from tinypatch.ir.ops import with_defaults
from tinypatch.kernels.fixedpoint import quantize_multiplier

SOFTMAX_DIFF_BITS = 5  # integer bits of the scaled input differences (Q5.26)


def check_limits(graph: Graph) -> None:
    """Raise QuantizationError for the first operator whose parameters the reference refuses."""
    for i, op in enumerate(graph.ops):
        check_op(graph, op, i)


def check_op(graph: Graph, op: Op, index: int | None = None) -> None:
    """Raise QuantizationError if the reference kernels refuse ``op``'s quantization parameters."""
    check = _CHECKS.get(op.type)
    tensors = [graph.tensors[t] for t in (*op.inputs[:2], op.outputs[0]) if t]
    if check is None or any(t.dtype != "int8" or t.quant is None for t in tensors):
        return
    problem = check(graph, op)
    if problem:
        tensor, what, value, why = problem
        raise QuantizationError(op.type, index, tensor, f"{what} {value:.6g}", why)


def _scale(graph: Graph, name: str) -> float:
    return float(np.float32(graph.tensors[name].quant.scale[0]))


def _softmax(graph: Graph, op: Op) -> tuple[str, str, float, str] | None:
    x, y = op.inputs[0], op.outputs[0]
    beta = float(np.float32(with_defaults(op.type, op.attrs)["beta"]))
    real = beta * _scale(graph, x) * float(1 << (31 - SOFTMAX_DIFF_BITS))
    if not real > 1.0:
        return (x, "scale", _scale(graph, x), f"beta ({beta:g}) * input scale * 2^26 = {real:.4g} must exceed 1 "
                                              f"(PreprocessSoftmaxScaling aborts); give the logits a larger scale")
    zp, scale = int(graph.tensors[y].quant.zero_point[0]), _scale(graph, y)
    if zp != -128:
        return y, "zero point", zp, "the output zero point must be -128 (the output scale 1/256)"
    if abs(scale - 1 / 256) > 0.001 / 256:
        return y, "scale", scale, "the output scale must be 1/256 (within 0.1 %) and its zero point -128"
    return None


def _logistic(graph: Graph, op: Op) -> tuple[str, str, float, str] | None:
    y = op.outputs[0]
    if _scale(graph, y) != 1 / 256:
        return y, "scale", _scale(graph, y), "the output scale must be exactly 1/256"
    return None


def _hard_swish(graph: Graph, op: Op) -> tuple[str, str, float, str] | None:
    x, y = op.inputs[0], op.outputs[0]
    hires = np.float32(1.0 / 128.0) * np.float32(_scale(graph, x))
    _, exponent = quantize_multiplier(float(hires / np.float32(_scale(graph, y))))
    if exponent > 0:
        return (y, "scale", _scale(graph, y), f"input scale / 128 / output scale must be below 1 (its exponent is "
                                              f"{exponent}, the reference needs <= 0); use an output scale above "
                                              f"input scale / 128")
    return None


def _add(graph: Graph, op: Op) -> tuple[str, str, float, str] | None:
    y = op.outputs[0]
    twice_max = 2.0 * max(_scale(graph, op.inputs[0]), _scale(graph, op.inputs[1]))
    real = twice_max / (float(1 << 20) * _scale(graph, y))
    if not real < 1.0:
        return (y, "scale", _scale(graph, y), f"2 * max(input scales) / (2^20 * output scale) = {real:.4g} must be "
                                              f"below 1 "
                                              f"(QuantizeMultiplierSmallerThanOneExp aborts); use an output scale "
                                              f"above {twice_max / (1 << 20):.3g}")
    return None


_CHECKS: dict[str, Callable[[Graph, Op], tuple[str, str, float, str] | None]] = {
    "SOFTMAX": _softmax, "LOGISTIC": _logistic, "HARD_SWISH": _hard_swish, "ADD": _add,
}
