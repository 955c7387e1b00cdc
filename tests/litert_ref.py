"""LiteRT's reference kernels (BUILTIN_REF) as the oracle of the executor tests: every activation
of a written model, and the op-by-op comparison with ``tinypatch.runtime.executor``."""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tinypatch.ir import Graph
from tinypatch.runtime.executor import run


def litert_activations(graph: Graph, content: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every activation of ``graph`` (written as ``content``) as LiteRT's reference kernels compute it."""
    it = Interpreter(model_content=content, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                     experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    index = {d["name"]: d["index"] for d in it.get_tensor_details()}
    return {name: it.get_tensor(index[name]) for name in graph.activations()}


def assert_matches_litert(graph: Graph, content: bytes, x: np.ndarray) -> None:
    """Every op output of our executor equals LiteRT's (dtype, shape, bytes); the first op that
    differs is named with its first differing value."""
    ref = litert_activations(graph, content, x)
    ours = run(graph, [x], keep=True)
    for i, op in enumerate(graph.ops):
        for name in op.outputs:
            assert ours[name].dtype == ref[name].dtype and ours[name].shape == ref[name].shape, f"op {i} {op!r}"
            diff = np.flatnonzero(ours[name].astype(np.int64) != ref[name].astype(np.int64))
            assert diff.size == 0, (f"op {i} {op!r} {op.attrs}: {diff.size}/{ref[name].size} values differ, "
                                    f"first at flat index {diff[0]}: ours {ours[name].flat[diff[0]]}, "
                                    f"LiteRT {ref[name].flat[diff[0]]}")
