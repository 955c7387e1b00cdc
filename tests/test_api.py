"""The Python API: every function on a shared model and a zoo model gives what the CLI prints,
errors are typed, and the README's example and output blocks stay true."""

from __future__ import annotations

import doctest
import functools
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinypatch
from tinypatch import api
from tinypatch.cli import main
from tinypatch.codegen import toolchain
from tinypatch.errors import BudgetError, InputError, ModelLoadError, PlanError, TinypatchError, UsageError

from tinypatch.planning.plan import Plan

from conftest import ASSETS, model_path

ROOT = Path(__file__).resolve().parents[1]
ZOO = "mcunet-in0"
TIMING = re.compile(r"\d+\.\d+ m?s\b|\d+\.\dx\b")  # timings and their ratios


@functools.cache
def _readme_tool():
    spec = importlib.util.spec_from_file_location("readme_outputs", ROOT / "tools" / "readme_outputs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@functools.cache
def planned(model: str) -> api.PlanResult:
    """The shared plan of ``model`` under 20 KB (searched once per test session)."""
    return tinypatch.plan(model, sram="20KB")


@pytest.fixture(params=["shared", "zoo"])
def model(request) -> str:
    return str(model_path("mlperf_kws_dscnn_int8.tflite")) if request.param == "shared" else ZOO


def cli(capsys, *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_analyze_equals_cli(model, capsys):
    result = tinypatch.analyze(model)
    assert result.to_dict() == json.loads(cli(capsys, "analyze", model, "--json"))
    assert str(result) + "\n" == cli(capsys, "analyze", model)
    assert repr(result).startswith("AnalysisResult(") and f"{result.report.peak_placed:,} B" in repr(result)
    lean = tinypatch.analyze(tinypatch.load(model), include_input=False, include_output=False)
    assert lean.to_dict() == json.loads(cli(capsys, "analyze", model, "--json", "--no-input", "--no-output"))


def test_plan_equals_cli(model, capsys, tmp_path):
    calls: list[tuple[str, int, int]] = []
    result = tinypatch.plan(tinypatch.load(model), sram="20KB", progress=lambda *a: calls.append(a))
    assert {p for p, _, _ in calls} == {"searching schedules", "running layer-by-layer ops in place",
                                        "searching reordered and recomputing graphs"}
    assert any(done and done == total for _, done, total in calls)
    d = result.to_dict()
    got = json.loads(cli(capsys, "plan", model, "--sram", "20480", "--json", "-o", str(tmp_path / "p.json")))
    d.pop("search_seconds"), got.pop("search_seconds")
    assert d == got and json.loads(result.to_json())["plan"] == d["plan"]
    assert tinypatch.parse_size("20KB") >= result.cost.peak
    if model != ZOO:  # the text once (each CLI call searches again)
        text = cli(capsys, "plan", model, "--sram", "20KB")
        assert TIMING.sub("", str(result) + "\n") == TIMING.sub("", text)
    result.save(tmp_path / "api.json")
    assert (tmp_path / "api.json").read_text() == (tmp_path / "p.json").read_text()
    assert "PlanResult(" in repr(result) and result.schedule.label in repr(result)


def test_plan_options_and_reference(tmp_path):
    single = tinypatch.plan(ZOO, max_mac_overhead="20%", single_stage=True, strategy="recompute", inplace=False)
    assert single.reference() is None and not single.plan.inplace and len(single.plan.stages) <= 1
    assert single.cost.mac_overhead <= 0.2
    full = tinypatch.plan(ZOO, max_mac_overhead=0.2, stream=False)
    assert full.cost.peak <= single.cost.peak and full.reference() is not None
    full.plot(tmp_path / "front.png")
    assert (tmp_path / "front.png").stat().st_size > 10_000


def test_run_equals_cli(model, capsys, tmp_path):
    chosen = planned(model)
    path = tmp_path / "plan.json"
    chosen.save(path)
    for plan in (chosen, chosen.plan, path, str(path)):
        result = tinypatch.run(model, plan)
        assert result.exact and result.ok and result.arena_high_water == result.arena_size == chosen.cost.peak
    graph = tinypatch.load(model)
    arrays = tinypatch.run(graph, path, seed=3)
    again = tinypatch.run(graph, path, input=[np.asarray(v) for v in _seeded(graph, 3)])
    assert all(np.array_equal(arrays.outputs[n], again.outputs[n]) for n in graph.outputs)
    text = cli(capsys, "run", model, "--plan", str(path))
    assert TIMING.sub("", str(result) + "\n") == TIMING.sub("", text)
    assert result.to_dict()["exact"] is True and "RunResult(" in repr(result)


def _seeded(graph, seed):  # noqa: ANN001, ANN202
    from tinypatch.runtime.inputs import model_inputs

    return model_inputs(graph, None, seed)


def _npy(graph, tmp_path):  # noqa: ANN001, ANN202
    path = tmp_path / "x.npy"
    np.save(path, _seeded(graph, 0)[0])
    return path


def test_run_with_npy_and_image_input(tmp_path):
    model = str(model_path("person_detect.tflite"))
    plan = tinypatch.plan(model, max_mac_overhead="10%")
    result = tinypatch.run(model, plan, input=model_path("person.bmp"), preprocess="raw")
    assert result.exact and next(iter(result.outputs.values())).ravel().tolist() == [-113, 113]
    graph = tinypatch.load(model)
    npy = tinypatch.run(graph, plan, input=_npy(graph, tmp_path))
    assert all(np.array_equal(npy.outputs[n], tinypatch.run(graph, plan).outputs[n]) for n in graph.outputs)


def test_codegen_equals_cli(model, capsys, tmp_path):
    result = tinypatch.codegen(model, tmp_path / "api", plan=planned(model))
    assert (tmp_path / "api" / "model.c").exists() and result.ok and result.exact is None
    planned(model).save(tmp_path / "p.json")
    text = cli(capsys, "codegen", model, "--plan", str(tmp_path / "p.json"), "-o", str(tmp_path / "api"))
    assert str(result) + "\n" == text
    d = result.to_dict()
    assert d["arena_bytes"] == result.project.arena_bytes and d["cost"] is None
    assert tinypatch.codegen(model, tmp_path / "lbl", stack="2KB").project.stack == 2048


@pytest.mark.skipif(toolchain.missing_tools("host") is not None, reason="no host C compiler")
def test_codegen_report_on_host(capsys, tmp_path):
    model = str(model_path("mlperf_kws_dscnn_int8.tflite"))
    phases: list[str] = []
    result = tinypatch.codegen(model, tmp_path / "c", report=True, seed=1, progress=lambda p, *_: phases.append(p))
    assert result.exact and result.ok and phases
    ref = tinypatch.run(model, result.project.plan, seed=1).reference
    assert all(np.array_equal(result.outputs[n], ref[n]) for n in ref)
    assert "byte-identical" in str(result)
    text = cli(capsys, "codegen", model, "-o", str(tmp_path / "c"), "--report", "--seed", "1")
    assert str(result) + "\n" == text


def test_inputs_accepted_everywhere(tmp_path):
    graph = tinypatch.load(ZOO)
    assert tinypatch.load(graph) is graph and tinypatch.load(Path(model_path("mlperf_kws_dscnn_int8.tflite"))).ops
    assert tinypatch.load("mbv2-w0.35-r144", resolution=96).tensors["input"].shape[1] == 96
    assert api.parse_size(4096) == api.parse_size("4KiB") == api.parse_size("4 kB") == 4096
    assert api.parse_fraction("15%") == api.parse_fraction(0.15) == 0.15
    plan = tinypatch.plan(graph, sram=24 * 1024)
    analysis = tinypatch.analyze(graph)
    analysis.plot(tmp_path / "fig1.png", sram="24KB", plan=plan)
    assert (tmp_path / "fig1.png").stat().st_size > 10_000


@pytest.mark.parametrize("call, error, message", [
    (lambda: tinypatch.load("/nonexistent/model.tflite"), ModelLoadError, "not found"),
    (lambda: tinypatch.analyze("mcunet-in9"), ModelLoadError, "tinypatch zoo"),
    (lambda: tinypatch.load(42), UsageError, "not a model"),
    (lambda: tinypatch.plan(ZOO, sram="lots"), UsageError, "not a size"),
    (lambda: tinypatch.plan(ZOO, sram=-5), UsageError, "positive"),
    (lambda: tinypatch.plan(ZOO, max_mac_overhead="-3%"), UsageError, ">= 0"),
    (lambda: tinypatch.plan(ZOO, strategy="magic"), PlanError, "unknown strategy"),
    (lambda: tinypatch.run(ZOO, 3.5), UsageError, "not a plan"),
    (lambda: tinypatch.run(ZOO, "/nonexistent/plan.json"), PlanError, "cannot read plan"),
    (lambda: tinypatch.run(ZOO, Plan.layer_by_layer(tinypatch.load("mcunet-in1"))), PlanError, "fingerprint"),
    (lambda: tinypatch.run(ZOO, planned(ZOO), input="/nonexistent.png"), InputError, "not found"),
    (lambda: tinypatch.codegen(ZOO, "/tmp/unused", target="cortex-a53"), PlanError, "unknown target"),
])
def test_errors_are_typed(call, error, message):
    with pytest.raises(error, match=re.escape(message)) as info:
        call()
    assert isinstance(info.value, TinypatchError)


def test_budget_error_carries_the_best_peak():
    with pytest.raises(BudgetError) as info:
        tinypatch.plan(ZOO, sram="1KB", inplace=False)
    best = info.value.best
    assert best and tinypatch.plan(ZOO, sram=best, inplace=False).cost.peak == best


def test_import_is_light_and_codegen_is_callable():
    code = ("import sys, tinypatch; heavy = [m for m in ('matplotlib', 'rich', 'tinypatch.planning.search', "
            "'tinypatch.codegen.project') if m in sys.modules]; print(heavy); "
            "import tinypatch.codegen.project; print(callable(tinypatch.codegen))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    assert r.stdout.split() == ["[]", "True"]


def test_docstring_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    failed, attempted = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert attempted >= 10 and failed == 0


def test_readme_markers_parse():
    tool = _readme_tool()
    blocks = tool.parse((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 4 and any(b.command == "python" for b in blocks)
    from tinypatch.cli import build_parser

    for b in blocks:
        if b.command != "python":
            build_parser().parse_args(shlex.split(b.command)[1:])
    assert tool.filtered("a\nb\nc\nd\n", re.compile("a|d")) == "a\n...\nd\n"
    with pytest.raises(ValueError):
        tool.parse("<!-- output: tinypatch zoo -->\nno block\n")


def test_readme_api_example_runs_as_printed():
    tool = _readme_tool()
    block = next(b for b in tool.parse((ROOT / "README.md").read_text(encoding="utf-8")) if b.command == "python")
    assert tool.same(block.body, tool.run(block)), "README's Python API output is stale: python tools/readme_outputs.py"


def test_readme_outputs_are_current(tmp_path):
    if ASSETS is None:
        pytest.skip("the README's blocks run the shared models")
    tool = _readme_tool()
    blocks = [b for b in tool.parse((ROOT / "README.md").read_text(encoding="utf-8")) if b.command != "python"]
    stale = [b.command for b in blocks if not tool.same(b.body, tool.run(b, tmp_path))]
    assert not stale, f"stale README blocks (python tools/readme_outputs.py rewrites them): {stale}"


@pytest.mark.skipif(toolchain.missing_tools("cortex-m7") is not None, reason="no Arm toolchain or QEMU")
def test_codegen_report_on_cortex_m7(tmp_path):
    result = tinypatch.codegen(model_path("hello_world_int8.tflite"), tmp_path / "c", target="cortex-m7", report=True)
    assert result.exact and result.ok and result.cost is not None and result.outputs is None
    cost = result.to_dict()["cost"]
    assert cost["arena"] == result.project.arena_bytes and cost["ram_used"] == cost["static_ram"] + cost["stack_used"]
    assert "cortex-m7 (QEMU)" in str(result) and "byte-identical" in str(result)


def test_shared_model_names_resolve_under_the_assets_and_anything_else_stays(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmarks' model arguments: a bare shared name is its file under ``$TINYPATCH_ASSETS/models``."""
    from tinypatch.assets import shared_model

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.tflite").write_bytes(b"")
    monkeypatch.setenv("TINYPATCH_ASSETS", str(tmp_path))
    assert shared_model("tiny") == str(tmp_path.resolve() / "models" / "tiny.tflite")
    for other in ("absent", "mcunet-in0", "x/tiny", "tiny.tflite"):
        assert shared_model(other) == other


def test_least_peak_plan_names_a_cheaper_neighbour(capsys):
    """Without a budget the least peak is chosen; a schedule at most 5% above it saving at least 10% of
    the objective is named, with the ``--sram`` that picks exactly it (and none under a budget)."""
    result = tinypatch.plan("mcunet-in0")
    near, chosen = result.nearby, result.schedule
    assert near is not None and chosen.peak < near.peak <= chosen.peak * 1.05 and near.macs <= chosen.macs * 0.9
    assert all(s.macs >= near.macs for s in result.front.front if s.peak <= chosen.peak * 1.05)
    assert tinypatch.plan("mcunet-in0", sram=f"{near.peak}B").schedule.label == near.label
    assert tinypatch.plan("mcunet-in0", sram=f"{near.peak}B").nearby is None
    assert result.to_dict()["cheaper_nearby"]["peak"] == near.peak
    text = cli(capsys, "plan", "mcunet-in0")
    assert f"hint: {near.peak - chosen.peak:,} B more SRAM ({near.peak:,} B) runs" in text
    assert f"`--sram {near.peak}B` picks it" in text


def test_a_model_without_macs_plans_and_prints():
    """Two PADs, no MACs: the MAC overhead is 0 (it divided by zero), the front prints, no schedule
    is named as a cheaper neighbour of itself, and the plan runs exactly."""
    from rich.console import Console

    from tinypatch.frontends.synth import Builder

    b = Builder("pads", seed=1)
    x = b.pad(b.input((1, 8, 8, 4)), 1, 1, 1, 1, name="p")
    graph = b.finish([b.pad(x, 1, 1, 1, 1, name="q")])
    result = tinypatch.plan(graph)
    assert result.cost.macs == 0 and result.cost.mac_overhead == 0.0 and result.nearby is None
    console = Console(record=True, width=160)
    result.render(console)
    assert "+0.0%" in console.export_text() and "hint:" not in console.export_text()
    assert tinypatch.run(graph, result).exact
