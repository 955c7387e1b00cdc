"""``tinypatch show``: the IR, a plan's tiles and the arena map, with the offsets the C generator emits."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import MODELS, model_path
from test_codegen import graph, plan

from tinypatch.analysis.regions import split_even
from tinypatch.cli import main
from tinypatch.codegen.project import deployed_plan, render
from tinypatch.ir import Graph
from tinypatch.planning.plan import Plan, Stage
from tinypatch.report.show import format_pipeline, pipeline

VWW = "mlperf_vww_96_int8.tflite"


def _c_offsets(g: Graph, p: Plan | None) -> tuple[str, dict[str, str]]:
    files, _ = render(g, deployed_plan(g, p), Path("unused"), "host", None, 4096)
    return files["model.c"], files


def _arena_offsets(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"tp_arena \+ (\d+)\)", text)}


def _check_offsets(g: Graph, p: Plan | None) -> dict:
    """The buffers ``show`` prints sit where model.c puts them: per layer-by-layer op, the offsets its
    kernel call uses are those of its tensors' buffers; over the whole program, the same set."""
    facts = pipeline(g, p)
    model_c, files = _c_offsets(g, p)
    offset = {t: b["offset"] for b in facts["arena"]["buffers"] for t in b["tensors"]}
    shown = {b["offset"] for b in facts["arena"]["buffers"] if b["size"]}
    assert _arena_offsets(model_c) == shown
    text = format_pipeline(facts)
    arena = text[text.index("\narena: "):text.index("\ntensors:")]
    printed = {int(m) for m, size in re.findall(r"^ +(\d+) +(\d+)  ", arena, re.M) if int(size)}
    assert printed == shown  # the text prints them
    staged = {k for s in facts["stages"] for k in range(*s["ops"])}
    blocks = dict(re.findall(r"\{   /\* op (\d+): .*?\n(.*?)\n    \}\n", model_c, re.S))
    checked = 0
    for k, op in enumerate(g.ops):
        if k in staged:
            continue
        tensors = [t for t in (*op.inputs, *op.outputs) if t and t in offset]
        found = _arena_offsets(blocks[str(k)])
        assert found == {offset[t] for t in tensors} or ("same bytes" in blocks[str(k)] and not found), f"op {k}"
        checked += 1
    for i, t in enumerate(g.inputs):  # model.h documents the inputs' offsets
        if t in offset:
            assert f"input {i}: " in files["model.h"] and f"arena offset {offset[t]})" in files["model.h"]
    assert checked or staged
    return facts


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_every_shared_model_shows_ir_and_arena_as_generated(path):
    g = graph(path.name)
    facts = _check_offsets(g, None)
    text = format_pipeline(facts)
    assert len([ln for ln in text.splitlines() if re.match(r"\s+\d+ [A-Z_0-9]+  ", ln)]) == len(g.ops)
    assert f"arena: {facts['arena']['bytes']:,} B" in text
    json.dumps(facts)  # plain data


def _grid_plan(g: Graph, end: int, grid: int, halo: str) -> Plan:
    tiled = g.tensors[g.ops[end - 1].outputs[0]].shape
    stage = Stage(0, end, split_even(tiled[1], grid), split_even(tiled[2], grid),
                  {k: halo for k in range(end - 1)} if halo != "recompute" else {})
    return replace(Plan.layer_by_layer(g), stages=[stage])


@pytest.mark.parametrize("halo", ["recompute", "cache_w", "cache"])
def test_patch_plan_tiles_and_offsets(halo):
    g = graph(VWW)
    p = _grid_plan(g, 8, 3, halo)
    facts = _check_offsets(g, p)
    stage = facts["stages"][0]
    assert stage["ops"] == [0, 8] and stage["grid"] == [3, 3]
    rows = stage["rows"]
    assert [t["tiled"] for t in rows] == [[0, 4], [4, 8], [8, 12]]
    first = g.ops[0].inputs[0]
    assert rows[0]["inputs"][first][0] == 0 and rows[-1]["inputs"][first][1] == 96  # input spans cover the image
    halos = [o for t in rows[1:] for o in t["ops"]]
    if halo == "recompute":  # later tiles recompute the overlap, keep nothing
        assert any(o["recomputed"] for o in halos) and not any(o["kept"] for o in halos)
    elif halo == "cache":  # rows are cached too: overlaps are kept, not recomputed
        assert any(o["kept"] for o in halos) and not any(o["recomputed"] for o in halos)
    text = format_pipeline(facts)
    assert "stage 0: ops [0, 8) on 3x3 tiles" in text and "rows tile 2: [8, 12)" in text


@pytest.mark.parametrize("mode", ["patch-min-peak", "patch-recompute"])
@pytest.mark.parametrize("name", [VWW, "mlperf_ic_resnet8_int8.tflite"])
def test_searched_plans_show_the_generated_offsets(name, mode):
    model_path(name)
    p = plan(name, mode)
    if p is None:
        pytest.skip(f"{name} has no patch plan")
    facts = _check_offsets(graph(name), p)
    assert facts["stages"]


def test_cli_show_text_json_and_plan(tmp_path, capsys):
    path = str(model_path(VWW))
    g = graph(VWW)
    plan_file = tmp_path / "plan.json"
    _grid_plan(g, 8, 2, "cache_w").save(str(plan_file))
    assert main(["show", path, "--plan", str(plan_file)]) == 0
    text = capsys.readouterr().out
    assert "stage 0: ops [0, 8) on 2x2 tiles" in text and "arena:" in text and "tensors:" in text
    assert main(["show", path, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert len(facts["ops"]) == len(g.ops) and facts["arena"]["buffers"]
    assert main(["show", path, "--plan", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
