"""The TFLite writer: parse -> write -> parse is the identity, and LiteRT runs what it writes."""

from __future__ import annotations

import numpy as np
import pytest
import tflite
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from conftest import MODELS, model_path
from PIL import Image
from strategies import assert_same_graph

from tinypatch.backends import save_tflite, write_tflite
from tinypatch.errors import GraphError, UnsupportedOperatorError
from tinypatch.frontends.tflite import load_tflite, parse_tflite
from tinypatch.ir import Graph, Op, QuantParams, Tensor
from tinypatch.runtime.inputs import model_inputs

LITERT_REFUSES = {"person_detect.tflite"}  # bias quantized_dimension 3 on 1-D tensors (MANIFEST note 1)


def litert_outputs(content: bytes, inputs: list[np.ndarray]) -> list[bytes]:
    it = Interpreter(model_content=content, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]).tobytes() for d in it.get_output_details()]


def random_inputs(graph: Graph, seed: int) -> list[np.ndarray]:
    return model_inputs(graph, None, seed)


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_round_trip_is_identity(path):
    g = load_tflite(path)
    back = parse_tflite(write_tflite(g), name=g.name)
    assert_same_graph(g, back)
    assert back.meta["description"] == g.meta["description"]


@pytest.mark.parametrize("path", [p for p in MODELS if p.name not in LITERT_REFUSES], ids=lambda p: p.name)
def test_litert_gives_the_same_outputs(path):
    original = path.read_bytes()
    g = parse_tflite(original)
    written = write_tflite(g)
    for seed in (0, 1):
        x = random_inputs(g, seed)
        assert litert_outputs(written, x) == litert_outputs(original, x)


def test_written_person_detect_is_accepted_by_litert():
    """Writing normalises the 1-D bias quantized_dimension, so LiteRT takes the original model."""
    g = load_tflite(model_path("person_detect.tflite"))
    person = np.frombuffer(Image.open(model_path("person.bmp")).tobytes(), np.int8).reshape(1, 96, 96, 1)
    out = litert_outputs(write_tflite(g), [person])
    assert np.frombuffer(out[0], np.int8).tolist() == [-113, 113]  # MANIFEST reference output
    qdimfix = model_path("person_detect_qdimfix.tflite").read_bytes()
    x = random_inputs(g, 0)
    assert litert_outputs(write_tflite(g), x) == litert_outputs(qdimfix, x)


def _tiny_graph(op_type: str = "RESHAPE") -> Graph:
    """int8 [1,2,3,4] -> op -> [1,24]; RESHAPE without a shape tensor (legacy form)."""
    g = Graph("tiny")
    q = QuantParams.tensor(0.5, -3)
    g.add_tensor(Tensor("x", (1, 2, 3, 4), "int8", q))
    g.add_tensor(Tensor("y", (1, 24), "int8", q))
    g.add_op(Op(op_type, ["x"], ["y"]))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def test_reshape_without_shape_tensor_runs_in_litert():
    x = np.arange(-12, 12, dtype=np.int8).reshape(1, 2, 3, 4)
    assert litert_outputs(write_tflite(_tiny_graph()), [x]) == [x.tobytes()]


def test_file_layout(tmp_path):
    g = load_tflite(model_path("mlperf_kws_dscnn_int8.tflite"))
    last = g.tensors[g.outputs[0]]
    g.add_tensor(Tensor("gelu", last.shape, last.dtype, last.quant))
    g.add_op(Op("GELU", [last.name], ["gelu"]))  # an op code above 127
    g.outputs = ["gelu"]
    path = tmp_path / "kws.tflite"
    save_tflite(g, path)
    buf = path.read_bytes()
    m = tflite.Model.GetRootAs(buf, 0)
    assert buf[4:8] == b"TFL3" and m.Version() == 3 and m.SubgraphsLength() == 1
    assert m.Buffers(0).DataLength() == 0
    sg = m.Subgraphs(0)
    names = [sg.Tensors(i).Name().decode() for i in range(sg.TensorsLength())]
    assert names == list(g.tensors)
    assert [names[i] for i in sg.InputsAsNumpy()] == g.inputs
    assert [names[i] for i in sg.OutputsAsNumpy()] == g.outputs
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        const = g.tensors[names[i]].data
        data = m.Buffers(t.Buffer())
        assert (data.DataLength() > 0) == (const is not None) and (t.Buffer() == 0) == (const is None)
        if const is not None:
            assert data.DataAsNumpy().tobytes() == const.tobytes()
            assert (data._tab.Vector(data._tab.Offset(4))) % 16 == 0  # force_align: 16
    codes = {}
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        codes[oc.BuiltinCode()] = oc.DeprecatedBuiltinCode()
    assert codes[tflite.BuiltinOperator.GELU] == 127
    assert codes[tflite.BuiltinOperator.CONV_2D] == tflite.BuiltinOperator.CONV_2D
    with pytest.raises(UnsupportedOperatorError, match=f"GELU at operator index {len(g.ops) - 1}"):
        parse_tflite(buf)


def test_writer_rejects_what_tflite_cannot_hold():
    with pytest.raises(UnsupportedOperatorError, match="NOT_AN_OP at operator index 0"):
        write_tflite(_tiny_graph("NOT_AN_OP"))
    g = _tiny_graph()
    g.ops[0] = Op("RESHAPE", ["x", "shape"], ["y"])
    with pytest.raises(GraphError, match="unknown tensor 'shape'"):
        write_tflite(g)
    g = _tiny_graph("ADD")
    g.ops[0].attrs["fused_activation_function"] = "GELU"
    with pytest.raises(UnsupportedOperatorError, match="fused_activation_function='GELU'"):
        write_tflite(g)
