"""Hostile but well-formed models: every reproducer of issue 11 is refused at import by the one
validation pass (``tinypatch.ir.validate``), with one line on stderr and exit status 2 in
``analyze``, ``run`` and ``codegen`` alike (they agree on what they accept), never a traceback.
What TFLite's reference kernels accept and we can run (a 41x41 SAME kernel on 16x16) runs
bit-exactly instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
from test_security_codegen import small_net

from tinypatch.backends import write_tflite
from tinypatch.backends.mutate import fields, patch
from tinypatch.cli import main
from tinypatch.errors import GraphError
from tinypatch.frontends.tflite import parse_tflite
from tinypatch.ir import Graph, Op, QuantParams, Tensor
from tinypatch.ir.validate import validate
from tinypatch.planning.plan import Plan


def edit(fn: Callable[[Graph], None]) -> Callable[[], bytes]:
    def build() -> bytes:
        g = small_net()
        fn(g)
        return write_tflite(g)
    return build


def field_edit(kind: str, owner: tuple[int, ...], value: int) -> Callable[[], bytes]:
    def build() -> bytes:
        buf = write_tflite(small_net())
        f = next(f for f in fields(buf) if f.kind == kind and f.owner == owner)
        return patch(buf, f, value)
    return build


def retensor(g: Graph, name: str, **changes) -> None:
    t = g.tensors[name]
    g.tensors[name] = Tensor(name, changes.get("shape", t.shape), t.dtype, changes.get("quant", t.quant),
                             changes.get("data", t.data))


def _attr(op: int, **attrs) -> Callable[[Graph], None]:
    return lambda g: g.ops[op].attrs.update(attrs)


def _rank2_input(g: Graph) -> None:
    retensor(g, "input", shape=(12, 36))


def _fc_weights(g: Graph) -> None:
    retensor(g, "fc.weight", shape=(4, 7), data=np.ones((4, 7), np.int8))


def _extra_input(g: Graph) -> None:
    g.ops[0].inputs.append("dw.bias")


def _const_output(g: Graph) -> None:
    g.outputs = ["fc.weight"]


def _no_inputs(g: Graph) -> None:
    g.ops[0].inputs = []


def _shape_mismatch(g: Graph) -> None:
    retensor(g, "dw", shape=(1, 5, 6, 8))


def _big_kernel(g: Graph) -> None:  # a 301x301 kernel (2 MiB of weights): 6x6 outputs of 272k taps each
    w = np.ones((8, 301, 301, 3), np.int8)
    retensor(g, "stem.weight", shape=w.shape, data=w)


def _no_filter(g: Graph) -> None:
    g.ops[0].inputs[1] = ""


def _scale(name: str, value: float) -> Callable[[Graph], None]:
    def fn(g: Graph) -> None:
        q = g.tensors[name].quant
        retensor(g, name, quant=QuantParams(np.full(q.scale.shape, value, np.float32), q.zero_point, q.axis))
    return fn


# id -> (model bytes, the reason the validation gives)
CASES: dict[str, tuple[Callable[[], bytes], str]] = {
    "shape mismatch": (edit(_shape_mismatch), r"operator 1 \(DEPTHWISE_CONV_2D\): .*declared \[1, 5, 6, 8\] but "
                                              r"the operator computes \[1, 6, 6, 8\]"),
    "filter index -1": (edit(_no_filter), r"operator 0 \(CONV_2D\): its filter \(input 1\) is absent"),
    "input index -7": (field_edit("op.input", (0, 0), -7), r"operator 0 \(CONV_2D\) input refers to tensor -7"),
    "graph output constant": (edit(_const_output), r"graph output 'fc.weight' is a constant"),
    "conv with no inputs": (edit(_no_inputs), r"operator 0 \(CONV_2D\): has 0 inputs, expected 2 to 3"),
    "rank-2 conv input": (edit(_rank2_input), r"operator 0 \(CONV_2D\): the input must have rank 4"),
    "activation scale 0": (edit(_scale("stem", 0.0)), r"tensor 'stem' has quantization scale \[0.0\]"),
    "activation scale inf": (edit(_scale("stem", np.inf)), r"tensor 'stem' has quantization scale \[inf\]"),
    "depth_multiplier 0": (edit(_attr(1, depth_multiplier=0)), r"depth_multiplier=0 \(must be an integer from 1"),
    "depth_multiplier 5": (edit(_attr(1, depth_multiplier=5)),
                           r"input channels 8 x depth_multiplier 5 != filter channels 8"),
    "FC weights wrong size": (edit(_fc_weights), r"operator 4 \(FULLY_CONNECTED\): the input's 8 values are not a "
                                                 r"whole number of rows of the weights' depth 7"),
    "dilation 100000": (edit(_attr(0, dilation_h=100_000)), r"dilation_h=100000 \(must be an integer from 1 to 32767"),
    "dilation 30000": (edit(_attr(0, dilation_h=30_000, dilation_w=30_000)), r"needs [0-9,]+ B of working memory, over the limit"),
    "no outputs": (edit(lambda g: setattr(g, "outputs", [])), r"the graph has no outputs"),
    "weight scale 0": (edit(_scale("stem.weight", 0.0)), r"tensor 'stem.weight' has quantization scale \[0.0"),
    "input scale 0": (edit(_scale("input", 0.0)), r"tensor 'input' has quantization scale \[0.0\]"),
    "extra op inputs": (edit(_extra_input), r"operator 0 \(CONV_2D\): has 4 inputs, expected 2 to 3"),
    "graph output is the input": (edit(lambda g: setattr(g, "outputs", ["input"])),
                                  r"graph output 'input' is a graph input"),
    "im2col over the limit": (edit(_big_kernel), r"301x301x3 windows at 6x6 output pixels need [0-9,]+ B of working memory"),
    "stride 0": (edit(_attr(0, stride_w=0)), r"stride_w=0 \(must be an integer from 1"),
    # found by benchmarks/fuzz.py (seed 0): a bool weight tensor reached the C generator (mutation:760),
    # a float bias an int8 conv (NaN cast), a scale ratio near 2^127 an int8_t shift (mutation:354)
    "bool weights": (field_edit("tensor.type", (12,), 6), r"operator 4 \(FULLY_CONNECTED\): the weights is bool"),
    "float bias": (field_edit("tensor.type", (2,), 0), r"operator 0 \(CONV_2D\): the bias is float32, expected int32"),
    "huge multiplier": (edit(_scale("stem", 1e-38)), r"requantization multiplier .* is not below 2\^31"),
    "bool activation": (field_edit("tensor.type", (6,), 6), r"tensor 'dw' is a bool activation"),
    "zero point 300": (edit(lambda g: retensor(g, "dw", quant=QuantParams.tensor(0.01, 300))),
                       r"tensor 'dw' has zero point \[300\] outside the int8 range"),
}


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    Plan.layer_by_layer(small_net()).save(str(path))
    return str(path)


@pytest.mark.parametrize("case", list(CASES))
def test_reproducer_is_one_line_in_every_command(case, tmp_path, capsys, plan_file):
    build, reason = CASES[case]
    path = tmp_path / "hostile.tflite"
    path.write_bytes(build())
    messages = []
    for argv in (["analyze", str(path)], ["run", str(path), "--plan", plan_file],
                 ["codegen", str(path), "-o", str(tmp_path / "c")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert re.search(reason, err), (reason, err)
        messages.append(err)
    assert len(set(messages)) == 1  # run and codegen refuse for the same reason as analyze
    assert not (tmp_path / "c").exists()


def test_size_limit_is_configurable():
    buf = write_tflite(small_net())
    with pytest.raises(Exception, match="over the tensor size limit of 400 B"):
        parse_tflite(buf, max_tensor_bytes=400)
    assert parse_tflite(buf, max_tensor_bytes=10_000)


def test_library_graphs_are_validated_too():
    g = small_net()
    g.ops[1].attrs["depth_multiplier"] = 5
    with pytest.raises(GraphError, match="depth_multiplier 5"):
        validate(g)


def test_big_same_kernel_runs_like_litert():
    """A 41x41 SAME kernel on a 16x16 input: LiteRT's reference kernels accept it, so do we, bit-exactly."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    from tinypatch.runtime.executor import run

    rng = np.random.default_rng(0)
    g = Graph("big_kernel")
    g.add_tensor(Tensor("x", (1, 16, 16, 3), "int8", QuantParams.tensor(0.05, 3)))
    g.add_tensor(Tensor("w", (4, 41, 41, 3), "int8", QuantParams(np.full(4, 0.002, np.float32), np.zeros(4), 0),
                        rng.integers(-127, 128, (4, 41, 41, 3)).astype(np.int8)))
    g.add_tensor(Tensor("b", (4,), "int32", QuantParams(np.full(4, 1e-4, np.float32), np.zeros(4), 0),
                        rng.integers(-999, 999, 4).astype(np.int32)))
    g.add_tensor(Tensor("y", (1, 16, 16, 4), "int8", QuantParams.tensor(0.2, -2)))
    g.add_op(Op("CONV_2D", ["x", "w", "b"], ["y"], dict(padding="SAME")))
    g.inputs, g.outputs = ["x"], ["y"]
    validate(g)
    x = rng.integers(-128, 128, (1, 16, 16, 3)).astype(np.int8)
    it = litert.Interpreter(model_content=write_tflite(g), experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    assert np.array_equal(run(g, [x])["y"], it.get_tensor(it.get_output_details()[0]["index"]))


@pytest.mark.parametrize("layers,hw,reason", [
    ([["conv", 10**9, 3, 2, 1]], [8, 8], r"weights of shape \[1000000000, 3, 3, 3\] are over the tensor size limit"),
    ([["conv", 8, 10**6, 1, 0]], [8, 8], r"over the tensor size limit"),
    ([["conv", 8, 3, 1, 1]], [10**6, 10**6], r"tensor 'input' of shape \[1, 1000000, 1000000, 3\] needs"),
])
def test_hostile_configs_are_refused_before_allocating(tmp_path, capsys, layers, hw, reason):
    import json

    path = tmp_path / "chains.json"
    path.write_text(json.dumps({"models": {"c": {"input_hw": hw, "input_channels": 3, "layers": layers}}}))
    assert main(["analyze", f"{path}#c"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(reason, err), err


def test_deeply_nested_config_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["analyze", str(path)]) == 2
    assert "nested too deeply" in capsys.readouterr().err
