"""Plan geometry, JSON, validation and search (no kernels needed)."""

from __future__ import annotations

import json

import pytest

from tinypatch.analysis.regions import split_even
from tinypatch.errors import BudgetError, PlanError
from tinypatch.frontends.synth import Builder
from tinypatch.frontends.tflite import load_tflite
from tinypatch.planning.arena import plan_arena
from tinypatch.planning.check import check_plan
from tinypatch.planning.plan import Plan, Stage, fingerprint
from tinypatch.planning.search import search
from tinypatch.planning.tiles import legal_ends, stage_info, tile_stage

from conftest import model_path


def small_net():
    b = Builder("small", seed=3)
    x = b.input((1, 23, 17, 3))
    x = b.conv(x, 8, 3, 2, name="stem")
    y = b.depthwise(x, 5, 1, name="dw", dilation=2)
    y = b.conv(y, 8, 1, 1, name="pw", act="NONE")
    x = b.add(x, y, name="res")
    x = b.conv(x, 12, 3, 2, name="down", padding="VALID")
    x = b.mean(x, name="gap")
    x = b.fully_connected(x, 4, name="fc")
    return b.finish([x])


def test_split_even_covers_and_balances():
    for size in range(1, 40):
        for n in range(1, 10):
            cuts = split_even(size, n)
            assert cuts[0] == 0 and cuts[-1] == size
            lens = [b - a for a, b in zip(cuts, cuts[1:])]
            assert min(lens) >= 1 and max(lens) - min(lens) <= 1


def test_tile_regions_pad_only_at_true_borders():
    g = small_net()
    for end in legal_ends(g, 0):
        out = g.tensors[stage_info(g, 0, end).tiled].shape
        st = tile_stage(g, Stage(0, end, split_even(out[1], 3), split_even(out[2], 4)))
        for axis, til in ((1, st.h), (2, st.w)):
            for spans in til.spans:
                for k, span in spans.items():
                    src = g.ops[k].inputs[0]
                    size = g.tensors[src].shape[axis]
                    read = span.reads[0]
                    assert 0 <= read[0] < read[1] <= size
                    assert span.pads[0] == 0 or read[0] == 0
                    assert span.pads[1] == 0 or read[1] == size


def test_illegal_stages_are_rejected():
    g = small_net()
    ends = legal_ends(g, 0)
    add = next(i for i, op in enumerate(g.ops) if op.type == "ADD")
    assert add not in ends and add + 1 in ends  # the residual crosses any cut inside the block
    with pytest.raises(PlanError, match="used after it"):
        tile_stage(g, Stage(0, add, [0, 12], [0, 9]))
    mean = next(i for i, op in enumerate(g.ops) if op.type == "MEAN")
    assert mean + 1 in ends  # a global average can end a stage (accumulated tile by tile)
    with pytest.raises(PlanError, match="MEAN"):  # but only as the last op
        tile_stage(g, Stage(0, mean + 2, [0, 1], [0, 1]))


def test_plan_json_roundtrip_and_rejections(tmp_path):
    g = small_net()
    end = legal_ends(g, 0)[-1]
    out = g.tensors[stage_info(g, 0, end).tiled].shape
    plan = Plan(g.name, fingerprint(g), [Stage(0, end, split_even(out[1], 2), split_even(out[2], 3))], False)
    path = tmp_path / "plan.json"
    plan.save(str(path))
    again = Plan.load(str(path))
    assert again == plan
    check_plan(g, again)
    d = json.loads(path.read_text())
    d["stages"][0]["rows"] = [0, 3, 2, out[1]]
    with pytest.raises(PlanError, match="strictly increase"):
        check_plan(g, Plan.from_dict(d))
    d["stages"][0]["rows"] = [0, 3]
    with pytest.raises(PlanError, match="must start at 0 and end"):
        check_plan(g, Plan.from_dict(d))
    d = json.loads(path.read_text())
    d["fingerprint"] = "0" * 16
    with pytest.raises(PlanError, match="fingerprint"):
        check_plan(g, Plan.from_dict(d))
    with pytest.raises(PlanError, match="not a tinypatch plan"):
        Plan.from_json("{}")
    with pytest.raises(PlanError, match="not valid JSON"):
        Plan.from_json("{oops")


def test_search_front_and_budgets():
    g = load_tflite(model_path("person_detect.tflite"))
    res = search(g)
    assert res.baseline.peak == plan_arena(g).peak
    peaks = [c.peak for c in res.front]
    macs = [c.macs for c in res.front]
    assert peaks == sorted(peaks) and macs == sorted(macs, reverse=True)
    assert min(peaks) < res.baseline.peak / 2
    best = res.best_under_sram(40 * 1024)
    assert best.peak <= 40 * 1024
    assert all(c.macs >= best.macs for c in res.front if c.peak <= 40 * 1024)
    with pytest.raises(BudgetError) as e:
        res.best_under_sram(1024)
    assert e.value.best == min(peaks)
    low = res.best_under_overhead(0.1)
    assert low.macs <= res.baseline.macs * 1.1
