"""C code generation on the host: every shared model, layer by layer and patch-based, built with
gcc -fsanitize=address,undefined (plus window checks of every kernel call) and compared byte for
byte with the Python executor; random CNNs under random plans; refusals; the CLI."""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, model_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import random_cnn
from test_inplace import all_inplace
from test_stream import chain, stream_case, stream_stage

from tinypatch.analysis.regions import split_even
from tinypatch.cli import main
from tinypatch.codegen import generate, render
from tinypatch.codegen.dump import dump_mismatches, read_dump
from tinypatch.planning.stream import STEP_DST, STEP_KEEP, STEP_OP, column_steps
from tinypatch.codegen.toolchain import make, missing_tools, run_host
from tinypatch.errors import PlanError, UnsupportedOperatorError
from tinypatch.frontends.load import load_model
from tinypatch.frontends.tflite import load_tflite
from tinypatch.ir import Graph, Op, Tensor
from tinypatch.planning.check import check_plan
from tinypatch.planning.cost import plan_cost
from tinypatch.planning.plan import HALO_MODES, STREAM, Plan, Stage, fingerprint
from tinypatch.planning.search import search
from tinypatch.planning.tiles import legal_ends, stage_info
from tinypatch.runtime.executor import run
from tinypatch.runtime.inputs import load_input, random_input

NO_CC = missing_tools("host")
needs_cc = pytest.mark.skipif(NO_CC is not None, reason=f"host C compiler: {NO_CC}")
MODES = ("layer", "patch-min-peak", "patch-recompute")
# hypothesis settings of the tests that compile random CNNs (a C build each: few examples, no deadline)
C_BUILDS = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
HEAVY = {"mcunetv2_large.tflite"}


# --- shared cases (also used by test_codegen_mcu.py) ------------------------------------------
@functools.cache
def graph(name: str) -> Graph:
    return load_tflite(str(model_path(name)))


def inputs(name: str) -> list[np.ndarray]:
    """The MANIFEST's real inputs where there are some, else seeded random ones."""
    g = graph(name)
    t = g.tensors[g.inputs[0]]
    shared = Path(model_path(name)).parent
    if name.startswith("person_detect"):
        return [load_input(str(shared / "person.bmp"), t, "raw")]
    if name.startswith("mlperf_kws"):
        return [load_input(str(shared / "mlperf_kws_sample_input_int8.npy"), t)]
    return [random_input(g.tensors[n], seed=7 + i) for i, n in enumerate(g.inputs)]


@functools.cache
def _patch_plans(name: str, include_input: bool) -> tuple[Plan, ...]:
    return tuple(c.plan for c in search(graph(name), include_input=include_input).front if c.plan.stages)


def plan(name: str, mode: str, include_input: bool = True) -> Plan | None:
    """The plan of a mode: layer by layer; the searched front's least-peak plan (halo caches,
    stream stages and several stages as the search picks them); its fewest-MAC patch plan with
    every halo recomputed (MCUNetV2's schedule). None when the model has no patch plan."""
    g = graph(name)
    if mode == "layer":
        return Plan.layer_by_layer(g, include_input=include_input)
    patch = _patch_plans(name, include_input)
    if not patch:
        return None
    if mode == "patch-min-peak":
        return patch[0]
    return replace(patch[-1], stages=[replace(s, halo={}) for s in patch[-1].stages])


def assert_outputs_equal(g: Graph, got: dict[str, np.ndarray], xs: list[np.ndarray]) -> None:
    want = run(g, xs)
    for name in g.outputs:
        assert got[name].dtype == want[name].dtype
        assert got[name].tobytes() == want[name].tobytes(), f"output {name}: {got[name].ravel()[:8]} != " \
                                                             f"{want[name].ravel()[:8]}"


# --- every shared model on the host ----------------------------------------------------------
def _cases() -> list:
    out = []
    for path in MODELS:
        for mode in MODES:
            if path.name in HEAVY and mode == "patch-recompute":
                continue  # 218 M MACs under the sanitizers: the least-peak plan and layer by layer suffice
            marks = [pytest.mark.slow] if path.name in HEAVY else []
            out.append(pytest.param(path.name, mode, marks=marks, id=f"{path.stem}-{mode}"))
    return out or [pytest.param("person_detect.tflite", "layer", id="assets-absent")]


@needs_cc
@pytest.mark.parametrize("name,mode", _cases())
def test_shared_model_host_build_is_exact_under_sanitizers(name, mode, tmp_path):
    g = graph(name)
    p = plan(name, mode)
    if p is None:
        pytest.skip(f"{name} has no spatial layers, hence no patch plan")
    project = generate(g, p, tmp_path)
    assert project.arena_bytes == plan_cost(g, project.plan).peak <= plan_cost(g, p).peak  # + in-place ops
    assert re.search(rf"static uint8_t tp_arena\[{max(project.arena_bytes, 1)}\]", (tmp_path / "model.c").read_text())
    make(tmp_path, "host-check")
    xs = inputs(name)
    got = assert_every_tensor_equal(g, project.plan, tmp_path, xs)
    if name.startswith("person_detect"):
        assert got[g.outputs[0]].ravel().tolist() == [-113, 113]  # MANIFEST: person.bmp


@needs_cc
def test_reference_kernels_alone_are_exact(tmp_path):
    """FAST= builds without the optimised kernels: the reference path on its own."""
    name = "mlperf_ic_resnet8_int8.tflite"
    g = graph(name)
    generate(g, plan(name, "patch-min-peak"), tmp_path)
    make(tmp_path, "host-check", variables={"FAST": ""})
    xs = inputs(name)
    assert_outputs_equal(g, run_host(tmp_path, g, xs, "model_host_check"), xs)


# --- random CNNs under random plans -------------------------------------------------------------
def _can_stream(g: Graph, start: int, end: int) -> bool:
    """Can ops [start, end) form a stream stage?"""
    if end - start < 2 or stage_info(g, start, end).reduce is not None:
        return False
    try:
        h = g.tensors[g.ops[end - 1].outputs[0]].shape[1]
        check_plan(g, Plan(g.name, fingerprint(g), [stream_stage(g, start, end, [0, h])]))
    except PlanError:
        return False
    return True


@st.composite
def random_case(draw: st.DrawFn) -> tuple[Graph, np.ndarray, Plan]:
    """A random CNN and a random plan: up to two stages, each with random tiles and halo modes,
    or (half the time, where ops can) a stream stage with random row strips."""
    g, x = draw(random_cnn(max_layers=6))
    stages, first = [], 0
    for _ in range(draw(st.integers(0, 2))):
        options = [(s, e) for s in range(first, len(g.ops)) for e in legal_ends(g, s)]
        if not options:
            break
        streams = [(s, e) for s, e in options if _can_stream(g, s, e)]
        stream = bool(streams) and draw(st.booleans())
        start, end = draw(st.sampled_from(streams if stream else options))
        shape = g.tensors[stage_info(g, start, end).tiled].shape  # the map the tiles cut
        cuts = [sorted({0, shape[a], *draw(st.lists(st.integers(1, max(shape[a] - 1, 1)), max_size=3))})
                for a in (1, 2)]
        if stream:
            stages.append(stream_stage(g, start, end, cuts[0]))
        else:
            halo = {k: draw(st.sampled_from(HALO_MODES)) for k in range(start, end)}
            stages.append(Stage(start, end, cuts[0], cuts[1], halo))
        first = end
    return g, x, Plan(g.name, fingerprint(g), stages, draw(st.booleans()))


@needs_cc
@C_BUILDS
@given(random_case())
def test_random_cnn_random_plan_is_exact(tmp_path_factory, case):
    g, x, p = case
    try:
        plan_cost(g, p)
    except PlanError:  # e.g. a cached halo the grid cannot keep: the planner refuses it, so do we
        with pytest.raises(PlanError):
            generate(g, p, tmp_path_factory.mktemp("refused"))
        return
    out = tmp_path_factory.mktemp("rnd")
    project = generate(g, p, out)
    make(out, "host-check")
    assert_every_tensor_equal(g, project.plan, out, [x])


@needs_cc
@C_BUILDS
@given(stream_case())
def test_random_cnn_stream_stage_is_exact(tmp_path_factory, case):
    """One stream stage with random row strips (every op pulling its input columns depth first)."""
    g, x, p = case
    out = tmp_path_factory.mktemp("stream")
    project = generate(g, p, out)
    assert project.arena_bytes == plan_cost(g, project.plan).peak
    make(out, "host-check")
    assert_every_tensor_equal(g, project.plan, out, [x])


@needs_cc
@C_BUILDS
@given(random_cnn(max_layers=6), st.booleans())
def test_random_cnn_with_every_op_in_place_is_exact(tmp_path_factory, case, include_input):
    """Every op that can overwrite its input does (raster-order kernels, outputs below inputs)."""
    g, x = case
    p = all_inplace(g, Plan.layer_by_layer(g, include_input=include_input))
    out = tmp_path_factory.mktemp("inplace")
    generate(g, p, out, inplace=False)
    make(out, "host-check")
    assert_every_tensor_equal(g, p, out, [x])


# --- stream stages ---------------------------------------------------------------------------------
@pytest.mark.parametrize("start,end", [(0, 5), (0, 3), (1, 5), (2, 4)])
def test_stream_step_table_computes_each_column_once_per_strip(start, end):
    """Per strip, the flat step table computes each op's output columns once (what its MACs are
    charged for) and slides a window buffer only when its consumer's window moves along."""
    g = chain()
    h = g.tensors[g.ops[end - 1].outputs[0]].shape[1]
    tiling = check_plan(g, Plan(g.name, fingerprint(g), [stream_stage(g, start, end, [0, h])]))[0]
    steps = column_steps(g, tiling)
    for k in tiling.info.tile_ops:
        computed = [s[STEP_DST] for s in steps if s[STEP_OP] == k and not s[STEP_KEEP]]
        width = g.tensors[g.ops[k].outputs[0]].shape[2]
        assert len(computed) == tiling.w.total_len(k) == width
        slides = [s for s in steps if s[STEP_OP] == k and s[STEP_KEEP]]
        ring = tiling.rings.get(g.ops[k].outputs[0])
        assert (ring is None or ring == 1) == (not slides)  # only windows wider than a column slide
        assert all(0 <= d < (ring or width) for d in computed)


@needs_cc
@pytest.mark.parametrize("start,end,strips", [(0, 5, 2), (0, 3, 1), (1, 5, "rows"), (2, 4, 3)])
@pytest.mark.parametrize("include_input", [False, True])
def test_stream_stages_are_exact(start, end, strips, include_input, tmp_path):
    g = chain()
    h = g.tensors[g.ops[end - 1].outputs[0]].shape[1]
    p = Plan(g.name, fingerprint(g), [stream_stage(g, start, end, split_even(h, h if strips == "rows" else strips))],
             include_input)
    project = generate(g, p, tmp_path)
    assert project.arena_bytes == plan_cost(g, project.plan).peak
    assert "streamed" in (tmp_path / "model.h").read_text()
    make(tmp_path, "host-check")
    x = [random_input(g.tensors[g.inputs[0]], seed=5)]
    assert_outputs_equal(g, run_host(tmp_path, g, x, "model_host_check"), x)


# --- refusals -------------------------------------------------------------------------------------
def test_unsupported_operator_is_refused_before_writing(tmp_path):
    g = graph("hello_world_int8.tflite").copy()
    g.ops[0] = Op("BATCH_MATMUL", g.ops[0].inputs[:1] * 2, g.ops[0].outputs, {}, "bmm")
    with pytest.raises(UnsupportedOperatorError, match="BATCH_MATMUL"):
        generate(g, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_float_arithmetic_is_refused(tmp_path):
    g = Graph("float_add")
    for n in ("a", "b", "y"):
        g.add_tensor(Tensor(n, (1, 4), "float32"))
    g.add_op(Op("ADD", ["a", "b"], ["y"]))
    g.inputs, g.outputs = ["a", "b"], ["y"]
    with pytest.raises(UnsupportedOperatorError, match="int8"):
        render(g, Plan.layer_by_layer(g), tmp_path, "host", None, 1024)


def test_plan_of_another_model_is_refused(tmp_path):
    g = graph("mlperf_kws_dscnn_int8.tflite")
    other = Plan.layer_by_layer(graph("hello_world_int8.tflite"))
    with pytest.raises(PlanError, match="fingerprint"):
        generate(g, other, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_oversized_plan_for_the_target_sram_is_refused(tmp_path):
    g = graph("mcunetv2_large.tflite")
    with pytest.raises(PlanError, match="cortex-m55"):
        generate(g, None, tmp_path / "out", target="cortex-m55")
    assert not (tmp_path / "out").exists()


# --- CLI and zoo ---------------------------------------------------------------------------------
@needs_cc
def test_cli_codegen_report_on_the_host(tmp_path, capsys, monkeypatch):
    path = model_path("mlperf_kws_dscnn_int8.tflite")
    plan_file = tmp_path / "plan.json"
    plan("mlperf_kws_dscnn_int8.tflite", "patch-min-peak").save(str(plan_file))
    monkeypatch.chdir(tmp_path)  # an output folder relative to the working directory, as users type it
    rc = main(["codegen", str(path), "--plan", str(plan_file), "-o", "c", "--report",
               "--input", str(path.parent / "mlperf_kws_sample_input_int8.npy")])
    out = capsys.readouterr().out
    assert rc == 0 and "byte-identical" in out
    assert "127" in out  # MANIFEST: one-hot 127 at index 5 ("on")
    header = (tmp_path / "c" / "model.h").read_text()
    assert "MODEL_ARENA_BYTES" in header and "patch-based" in header


def test_cli_codegen_errors_are_one_line(tmp_path, capsys):
    rc = main(["codegen", str(model_path("hello_world_int8.tflite")), "-o", str(tmp_path / "c"),
               "--target", "cortex-m55", "--sram", "1MB"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "cortex-m55" in err and len(err.strip().splitlines()) <= 2
    (tmp_path / "file").write_text("")
    rc = main(["codegen", str(model_path("hello_world_int8.tflite")), "-o", str(tmp_path / "file" / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and "is a file, not a folder" in err and "Traceback" not in err


@needs_cc
def test_zoo_model_generates_and_runs_exactly(tmp_path):
    g = load_model("mcunet-in0")
    front = [c.plan for c in search(g).front if c.plan.stages]
    p = front[0]
    generate(g, p, tmp_path)
    make(tmp_path, "host")
    x = [random_input(g.tensors[g.inputs[0]], seed=1)]
    assert_outputs_equal(g, run_host(tmp_path, g, x, "model_host"), x)


@needs_cc
@pytest.mark.parametrize("name,stream", [("mcunet_vww.tflite", False), ("person_detect.tflite", True)])
def test_generated_sources_are_clean_c99(name, stream, tmp_path):
    """Tile stages and stream stages (the least-peak searched plan with or without one)."""
    g = graph(name)
    p = next(p for p in _patch_plans(name, True) if any(s.mode(s.start) == STREAM for s in p.stages) == stream)
    generate(g, p, tmp_path)
    r = subprocess.run(["cc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Wvla", "-Werror", "-Wno-overlength-strings",
                        "-DTP_FAST", "-fsyntax-only", "model.c", "tp_kernels.c", "tp_fast.c", "tp_main_host.c"],
                       cwd=tmp_path, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "malloc(" not in (tmp_path / "model.c").read_text() + (tmp_path / "tp_kernels.c").read_text()


# --- every tensor from C ----------------------------------------------------------------------
def dumped_ops(g: Graph, p: Plan) -> set[int]:
    """Ops whose outputs a check build dumps: all but the internal ops of stream stages."""
    skip = {k for s in p.stages if s.mode(s.start) == STREAM for k in range(s.start, s.end - 1)}
    return {k for k in range(len(g.ops)) if k not in skip}


def assert_every_tensor_equal(g: Graph, p: Plan, project: Path, xs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Run the check build with TP_DUMP_FILE: every op's output (every tile's region in a stage)
    equals the whole-image Python executor's tensor."""
    dump = project / "dump.bin"
    got = run_host(project, g, xs, "model_host_check", dump=dump)
    assert_outputs_equal(g, got, xs)
    records = read_dump(dump)
    assert dump_mismatches(g, records, run(g, xs, keep=True), dumped_ops(g, p)) == []
    if any(s.mode(s.start) != STREAM for s in p.stages):
        assert any(r.tile != (-1, -1) for r in records)
    return got


@needs_cc
@pytest.mark.parametrize("end", [2, 3])
def test_rolling_cache_with_one_row_tiles_is_exact(end, tmp_path):
    """One tile column, one-row tiles, cached halos: a tile's kept rows outnumber its new ones,
    so the rolling buffer's rows move up onto rows still to be moved (tp_shift_rows' order)."""
    g = chain()
    h = g.tensors[g.ops[end - 1].outputs[0]].shape[1]
    p = Plan(g.name, fingerprint(g), [Stage(0, end, list(range(h + 1)), [0, g.tensors[g.ops[end - 1].outputs[0]].shape[2]],
                                            {k: "cache" for k in range(end - 1)})])
    plan_cost(g, p)  # a plan the planner accepts
    x = random_input(g.tensors[g.inputs[0]], seed=2)
    project = generate(g, p, tmp_path)
    make(tmp_path, "host-check")
    assert_every_tensor_equal(g, project.plan, tmp_path, [x])
