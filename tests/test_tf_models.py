"""Models made by TensorFlow's converter (``tools/make_tf_models.py``): keras.applications nets
with a dynamic and a static batch, a U-Net, a 3-head FPN detector, a DenseNet-style net.

Each one imports (shape arithmetic folded: nothing of it is left), every intermediate tensor
equals LiteRT's reference kernels byte for byte on random and real-photo inputs, ``tinypatch
plan --sram`` at half the layer-by-layer peak gives a plan that ``tinypatch run`` executes
byte-identically at a measured high-water mark equal to the planned peak, and the generated C
of that plan is exact on the host. A model that needs an operator tinypatch does not have yet
skips, naming every such operator.
"""

from __future__ import annotations

import functools
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import MAKE_TF, TF_SIZE
from test_kernels_exact import litert_tensors, needs_litert

from tinypatch.cli import main
from tinypatch.codegen import generate
from tinypatch.codegen.toolchain import make, missing_tools, run_host
from tinypatch.errors import UnsupportedOperatorError
from tinypatch.frontends.fold import SHAPE_OPS
from tinypatch.frontends.tflite import load_tflite
from tinypatch.ir import Graph
from tinypatch.ir.ops import SUPPORTED_OPS
from tinypatch.planning.cost import plan_cost
from tinypatch.planning.plan import Plan
from tinypatch.planning.rewrite_search import candidates, rewrite_front
from tinypatch.planning.search import choose, search
from tinypatch.runtime.executor import run
from tinypatch.runtime.inputs import random_input

NAMES = MAKE_TF.model_names(TF_SIZE)
APPS = sorted({n.rsplit("_", 1)[0] for n in NAMES})
NO_CC = missing_tools("host")


@functools.cache
def _load(folder: Path, name: str) -> Graph | UnsupportedOperatorError:
    try:
        return load_tflite(folder / f"{name}.tflite")
    except UnsupportedOperatorError as exc:
        return exc


def imported(folder: Path, name: str) -> Graph:
    """The imported graph; skips (naming every missing operator) when tinypatch lacks some."""
    g = _load(folder, name)
    if isinstance(g, UnsupportedOperatorError):
        assert "compute shapes at run time" not in str(g), f"{name}: shape arithmetic left unfolded: {g}"
        pytest.skip(f"{name} needs operators tinypatch does not have yet: {g}")
    return g


# LiteRT's reference resolver registers TILE up to version 2 although tile.cc's one kernel (the
# builtin resolver's too) handles int8, which converters mark as version 3: such files run with
# the version lowered to 2 (nothing else changes).
REF_MAX_VERSION = {"TILE": 2}


def reference_file(path: Path, tmp: Path) -> Path:
    """``path``, or a copy whose operator versions LiteRT's reference resolver registers."""
    import tflite

    buf = bytearray(path.read_bytes())
    model = tflite.Model.GetRootAs(buf, 0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    changed = False
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        top = REF_MAX_VERSION.get(names.get(max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()), ""))
        field = oc._tab.Offset(8)  # OperatorCode.version
        if top is not None and field and oc.Version() > top:
            struct.pack_into("<i", buf, oc._tab.Pos + field, top)
            changed = True
    if not changed:
        return path
    out = tmp / path.name
    out.write_bytes(bytes(buf))
    return out


def real_input(folder: Path, name: str) -> np.ndarray:
    return np.load(folder / f"{name}.real.npy")


@pytest.mark.parametrize("name", NAMES)
def test_imports_without_shape_arithmetic(tf_models: Path, name: str) -> None:
    g = _load(tf_models, name)
    if isinstance(g, UnsupportedOperatorError):
        assert "compute shapes at run time" not in str(g) and not set(g.found) & set(SUPPORTED_OPS)
        assert str(g).count("operator index") >= 1 and all(str(i) in str(g) for ix in g.found.values() for i in ix)
        pytest.skip(f"{name} needs operators tinypatch does not have yet: {g}")
    assert all(op.type in SUPPORTED_OPS for op in g.ops)
    assert not [op.name for op in g.ops if op.type in SHAPE_OPS and g.tensors[op.outputs[0]].dtype in ("int32", "int64")]
    assert all(t.size > 0 for t in g.tensors.values())
    assert real_input(tf_models, name).shape == g.tensors[g.inputs[0]].shape


@pytest.mark.parametrize("app", APPS)
def test_dynamic_batch_folds_to_the_static_graph(tf_models: Path, app: str) -> None:
    """The dynamic-batch file imports to the static-batch file's graph, up to in-place RESHAPEs
    (the converter keeps a squeeze-excite MEAN 4-D with a static batch, 2-D then reshaped without)."""
    dyn, b1 = (imported(tf_models, f"{app}_{tag}") for tag in ("dyn", "b1"))
    layers = [[(op.type, g.tensors[op.outputs[0]].size) for op in g.ops if op.type != "RESHAPE"] for g in (dyn, b1)]
    assert layers[0] == layers[1]
    assert plan_cost(dyn, Plan.layer_by_layer(dyn)).peak == plan_cost(b1, Plan.layer_by_layer(b1)).peak


@needs_litert
@pytest.mark.parametrize("name", NAMES)
def test_every_tensor_matches_litert_reference(tf_models: Path, name: str, tmp_path: Path) -> None:
    g = imported(tf_models, name)
    path = reference_file(tf_models / f"{name}.tflite", tmp_path)
    index = g.meta["tflite_index"]
    for label, xs in (("random", [random_input(g.tensors[g.inputs[0]], seed=0)]),
                      ("real photo", [real_input(tf_models, name)])):
        ours = run(g, xs, keep=True)
        ref = litert_tensors(path, g, xs)
        assert len(ref) > len(g.ops) // 2  # the comparison covers the graph, not a few tensors
        differ = [n for n in ref if ours[n].dtype != ref[n].dtype or ours[n].shape != ref[n].shape
                  or not np.array_equal(ours[n], ref[n])]
        assert not differ, f"{name}, {label} input: {len(differ)} of {len(ref)} tensors differ, first " \
                           f"{[(n, [i for i, o in enumerate(g.ops) if n in o.outputs]) for n in differ[:3]]}"
        assert set(ref) == {n for n in g.activations() if n in index}


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    rc = main(args)
    out = capsys.readouterr()
    assert rc == 0, f"tinypatch {' '.join(args)} -> {rc}: {out.err.strip()}"
    return out.out


@pytest.mark.parametrize("name", NAMES)
def test_plan_at_half_peak_runs_and_compiles_exactly(tf_models: Path, name: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """plan --sram half the layer-by-layer placed peak (input outside the arena, as MCUNetV2
    counts: a 128x128x3 input alone is half of MobileNet-0.25's peak); run: byte-identical,
    measured == planned; the plan's C on the host (ASan + UBSan) gives the Python executor's
    bytes. A dynamic-batch file imports to its static twin's graph (test above), so its C build
    runs only with TINYPATCH_TF_SIZE=full. The FPN reaches half only with a rewritten graph (see
    test_fpn_half_needs_recomputation): its plan records the rewrites, which run and the C
    generator replay from the model."""
    g = imported(tf_models, name)
    path = str(tf_models / f"{name}.tflite")
    half = plan_cost(g, Plan.layer_by_layer(g, include_input=False)).peak // 2
    plan_file = tmp_path / "plan.json"
    _cli(["plan", path, "--no-input", "--sram", str(half), "-o", str(plan_file)], capsys)
    plan = Plan.load(plan_file)
    assert plan.stages, f"{name}: layer by layer under half its own peak?"
    out = _cli(["run", path, "--plan", str(plan_file)], capsys)
    assert "byte-identical" in out
    measured, planned = _marks(out)
    assert measured == planned <= half
    if name.endswith("_dyn") and TF_SIZE != "full":
        return
    if NO_CC is not None:
        pytest.skip(f"host C compiler: {NO_CC}")
    project = tmp_path / "c"
    generate(g, plan, project)
    make(project, "host-check")
    xs = [real_input(tf_models, name)]
    got = run_host(project, g, xs, "model_host_check")
    want = run(g, xs)
    for n in g.outputs:
        assert got[n].dtype == want[n].dtype and got[n].tobytes() == want[n].tobytes(), f"{name}: C output {n}"


def _marks(out: str) -> tuple[int, int]:
    m = re.search(r"high-water mark ([\d,]+) B(?: \([^)]*\))?, planned peak ([\d,]+) B", out)
    assert m, out
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def fpn_lower_bound(g: Graph) -> int:
    """Bytes whole while the FPN's stride-8 head stage runs, in any op order without recomputation:
    the stride-8 head output (held to the end), P4 (it also feeds the stride-16 head, so it is
    whole before that stage), the smaller of C3 and its lateral (C3 also feeds C4, hence P4) and
    the stride-32 head output. Found from the graph's structure: head -> conv -> top-down ADD of
    (lateral conv of C3, upsampled P4)."""
    producer = {t: op for op in g.ops for t in op.outputs}
    size = {t: g.tensors[t].nbytes for t in g.tensors}
    head8, head32 = max(g.outputs, key=size.get), min(g.outputs, key=size.get)
    add = producer[producer[producer[head8].inputs[0]].inputs[0]]
    assert add.type == "ADD", add
    lateral = next(t for t in add.inputs if producer[t].type == "CONV_2D")
    p4 = producer[next(t for t in add.inputs if producer[t].type == "RESIZE_NEAREST_NEIGHBOR")].inputs[0]
    c3 = producer[lateral].inputs[0]
    return size[head8] + size[p4] + min(size[c3], size[lateral]) + size[head32]


def test_fpn_half_needs_recomputation(tf_models: Path) -> None:
    """Half the FPN's layer-by-layer peak is below the bound of every op order without recomputation:
    the search on the converter's order and on each reordered graph stays above it (a plan below
    would contradict the argument); with C3 recomputed from the input for its lateral, the merged
    front goes below half, and the plan at half carries that recompute rewrite."""
    g = imported(tf_models, "fpn_detector_96_b1")
    half = plan_cost(g, Plan.layer_by_layer(g, include_input=False)).peak // 2
    bound = fpn_lower_bound(g)
    assert bound > half
    assert min(s.peak for s in search(g, include_input=False).front) >= bound
    reordered = [h for rewrites, h in candidates(g) if all("order" in r for r in rewrites)]
    assert reordered
    for h in reordered:
        assert min(s.peak for s in search(h, include_input=False).front) >= bound
    chosen = choose(rewrite_front(g, lambda h: search(h, include_input=False)), half)
    assert chosen.peak <= half and any("recompute" in r for r in chosen.plan.rewrites)
