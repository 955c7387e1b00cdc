"""An exported int8 model's held-out accuracy measured three ways, which must agree exactly.

1. the PyTorch int8 simulation's logits (given by the caller, :mod:`tinypatch.nas.export`) vs
   our executor on the graph read back from the written ``.tflite``: identical int8 logits,
   hence identical predictions;
2. LiteRT's reference kernels (BUILTIN_REF) on the same file: identical bytes to the executor;
3. the generated C for a plan, built for Cortex-M7 and run on QEMU image by image: identical
   bytes to the executor.

No torch here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinypatch.errors import InputError
from tinypatch.ir import Graph
from tinypatch.nas.data import Dataset
from tinypatch.planning.plan import Plan
from tinypatch.runtime.executor import run

Progress = Callable[[str], None]


@dataclass
class Way:
    """One way of running the model over (a prefix of) the held-out split."""

    name: str
    images: int
    accuracy: float
    identical: bool | None  # vs the executor's bytes (None: the executor itself)
    note: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "images": self.images, "accuracy": self.accuracy if self.images else None,
                "identical": self.identical, "note": self.note}


@dataclass
class Verification:
    ways: list[Way] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(w.identical is not False for w in self.ways)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "ways": [w.to_dict() for w in self.ways]}


def model_inputs(graph: Graph, x: np.ndarray) -> np.ndarray:
    """uint8 NHWC images at the graph's resolution -> int8 model inputs ``pixel - 128``."""
    h, w = graph.tensors[graph.inputs[0]].shape[1:3]
    if x.shape[1:3] != (h, w):
        raise InputError(f"images are {x.shape[1]}x{x.shape[2]}, the model wants {h}x{w}")
    return (x.astype(np.int16) - 128).astype(np.int8)


def executor_logits(graph: Graph, xq: np.ndarray) -> np.ndarray:
    out = graph.outputs[0]
    return np.concatenate([run(graph, xq[i: i + 1])[out] for i in range(len(xq))])


def litert_logits(tflite: bytes, xq: np.ndarray) -> np.ndarray | None:
    """LiteRT BUILTIN_REF on every image; None when LiteRT (ai-edge-litert) is not installed."""
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:
        return None
    it = litert.Interpreter(model_content=tflite, experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    outs = []
    for x in xq:
        it.set_tensor(i_in, x[None])
        it.invoke()
        outs.append(it.get_tensor(i_out).copy())
    return np.concatenate(outs)


def mcu_logits(graph: Graph, plan: Plan, xq: np.ndarray, target: str = "cortex-m7",
               project_dir: str | os.PathLike[str] | None = None,
               progress: Progress | None = None) -> tuple[np.ndarray, int]:
    """Generate C for ``plan``, build it for ``target`` and run every image on QEMU; returns
    the logits and the project's arena bytes."""
    from tinypatch.codegen import generate, toolchain

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(project_dir) if project_dir is not None else Path(tmp) / "project"
        project = generate(graph, plan, path, target)
        toolchain.make(project.path, target)
        outs = []
        for i, x in enumerate(xq):
            q = toolchain.run_qemu(project.path, graph, [x[None]], target)
            outs.append(q.outputs[graph.outputs[0]])
            if progress is not None and (i + 1) % 50 == 0:
                progress(f"QEMU {target}: {i + 1}/{len(xq)} images")
        return np.concatenate(outs), project.arena_bytes


def verify(graph: Graph, tflite: bytes, holdout: Dataset, sim_logits: np.ndarray, plan: Plan | None = None,
           mcu_images: int | None = None, target: str = "cortex-m7", project_dir: str | os.PathLike[str] | None = None,
           progress: Progress | None = None) -> Verification:
    """Run the three comparisons on ``holdout`` (``graph``: read back from ``tflite``).
    ``plan`` None skips the board; ``mcu_images`` limits QEMU to the first images."""
    from tinypatch.codegen.toolchain import missing_tools

    xq = model_inputs(graph, holdout.x)
    y = holdout.y
    res = Verification()
    if progress is not None:
        progress(f"our executor on {len(y)} held-out images")
    ref = executor_logits(graph, xq)

    def acc(logits: np.ndarray, n: int) -> float:
        return float((logits.argmax(1) == y[:n]).mean())

    res.ways.append(Way("PyTorch int8 simulation", len(y), acc(sim_logits, len(y)), bool(
        np.array_equal(sim_logits.astype(np.int8), ref)), "int8 logits vs executor"))
    res.ways.append(Way("tinypatch executor (.tflite)", len(y), acc(ref, len(y)), None))
    lite = litert_logits(tflite, xq)
    if lite is None:
        res.ways.append(Way("LiteRT BUILTIN_REF", 0, float("nan"), None, "ai-edge-litert not installed: skipped"))
    else:
        res.ways.append(Way("LiteRT BUILTIN_REF", len(y), acc(lite, len(y)), bool(np.array_equal(lite, ref))))
    if plan is not None:
        missing = missing_tools(target)
        if missing:
            res.ways.append(Way(f"generated C, {target} (QEMU)", 0, float("nan"), None, f"skipped: {missing}"))
        else:
            n = len(y) if mcu_images is None else min(mcu_images, len(y))
            if progress is not None:
                progress(f"generated C on {target} (QEMU): {n} images")
            mcu, arena = mcu_logits(graph, plan, xq[:n], target, project_dir, progress)
            res.ways.append(Way(f"generated C, {target} (QEMU)", n, acc(mcu, n), bool(np.array_equal(mcu, ref[:n])),
                                f"arena {arena:,} B"))
    return res
