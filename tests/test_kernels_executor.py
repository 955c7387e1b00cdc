"""The whole-image executor: input checking, output selection, caching and speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import model_path

from tinypatch.errors import InputError
from tinypatch.frontends.tflite import load_tflite
from tinypatch.runtime import Executor, executor_for, run


@pytest.fixture(scope="module")
def kws():
    return load_tflite(model_path("mlperf_kws_dscnn_int8.tflite"))


def zeros_input(graph):
    t = graph.tensors[graph.inputs[0]]
    return np.zeros(t.shape, t.np_dtype)


def test_list_dict_and_array_inputs_agree(kws) -> None:
    x = np.random.default_rng(0).integers(-128, 128, kws.tensors[kws.inputs[0]].shape).astype(np.int8)
    a = run(kws, [x])
    b = run(kws, {kws.inputs[0]: x})
    c = Executor(kws)(x)
    assert list(a) == kws.outputs
    for name in kws.outputs:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(a[name], c[name])


def test_keep_returns_every_activation(kws) -> None:
    out = run(kws, [zeros_input(kws)], keep=True)
    assert list(out) == kws.activations()
    for name, value in out.items():
        assert value.shape == kws.tensors[name].shape and value.dtype == kws.tensors[name].np_dtype


@pytest.mark.parametrize("bad, match", [
    (lambda x: [x.astype(np.float32)], "must be int8"),
    (lambda x: [x[:, :10]], "must have shape"),
    (lambda x: [x, x], "takes 1 input"),
    (lambda x: {"nope": x}, "unknown model input"),
    (lambda x: {}, "missing model input"),
])
def test_bad_inputs_raise_input_error(kws, bad, match) -> None:
    with pytest.raises(InputError, match=match):
        run(kws, bad(zeros_input(kws)))


def test_executor_is_cached_per_graph(kws) -> None:
    assert executor_for(kws) is executor_for(kws)
    other = load_tflite(model_path("mlperf_kws_dscnn_int8.tflite"))
    assert executor_for(other) is not executor_for(kws)


def test_largest_model_runs_in_a_few_seconds() -> None:
    graph = load_tflite(model_path("mcunetv2_large.tflite"))
    x = np.random.default_rng(0).uniform(0, 1, graph.tensors[graph.inputs[0]].shape).astype(np.float32)
    start = time.perf_counter()
    out = run(graph, [x])[graph.outputs[0]]
    assert time.perf_counter() - start < 10.0
    assert out.shape == (1, 1000) and out.dtype == np.float32
