"""Random int8 CNNs: our executor is bit-exact with LiteRT's reference kernels on every tensor.

Each graph is written with the TFLite writer (and must read back unchanged), run by LiteRT
(BUILTIN_REF) with every intermediate tensor preserved, and by ``tinypatch.runtime.executor``;
the first op whose output differs is named in the failure.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from hypothesis import HealthCheck, given, settings
from strategies import assert_same_graph, random_cnn

from tinypatch.backends import write_tflite
from tinypatch.frontends.tflite import parse_tflite
from tinypatch.ir import Graph
from tinypatch.runtime.executor import run


def litert_activations(graph: Graph, content: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every activation of ``graph`` as computed by LiteRT's reference kernels."""
    it = Interpreter(model_content=content, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                     experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    index = {d["name"]: d["index"] for d in it.get_tensor_details()}
    return {name: it.get_tensor(index[name]) for name in graph.activations()}


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_cnn())
def test_executor_matches_litert(case):
    graph, x = case
    content = write_tflite(graph)
    assert_same_graph(graph, parse_tflite(content, name=graph.name))
    ref = litert_activations(graph, content, x)
    ours = run(graph, [x], keep=True)
    for i, op in enumerate(graph.ops):
        for name in op.outputs:
            assert ours[name].dtype == ref[name].dtype and ours[name].shape == ref[name].shape, f"op {i} {op!r}"
            diff = np.flatnonzero(ours[name].astype(np.int64) != ref[name].astype(np.int64))
            assert diff.size == 0, (f"op {i} {op!r} {op.attrs}: {diff.size}/{ref[name].size} values differ, "
                                    f"first at flat index {diff[0]}: ours {ours[name].flat[diff[0]]}, "
                                    f"LiteRT {ref[name].flat[diff[0]]}")
