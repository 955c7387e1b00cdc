"""Graphs with several outputs, some made in the middle of the graph (detectors).

The search only offers legal stages (a stage may produce a graph output as its last tensor,
never swallow one or a tensor used after it), its cost model equals the plans' liveness, every
front plan runs byte-identically at measured == planned peak; the MCUNet-style detector is
exact against LiteRT's reference kernels tensor by tensor, its searched plan halves the
layer-by-layer peak at +10% MACs or less, and its generated C is exact under ASan/UBSan.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litert_ref import assert_matches_litert
from strategies import random_multi_output_cnn
from test_codegen import C_BUILDS, assert_outputs_equal, needs_cc

import tinypatch.planning.optimal as O
from tinypatch.backends import write_tflite
from tinypatch.cli import main
from tinypatch.codegen import generate
from tinypatch.codegen.report import measure
from tinypatch.codegen.toolchain import make, missing_tools, run_host
from tinypatch.errors import PlanError
from tinypatch.frontends.tflite import parse_tflite
from tinypatch.frontends.zoo import build
from tinypatch.ir import Graph
from tinypatch.planning.memory import plan_buffers
from tinypatch.planning.plan import Plan, Stage
from tinypatch.planning.search import search
from tinypatch.planning.tiles import stage_info
from tinypatch.runtime.executor import run
from tinypatch.runtime.inputs import random_input
from tinypatch.runtime.plan_executor import PlanExecutor


def assert_front_legal_and_exact(g: Graph, xs: list[np.ndarray], include_input: bool, every: bool = True) -> list:
    """Every front plan (or, not ``every``: the least-peak, the fewest-MAC and the best within +10%
    MACs): legal stages, DP cost == plan liveness, exact at measured == planned peak."""
    res = search(g, include_input=include_input)
    ref = run(g, xs)
    producers = g.producers()
    chosen = res.front if every else list({id(s): s for s in (res.front[0], res.front[-1],
                                                              res.best_under_overhead(0.1))}.values())
    for s in chosen:
        for st_ in s.plan.stages:
            stage_info(g, st_.start, st_.end)  # legal
            swallowed = [t for t in g.outputs if st_.start <= producers[t] < st_.end - 1]
            assert not swallowed, f"{s.label} swallows graph outputs {swallowed}"
        assert plan_buffers(g, s.plan).liveness.lower_bound(16) == s.lower_bound, s.label
        out = PlanExecutor(g, s.plan)(xs)
        assert out.arena_high_water == out.arena_size == s.peak, s.label
        for n in g.outputs:
            assert out.outputs[n].tobytes() == ref[n].tobytes(), f"{s.label}: output {n}"
    return res.front


def test_every_offered_stage_is_legal_and_some_run_while_fpn_maps_wait():
    """After C3 is made, the FPN keeps it (and later C4) live: the search still offers stages
    there, holding the waiting maps whole, and never a stage that swallows a graph output."""
    g = build("mcunet-det-s")
    c = O._Costs(g, False, True, 16)
    opts = O._segment_options(c, O.cut_positions(g), 8, O.POLICIES, False)
    stages = {(o.choice.start, o.choice.end) for v in opts.values() for o in v if o.choice.grid}
    for a, b in stages:
        stage_info(g, a, b)  # raises PlanError for an illegal stage
    waiting = [(a, b) for a, b in stages if any(t not in g.inputs and c.life[t][1] >= b for t in c.across[a])]
    assert waiting, "no stage runs while a feature map waits for the FPN"
    after_output = min(g.producers()[t] for t in g.outputs)
    assert any(a > after_output for a, _ in stages), "no stage after the first mid-graph output"


def test_a_stage_swallowing_an_output_is_a_user_error():
    g = build("mcunet-det-s")
    head1 = g.producers()["head1.out"]
    with pytest.raises(PlanError, match=r"swallows graph output.*end the stage at operator"):
        stage_info(g, head1 - 1, head1 + 2)
    plan = Plan(g.name, Plan.layer_by_layer(g).fingerprint, [Stage(head1 - 1, head1 + 2, [0, 4], [0, 5])])
    with pytest.raises(PlanError, match="graph output"):
        PlanExecutor(g, plan)


def test_cli_reads_an_illegal_stage_as_a_user_error(tmp_path, capsys):
    g = build("mcunet-det-s")
    head1 = g.producers()["head1.out"]
    path = str(tmp_path / "bad.json")
    Plan(g.name, Plan.layer_by_layer(g).fingerprint, [Stage(head1 - 1, head1 + 2, [0, 4], [0, 5])]).save(path)
    assert main(["run", "mcunet-det-s", "--plan", path]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "swallows graph output(s) ['head1.out']" in err and f"end the stage at operator {head1 + 1}" in err


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(random_multi_output_cnn(), st.booleans())
def test_random_multi_output_fronts_are_legal_and_exact(case, include_input):
    g, x = case
    assert_front_legal_and_exact(g, [x], include_input)


@needs_cc
@settings(C_BUILDS, max_examples=3)
@given(random_multi_output_cnn(max_layers=4))
def test_random_multi_output_least_peak_plan_is_exact_in_c(tmp_path_factory, case):
    g, x = case
    best = min(search(g, include_input=False).front, key=lambda s: (s.peak, s.macs))
    out = tmp_path_factory.mktemp("c")
    generate(g, best.plan, out)
    make(out, "host-check")
    assert_outputs_equal(g, run_host(out, g, [x], "model_host_check"), [x])


@pytest.mark.parametrize("include_input", [False, True])
def test_small_detector_front_is_exact(include_input):
    g = build("mcunet-det-s")
    front = assert_front_legal_and_exact(g, [random_input(g.tensors[g.inputs[0]], 3)], include_input, every=False)
    assert len(front) > 3 and any(s.plan.stages for s in front)


@pytest.mark.parametrize("name", ["mcunet-det-s", "mcunet-det"])
def test_detector_matches_litert_tensor_by_tensor(name):
    g = build(name)
    content = write_tflite(g)
    back = parse_tflite(content, name=name)
    assert back.outputs == g.outputs
    for seed in (1, 2):
        x = random_input(g.tensors[g.inputs[0]], seed)
        assert_matches_litert(g, content, x)


def test_detector_plan_halves_the_peak_within_ten_percent_macs():
    g = build("mcunet-det")
    res = search(g, include_input=False)
    best = res.best_under_overhead(0.10)
    assert best.macs <= res.baseline.macs * 1.10
    assert 2 * best.peak < res.baseline.peak, (best.peak, res.baseline.peak)
    out = PlanExecutor(g, best.plan)([random_input(g.tensors[g.inputs[0]], 5)])
    assert out.arena_high_water == out.arena_size == best.peak


def test_cli_plan_and_run_a_detector(tmp_path, capsys):
    path = str(tmp_path / "det.json")
    assert main(["plan", "mcunet-det-s", "--no-input", "--max-mac-overhead", "0.1", "-o", path]) == 0
    assert main(["run", "mcunet-det-s", "--plan", path]) == 0
    out = capsys.readouterr().out
    assert "byte-identical" in out
    hw, planned = (int(v.replace(",", "")) for v in
                   re.search(r"high-water mark ([\d,]+) B(?: \([^)]*\))?, planned peak ([\d,]+) B", out).groups())
    assert hw == planned


@needs_cc
def test_detector_codegen_is_exact_under_sanitizers(tmp_path):
    g = build("mcunet-det-s")
    p = min((s for s in search(g, include_input=False).front), key=lambda s: s.peak).plan
    assert p.stages
    generate(g, p, tmp_path)
    make(tmp_path, "host-check")
    xs = [random_input(g.tensors[g.inputs[0]], 9)]
    assert_outputs_equal(g, run_host(tmp_path, g, xs, "model_host_check"), xs)


@pytest.mark.skipif(missing_tools("cortex-m7") is not None, reason=f"Cortex-M toolchain: {missing_tools('cortex-m7')}")
def test_detector_is_exact_on_an_emulated_cortex_m7(tmp_path):
    g = build("mcunet-det-s")
    best = min(search(g, include_input=False).front, key=lambda s: s.peak)
    project = generate(g, best.plan, tmp_path, target="cortex-m7")
    cost = measure(g, project, [random_input(g.tensors[g.inputs[0]], 3)])  # compares with the Python executor
    assert cost.exact and cost.arena <= best.peak  # codegen adds in-place ops
