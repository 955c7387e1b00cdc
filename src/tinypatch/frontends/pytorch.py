"""PyTorch entry point: export to ONNX, quantize with onnxruntime's static quantization, import.

``from_torch(module, example_input, calibration=...)`` runs the three steps and returns the IR
with a report of what each step did. A saved ``torch.export`` program (``.pt2``) or a
TorchScript file (``.pt``/``.ts``) is loaded and goes through the same steps
(``tinypatch import-torch``).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinypatch.errors import ModelLoadError
from tinypatch.frontends.onnx import load_onnx
from tinypatch.ir import Graph

OPSET = 13


@dataclass
class TorchImport:
    """The imported graph, the quantized ONNX file it came from and one line per step."""

    graph: Graph
    onnx_path: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    def report(self) -> str:
        return "\n".join(f"{s['step']:<9} {s['seconds']:6.2f} s  {s['what']}" for s in self.steps)


def _need(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError as e:
        raise ModelLoadError(f"from_torch needs the '{name}' package: pip install 'tinypatch[torch]'") from e


def _op_counts(path: str) -> str:
    onnx = _need("onnx")
    counts = Counter(n.op_type for n in onnx.load(path).graph.node)
    return ", ".join(f"{k} x{v}" for k, v in counts.most_common())


class _Calibration:
    """onnxruntime's CalibrationDataReader over a list of NCHW float arrays."""

    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self.name = name
        self.it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.it, None)
        return None if x is None else {self.name: x}


def _as_batches(example: np.ndarray, calibration: Iterable[Any] | None) -> list[np.ndarray]:
    items = [example] if calibration is None else list(calibration)
    batches = []
    for x in items:
        a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, np.float32)
        if a.shape == example.shape[1:]:
            a = a[None]
        if a.shape != example.shape:
            raise ModelLoadError(f"calibration sample of shape {a.shape}: expected {example.shape}")
        batches.append(a)
    if not batches:
        raise ModelLoadError("calibration holds no samples")
    return batches


def from_torch(module: Any, example_input: Any, calibration: Iterable[Any] | None = None,
               quant_format: str = "QDQ", workdir: str | None = None) -> TorchImport:
    """Export ``module`` (eval mode) to ONNX (opset 13), quantize it to int8 with onnxruntime's
    static quantization (per-channel int8 weights, int8 activations calibrated on
    ``calibration``, default the example input), import it. ``quant_format``: QDQ or QOperator.
    ``workdir`` keeps the ONNX files (default: a temporary directory the result points into).
    """
    torch = _need("torch")
    _need("onnx")
    q = __import__("onnxruntime.quantization", fromlist=["quantize_static"])
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    if quant_format not in ("QDQ", "QOperator"):
        raise ModelLoadError(f"quant_format must be QDQ or QOperator, got {quant_format!r}")
    workdir = workdir or tempfile.mkdtemp(prefix="tinypatch-torch-")
    os.makedirs(workdir, exist_ok=True)
    x = example_input if hasattr(example_input, "detach") else torch.as_tensor(np.asarray(example_input, np.float32))
    steps: list[dict[str, Any]] = []
    float_path = os.path.join(workdir, "float.onnx")
    pre_path = os.path.join(workdir, "float.pre.onnx")
    q_path = os.path.join(workdir, f"int8.{quant_format.lower()}.onnx")

    t = time.perf_counter()
    module.eval()
    try:
        torch.onnx.export(module, (x,), float_path, opset_version=OPSET, dynamo=False,
                          input_names=["input"], output_names=["output"])
    except Exception as e:
        raise ModelLoadError(f"torch.onnx.export failed: {str(e).splitlines()[0][:300]}") from e
    steps.append(dict(step="export", seconds=time.perf_counter() - t, file=float_path,
                      what=f"torch.onnx.export (TorchScript exporter, opset {OPSET}), input "
                           f"{tuple(x.shape)}: {_op_counts(float_path)}"))

    t = time.perf_counter()
    quant_pre_process(float_path, pre_path)
    batches = _as_batches(x.detach().cpu().numpy().astype(np.float32), calibration)
    q.quantize_static(pre_path, q_path, _Calibration("input", batches),
                      quant_format=getattr(q.QuantFormat, quant_format), per_channel=True,
                      activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8)
    steps.append(dict(step="quantize", seconds=time.perf_counter() - t, file=q_path,
                      what=f"onnxruntime quantize_static ({quant_format}, per-channel int8 weights, int8 "
                           f"activations, MinMax over {len(batches)} calibration sample(s)): {_op_counts(q_path)}"))

    t = time.perf_counter()
    graph = load_onnx(q_path)
    ops = Counter(op.type for op in graph.ops)
    steps.append(dict(step="import", seconds=time.perf_counter() - t, file=q_path,
                      what=f"{len(graph.ops)} IR ops, NHWC: " + ", ".join(f"{k} x{v}" for k, v in ops.most_common())))
    return TorchImport(graph, q_path, steps)


def load_torch_file(path: str, input_shape: tuple[int, ...] | None = None) -> tuple[Any, Any]:
    """A module and example input from a ``torch.export`` program (``.pt2``) or a TorchScript file.

    An exported program brings its own example input; TorchScript needs ``input_shape``.
    """
    torch = _need("torch")
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file")
    if path.endswith(".pt2"):
        try:
            ep = torch.export.load(path)
        except Exception as e:
            raise ModelLoadError(f"{path}: not a torch.export program ({type(e).__name__})") from e
        example = None
        if input_shape is not None:
            example = torch.randn(*input_shape)
        elif getattr(ep, "example_inputs", None):
            example = ep.example_inputs[0][0]
        if example is None:
            raise ModelLoadError(f"{path}: the program carries no example input; give --input-shape")
        # the TorchScript exporter needs a traceable module: trace the exported program's module
        return torch.jit.trace(ep.module(), (example,)), example
    try:
        module = torch.jit.load(path)
    except Exception as e:
        raise ModelLoadError(f"{path}: not a TorchScript file ({type(e).__name__})") from e
    if input_shape is None:
        raise ModelLoadError(f"{path}: a TorchScript file needs --input-shape (e.g. 1,3,32,32)")
    return module, torch.randn(*input_shape)
