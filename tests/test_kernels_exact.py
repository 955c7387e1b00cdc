"""Bit-exactness on the real models: every intermediate tensor equals LiteRT's reference
kernels (BUILTIN_REF) byte for byte; person_detect.tflite, which LiteRT refuses, is checked
against the TFLite Micro interpreter; the MANIFEST's known outputs are reproduced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, SKIP_NO_TFLM, model_path

from tinypatch.frontends.tflite import load_tflite
from tinypatch.ir import Graph
from tinypatch.runtime import run
from tinypatch.runtime.inputs import model_inputs

try:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except ImportError:  # pragma: no cover - exercised only without LiteRT
    Interpreter = None

needs_litert = pytest.mark.skipif(Interpreter is None, reason="ai-edge-litert is not installed")
LITERT_REFUSES = {"person_detect.tflite"}  # MANIFEST note 1: bias quantized_dimension out of range


def bmp_as_int8(path: Path) -> np.ndarray:
    """TFLM's person_detection convention: the grey pixel bytes reinterpreted as int8."""
    from PIL import Image

    pixels = np.asarray(Image.open(path).convert("L"), np.uint8)
    return pixels.reshape(1, *pixels.shape, 1).view(np.int8)


def sample_inputs(graph: Graph, name: str, seed: int = 0) -> list[np.ndarray]:
    """The model's sample input where the MANIFEST names one, seeded random otherwise."""
    if name.startswith("person_detect"):
        return [bmp_as_int8(model_path("person.bmp"))]
    if name.startswith("mlperf_kws"):
        x = np.load(model_path("mlperf_kws_sample_input_int8.npy"))
        return [x.reshape(graph.tensors[graph.inputs[0]].shape)]
    return model_inputs(graph, None, seed)


def litert_tensors(path: Path, graph: Graph, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of one LiteRT reference-kernel inference, by our tensor names."""
    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                     experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    index = graph.meta["tflite_index"]
    for name, x in zip(graph.inputs, inputs):
        it.set_tensor(index[name], x)
    it.invoke()
    return {name: it.get_tensor(index[name]) for name in graph.activations()}


@needs_litert
@pytest.mark.parametrize("name", [p.name for p in MODELS if p.name not in LITERT_REFUSES] or ["<no assets>"])
def test_every_tensor_matches_litert_reference(name: str) -> None:
    path = model_path(name)
    graph = load_tflite(path)
    seeds = (0,) if name.startswith(("person_detect", "mlperf_kws", "mcunetv2")) else (0, 1)
    for seed in seeds:
        inputs = sample_inputs(graph, name, seed)
        ours = run(graph, inputs, keep=True)
        ref = litert_tensors(path, graph, inputs)
        mismatched = [n for n in ref if ours[n].dtype != ref[n].dtype or ours[n].shape != ref[n].shape
                      or not np.array_equal(ours[n], ref[n])]
        assert not mismatched, f"{name} seed {seed}: {len(mismatched)} tensors differ, first {mismatched[:3]}"


@pytest.mark.parametrize("image, expected", [("person.bmp", [-113, 113]), ("no_person.bmp", [57, -57])])
@pytest.mark.parametrize("model", ["person_detect.tflite", "person_detect_qdimfix.tflite"])
def test_person_detect_known_outputs(model: str, image: str, expected: list[int]) -> None:
    graph = load_tflite(model_path(model))
    out = run(graph, [bmp_as_int8(model_path(image))])[graph.outputs[0]]
    assert out.tolist() == [expected]


@pytest.mark.parametrize("image", ["person.bmp", "no_person.bmp"])
def test_person_detect_matches_tflite_micro_tensor_by_tensor(image: str) -> None:
    """LiteRT refuses person_detect.tflite; TFLite Micro (kPreserveAllTensors) gives every tensor."""
    try:
        from tinypatch.runtime.tflm import tflm_tensors
        path = model_path("person_detect.tflite")
        graph = load_tflite(path)
        x = bmp_as_int8(model_path(image))
        ref = tflm_tensors(path, graph, [x])
    except ImportError:
        pytest.skip(SKIP_NO_TFLM)
    ours = run(graph, [x], keep=True)
    assert len(ref) == len(graph.activations()) == 32
    differ = [n for n in ref if not np.array_equal(ours[n], ref[n])]
    assert not differ, f"{len(differ)} tensors differ from TFLite Micro, first {differ[:3]}"


def test_kws_sample_is_on() -> None:
    graph = load_tflite(model_path("mlperf_kws_dscnn_int8.tflite"))
    out = run(graph, sample_inputs(graph, "mlperf_kws"))[graph.outputs[0]][0]
    assert int(np.argmax(out)) == 5 and int(out[5]) == 127  # label "on"
