"""Run an imported ONNX model in onnxruntime on the IR's int8 NHWC inputs (the reference for
``--arith onnxruntime``)."""

from __future__ import annotations

import functools
import os

import numpy as np

from tinypatch.errors import ModelLoadError
from tinypatch.ir import Graph


def _inverse(p: list[int]) -> list[int]:
    inv = [0] * len(p)
    for i, a in enumerate(p):
        inv[a] = i
    return inv


@functools.lru_cache(maxsize=4)
def _session(path: str, mtime: float):  # noqa: ANN202 (mtime: a changed file gets a new session)
    import onnxruntime as ort  # noqa: PLC0415

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def onnxruntime_outputs(path: str, graph: Graph, inputs: dict[str, np.ndarray] | list[np.ndarray]
                        ) -> dict[str, np.ndarray]:
    """onnxruntime's outputs (CPU provider, default optimizations) for int8 IR inputs (by name or
    in ``graph.inputs`` order), as int8 IR arrays."""
    if not isinstance(inputs, dict):
        inputs = dict(zip(graph.inputs, inputs))
    try:
        import onnxruntime as ort  # noqa: PLC0415 (optional dependency)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ModelLoadError("comparing with onnxruntime needs the 'onnxruntime' package") from e
    meta = graph.meta.get("onnx")
    if not meta:
        raise ModelLoadError(f"{graph.name} was not imported from ONNX")
    sess = _session(path, os.path.getmtime(path))
    feed = {}
    for name, info in meta["inputs"].items():
        q = graph.tensors[name].quant
        x = np.asarray(inputs[name]).transpose(_inverse(info["perm"]))
        feed[info["name"]] = (x.astype(np.int64) - int(q.zero_point[0])).astype(np.float32) * np.float32(q.scale[0])
    names = [info["name"] for info in meta["outputs"].values()]
    results = dict(zip(names, sess.run(names, feed)))
    out = {}
    for name, info in meta["outputs"].items():
        y = results[info["name"]]
        if info["dequantized"]:
            q = graph.tensors[name].quant
            y = np.rint(y / np.float32(q.scale[0])) + int(q.zero_point[0])
        out[name] = np.asarray(y).astype(np.int8).transpose(info["perm"])
    return out
