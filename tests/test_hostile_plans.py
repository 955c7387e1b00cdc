"""Hostile plans: the schema check refuses them before any use, with one readable line (exit 2)."""

from __future__ import annotations

import json
import re

import pytest
from test_security_codegen import small_net

from tinypatch.cli import main
from tinypatch.errors import PlanError
from tinypatch.planning.plan import Plan


def good() -> dict:
    g = small_net()
    return {"format": "tinypatch-plan/1", "model": g.name, "fingerprint": Plan.layer_by_layer(g).fingerprint,
            "include_input": True, "include_output": True,
            "stages": [{"ops": [0, 2], "grid": [2, 2], "rows": [0, 3, 6], "cols": [0, 3, 6]}]}


def stage(**change) -> dict:
    d = good()
    d["stages"][0].update(change)
    return d


CASES = {
    "fractional cut": (stage(rows=[0, 4.7, 6]), r"'rows' must be integer cut points .* got \[0, 4.7, 6\]"),
    "bool cut": (stage(cols=[0, True, 6]), r"'cols' must be integer cut points"),
    "negative op": (stage(ops=[-1, 2]), r"'ops' must be \[start, end\] with integers 0 <= start < end"),
    "empty op range": (stage(ops=[2, 2]), r"'ops' must be \[start, end\]"),
    "huge op": (stage(ops=[0, 10**30]), r"'ops' must be \[start, end\]"),
    "string rows": (stage(rows="0,3,6"), r"'rows' must be integer cut points"),
    "halo outside": (stage(halo={"7": "cache"}), r"bad halo entry '7': 'cache'"),
    "halo mode": (stage(halo={"0": "rm -rf"}), r"bad halo entry '0': 'rm -rf'"),
    "stage not object": ({**good(), "stages": [[0, 2]]}, r"stage 0 must be an object"),
    "stages not list": ({**good(), "stages": {"0": 1}}, r"'stages' must be a list"),
    "flag not bool": ({**good(), "include_input": "yes"}, r"'include_input' must be true or false"),
    "inplace floats": ({**good(), "inplace": [1.0]}, r"'inplace' must list distinct operator indices"),
    "model not string": ({**good(), "model": ["x"]}, r"'model' must be a string"),
    "deep extra field": ({**good(), "x": [[[[[[1]]]]]]}, r"nested too deeply"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_plan_is_refused_before_use(case, tmp_path, capsys):
    data, reason = CASES[case]
    with pytest.raises(PlanError, match=reason):
        Plan.from_dict(data)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    model = tmp_path / "m.tflite"
    from tinypatch.backends import save_tflite

    save_tflite(small_net(), model)
    for argv in (["run", str(model), "--plan", str(path)], ["codegen", str(model), "--plan", str(path), "-o",
                                                            str(tmp_path / "c")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert re.search(reason, err), err  # brackets survive: no markup in errors


def test_deeply_nested_json_is_one_clear_error(tmp_path, capsys):
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(PlanError, match="nested too deeply"):
        Plan.from_json(text)
    with pytest.raises(PlanError, match="nested too deeply"):
        Plan.from_json('{"format": "tinypatch-plan/1", "x": ' + text + "}")
    path = tmp_path / "deep.json"
    path.write_text(text)
    assert main(["analyze", "mcunet-in0", "--plan", str(path), "--plot", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and "Traceback" not in err


def test_good_plan_round_trips(tmp_path):
    plan = Plan.from_dict(good())
    path = tmp_path / "p.json"
    plan.save(str(path))
    assert Plan.load(str(path)) == plan and not [p for p in tmp_path.iterdir() if p.name != "p.json"]
