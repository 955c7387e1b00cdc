"""The command line: outputs, plans that round-trip, and one-line errors for bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tinypatch.cli import main, parse_size

from conftest import model_path


def tp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinypatch.cli", *args], capture_output=True, text=True, timeout=300)


def test_parse_size():
    assert parse_size("64KB") == parse_size("64kB") == parse_size("64KiB") == 65536
    assert parse_size("0.5MB") == 524288 and parse_size("1000") == 1000


def test_analyze_json_zoo(capsys):
    assert main(["analyze", "mcunet-in0", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["peak_placed"] >= d["lower_bound"] > 0
    assert d["peak_analytic"] == max(r["analytic_bytes"] for r in d["rows"])
    assert d["total_macs"] == sum(r["macs"] for r in d["rows"])


def test_analyze_table_and_plot(tmp_path, capsys):
    png = tmp_path / "mem.png"
    assert main(["analyze", str(model_path("mlperf_kws_dscnn_int8.tflite")), "--plot", str(png), "--sram", "16KB"]) == 0
    out = capsys.readouterr().out
    assert "peak, placed arena" in out and "16,000 B" in out
    assert png.stat().st_size > 10_000


def test_plan_then_run_roundtrip(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    assert main(["plan", "mcunet-in0", "--sram", "24KB", "-o", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "chosen schedule" in out and "Pareto front" in out
    d = json.loads(plan.read_text())
    assert d["format"] == "tinypatch-plan/1"
    assert main(["run", "mcunet-in0", "--plan", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "byte-identical" in out and "measured high-water mark" in out


def test_run_with_image_input(tmp_path, capsys):
    model = str(model_path("person_detect.tflite"))
    plan = tmp_path / "plan.json"
    assert main(["plan", model, "--max-mac-overhead", "10%", "-o", str(plan)]) == 0
    capsys.readouterr()
    bmp = str(model_path("person.bmp"))
    assert main(["run", model, "--plan", str(plan), "--input", bmp, "--preprocess", "raw"]) == 0
    assert "[-113,  113]" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["analyze", "/nonexistent/model.tflite"], "model file not found"),
    (["analyze", "mcunet-in9"], "tinypatch zoo"),
    (["plan", "mcunet-in0", "--sram", "1KB"], "smallest achievable peak"),
])
def test_errors_are_one_line(args, message):
    r = tp(*args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2  # rich may wrap one long line


def test_corrupted_files_and_plans(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(model_path("mlperf_kws_dscnn_int8.tflite").read_bytes()[:5000])
    r = tp("analyze", str(bad))
    assert r.returncode == 2 and "truncated or corrupted" in r.stderr and "Traceback" not in r.stderr
    plan = tmp_path / "p.json"
    plan.write_text("{not json")
    r = tp("run", "mcunet-in0", "--plan", str(plan))
    assert r.returncode == 2 and "not valid JSON" in r.stderr
    r = tp("plan", "mcunet-in0", "--sram", "lots")
    assert r.returncode == 2 and "not a size" in r.stderr


def test_help_teaches():
    r = tp("--help")
    assert r.returncode == 0 and "examples:" in r.stdout and "zoo" in r.stdout


def test_every_command_help_has_examples(capsys):
    for command in ("analyze", "plan", "run", "show", "codegen"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        out = " ".join(capsys.readouterr().out.split())  # argparse wraps help lines
        assert "examples:" in out and f"tinypatch {command} " in out and "MODEL" in out and "int8 .onnx" in out


def test_analyze_plots_a_plan_beside_layer_by_layer(tmp_path, capsys):
    plan = tmp_path / "plan.json"
    assert main(["plan", "mcunet-in0", "--single-stage", "--strategy", "recompute", "-o", str(plan)]) == 0
    png = tmp_path / "fig1.png"
    assert main(["analyze", "mcunet-in0", "--plan", str(plan), "--plot", str(png)]) == 0
    assert png.stat().st_size > 10_000
    bad = tmp_path / "other.json"
    assert main(["plan", "mcunet-in1", "-o", str(bad)]) == 0
    capsys.readouterr()
    assert main(["analyze", "mcunet-in0", "--plan", str(bad), "--plot", str(png)]) == 2
    assert "fingerprint" in capsys.readouterr().err


def test_negative_seed_is_one_line_error(tmp_path):
    """`run --seed -1` ended in numpy's ValueError traceback (exit 1, as if the outputs differed)."""
    plan = tmp_path / "plan.json"
    assert tp("plan", "mcunet-in0", "-o", str(plan)).returncode == 0
    for command in (["run", "mcunet-in0", "--plan", str(plan)], ["codegen", "mcunet-in0", "-o", str(tmp_path / "c")]):
        r = tp(*command, "--seed", "-1")
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert "argument --seed: must be 0 or more, got -1" in r.stderr
    from tinypatch.errors import InputError
    from tinypatch.runtime.inputs import random_input

    g = __import__("tinypatch").load("mcunet-in0")
    with pytest.raises(InputError, match="non-negative integer, got -1"):
        random_input(g.tensors[g.inputs[0]], -1)


def test_codegen_warns_when_the_arena_exceeds_sram(tmp_path, capsys):
    """`codegen --sram 1KB` wrote a 13 kB-arena project with no word about the budget."""
    assert main(["codegen", "mcunet-in0", "-o", str(tmp_path / "fits")]) == 0
    assert "warning" not in capsys.readouterr().out
    assert main(["codegen", "mcunet-in0", "-o", str(tmp_path / "over"), "--sram", "1KB"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"warning: the arena \([\d,]+ B\) exceeds the SRAM budget \(1,024 B\)", out)


@pytest.mark.parametrize("flag", [["--sram", "64KB"], ["--plan", "plan.json"]])
def test_analyze_chart_flags_without_plot_are_refused(flag, capsys):
    """`analyze M --sram 64KB` printed the tables and exited 0 as if the budget had been checked."""
    assert main(["analyze", "mcunet-in0", *flag]) == 2
    err = capsys.readouterr().err
    assert f"{flag[0]} draws on the plot: add --plot FILE.png" in err and err.count("\n") == 1


def test_analyze_plot_with_another_models_rewriting_plan_names_the_model(tmp_path, capsys):
    """Another model's plan that rewrites its graph was refused for the rewrite, not for the model."""
    plan = tmp_path / "resnet8.json"
    assert main(["plan", str(model_path("mlperf_ic_resnet8_int8.tflite")), "-o", str(plan)]) == 0
    assert json.loads(plan.read_text())["rewrites"], "the default resnet8 plan rewrites its graph"
    capsys.readouterr()
    assert main(["analyze", "mcunet-in0", "--plan", str(plan), "--plot", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert "the plan was made for model 'mlperf_ic_resnet8_int8'" in err and "rewrites" not in err
