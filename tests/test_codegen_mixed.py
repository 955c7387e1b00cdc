"""Generated C for precision plans (per-patch mixed precision): byte for byte what the Python plan
executor computes under the same plan (runtime/mixed.py), every tile of every op included, on the
host (ASan/UBSan) and on emulated Cortex-M4 / M7 / M55 inside the planned RAM region; all-outlier plans
give int8's bytes; stream stages and unsupported consumers are refused."""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest
from conftest import model_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_stream import stream_stage

from tinypatch import api
from tinypatch.cli import main
from tinypatch.codegen import generate
from tinypatch.codegen.dump import read_dump
from tinypatch.codegen.toolchain import make, missing_tools, run_host
from tinypatch.errors import PlanError, UnsupportedOperatorError
from tinypatch.frontends.random_cnn import CnnBuilder
from tinypatch.ir import Graph, QuantParams
from tinypatch.planning.check import check_plan
from tinypatch.planning.plan import Plan, Stage, fingerprint
from tinypatch.planning.precision import (
    MapPrecision,
    PrecisionPlan,
    StagePrecision,
    plan_fingerprint,
)
from tinypatch.runtime.executor import run
from tinypatch.runtime.mixed import MixedPrecision, stage_maps
from tinypatch.runtime.plan_executor import PlanExecutor

NO_CC = missing_tools("host")
needs_cc = pytest.mark.skipif(NO_CC is not None, reason=f"host C compiler: {NO_CC}")
NO_MCU = missing_tools("cortex-m7")
needs_mcu = pytest.mark.skipif(NO_MCU is not None, reason=f"Cortex-M toolchain/emulator: {NO_MCU}")


@functools.cache
def tiny(act: str = "RELU") -> tuple[Graph, np.ndarray]:
    """conv 3x3 -> depthwise 3x3 s2 -> conv 1x1 -> avg pool 2x2 -> conv 3x3 (20x20x3 input); maps
    after ReLU, or (act NONE) on both sides of their zero point: both sides of the outlier test run;
    SAT: ReLU maps, the first one at a quarter of its scale, so many of its values saturate at 127
    (where rounding up to the low-bit grid saturates too)."""
    rng = np.random.default_rng(5)
    b = CnnBuilder(rng, (1, 20, 20, 3), {"RELU": "tiny_mixed", "NONE": "tiny_mixed_signed"}.get(act, "tiny_mixed_sat"))
    fused = "RELU" if act == "SAT" else act
    first = b.conv(8, 3, 3, (1, 1), (1, 1), "SAME", fused)
    b.depthwise(1, 3, 3, (2, 2), (1, 1), "SAME", fused)
    b.conv(12, 1, 1, (1, 1), (1, 1), "SAME", fused)
    b.pool("AVERAGE_POOL_2D", 2, 2, (1, 1), "SAME")
    b.conv(4, 3, 3, (1, 1), (1, 1), "SAME")
    g = b.finish()
    if act == "SAT":
        q = g.tensors[first].quant
        g.tensors[first] = replace(g.tensors[first], quant=QuantParams.tensor(float(q.scale[0]) / 4, int(q.zero_point[0])))
    return g, rng.integers(-128, 128, (1, 20, 20, 3), dtype=np.int8)


@functools.cache
def tiny_plan(strategy: str, act: str = "RELU") -> Plan:
    """One stage over ops [0, 4) in 3x3 tiles of the pool's 10x10 output; halos recomputed, or
    every op's halo cached (``cache``: line buffers across tile rows, slides along a row)."""
    g, _ = tiny(act)
    halo = {} if strategy == "recompute" else {k: "cache" for k in range(3)}
    plan = Plan(g.name, fingerprint(g), [Stage(0, 4, [0, 3, 7, 10], [0, 4, 7, 10], halo)])
    check_plan(g, plan)
    return plan


def precision(graph: Graph, plan: Plan, bits: list[int], thresholds: list[int], signed: list[bool],
              scope: str = "rest", steps: list[str] | None = None) -> PrecisionPlan:
    steps = steps or ["static"] * len(bits)
    maps = [MapPrecision(t, b, th, s, step=p)
            for t, b, th, s, p in zip(stage_maps(graph, plan, 0), bits, thresholds, signed, steps)]
    return PrecisionPlan(graph.name, fingerprint(graph), plan_fingerprint(plan), [StagePrecision(0, maps)], scope)


class Recorder(MixedPrecision):
    """The hook that also keeps every stored tile piece, in the order the executor computed them."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.pieces: list[tuple[int, np.ndarray]] = []

    def wrote(self, k: int, value: np.ndarray, is_stage_output: bool) -> np.ndarray:
        value = super().wrote(k, value, is_stage_output)
        self.pieces.append((k, np.ascontiguousarray(value).copy()))
        return value


def check_host(graph: Graph, plan: Plan, prec: PrecisionPlan, x: np.ndarray, out_dir) -> Recorder:
    """C (ASan/UBSan) == the plan executor under ``prec``: outputs and every op's fresh piece of every tile."""
    rec = Recorder(graph, plan, prec)
    ref = PlanExecutor(graph, plan, rec)([x]).outputs
    project = generate(graph, plan, out_dir, precision=prec, inplace=False)
    make(project.path, "host-check")
    dump = project.path / "dump.bin"
    got = run_host(project.path, graph, [x], "model_host_check", dump=dump)
    for n in graph.outputs:
        assert got[n].dtype == ref[n].dtype and np.array_equal(got[n], ref[n]), n
    tiles = [r for r in read_dump(dump) if r.tile != (-1, -1)]
    assert [r.op for r in tiles] == [k for k, _ in rec.pieces]
    for r, (k, v) in zip(tiles, rec.pieces):
        assert np.array_equal(r.data.reshape(-1), v.view(np.uint8).reshape(-1)), (k, r.tile)
    return rec


def _mixed_share(rec: Recorder) -> tuple[int, int]:
    c = next(iter(c for c in rec.counts.values() if c.tiles))
    return c.outlier_tiles, c.tiles


@needs_cc
@pytest.mark.parametrize("strategy", ["recompute", "cache"])
@pytest.mark.parametrize("scope", ["rest", "map"])
@pytest.mark.parametrize("step", ["static", "patch", "pixel"])
def test_tiny_graph_is_exact_tile_by_tile(strategy, scope, step, tmp_path):
    g, x = tiny()
    plan = tiny_plan(strategy)
    maps = stage_maps(g, plan, 0)
    stats = MixedPrecision(g, plan, None, record=True)
    PlanExecutor(g, plan, stats)([x])
    thr = [int(np.median(stats.stats[t].patch_max)) for t in maps]  # about half the patches are outliers
    prec = precision(g, plan, [4, 3, 2, 6, 5, 7][: len(maps)], thr, [True] + [False] * (len(maps) - 1), scope,
                     [step] * len(maps))
    rec = check_host(g, plan, prec, x, tmp_path / "c")
    outliers, tiles = _mixed_share(rec)
    assert 0 < outliers < tiles  # both classes ran
    assert rec.counts[plan.stages[0].start].bitops < rec.counts[plan.stages[0].start].bitops_int8


@needs_cc
def test_all_outlier_plan_gives_int8_bytes(tmp_path):
    g, x = tiny()
    plan = tiny_plan("cache")
    n = len(stage_maps(g, plan, 0))
    prec = precision(g, plan, [2] * n, [0] * n, [True] * n)  # every patch holding a value off its zero point
    project = generate(g, plan, tmp_path, precision=prec, inplace=False)
    make(project.path, "host-check")
    got = run_host(project.path, g, [x], "model_host_check")
    want = run(g, [x])
    assert all(np.array_equal(got[o], want[o]) for o in g.outputs)


C_BUILDS = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@needs_cc
@C_BUILDS
@given(st.data())
def test_random_bits_and_thresholds_are_exact(tmp_path_factory, data):
    act = data.draw(st.sampled_from(["RELU", "NONE", "SAT"]))
    g, x = tiny(act)
    plan = tiny_plan(data.draw(st.sampled_from(["recompute", "cache"])), act)
    n = len(stage_maps(g, plan, 0))
    bits = data.draw(st.lists(st.integers(2, 8), min_size=n, max_size=n))
    thr = data.draw(st.lists(st.integers(0, 255), min_size=n, max_size=n))
    signed = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    steps = data.draw(st.lists(st.sampled_from(["static", "patch", "pixel"]), min_size=n, max_size=n))
    prec = precision(g, plan, bits, thr, signed, data.draw(st.sampled_from(["rest", "map"])), steps)
    check_host(g, plan, prec, x, tmp_path_factory.mktemp("mixed"))


def test_stream_stages_and_other_consumers_are_refused(tmp_path):
    g, _ = tiny()
    h = g.tensors[g.ops[2].outputs[0]].shape[1]
    stream = Plan(g.name, fingerprint(g), [stream_stage(g, 0, 3, [0, h // 2, h])])
    prec = precision(g, stream, [4, 4, 4], [50, 50, 50], [True, False, False])
    with pytest.raises(PlanError, match="stream stage"):
        generate(g, stream, tmp_path / "s", precision=prec)
    # a lowered stage input read by PAD: only convolutions and pooling read through the table
    g2 = pad_first()
    plan = api.plan(g2, single_stage=True, strategy="recompute", stream=False, inplace=False, max_grid=4).plan
    prec = precision(g2, plan, [4], [50], [True])
    with pytest.raises(UnsupportedOperatorError, match="lowered stage input"):
        generate(g2, plan, tmp_path / "p", precision=prec)


def pad_first() -> Graph:
    b = CnnBuilder(np.random.default_rng(2), (1, 16, 16, 3), "pad_first")
    b.pad(1, 1, 1, 1)
    b.conv(8, 3, 3, (1, 1), (1, 1), "VALID", "RELU")
    b.conv(4, 3, 3, (1, 1), (1, 1), "SAME")
    return b.finish()


@needs_cc
@pytest.mark.parametrize("pool", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("step", ["static", "patch"])
def test_lowered_input_read_by_a_pool_and_a_wide_conv(pool, step, tmp_path):
    """Pools read a gathered window; a 3x3 conv over 48 channels (a 432 B window, more than the
    gather buffer) reads through the table in the reference loops (one table, or the patch's run-time
    step's); a run-time step per pixel there is refused."""
    rng = np.random.default_rng(4)
    b = CnnBuilder(rng, (1, 12, 12, 48), "wide_first")
    b.pool(pool, 2, 2, (1, 1), "SAME")
    b.conv(8, 3, 3, (1, 1), (1, 1), "SAME", "RELU")
    b.conv(4, 3, 3, (1, 1), (1, 1), "SAME")
    g = b.finish()
    x = rng.integers(-128, 128, (1, 12, 12, 48), dtype=np.int8)
    plan = api.plan(g, single_stage=True, strategy="recompute", stream=False, inplace=False, max_grid=3).plan
    later = replace(plan, stages=[replace(plan.stages[0], start=1)])  # the stage reads the pooled map
    for pl, prec in ((plan, precision(g, plan, [3, 4], [144, 125], [True, False], steps=[step, step])),
                     (later, precision(g, later, [4], [130], [False], steps=[step]))):
        rec = check_host(g, pl, prec, x, tmp_path / str(pl.stages[0].start))
        c = rec.counts[pl.stages[0].start]
        assert 0 < c.outlier_tiles < c.tiles and c.bitops < c.bitops_int8  # both classes ran
    with pytest.raises(UnsupportedOperatorError, match="run-time step per pixel"):
        generate(g, later, tmp_path / "px", precision=precision(g, later, [4], [130], [False], steps=["pixel"]))


def test_cli_needs_the_plan_with_a_precision_plan(tmp_path, capsys):
    prec = vww()[3]
    prec.save(str(tmp_path / "prec.json"))
    model = str(model_path("mlperf_vww_96_int8.tflite"))
    assert main(["codegen", model, "--precision", str(tmp_path / "prec.json"), "-o", str(tmp_path / "c")]) == 2
    assert "give the plan too" in capsys.readouterr().err


# --- a shared model -------------------------------------------------------------------------
@functools.cache
def vww() -> tuple[Graph, Plan, np.ndarray, PrecisionPlan]:
    """mlperf_vww_96_int8 with its MCUNetV2 plan and a precision plan whose thresholds make about
    half the patches of the third map outliers and none of the others."""
    graph = api.load(str(model_path("mlperf_vww_96_int8.tflite")))
    plan = api.plan(graph, single_stage=True, strategy="recompute", inplace=False, include_input=False).plan
    x = np.random.default_rng(3).integers(-128, 128, graph.tensors[graph.inputs[0]].shape).astype(np.int8)
    maps = stage_maps(graph, plan, 0)
    bits = [6, 4, 8, 3, 4, 2, 6, 4, 5][: len(maps)]
    signed = [True] + [False] * (len(maps) - 1)
    stats = MixedPrecision(graph, plan, precision(graph, plan, bits, [255] * len(maps), signed), record=True)
    PlanExecutor(graph, plan, stats)([x])  # the third map's patches as the lowered maps before it leave them
    thr = [255] * len(maps)
    thr[2], bits[2] = int(np.median(stats.stats[maps[2]].patch_max)), 5
    return graph, plan, x, precision(graph, plan, bits, thr, signed)


@needs_cc
@pytest.mark.parametrize("step", ["static", "pixel"])
def test_shared_model_is_exact_tile_by_tile(step, tmp_path):
    graph, plan, x, prec = vww()
    if step != "static":  # the same bits, each pixel at its own run-time step; the third map's threshold
        maps = [replace(m, step=step) for m in prec.stages[0].maps]  # its median patch under these steps
        stats = MixedPrecision(graph, plan, replace(prec, stages=[StagePrecision(0, [
            replace(m, threshold=255, shift=-1) for m in maps])]), record=True)
        PlanExecutor(graph, plan, stats)([x])
        maps[2] = replace(maps[2], threshold=int(np.median(stats.stats[maps[2].tensor].patch_max)), shift=-1)
        prec = replace(prec, stages=[StagePrecision(0, maps)])
    rec = check_host(graph, plan, prec, x, tmp_path)
    outliers, tiles = _mixed_share(rec)
    assert 0 < outliers < tiles


@needs_mcu
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7", "cortex-m55"])
def test_cortex_m_is_exact_inside_the_planned_ram(target, tmp_path):
    from tinypatch.codegen.report import measure
    from tinypatch.codegen.targets import RUNTIME_OVERHEAD, ram_length

    g, x = tiny()
    plan = tiny_plan("cache")
    n = len(stage_maps(g, plan, 0))
    cases = {"tiny": (g, plan, x, precision(g, plan, [3, 5, 2, 4][:n], [40, 30, 60, 20][:n], [True] + [False] * 3,
                                            steps=["pixel", "patch", "static", "pixel"][:n])),
             "vww": vww()}
    for name, (g, plan, x, prec) in cases.items():
        ref = PlanExecutor(g, plan, prec)([x]).outputs
        project = generate(g, plan, tmp_path / name, target=target, precision=prec, inplace=False)
        cost = measure(g, project, [x], reference=ref)
        assert cost.exact, name
        assert cost.static_ram <= cost.arena + RUNTIME_OVERHEAD
        assert cost.ram_region == ram_length(project.arena_bytes, project.stack)
        assert 0 < cost.stack_used <= project.stack  # the gather buffer included
        assert project.arena_bytes == generate(g, plan, tmp_path / f"{name}8", target=target, inplace=False).arena_bytes


@needs_cc
def test_cli_and_api_codegen_with_a_precision_plan(tmp_path, capsys):
    graph, plan, x, prec = vww()
    plan.save(str(tmp_path / "plan.json"))
    prec.save(str(tmp_path / "prec.json"))
    model = str(model_path("mlperf_vww_96_int8.tflite"))
    assert main(["codegen", model, "--plan", str(tmp_path / "plan.json"), "--precision", str(tmp_path / "prec.json"),
                 "-o", str(tmp_path / "c"), "--no-inplace"]) == 0
    assert "tp_lb_outside(" in (tmp_path / "c" / "model.c").read_text()
    np.save(tmp_path / "x.npy", x)
    r = api.codegen(model, tmp_path / "r", plan=plan, precision=str(tmp_path / "prec.json"), inplace=False,
                    report=True, input=str(tmp_path / "x.npy"))
    assert r.exact  # against the plan executor under the precision plan
    ref = PlanExecutor(graph, plan, prec)([x]).outputs
    assert all(np.array_equal(r.outputs[o], ref[o]) for o in graph.outputs)


QEMU_BUILDS = settings(max_examples=2, deadline=None, derandomize=True, database=None,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@needs_mcu
@pytest.mark.parametrize("target", ["cortex-m7", "cortex-m55"])
@pytest.mark.parametrize("act", ["RELU", "NONE", "SAT"])
@QEMU_BUILDS
@given(data=st.data())
def test_random_plans_are_exact_on_dsp_and_helium(target, act, tmp_path_factory, data):
    """The DSP (SSUB8/SEL) and Helium outlier tests and table loops: ReLU maps (one side tested) and
    maps on both sides of their zero point, thresholds around the patches' own maxima, border tiles
    (3x3 tiles of a 10x10 map) and outlier patches switching to 8 bits in both scopes."""
    from tinypatch.codegen.report import measure

    g, x = tiny(act)
    plan = tiny_plan(data.draw(st.sampled_from(["recompute", "cache"])), act)
    maps = stage_maps(g, plan, 0)
    stats = MixedPrecision(g, plan, None, record=True)
    PlanExecutor(g, plan, stats)([x])
    # one less than some patch's own max |q - zp|: that patch is an outlier by a single step
    thr = [data.draw(st.sampled_from(sorted({int(m) - 1 for m in stats.stats[t].patch_max if m > 0}))) for t in maps]
    if act == "SAT":  # the saturated map's patches are not outliers: its grid rounds 127 up, and saturates
        thr[1] = int(max(stats.stats[maps[1]].patch_max))
    bits = data.draw(st.lists(st.integers(2, 7), min_size=len(maps), max_size=len(maps)))
    signed = [act == "NONE" or i == 0 for i in range(len(maps))]
    prec = precision(g, plan, bits, thr, signed, data.draw(st.sampled_from(["rest", "map"])))
    ref = PlanExecutor(g, plan, prec)([x]).outputs
    project = generate(g, plan, tmp_path_factory.mktemp("qemu"), target=target, precision=prec, inplace=False)
    assert measure(g, project, [x], reference=ref).exact


@needs_mcu
@pytest.mark.parametrize("target", ["cortex-m7", "cortex-m55"])
def test_grid_rounding_saturates_like_the_table(target, tmp_path):
    """A map whose non-outlier patches hold 127, on a grid that rounds 127 up past it: the byte
    arithmetic (tp_lb_grid) saturates where the table clamps."""
    from tinypatch.codegen.report import measure

    g, x = tiny("SAT")
    plan = tiny_plan("recompute", "SAT")
    maps = stage_maps(g, plan, 0)
    stats = MixedPrecision(g, plan, None, record=True)
    PlanExecutor(g, plan, stats)([x])
    thr = [255] * len(maps)
    thr[1] = int(max(stats.stats[maps[1]].patch_max))  # no patch of the saturated map is an outlier
    prec = precision(g, plan, [8, 4, 8, 8], thr, [True, False, False, False], "map")
    m, zp = prec.stages[0].maps[1], int(g.tensors[maps[1]].quant.zero_point[0])
    assert zp + ((127 - zp + (1 << (m.shift - 1))) & -(1 << m.shift)) > 127  # rounds past 127
    ref = PlanExecutor(g, plan, prec)([x]).outputs
    project = generate(g, plan, tmp_path, target=target, precision=prec, inplace=False)
    assert "tp_lb_grid(" in (tmp_path / "model.c").read_text()
    assert measure(g, project, [x], reference=ref).exact


def _insn_plugin(tmp_path):
    """The QEMU instruction-count plugin, built from the shared assets (skip without them)."""
    from tinypatch.assets import assets_dir
    from tinypatch.codegen.toolchain import build_insncount

    root = assets_dir()
    if root is None:
        pytest.skip("the qemu-insncount plugin source is in the shared assets")
    return build_insncount(root, tmp_path / "plugin")


@needs_mcu
def test_stage_instructions_count_the_stage_alone(tmp_path):
    """Run twice minus once: a positive count below the whole program's, and the outputs as generated."""
    from tinypatch.codegen.report import stage_instructions
    from tinypatch.codegen.toolchain import run_qemu

    plugin = _insn_plugin(tmp_path)
    g, x = tiny()
    plan = tiny_plan("recompute")
    n = len(stage_maps(g, plan, 0))
    prec = precision(g, plan, [3] * n, [255] * n, [False] * n)
    project = generate(g, plan, tmp_path / "c", target="cortex-m7", precision=prec, inplace=False)
    insns, out = stage_instructions(g, project, [x], plugin)
    want = PlanExecutor(g, plan, prec)([x]).outputs
    assert all(np.array_equal(out[o], want[o]) for o in g.outputs)
    total = run_qemu(project.path, g, [x], "cortex-m7", plugin).insns
    assert 0 < insns < total


@needs_mcu
def test_stage_profile_splits_the_kernel_count_by_function(tmp_path):
    """Per-function counts of the patch stage add up to the kernel range's count (same two builds),
    and the precision plan's functions are among them."""
    from tinypatch.codegen.report import stage_profile
    from tinypatch.codegen.toolchain import run_qemu

    plugin = _insn_plugin(tmp_path)
    g, x = tiny()
    plan = tiny_plan("recompute")
    n = len(stage_maps(g, plan, 0))
    prec = precision(g, plan, [4] * n, [100] * n, [True] + [False] * (n - 1), "map")
    project = generate(g, plan, tmp_path / "c", target="cortex-m7", precision=prec, inplace=False)
    per = stage_profile(g, project, [x], plugin)
    kernel = []
    for runs in (2, 1):
        make(project.path, "clean")
        make(project.path, "cortex-m7", variables={"FAST": f"-DTP_FAST -DTP_STAGE_RUNS={runs}"})
        kernel.append(run_qemu(project.path, g, [x], "cortex-m7", plugin).kernel_insns)
    assert sum(per.values()) == kernel[0] - kernel[1] > 0
    assert per.get("tp_lb_outside", 0) > 0 and per.get("gemm_2px", 0) > 0
    assert sum(per.get(f, 0) for f in ("tp_lb_grid", "grid_copy")) > 0  # byte arithmetic, no table
