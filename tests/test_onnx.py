"""ONNX frontend and the onnxruntime arithmetic.

torchvision CNNs (random weights, 33x33 inputs) exported to ONNX and quantized by onnxruntime in
QDQ and QOperator form: each imports to an NHWC graph without TRANSPOSE; with
``arith="onnxruntime"`` its output equals onnxruntime's byte for byte on random and photo
inputs; a patch plan runs exactly at the planned peak and the generated C equals the Python
executor (TFLite arithmetic). Plus: an NCHW model plans exactly like its NHWC twin, from_torch
reaches a C project, and bad files give one-line errors.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from onnx import TensorProto, helper  # noqa: E402
from onnx_models import FORMATS, RESOLUTION, TORCHVISION, export, photos, quantize_file, torchvision_model  # noqa: E402

import tinypatch  # noqa: E402
import tinypatch.errors  # noqa: E402
from tinypatch.codegen import generate  # noqa: E402
from tinypatch.codegen.toolchain import make, missing_tools, run_host  # noqa: E402
from tinypatch.errors import ModelLoadError, TinypatchError, UnsupportedOperatorError  # noqa: E402
from tinypatch.frontends.load import load_model  # noqa: E402
from tinypatch.frontends.onnx import load_onnx  # noqa: E402
from tinypatch.frontends.onnx_reference import onnxruntime_outputs  # noqa: E402
import tinypatch.kernels.onnxruntime as ort_arith  # noqa: E402
from tinypatch.planning.search import search  # noqa: E402
from tinypatch.runtime.executor import run  # noqa: E402
from tinypatch.runtime.plan_executor import PlanExecutor  # noqa: E402

NO_CC = missing_tools("host")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_models")


@functools.cache
def _path(folder, name: str, fmt: str) -> str:
    return str(torchvision_model(name, fmt, folder))


@functools.cache
def _graph(folder, name: str, fmt: str):
    return load_model(_path(folder, name, fmt))


def _int8_inputs(g, n_random: int = 2) -> list[np.ndarray]:
    """Random int8 inputs and scikit-image's photos quantized with the model's input scale (NHWC)."""
    t = g.tensors[g.inputs[0]]
    rs = np.random.RandomState(3)
    xs = [rs.randint(-128, 128, t.shape).astype(np.int8) for _ in range(n_random)]
    try:
        imgs = photos(RESOLUTION)
    except ImportError:
        imgs = []
    s, zp = float(t.quant.scale[0]), int(t.quant.zero_point[0])
    for img in imgs:
        q = np.clip(np.rint(img / np.float32(s)) + zp, -128, 127).astype(np.int8)
        xs.append(q.transpose(0, 2, 3, 1))
    return xs


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_model_imports_and_equals_onnxruntime(name, fmt, model_dir):
    path = _path(model_dir, name, fmt)
    g = _graph(model_dir, name, fmt).copy()
    assert g.meta["expected_arith"] == "onnxruntime"
    for op in g.ops:  # NCHW became NHWC at import: the only transposes left are channel shuffles
        if op.type == "TRANSPOSE":
            assert len(g.tensors[op.inputs[0]].shape) == 3 and list(g.tensors[op.inputs[1]].data) == [0, 2, 1]
    assert g.tensors[g.inputs[0]].shape == (1, RESOLUTION, RESOLUTION, 3)
    g.meta["arith"] = "onnxruntime"
    xs = _int8_inputs(g)
    assert len(xs) >= 2
    for x in xs:
        ours = run(g, [x])
        ref = onnxruntime_outputs(path, g, [x])
        for n in g.outputs:
            assert ours[n].tobytes() == ref[n].tobytes(), \
                f"{name} {fmt}: {int((ours[n] != ref[n]).sum())} of {ours[n].size} output bytes differ"


@pytest.mark.parametrize("name", TORCHVISION)
def test_qdq_and_qoperator_import_to_the_same_operators(name, model_dir):
    """The same layers and weights (QOperator may requantize where QDQ keeps one scale)."""
    a, b = (_graph(model_dir, name, f) for f in FORMATS)
    ops_a, ops_b = ([op for op in g.ops if op.type != "QUANTIZE"] for g in (a, b))
    assert [op.type for op in ops_a] == [op.type for op in ops_b]
    for oa, ob in zip(ops_a, ops_b):
        for ta, tb in zip(oa.inputs, ob.inputs):
            if ta and a.tensors[ta].is_const and a.tensors[ta].data.dtype == np.int8:
                assert np.array_equal(a.tensors[ta].data, b.tensors[tb].data)


@functools.cache
def _least_peak_plan(folder, name: str):
    g = _graph(folder, name, "QDQ")
    front = search(g).front
    patch = [c.plan for c in front if c.plan.stages]
    return g, (patch[0] if patch else front[0].plan)


@pytest.mark.parametrize("name", TORCHVISION)
def test_plan_runs_exactly_at_the_planned_peak(name, model_dir):
    g, plan = _least_peak_plan(model_dir, name)
    for x in _int8_inputs(g, 1)[:2]:  # one random input, one photo
        whole = run(g, [x])
        patched = PlanExecutor(g, plan)([x])
        for n in g.outputs:
            assert patched.outputs[n].tobytes() == whole[n].tobytes()
        assert patched.arena_high_water == patched.arena_size


@pytest.mark.skipif(NO_CC is not None, reason=f"host C compiler: {NO_CC}")
@pytest.mark.parametrize("name", TORCHVISION)
def test_generated_c_is_exact_in_tflite_arithmetic(name, model_dir, tmp_path):
    g, plan = _least_peak_plan(model_dir, name)
    generate(g, plan, tmp_path)
    make(tmp_path, "host-check")
    xs = _int8_inputs(g, 1)[:2]
    for x in xs:
        got = run_host(tmp_path, g, [x], "model_host_check")
        want = run(g, [x])
        for n in g.outputs:
            assert got[n].tobytes() == want[n].tobytes()


class _Small(torch.nn.Module):
    """Conv, depthwise, residual add, SE-style mul with hard-sigmoid, pooling, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.dw = torch.nn.Conv2d(8, 8, 3, 1, 1, groups=8)
        self.pw = torch.nn.Conv2d(8, 8, 1)
        self.se = torch.nn.Conv2d(8, 8, 1)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):  # noqa: ANN001, ANN201
        x = torch.relu(self.c1(x))
        y = self.pw(torch.relu(self.dw(x)))
        y = y * torch.nn.functional.hardsigmoid(self.se(torch.nn.functional.adaptive_avg_pool2d(y, 1)))
        x = torch.nn.functional.max_pool2d(x + y, 3, 2, 1)
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


class _NHWC(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.inner(x.permute(0, 3, 1, 2))


def _small_models(folder):
    torch.manual_seed(1)
    net = _Small()
    nchw = quantize_file(export(net, (1, 3, 17, 17), folder / "small.onnx"), folder / "small-q.onnx", "QDQ",
                         (1, 3, 17, 17))
    nhwc = quantize_file(export(_NHWC(net), (1, 17, 17, 3), folder / "small_nhwc.onnx"), folder / "small_nhwc-q.onnx",
                         "QDQ", (1, 17, 17, 3))
    return nchw, nhwc


def test_nchw_model_plans_exactly_like_its_nhwc_twin(tmp_path):
    nchw, nhwc = _small_models(tmp_path)
    a, b = load_onnx(str(nchw)), load_onnx(str(nhwc))
    assert [op.type for op in a.ops] == [op.type for op in b.ops]
    assert "TRANSPOSE" not in {op.type for op in a.ops} | {op.type for op in b.ops}
    assert a.tensors[a.inputs[0]].shape == b.tensors[b.inputs[0]].shape == (1, 17, 17, 3)
    fa, fb = search(a).front, search(b).front
    assert [(c.peak, c.macs) for c in fa] == [(c.peak, c.macs) for c in fb]
    for g, path in ((a, nchw), (b, nhwc)):  # both still equal onnxruntime
        g.meta["arith"] = "onnxruntime"
        x = np.random.RandomState(0).randint(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)
        assert run(g, [x])[g.outputs[0]].tobytes() == onnxruntime_outputs(str(path), g, [x])[g.outputs[0]].tobytes()


def test_even_input_gets_explicit_padding_and_stays_exact(tmp_path):
    torch.manual_seed(2)
    path = quantize_file(export(_Small().c1, (1, 3, 16, 16), tmp_path / "c.onnx"), tmp_path / "c-q.onnx", "QDQ",
                         (1, 3, 16, 16))
    g = load_onnx(str(path))
    assert [op.type for op in g.ops] == ["PAD", "CONV_2D"]  # pads (1, 1) at stride 2 on 16: not TFLite's SAME
    g.meta["arith"] = "onnxruntime"
    x = np.random.RandomState(0).randint(-128, 128, (1, 16, 16, 3)).astype(np.int8)
    assert run(g, [x])[g.outputs[0]].tobytes() == onnxruntime_outputs(str(path), g, [x])[g.outputs[0]].tobytes()


@pytest.mark.skipif(NO_CC is not None, reason=f"host C compiler: {NO_CC}")
def test_from_torch_reaches_a_c_project_in_one_call(tmp_path):
    torch.manual_seed(3)
    result = tinypatch.from_torch(_Small(), torch.randn(1, 3, 17, 17),
                                  calibration=[torch.randn(1, 3, 17, 17) for _ in range(3)],
                                  c_project=tmp_path / "c", workdir=str(tmp_path / "onnx"))
    assert [s["step"] for s in result.steps] == ["export", "quantize", "import", "codegen"]
    assert (tmp_path / "c" / "model.c").exists()
    make(tmp_path / "c", "host-check")
    g = result.graph
    x = np.random.RandomState(0).randint(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)
    assert run_host(tmp_path / "c", g, [x], "model_host_check")[g.outputs[0]].tobytes() == \
        run(g, [x])[g.outputs[0]].tobytes()


def test_arith_modes_differ_and_are_counted(tmp_path, monkeypatch):
    """Where onnxruntime's integer sums are exact (a CPU with VNNI), the two arithmetics differ only in
    rounding: by a few steps at most."""
    monkeypatch.setattr(ort_arith, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_vnni"}))
    nchw, _ = _small_models(tmp_path)
    g = load_onnx(str(nchw))
    x = np.random.RandomState(5).randint(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)
    tfl = run(g, [x])[g.outputs[0]]
    g2 = g.copy()
    g2.meta["arith"] = "onnxruntime"
    ort_ = run(g2, [x])[g2.outputs[0]]
    assert tfl.shape == ort_.shape and np.abs(tfl.astype(int) - ort_.astype(int)).max() <= 8


# --- errors ---------------------------------------------------------------------------------------
def _save(tmp_path, nodes, inputs, outputs, inits=(), name="m.onnx"):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    p = tmp_path / name
    onnx.save(m, str(p))
    return str(p)


def _qdq_prefix():
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("z", TensorProto.INT8, [], [0])]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xf"])]
    return nodes, inits


def test_unsupported_operators_are_all_named(tmp_path):
    nodes, inits = _qdq_prefix()
    nodes += [helper.make_node("Floor", ["xf"], ["a"]), helper.make_node("Ceil", ["a"], ["b"]),
              helper.make_node("Floor", ["b"], ["y"])]
    p = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], inits)
    with pytest.raises(ModelLoadError, match=r"unsupported ONNX operators: Ceil \(x1\), Floor \(x2\)"):
        load_onnx(p)


def test_dynamic_input_is_named(tmp_path):
    nodes, inits = _qdq_prefix()
    nodes.append(helper.make_node("Relu", ["xf"], ["y"]))
    p = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])],
              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    with pytest.raises(ModelLoadError, match=r"input 'x' has a dynamic dimension 'batch' at axis 0"):
        load_onnx(p)


def test_float_only_operator_in_int8_model(tmp_path):
    nodes, inits = _qdq_prefix()
    nodes.append(helper.make_node("Relu", ["xf"], ["y"]))  # its float result is never quantized
    p = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], inits)
    with pytest.raises(UnsupportedOperatorError, match="float-only operator in an int8 model"):
        load_onnx(p)


def test_non_finite_activation_attribute_is_refused(tmp_path):
    """Found by the ONNX fuzzer: a NaN HardSigmoid alpha was imported and ran with garbage."""
    nodes, inits = _qdq_prefix()
    inits += [helper.make_tensor("so", TensorProto.FLOAT, [], [1 / 256]), helper.make_tensor("zo", TensorProto.INT8, [], [-128])]
    nodes += [helper.make_node("HardSigmoid", ["xf"], ["h"], alpha=float("nan")),
              helper.make_node("QuantizeLinear", ["h", "so", "zo"], ["hq"]),
              helper.make_node("DequantizeLinear", ["hq", "so", "zo"], ["y"])]
    p = _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], inits)
    with pytest.raises(ModelLoadError, match=r"HARD_SIGMOID.*alpha=nan \(must be finite\)"):
        load_model(p)


def test_float_model_is_refused(tmp_path):
    p = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])],
              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    with pytest.raises(ModelLoadError, match="a float model"):
        load_onnx(p)


def test_malformed_protobuf_and_mutations_raise_only_our_errors(tmp_path):
    nchw, _ = _small_models(tmp_path)
    data = nchw.read_bytes()
    bad = tmp_path / "bad.onnx"
    rs = np.random.RandomState(0)
    cases = [b"", b"\x00" * 10, b"not a protobuf at all" * 3, data[: len(data) // 2], data[:100]]
    for _ in range(25):
        buf = bytearray(data)
        for i in rs.randint(0, len(buf), 4):
            buf[i] ^= 1 << rs.randint(0, 8)
        cases.append(bytes(buf))
    for buf in cases:
        bad.write_bytes(buf)
        try:
            load_onnx(str(bad)).validate()
        except TinypatchError:
            pass


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    r = subprocess.run([sys.executable, "-m", "tinypatch.cli", "analyze", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "ONNX" in r.stderr


def test_float_model_quantized_by_us_in_tflite_scheme(tmp_path):
    from tinypatch.frontends.onnx_quantize import quantize_float_onnx

    torch.manual_seed(4)
    net = _Small()
    path = export(net, (1, 3, 17, 17), tmp_path / "f.onnx")
    with pytest.raises(ModelLoadError, match="a float model"):
        load_onnx(str(path))
    rs = np.random.RandomState(0)
    cal = [rs.randn(1, 3, 17, 17).astype(np.float32) for _ in range(8)]
    g = load_onnx(quantize_float_onnx(str(path), cal, str(tmp_path / "q.onnx")))
    assert g.meta["expected_arith"] == "tflite"
    conv = next(op for op in g.ops if op.type == "CONV_2D")
    w = g.tensors[conv.inputs[1]]
    assert w.quant.per_channel and w.quant.axis == 0 and not w.quant.zero_point.any()
    assert np.abs(w.data).max() == 127  # symmetric per-channel: each channel's largest weight is +-127
    assert "RELU" not in {op.type for op in g.ops}, "Relu folded into the conv output's range"
    x = rs.randn(1, 3, 17, 17).astype(np.float32)
    want = net(torch.from_numpy(x)).detach().numpy().ravel()
    q = g.tensors[g.inputs[0]].quant
    xi = np.clip(np.rint(x / q.scale[0]) + q.zero_point[0], -128, 127).astype(np.int8).transpose(0, 2, 3, 1)
    y = run(g, [xi])[g.outputs[0]].ravel()
    qo = g.tensors[g.outputs[0]].quant
    got = (y.astype(np.float32) - qo.zero_point[0]) * qo.scale[0]
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max() + 4 * qo.scale[0]


def test_cli_run_arith_onnxruntime_exits_1_when_onnxruntime_differs(tmp_path, monkeypatch, capsys):
    """`run --arith onnxruntime` printed 'N bytes differ' against onnxruntime in red and exited 0."""
    import tinypatch.frontends.onnx_reference as reference
    from tinypatch.cli import main

    nchw, _ = _small_models(tmp_path)
    plan = tmp_path / "p.json"
    assert main(["plan", str(nchw), "-o", str(plan)]) == 0
    real = reference.onnxruntime_outputs

    def off_by_one(path, graph, inputs):  # noqa: ANN001, ANN202
        return {n: np.asarray(v) ^ np.int8(1) for n, v in real(path, graph, inputs).items()}

    monkeypatch.setattr(reference, "onnxruntime_outputs", off_by_one)
    capsys.readouterr()
    assert main(["run", str(nchw), "--plan", str(plan), "--arith", "onnxruntime"]) == 1
    assert re.search(r"--arith onnxruntime vs onnxruntime [\d.]+: [\d,]+ bytes differ", capsys.readouterr().out)
    assert main(["run", str(nchw), "--plan", str(plan)]) == 0  # tflite arithmetic: onnxruntime is only compared


def _torch_style_float_model(tmp_path) -> str:
    """Conv -> Clip(0, 6) -> Conv as torch's exporter writes it: weights and biases behind Identity
    nodes of shared initializers, Clip's bounds as Constant nodes."""
    rs = np.random.RandomState(5)
    inits = [onnx.numpy_helper.from_array(rs.randn(*shape).astype(np.float32), name)
             for name, shape in (("w1", (4, 3, 3, 3)), ("b1", (4,)), ("w2", (2, 4, 1, 1)), ("b2", (2,)))]
    nodes = [helper.make_node("Identity", [n], [f"{n}_id"]) for n in ("w1", "b1", "w2", "b2")]
    nodes += [helper.make_node("Constant", [], [n], value=helper.make_tensor(n, TensorProto.FLOAT, [], [v]))
              for n, v in (("lo", 0.0), ("hi", 6.0))]
    nodes += [helper.make_node("Conv", ["x", "w1_id", "b1_id"], ["c1"], pads=[1, 1, 1, 1]),
              helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
              helper.make_node("Conv", ["r1", "w2_id", "b2_id"], ["y"])]
    return _save(tmp_path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], inits, "float.onnx")


def test_cli_quantize_float_takes_a_torch_export(tmp_path, capsys):
    """`tinypatch quantize-float` reads a float file (it used to be loaded as an int8 model first and
    refused), and Identity-shared weights and Constant bounds become constants, not activations."""
    from tinypatch.cli import main

    np.save(tmp_path / "cal.npy", np.random.RandomState(0).randn(4, 3, 8, 8).astype(np.float32))
    out = tmp_path / "q.onnx"
    assert main(["quantize-float", _torch_style_float_model(tmp_path), "--calibration",
                 str(tmp_path / "cal.npy"), "-o", str(out)]) == 0
    assert f"written {out}" in capsys.readouterr().out
    g = load_model(str(out))
    assert [op.type for op in g.ops] == ["CONV_2D", "CONV_2D"]  # Clip(0, 6) folded into the first conv's range
    assert all(g.tensors[op.inputs[1]].quant.per_channel for op in g.ops)


def test_float_model_error_names_the_quantize_float_command(tmp_path):
    with pytest.raises(ModelLoadError, match="`tinypatch quantize-float MODEL.onnx"):
        load_onnx(_torch_style_float_model(tmp_path))


def test_cli_import_torch_takes_a_torchscript_file(tmp_path, capsys):
    """`tinypatch import-torch` reads a .pt file (it used to be loaded as a model first: 'unknown
    model file type')."""
    from tinypatch.cli import main

    torch.manual_seed(0)
    pt = tmp_path / "small.pt"
    torch.jit.trace(_Small().eval(), torch.randn(1, 3, 17, 17)).save(str(pt))
    out = tmp_path / "small.onnx"
    assert main(["import-torch", str(pt), "--input-shape", "1,3,17,17", "-o", str(out)]) == 0
    assert f"written {out}" in capsys.readouterr().out
    assert load_model(str(out)).ops


def test_cli_quantize_float_and_import_torch_take_their_own_files(tmp_path):
    """`quantize-float` reads a float .onnx and `import-torch` a TorchScript file, as the README shows:
    neither is loaded as a tinypatch model first (that refused both: 'a float model', 'unknown model file type')."""
    torch.manual_seed(4)
    net = _Small().eval()
    float_onnx = export(net, (1, 3, 17, 17), tmp_path / "f.onnx")
    script = tmp_path / "small.pt"
    torch.jit.save(torch.jit.trace(net, torch.randn(1, 3, 17, 17)), str(script))
    np.save(tmp_path / "cal.npy", np.random.RandomState(0).randn(4, 3, 17, 17).astype(np.float32))
    cli = [sys.executable, "-m", "tinypatch.cli"]
    for args, out in ((["quantize-float", str(float_onnx), "--calibration", str(tmp_path / "cal.npy")], "q.onnx"),
                      (["import-torch", str(script), "--input-shape", "1,3,17,17"], "t.onnx")):
        r = subprocess.run([*cli, *args, "-o", str(tmp_path / out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert load_onnx(str(tmp_path / out)).ops
    r = subprocess.run([*cli, "analyze", str(float_onnx)], capture_output=True, text=True)
    assert r.returncode == 2 and "`tinypatch quantize-float MODEL.onnx" in r.stderr


def test_quantize_float_reads_constants_behind_identity_and_constant_nodes(tmp_path):
    """torch.onnx.export writes shared weights as Identity nodes over an initializer and Clip bounds as
    Constant nodes (torchvision's MobileNetV2): quantize-float takes them as constants (it put a
    QuantizeLinear on the Identity's output, which the importer refused)."""
    from tinypatch.frontends.onnx_quantize import quantize_float_onnx

    rs = np.random.RandomState(1)
    w, b = rs.randn(4, 3, 3, 3).astype(np.float32), rs.randn(4).astype(np.float32)
    inits = [onnx.numpy_helper.from_array(w, "w0"), onnx.numpy_helper.from_array(b, "b0")]
    bound = helper.make_tensor("v", TensorProto.FLOAT, [], [6.0])
    nodes = [helper.make_node("Identity", ["w0"], ["w"]), helper.make_node("Identity", ["b0"], ["b"]),
             helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["y"], ["r"]), helper.make_node("Constant", [], ["hi"], value=bound),
             helper.make_node("Add", ["r", "r"], ["s"]), helper.make_node("Clip", ["s", "", "hi"], ["z"])]
    p = _save(tmp_path, nodes,
              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    cal = [rs.randn(1, 3, 6, 6).astype(np.float32) for _ in range(4)]
    g = load_onnx(quantize_float_onnx(p, cal, str(tmp_path / "q.onnx")))
    conv = next(op for op in g.ops if op.type == "CONV_2D")
    assert g.tensors[conv.inputs[1]].data is not None and g.tensors[conv.inputs[2]].data is not None


class _Upsampler(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = torch.nn.Conv2d(3, 8, 3, 1, 1)
        self.c2 = torch.nn.Conv2d(8, 8, 1)
        self.up = torch.nn.Upsample(scale_factor=2)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.c2(self.up(torch.nn.functional.leaky_relu(self.c(x), 0.1)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_leaky_relu_and_nearest_resize_equal_onnxruntime(fmt, tmp_path):
    torch.manual_seed(0)
    path = quantize_file(export(_Upsampler(), (1, 3, 9, 9), tmp_path / "u.onnx"), tmp_path / f"u-{fmt}.onnx", fmt,
                         (1, 3, 9, 9))
    g = load_onnx(str(path))
    assert [op.type for op in g.ops] == ["CONV_2D", "LEAKY_RELU", "RESIZE_NEAREST_NEIGHBOR", "CONV_2D"]
    g.meta["arith"] = "onnxruntime"
    for seed in range(3):
        x = np.random.RandomState(seed).randint(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)
        assert run(g, [x])[g.outputs[0]].tobytes() == onnxruntime_outputs(str(path), g, [x])[g.outputs[0]].tobytes()


def test_cli_run_arith_onnxruntime_compares_with_onnxruntime(tmp_path):
    """`run --arith onnxruntime` on an .onnx file: the arithmetics' difference counted, onnxruntime matched."""
    nchw, _ = _small_models(tmp_path)
    plan = tmp_path / "p.json"
    cli = [sys.executable, "-m", "tinypatch.cli"]
    assert subprocess.run([*cli, "plan", str(nchw), "-o", str(plan)], capture_output=True).returncode == 0
    r = subprocess.run([*cli, "run", str(nchw), "--plan", str(plan), "--arith", "onnxruntime"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert re.search(r"tflite vs onnxruntime arithmetic: \d+ of \d+ output bytes differ", r.stdout)
    assert re.search(r"--arith onnxruntime vs onnxruntime [\d.]+: byte-identical", r.stdout)
    result = tinypatch.run(str(nchw), str(plan), arith="onnxruntime")
    assert result.ok and result.arith_check.onnxruntime_differ == 0 and result.arith == "onnxruntime"
    with pytest.raises(tinypatch.errors.UsageError):
        tinypatch.run(str(nchw), str(plan), arith="float")


def test_u8s8_pairs_saturate_as_vpmaddubsw(monkeypatch):
    """MLAS's uint8 x int8 GEMM without VNNI: each pair of products (2i, 2i + 1) summed in int16 with
    saturation, the pair sums added exactly; the excess over the exact sum checked pair by pair."""
    rs = np.random.RandomState(7)
    for k, zp in ((27, -19), (8, -128), (5, 40)):
        cols = rs.randint(-128, 128, (6, k)) - zp  # int8 activations minus their zero point
        w = rs.randint(-127, 128, (k, 4))
        w[:2] = 127  # a pair that reaches int16's limit with a large activation
        cols[0, :2] = 127 - zp
        want = np.zeros((6, 4), np.int64)
        for p in range(6):
            a = list(cols[p] + zp + 128) + [0]
            for c in range(4):
                wc = list(w[:, c]) + [0]
                pairs = [a[i] * wc[i] + a[i + 1] * wc[i + 1] for i in range(0, k, 2)]
                want[p, c] = sum(min(max(s, -32768), 32767) for s in pairs) - sum(pairs)
        got = ort_arith.U8S8Pairs(w).excess(cols, zp)
        assert got is not None and (got == want).all() and want[0, 0] < 0
    assert ort_arith.U8S8Pairs(np.full((4, 3), 64)).excess(np.zeros((2, 4), np.int64), 0) is None  # cannot saturate
    for flags, saturates in (("avx2", True), ("avx2,avx512f,avx512bw", True), ("avx2,avx_vnni", False),
                             ("avx2,avx512f,avx512_vnni", False), ("", False)):
        monkeypatch.setenv("TINYPATCH_ORT_CPU", flags)
        ort_arith.cpu_flags.cache_clear()
        assert ort_arith.u8s8_saturates() is saturates
        assert ort_arith.sgemm_block_k() == (128 if "avx512f" in flags else 256)
    ort_arith.cpu_flags.cache_clear()
