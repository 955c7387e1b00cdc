"""Random int8 CNNs: our executor is bit-exact with LiteRT's reference kernels on every tensor.

Each graph is written with the TFLite writer (and must read back unchanged), run by LiteRT
(BUILTIN_REF) with every intermediate tensor preserved, and by ``tinypatch.runtime.executor``;
the first op whose output differs is named in the failure.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from litert_ref import assert_matches_litert
from strategies import assert_same_graph, random_cnn

from tinypatch.backends import write_tflite
from tinypatch.frontends.tflite import parse_tflite


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_cnn())
def test_executor_matches_litert(case):
    graph, x = case
    content = write_tflite(graph)
    assert_same_graph(graph, parse_tflite(content, name=graph.name))
    assert_matches_litert(graph, content, x)
