"""Latency in the joint search: predicted instructions of each network's schedule (`search --target`,
`--max-latency`, `--objective instructions`), against the planner's cost model on the built graph."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace

import pytest

from tinypatch.api import parse_clock, parse_latency
from tinypatch.cli import main
from tinypatch.errors import UsageError
from tinypatch.frontends.mcunet_config import build_net
from tinypatch.nas.chain import Chain, chain_schedule
from tinypatch.nas.evaluate import (
    Constraints,
    best_plan,
    evaluate,
    planner_schedule,
    recompute_stages,
)
from tinypatch.nas.evolution import evolve
from tinypatch.nas.insns import ChainCost
from tinypatch.nas.space import mcunet_space, vww_space
from tinypatch.nas.twostage import stage_schedule
from tinypatch.planning.latency import cost_model
from tinypatch.planning.plan import Plan, fingerprint

SMALL = vww_space(resolutions=(48, 64, 80), num_classes=10)
LIMITS = Constraints(sram=24 * 1024, flash=300 * 1024, include_input=False, target="cortex-m7")
RUN = {"population": 8, "parents": 4, "n_mutate": 4, "n_crossover": 4, "iterations": 3, "progress": False}


def _schedules(chain, stages):
    """Every schedule of 1..``stages`` consecutive patch stages as (p1, n1, p2, n2, ...)."""
    def walk(start, path):
        if path:
            yield path
        if len(path) < 2 * stages:
            for p, end in itertools.product(range(2, 5), chain.legal_ends(start)):
                if chain.side[chain.ops[end - 1].output] >= p:
                    yield from walk(end, (*path, p, end))
    return list(walk(0, ()))


def _graph_insns(graph, model, path):
    ends = (0, *path[1::2])
    plan = Plan(graph.name, fingerprint(graph), recompute_stages(graph, list(zip(ends, ends[1:], path[::2]))))
    return model.predict(graph, plan)


@pytest.mark.parametrize("target", ["cortex-m7", "cortex-m55"])
def test_chain_instructions_equal_the_cost_model_on_the_graph(target):
    """Layer by layer plus the per-stage differences = CostModel.predict of the multi-stage plan."""
    rng = random.Random(11)
    model = cost_model(target)
    for space in (mcunet_space(resolutions=(96,)), SMALL):
        spec = space.to_spec(space.sample(rng))
        graph, chain = build_net(spec), Chain(spec)
        cost = ChainCost(chain, graph, model)
        assert cost.base == pytest.approx(model.predict(graph, Plan.layer_by_layer(graph)), rel=1e-12)
        paths = _schedules(chain, 2)
        for path in rng.sample(paths, 8) + [p for p in paths if len(p) == 2][:3]:
            ends = (0, *path[1::2])
            chained = cost.base + sum(cost.delta(a, b, p) for a, b, p in zip(ends, ends[1:], path[::2]))
            assert chained == pytest.approx(_graph_insns(graph, model, path), rel=1e-9)
            assert all(cost.delta(a, b, p) >= cost.slack(a) for a, b, p in zip(ends, ends[1:], path[::2]))


def _unpruned_two_stages(chain, cost, sram):
    """The stage walk of two stages by instructions, nothing pruned."""
    return stage_schedule(chain.per_op(False), sum(chain.macs()), chain.legal_ends,
                          lambda e: chain.side[chain.ops[e - 1].output],
                          lambda e: chain._bytes(chain.ops[e - 1].output),
                          lambda s, e, p: chain.stage(s, e, p, False)[0],
                          lambda s, e, p: chain.stage(s, e, p, False)[1],
                          sram, 4, None, 2, exhaustive=True, insns=cost.delta, base_insns=cost.base)[0]


def test_fewest_instructions_schedule_is_exact():
    """The pruned enumeration finds the schedule with the fewest predicted instructions among every
    schedule of up to 2 stages (and layer by layer) that fits, found here without pruning."""
    rng = random.Random(0)
    model = cost_model("cortex-m7")
    differs = 0
    space = vww_space()
    for _ in range(7):
        spec = space.to_spec(space.sample(rng))
        graph, chain = build_net(spec), Chain(spec)
        if chain.flash > 1 << 20:
            continue
        cost = ChainCost(chain, graph, model)
        per_op = chain.per_op(False)
        for sram in (16 * 1024, 24 * 1024, max(per_op)):
            fits = {(): (cost.base, sum(chain.macs()), max(per_op))} if max(per_op) <= sram else {}
            for path in _schedules(chain, 2):
                ends = (0, *path[1::2])
                figs = [chain.stage(a, b, p, False) for a, b, p in zip(ends, ends[1:], path[::2])]
                peak = max(*(pk for _, pk in figs), *per_op[path[-1]:])
                if peak <= sram:
                    ins = cost.base + sum(cost.delta(a, b, p) for a, b, p in zip(ends, ends[1:], path[::2]))
                    fits[path] = (ins, sum(chain.macs()) + sum(ov for ov, _ in figs), peak)
            found = chain_schedule(chain, sram, False, 4, 2, cost)
            if not fits:
                assert isinstance(found, int)
                continue
            assert fits[() if found[2] == 1 else found[2:]] == min(fits.values())
            assert found[:2] == min(fits.values())[1:]
            by_macs = chain_schedule(chain, sram, False, 4, 2)
            differs += by_macs[2:] != found[2:] and max(per_op) > sram
            # the stage walk of two stages without any pruning agrees
            full = _unpruned_two_stages(chain, cost, sram)
            two = [v for path, v in fits.items() if len(path) == 4]
            assert (full is None) == (not two) and (full is None or fits[full[2:]] == min(two))
    assert differs >= 1  # the objective matters: some network's schedule changes


def test_evaluation_predicts_the_chosen_schedule_on_the_graph():
    rng = random.Random(13)
    model = cost_model("cortex-m7")
    seen = 0
    for _ in range(12):
        spec = SMALL.to_spec(SMALL.sample(rng))
        for objective in ("macs", "instructions"):
            c = Constraints(24 * 1024, 300 * 1024, include_input=False, target="cortex-m7",
                            schedule_objective=objective)
            e = evaluate(spec, c)
            if not e.feasible:
                assert e.insns == 0
                continue
            seen += 1
            assert e.insns == round(model.predict(build_net(spec), best_plan(spec, e, c)))
            if objective == "macs":  # the graph path gives the same figures
                assert evaluate(spec, c, fast=False) == e
    assert seen >= 4
    with pytest.raises(UsageError, match="needs the chain fast path"):
        evaluate(spec, Constraints(24 * 1024, include_input=False, target="cortex-m7",
                                   schedule_objective="instructions"), fast=False)


def test_placed_convention_takes_the_planners_instructions():
    spec = SMALL.to_spec(SMALL.sample(random.Random(3)))
    c = Constraints(64 * 1024, convention="placed", include_input=False, target="cortex-m7",
                    schedule_objective="instructions")
    e = evaluate(spec, c)
    s = planner_schedule(spec, c)
    assert e.feasible and e.insns == round(s.insns) and e.schedule == s.label


def test_latency_limit_excludes_what_the_unconstrained_search_picks():
    free = evolve(SMALL, LIMITS, seed=3, **RUN)
    assert free.best.evaluation.insns > 0
    limit = int(free.best.evaluation.insns * 0.8)
    tight = Constraints(**{**LIMITS.to_dict(), "max_insns": limit})
    a = evolve(SMALL, tight, seed=3, **RUN)
    b = evolve(SMALL, tight, seed=3, **RUN)
    assert a.history == b.history and a.best.spec == b.best.spec and a.evaluations == b.evaluations  # seeded
    assert all(0 < c.evaluation.insns <= limit for c in a.population)
    assert a.best.spec != free.best.spec and a.best.score <= free.best.score
    excluded = evaluate(free.best.spec, tight)
    assert not excluded.feasible and excluded.reason.startswith("latency: predicted")
    slow = [e for e in a.evaluations.values() if e.reason.startswith("latency")]
    assert slow and all(e.insns > limit for e in slow)


def test_latency_search_on_ray_matches_in_process():
    pytest.importorskip("ray")
    from tinypatch.nas.executors import RayExecutor

    tight = Constraints(**{**LIMITS.to_dict(), "max_insns": 15_000_000})
    with RayExecutor(workers=2) as executor:
        on_ray = evolve(SMALL, tight, seed=7, executor=executor, **{**RUN, "iterations": 2})
    local = evolve(SMALL, tight, seed=7, **{**RUN, "iterations": 2})
    assert on_ray.history == local.history and on_ray.evaluations == local.evaluations


def test_parse_latency_and_clock():
    assert parse_latency("120M") == 120_000_000 and parse_latency(5000) == 5000 and parse_latency("1.5k") == 1500
    assert parse_latency("20ms", "216MHz") == 4_320_000 and parse_latency("1s", 1000) == 1000
    assert parse_clock("1GHz") == 10**9 and parse_clock("480e6") == 480_000_000
    for bad, message in (("fast", "not a latency"), ("20ms", "needs a clock"), ("0.1", "at least one")):
        with pytest.raises(UsageError, match=message):
            parse_latency(bad)
    with pytest.raises(UsageError, match="not a clock"):
        parse_clock("quick")
    with pytest.raises(UsageError, match="needs a target"):
        Constraints(1024, max_insns=10)
    with pytest.raises(UsageError, match="no instruction cost model"):
        Constraints(1024, target="z80")


def test_cli_search_with_a_latency_limit(tmp_path, capsys):
    out, png = tmp_path / "r.json", tmp_path / "p.png"
    args = ["search", "--space", "mcunet-vww", "--resolutions", "48,64", "--sram", "24KB", "--flash", "300KB",
            "--no-input", "--population", "6", "--parents", "3", "--mutate", "3", "--crossover", "3",
            "--iterations", "2", "--seed", "1", "--target", "cortex-m7", "--max-latency", "100ms", "--clock", "216MHz"]
    assert main([*args, "-o", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "predicted instructions <= 21.6M on cortex-m7 (100 ms at 216 MHz" in text and "instructions" in text
    d = json.loads(out.read_text())
    assert d["settings"]["constraints"]["max_insns"] == 21_600_000
    assert d["settings"]["constraints"]["schedule_objective"] == "instructions"
    assert 0 < d["best"]["evaluation"]["insns"] <= 21_600_000 and d["planner"]["insns"] > 0
    assert all(h["insns"] <= 21_600_000 for h in d["history"]) and png.stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["--max-latency", "5M"], "needs a target"),
    (["--target", "cortex-m7", "--max-latency", "5ms"], "needs a clock"),
    (["--target", "cortex-m7", "--max-latency", "soon"], "not a latency"),
    (["--objective", "instructions"], "needs a target"),
    (["--target", "cortex-m7", "--max-latency", "5ms", "--clock", "fast"], "not a clock"),
    (["--target", "cortex-m4"], "invalid choice"),
])
def test_cli_latency_errors_are_one_line(args, message, capsys):
    try:
        code = main(["search", "--sram", "64KB", "--population", "2", "--iterations", "0", *args])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and message in err.replace("\n", " ")


def test_resume_reads_a_state_written_before_the_latency_constraints(tmp_path):
    state = tmp_path / "state.json"
    plain = Constraints(sram=24 * 1024, flash=300 * 1024, include_input=False)
    evolve(SMALL, plain, seed=5, resume=state, **{**RUN, "iterations": 1})
    old = json.loads(state.read_text())
    for key in ("target", "max_insns", "schedule_objective", "clock_hz"):
        del old["constraints"][key]
    state.write_text(json.dumps(old))
    resumed = evolve(SMALL, plain, seed=5, resume=state, **RUN)
    assert resumed.history == evolve(SMALL, plain, seed=5, **RUN).history
    with pytest.raises(UsageError, match="other settings"):  # a latency limit is another setting
        evolve(SMALL, Constraints(**{**plain.to_dict(), "target": "cortex-m7"}), seed=5, resume=state, **RUN)


def test_resume_reads_a_state_written_before_stream_stages_as_recompute_only(tmp_path):
    state = tmp_path / "state.json"
    recompute = Constraints(sram=24 * 1024, flash=300 * 1024, include_input=False, stream=False)
    evolve(SMALL, recompute, seed=5, resume=state, **{**RUN, "iterations": 1})
    old = json.loads(state.read_text())
    del old["constraints"]["stream"]  # as a file written before stream stages existed
    state.write_text(json.dumps(old))
    resumed = evolve(SMALL, recompute, seed=5, resume=state, **RUN)
    assert resumed.history == evolve(SMALL, recompute, seed=5, **RUN).history
    with pytest.raises(UsageError, match="other settings.*constraints"):  # that search did not stream
        evolve(SMALL, replace(recompute, stream=True), seed=5, resume=state, **RUN)
