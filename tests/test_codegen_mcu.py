"""Generated C on emulated Cortex-M (QEMU): bit-exact against the Python executor inside a RAM
region of the planned arena + stack + the documented runtime overhead; link-time budget check;
instruction counts. Skips with the reason when arm-none-eabi-gcc or QEMU is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tflm_head_of
from test_codegen import graph, inputs, plan

from tinypatch.codegen import generate
from tinypatch.codegen.report import measure
from tinypatch.codegen.targets import RUNTIME_OVERHEAD, ram_length
from tinypatch.codegen.toolchain import (
    build_insncount,
    make,
    missing_tools,
    read_outputs,
)
from tinypatch.errors import ToolchainError
from tinypatch.planning.plan import STREAM
from tinypatch.planning.search import search

MISSING = missing_tools("cortex-m7")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"Cortex-M toolchain/emulator: {MISSING}")

M7_MODELS = ("person_detect.tflite", "mlperf_vww_96_int8.tflite", "mlperf_ic_resnet8_int8.tflite",
             "mlperf_kws_dscnn_int8.tflite")


def _check_cost(cost, project) -> None:
    assert cost.exact
    assert cost.static_ram <= cost.arena + RUNTIME_OVERHEAD  # .data + .bss: the arena and a few words
    assert cost.ram_region == ram_length(project.arena_bytes, project.stack)
    assert 0 < cost.stack_used <= project.stack


@pytest.mark.parametrize("mode", ["layer", "patch-min-peak"])
@pytest.mark.parametrize("name", M7_MODELS)
def test_cortex_m7_is_exact_inside_the_planned_ram(name, mode, tmp_path):
    g = graph(name)
    project = generate(g, plan(name, mode), tmp_path, target="cortex-m7")
    xs = inputs(name)
    cost = measure(g, project, xs)
    _check_cost(cost, project)
    if mode == "layer":  # in-place ops: all the RAM used, stack included, below TFLM's activation arena
        assert cost.static_ram + cost.stack_used < tflm_head_of(name)
    if name == "person_detect.tflite":
        out = read_outputs(tmp_path / "output.bin", g)[g.outputs[0]]
        assert out.ravel().tolist() == [-113, 113]  # MANIFEST: person.bmp


def test_the_m7_cases_include_stream_stages():
    """The least-peak plans above exercise stream stages (column by column through window buffers)."""
    streamed = [name for name in M7_MODELS
                if any(s.mode(s.start) == STREAM for s in plan(name, "patch-min-peak").stages)]
    assert streamed, "no M7 case runs a stream stage"


@pytest.mark.parametrize("target,name,mode", [("cortex-m4", "mlperf_ic_resnet8_int8.tflite", "patch-recompute"),
                                              ("cortex-m55", "person_detect.tflite", "patch-recompute"),
                                              ("cortex-m55", "mcunet_vww.tflite", "patch-recompute"),
                                              ("cortex-m55", "mlperf_kws_dscnn_int8.tflite", "layer")])
def test_other_cores_are_exact(target, name, mode, tmp_path):
    """M4 (DSP kernels) and M55 (Helium kernels: 1x1, gathered-window and row convolutions, depthwise;
    layer by layer with in-place ops)."""
    g = graph(name)
    project = generate(g, plan(name, mode), tmp_path, target=target)
    _check_cost(measure(g, project, inputs(name)), project)


def test_mcunet_vww_patch_plan_fits_64kib(tmp_path):
    """Input image outside the arena (as TinyEngine keeps it); the whole RAM region is 64 KiB."""
    name = "mcunet_vww.tflite"
    g = graph(name)
    stack = 1024
    budget = 64 * 1024 - stack - RUNTIME_OVERHEAD
    chosen = search(g, include_input=False).best_under_sram(budget)
    project = generate(g, chosen.plan, tmp_path, target="cortex-m7", sram=budget, stack=stack)
    assert project.ram_length <= 64 * 1024
    cost = measure(g, project, inputs(name))
    assert cost.exact and cost.static_ram <= budget + RUNTIME_OVERHEAD and cost.stack_used <= stack


def test_a_plan_over_the_sram_budget_fails_to_link(tmp_path):
    name = "mlperf_kws_dscnn_int8.tflite"
    g = graph(name)
    project = generate(g, plan(name, "layer"), tmp_path, target="cortex-m7", sram=8 * 1024)
    assert project.arena_bytes > 8 * 1024
    with pytest.raises(ToolchainError, match="overflowed"):
        make(tmp_path, "cortex-m7")


def test_instruction_counts(tmp_path, assets: Path):
    name = "mlperf_kws_dscnn_int8.tflite"
    g = graph(name)
    plugin = build_insncount(assets, tmp_path / "plugin")
    project = generate(g, plan(name, "layer"), tmp_path / "c", target="cortex-m7")
    cost = measure(g, project, inputs(name), plugin)
    assert cost.exact
    assert 0 < cost.kernel_insns < cost.insns
    assert cost.insns_per_mac is not None and cost.insns_per_mac > 0.1
