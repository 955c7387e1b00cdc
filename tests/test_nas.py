"""Joint architecture + schedule search (tinypatch.nas, `tinypatch search`): bounded runs on a small space."""

from __future__ import annotations

import json
import random

import pytest

from tinypatch.cli import main
from tinypatch.errors import PlanError, UsageError
from tinypatch.frontends.mcunet_config import build_net
from tinypatch.frontends.synth import make_divisible
from tinypatch.analysis.analytic import analytic_memory
from tinypatch.analysis.macs import op_macs
from tinypatch.nas.chain import Chain, chain_schedule
from tinypatch.nas.evaluate import (Constraints, Evaluation, best_plan, evaluate, mcunetv2_schedule, network_figures,
                                    recompute_stages)
from tinypatch.nas.twostage import stage_schedule
from tinypatch.planning.check import check_plan
from tinypatch.planning.cost import plan_analytic, plan_macs
from tinypatch.planning.plan import Plan, fingerprint
from tinypatch.planning.tiles import legal_ends
from tinypatch.nas.evolution import evolve
from tinypatch.nas.space import mcunet_space, vww_space
from tinypatch.planning.cost import plan_cost

SMALL = vww_space(resolutions=(48, 64, 80), num_classes=10)
LIMITS = Constraints(sram=24 * 1024, flash=300 * 1024, include_input=False)
RUN = dict(population=8, parents=4, n_mutate=4, n_crossover=4, iterations=3, progress=False)


def test_samples_stay_in_the_space():
    space = mcunet_space()
    rng = random.Random(0)
    for _ in range(30):
        genome = space.check(space.sample(rng))
        spec = space.to_spec(genome)
        assert spec.resolution in space.resolutions
        depths = [sum(1 for b in spec.blocks[1:] if b.out_channels in
                      {make_divisible(base * w, 8) for w in space.widths}) for base, _, _ in space.stages]
        assert all(d >= 1 for d in depths)
        assert len(spec.blocks) - 1 == sum(int(g) for (n, _), g in zip(space.genes, genome) if n.endswith("depth"))
        assert 1 + 2 * 5 + 1 <= len(spec.blocks) <= 1 + 4 * 5 + 1
        for b in spec.blocks[1:]:
            assert b.kernel in space.kernels and b.expand_ratio in space.expands
            assert b.shortcut == (b.stride == 1 and b.out_channels == spec.blocks[spec.blocks.index(b) - 1].out_channels)
        assert sum(b.stride == 2 for b in spec.blocks) == 4 and spec.stem_stride == 2
        mutant = space.mutate(genome, rng, 0.1)
        space.check(mutant), space.check(space.crossover(genome, mutant, rng))
    with pytest.raises(UsageError, match="gene resolution"):
        space.check((97,) + genome[1:])


def test_chain_figures_match_the_graph():
    """The fast path (figures from the spec's layer chain) against the graph-based computation."""
    rng = random.Random(1)
    for space in (mcunet_space(resolutions=(96, 128)), SMALL):
        for _ in range(3):
            spec = space.to_spec(space.sample(rng))
            graph, chain = build_net(spec), Chain(spec)
            assert chain.macs() == [op_macs(graph, op) for op in graph.ops]
            assert chain.flash == network_figures(graph)[1]
            assert chain.per_op(True) == analytic_memory(graph, True).per_op
            assert chain.per_op(False) == analytic_memory(graph, False).per_op
            assert chain.legal_ends() == [e for e in legal_ends(graph, 0)
                                          if len(graph.tensors[graph.ops[e - 1].outputs[0]].shape) == 4]
            for sram in (16 * 1024, 64 * 1024, 200 * 1024):
                for inc in (False, True):
                    assert chain_schedule(chain, sram, inc, 4) == mcunetv2_schedule(graph, sram, inc, 4)
            c = Constraints(64 * 1024, 600 * 1024, 30_000_000, include_input=False)
            assert evaluate(spec, c) == evaluate(spec, c, fast=False)


def test_fast_schedule_enumeration_equals_the_exhaustive_one():
    rng = random.Random(2)
    space = mcunet_space(resolutions=(96, 128))
    for _ in range(3):
        graph = build_net(space.to_spec(space.sample(rng)))
        for sram in (48 * 1024, 96 * 1024, 160 * 1024):
            fast = mcunetv2_schedule(graph, sram)
            full = mcunetv2_schedule(graph, sram, exhaustive=True, square_fast_path=False)
            assert type(fast) is type(full) and (isinstance(fast, int) or fast == full)


def test_search_respects_the_constraints_and_is_seeded():
    a = evolve(SMALL, LIMITS, seed=3, **RUN)
    b = evolve(SMALL, LIMITS, seed=3, **RUN)
    assert a.history == b.history and a.best.spec == b.best.spec and a.proposals == b.proposals
    assert [h["best_score"] for h in a.history] == sorted(h["best_score"] for h in a.history)  # elitist
    for c in a.population:
        e = c.evaluation
        assert e.feasible and e.peak <= LIMITS.sram and e.flash <= LIMITS.flash and c.score == e.macs
    # an independent check of the winner: its plan, costed by the planner, fits
    best = a.best
    graph = build_net(best.spec)
    cost = plan_cost(graph, best_plan(best.spec, best.evaluation, LIMITS))
    assert cost.peak_analytic == best.evaluation.peak <= LIMITS.sram
    assert cost.macs == best.evaluation.schedule_macs and network_figures(graph) == (best.evaluation.macs,
                                                                                    best.evaluation.flash)
    # the per-layer search (p = 1) is a restriction: never better, and all its winners run layer by layer
    per_layer = evolve(SMALL, Constraints(LIMITS.sram, LIMITS.flash, include_input=False, max_patches=1), seed=3, **RUN)
    assert all(c.evaluation.patches == 1 for c in per_layer.population)
    assert per_layer.best.evaluation.layer_peak <= LIMITS.sram


def test_objective_is_called_on_feasible_networks_only():
    seen = []

    def fewest_params(spec):
        seen.append(spec)
        return -Chain(spec).flash

    r = evolve(SMALL, LIMITS, fewest_params, seed=0, **RUN)
    assert seen and all(r.evaluations[s.fingerprint()].feasible for s in seen)
    assert len(seen) == len({s.fingerprint() for s in seen}) == len(r.scores)  # cached per network
    assert r.best.score == max(r.scores.values()) == -Chain(r.best.spec).flash


def test_resume_continues_identically(tmp_path):
    state = tmp_path / "state.json"
    first = evolve(SMALL, LIMITS, seed=5, resume=state, **{**RUN, "iterations": 1})
    assert json.loads(state.read_text())["history"] == first.history
    resumed = evolve(SMALL, LIMITS, seed=5, resume=state, **RUN)
    straight = evolve(SMALL, LIMITS, seed=5, **RUN)
    assert resumed.history == straight.history and resumed.best.spec == straight.best.spec
    assert resumed.proposals == straight.proposals and resumed.evaluations == straight.evaluations
    with pytest.raises(UsageError, match="other settings.*seed"):
        evolve(SMALL, LIMITS, seed=6, resume=state, **RUN)
    with pytest.raises(UsageError, match="folder does not exist"):
        evolve(SMALL, LIMITS, seed=5, resume=tmp_path / "nowhere" / "state.json", **RUN)
    state.write_text("{oops")
    with pytest.raises(UsageError, match="not a readable JSON file"):
        evolve(SMALL, LIMITS, seed=5, resume=state, **RUN)


def test_search_on_a_local_ray_cluster_of_two_workers_matches_in_process():
    pytest.importorskip("ray")
    from tinypatch.nas.executors import RayExecutor

    with RayExecutor(workers=2) as executor:
        on_ray = evolve(SMALL, LIMITS, seed=7, executor=executor, **RUN)
    local = evolve(SMALL, LIMITS, seed=7, **RUN)
    assert on_ray.history == local.history and on_ray.best.spec == local.best.spec
    assert on_ray.evaluations == local.evaluations


def test_cli_search_writes_spec_plan_and_plot(tmp_path, capsys):
    out, spec, png = tmp_path / "r.json", tmp_path / "s.json", tmp_path / "p.png"
    args = ["search", "--space", "mcunet-vww", "--resolutions", "48,64", "--sram", "24KB", "--flash", "200KB",
            "--no-input", "--population", "6", "--parents", "3", "--mutate", "3", "--crossover", "3",
            "--iterations", "2", "--seed", "1"]
    assert main([*args, "-o", str(out), "--save-spec", str(spec), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "best network per iteration" in text and "networks evaluated" in text
    d = json.loads(out.read_text())
    assert d["best"]["spec"]["format"] == "tinypatch-netspec" and d["plan"]["format"]
    assert d["best"]["evaluation"]["peak"] <= 24 * 1024 and d["settings"]["seed"] == 1
    assert d["planner"]["peak"] <= 24 * 1024 and d["planner"]["plan"]["include_input"] is False
    assert json.loads(spec.read_text()) == d["best"]["spec"] and png.stat().st_size > 1000
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["best"] == d["best"]  # the same seed, the same network


@pytest.mark.parametrize("args, message", [
    (["--sram", "lots"], "not a size"),
    (["--sram", "64KB", "--population", "0"], "must be 1 or more"),
    (["--sram", "64KB", "--mutate-prob", "2"], "mutate_prob must be in [0, 1]"),
    (["--sram", "64KB", "--resolutions", "96,x"], "comma-separated"),
    (["--sram", "64KB", "--max-macs", "lots"], "not a count"),
    (["--sram", "64KB", "--max-patches", "20"], "max_patches must be in 1..16"),
    (["--sram", "64KB", "--stages", "5"], "invalid choice"),
    (["--sram", "1KB", "--space", "mcunet-vww", "--resolutions", "48", "--population", "2", "--iterations", "0"],
     "over the SRAM limit"),
    (["--sram", "256KB", "--flash", "1KB", "--population", "2", "--iterations", "0"], "over the flash limit"),
])
def test_cli_errors_are_one_line(args, message, capsys):
    try:
        code, usage = main(["search", *args]), False
    except SystemExit as exc:  # argparse: the usage, then one error line
        code, usage = exc.code, True
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err
    last = err.splitlines()[-1] if usage else err.replace("\n", " ")
    assert message in last and last.count("error:") == 1
    assert usage or len(err.splitlines()) <= 2  # rich may wrap one long line


def test_cli_resume_file_garbage(tmp_path, capsys):
    bad = tmp_path / "state.json"
    bad.write_text(json.dumps({"format": "something else"}))
    assert main(["search", "--sram", "64KB", "--resume", str(bad), "--population", "2"]) == 2
    err = capsys.readouterr().err
    assert "not a tinypatch search file" in err and len(err.strip().splitlines()) <= 2


def test_cli_search_help_teaches(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "examples:" in out and "tinypatch search --sram" in out and "--resume" in out


def test_objective_must_return_a_finite_number():
    with pytest.raises(UsageError, match="finite number"):
        evolve(SMALL, LIMITS, lambda spec: float("nan"), seed=0, **RUN)
    with pytest.raises(UsageError, match="mutate_prob"):
        evolve(SMALL, LIMITS, mutate_prob="lots", **RUN)


def _stage_schedules(chain, rng, count, stages):
    """``count`` random legal ((p1, n1), (p2, n2), ...) of ``stages`` consecutive patch stages."""
    out = []
    while len(out) < count:
        path, start = [], 0
        for k in range(stages):
            ends = chain.legal_ends(start)[:len(chain.legal_ends(start)) - (stages - 1 - k)]
            if not ends:
                break
            start = rng.choice(ends)
            path.append((rng.randint(2, 4), start))
        if len(path) == stages and all(chain.side[chain.ops[n - 1].output] >= p for p, n in path):
            out.append(tuple(path))
    return out


@pytest.mark.parametrize("stages", [2, 3])
def test_stage_chain_figures_match_the_planner(stages):
    """Consecutive recompute stages: the chain's per-stage figures, combined, equal the
    planner's MACs and analytic peak of the multi-stage plan on the built graph."""
    rng = random.Random(4 + 10 * (stages - 2))
    for space in (mcunet_space(resolutions=(96, 128)), SMALL):
        for _ in range(2):
            spec = space.to_spec(space.sample(rng))
            graph, chain = build_net(spec), Chain(spec)
            assert chain.legal_ends(5) == [e for e in legal_ends(graph, 5)
                                           if len(graph.tensors[graph.ops[e - 1].outputs[0]].shape) == 4]
            for path in _stage_schedules(chain, rng, 4, stages):
                starts = (0, *(n for _, n in path[:-1]))
                for inc in (False, True):
                    plan = Plan(graph.name, fingerprint(graph),
                                recompute_stages(graph, [(a, n, p) for a, (p, n) in zip(starts, path)]),
                                include_input=inc)
                    tilings = check_plan(graph, plan)
                    figures = [chain.stage(a, n, p, inc) for a, (p, n) in zip(starts, path)]
                    assert sum(chain.macs()) + sum(ov for ov, _ in figures) == plan_macs(graph, tilings)[0]
                    assert max(*(pk for _, pk in figures), *chain.per_op(inc)[path[-1][1]:]) == \
                        plan_analytic(graph, plan, tilings).peak


def _exhaustive_stages(chain, sram, one, stages, stream=False):
    """Every schedule of 2..``stages`` patch stages tiled and costed (no pruning), from the one-stage best ``one``
    (``stream``: stream stages too, also single ones)."""
    return stage_schedule(
        chain.per_op(False), sum(chain.macs()), chain.legal_ends, lambda e: chain.side[chain.ops[e - 1].output],
        lambda e: chain._bytes(chain.ops[e - 1].output), lambda s, e, p: chain.stage(s, e, p, False)[0],
        lambda s, e, p: chain.stage(s, e, p, False)[1], sram, 4, one, stages, exhaustive=True,
        strips=(lambda s, e: chain.strips(s, e, 4)) if stream else None)[0]


@pytest.mark.parametrize("stages", [2, 3])
def test_stage_search_matches_the_graph_and_the_exhaustive_enumeration(stages):
    rng = random.Random(5)
    winners = 0
    limits = {"include_input": False, "stages": stages, "stream": False}
    for space in (mcunet_space(resolutions=(96, 128)), SMALL):
        for _ in range(2 if stages == 2 else 1):
            spec = space.to_spec(space.sample(rng))
            graph, chain = build_net(spec), Chain(spec)
            per_op = chain.per_op(False)
            for sram in sorted({max(per_op) // d for d in (2, 3, 5)}):
                fast = chain_schedule(chain, sram, False, 4, stages=stages)
                assert fast == mcunetv2_schedule(graph, sram, False, 4, stages=stages)
                fewer = chain_schedule(chain, sram, False, 4, stages=stages - 1)
                one = chain_schedule(chain, sram, False, 4)
                full = _exhaustive_stages(chain, sram, None if isinstance(one, int) else one, stages)
                assert isinstance(fast, int) == (full is None)
                if full is not None:
                    assert fast[:2] == full[:2]
                    assert isinstance(fewer, int) or fast[:2] <= fewer[:2]  # more stages never do worse
                    e = evaluate(spec, Constraints(sram, **limits))
                    assert e == evaluate(spec, Constraints(sram, **limits), fast=False)
                    winners += len(fast) == 2 + 2 * stages
                    assert Evaluation(**json.loads(json.dumps(e.to_dict()))) == e  # as a resumed search reads it
                    assert len(fast) == 4 + 2 * (e.patches2 > 0) + len(e.later)
                    cost = plan_cost(graph, best_plan(spec, e, Constraints(sram, **limits)))
                    assert (cost.macs, cost.peak_analytic) == (e.schedule_macs, e.peak) == fast[:2]
    assert winners >= (3 if stages == 2 else 1)
    with pytest.raises(UsageError, match="stages must be in 1..4"):
        Constraints(1024, stages=5)


def test_a_stage_input_that_is_a_residual_skip_is_counted_once():
    """A stage starting at a residual block holds its input whole while ops that do not read it
    run; the analytic convention also counts that input live as the block's skip. The plan's
    per-op bytes hold each tensor once (a set), on the graph and on the chain alike."""
    from tinypatch.analysis.analytic import op_bytes, residual_skips
    rng = random.Random(11)
    space = mcunet_space(resolutions=(96,))
    checked = 0
    while checked < 3:
        spec = space.to_spec(space.sample(rng))
        graph, chain = build_net(spec), Chain(spec)
        skips = residual_skips(graph)
        starts = [a for a in range(1, len(graph.ops)) if any(graph.ops[a].inputs[0] in v for v in skips.values())]
        if not starts:
            continue
        a = starts[0]
        end = next(e for e in chain.legal_ends(a) if any(graph.ops[a].inputs[0] in skips.get(k, ()) for k in range(a, e)))
        plan = Plan(graph.name, fingerprint(graph), recompute_stages(graph, [(a, end, 2)]), include_input=True)
        tilings = check_plan(graph, plan)
        per_op = plan_analytic(graph, plan, tilings).per_op
        st = tilings[0]
        nbytes = {n: t.size for n, t in graph.tensors.items() if not t.is_const}
        nbytes.update({t: st.h.max_len(t) * st.buffer_cols(t) * graph.tensors[t].shape[3] for t in st.info.internal})
        for k in range(a, end):
            op = graph.ops[k]
            held = set(skips.get(k, ())) | {t for t in st.info.inputs if t not in op.inputs}
            if k < end - 1:
                held.add(st.info.output)
            assert per_op[k] == op_bytes(graph, op, nbytes) + sum(nbytes[t] for t in held), k
        assert max(per_op[a:end]) == chain.stage(a, end, 2, True)[1]
        checked += 1


@pytest.mark.parametrize("mode, strips", [("cache", False), ("cache_w", False), ("cache", True)])
def test_a_cached_tile_buffer_that_is_a_residual_skip_is_counted_once(mode: str, strips: bool):
    """In a stage with cached halos every cached tile buffer is held across the stage; one that is
    also a live residual skip (a block input inside the stage) is held once, not also as the skip:
    the plan's per-op bytes recounted as a set (4x4 tiles with line buffers, or full-width row strips)."""
    from tinypatch.analysis.analytic import op_bytes, residual_skips
    from tinypatch.analysis.regions import split_even
    from tinypatch.planning.memory import line_buffer_bytes
    from tinypatch.planning.plan import Stage
    rng = random.Random(11)
    space = mcunet_space(resolutions=(96,))
    for _ in range(3):
        spec = space.to_spec(space.sample(rng))
        graph, chain = build_net(spec), Chain(spec)
        skips = residual_skips(graph)
        end = next(e for e in chain.legal_ends(0) if any(k < e - 1 for k in skips))  # a skip inside the stage
        shape = graph.tensors[graph.ops[end - 1].outputs[0]].shape
        stage = Stage(0, end, split_even(shape[1], shape[1] if strips else 4), split_even(shape[2], 1 if strips else 4),
                      {k: mode for k in range(end - 1)})
        plan = Plan(graph.name, fingerprint(graph), [stage], include_input=False)
        st = check_plan(graph, plan)[0]
        per_op = plan_analytic(graph, plan, [st]).per_op
        nbytes = {n: t.size for n, t in graph.tensors.items() if not t.is_const}
        nbytes[graph.inputs[0]] = 0
        nbytes.update({t: st.h.max_len(t) * st.buffer_cols(t) * graph.tensors[t].shape[3] for t in st.info.internal})
        cached = {graph.ops[c].outputs[0] for c in range(end) if st.cached(c)}
        lines = sum(line_buffer_bytes(graph, st, c) for c in range(end) if st.cached(c) and st.line_buffer(c))
        assert bool(lines) == (mode == "cache" and not strips)  # line buffers: rows cached on a grid
        counted = 0
        for k in range(end):
            op = graph.ops[k]
            held = set(skips.get(k, ())) | {t for t in st.info.inputs if t not in op.inputs}
            held |= cached - {*op.inputs, *op.outputs} | ({st.info.output} if k < end - 1 else set())
            counted += bool(set(skips.get(k, ())) & cached)
            assert per_op[k] == op_bytes(graph, op, nbytes) + sum(nbytes[t] for t in held) + lines, k
        assert counted  # some op held a cached skip


def _adds(chain):
    """Stage starts at a residual ADD (after a stage ending at the block's projection): its skip was
    made before the stage."""
    return sorted({k for a in chain.legal_ends(0) for k in chain.legal_ends(a)
                   if k < len(chain.ops) and chain.ops[k].kind == "add"})


def _stream_test_specs(rng, count):
    """Random specs (both spaces) with a first stage that streams and a stage start at a residual ADD."""
    out = []
    for _ in range(200):
        space = (mcunet_space(resolutions=(96, 128)), SMALL)[len(out) % 2]
        spec = space.to_spec(space.sample(rng))
        chain = Chain(spec)
        if _adds(chain) and any(chain.streams(0, e) for e in chain.legal_ends(0)[1:]):
            out.append(spec)
        if len(out) == count:
            return out
    raise AssertionError("no such specs")


def test_stream_stage_figures_match_the_planner():
    """Stream stages (row strips, columns streamed through window buffers): which stages may
    stream, and their MACs and analytic peak, from the chain equal the planner's stream stage on
    the built graph; also for a stage after one ending just before a residual ADD (the ADD's skip,
    made before the stage, is held whole), and combined with recompute stages in one plan."""
    from tinypatch.planning.columns import ring_columns
    from tinypatch.planning.optimal import axis_counts
    rng = random.Random(21)
    checked = streamed = after_add = 0
    for spec in _stream_test_specs(rng, 3):
        graph, chain = build_net(spec), Chain(spec)
        base = sum(chain.macs())
        for start in sorted({0, *_adds(chain)[:2], *chain.legal_ends(0)[:3]}):
            for end in chain.legal_ends(start)[:6]:
                try:
                    ring_columns(graph, list(range(start, end)))
                    ok = True
                except PlanError:
                    ok = False
                assert chain.streams(start, end) == ok
                side = chain.side[chain.ops[end - 1].output]
                for p in [2, *(-g for g in axis_counts(side, 4) if ok)]:  # also recompute tiles after an ADD start
                    for inc in (False, True):
                        plan = Plan(graph.name, fingerprint(graph), recompute_stages(graph, [(start, end, p)]),
                                    include_input=inc)
                        tilings = check_plan(graph, plan)
                        assert tilings[0].stream == (p < 0 and end - start > 1)
                        macs, peak = chain.stage(start, end, p, inc)
                        assert base + macs == plan_macs(graph, tilings)[0]
                        assert peak == max(plan_analytic(graph, plan, tilings).per_op[start:end])
                        checked += 1
                        streamed += p < 0 and end - start > 2
                        after_add += chain.ops[start].kind == "add" and end - start > 1
        first = next(e for e in chain.legal_ends(0)[1:] if chain.streams(0, e))
        second = chain.legal_ends(first)[0]
        path = [(0, first, -chain.side[chain.ops[first - 1].output]), (first, second, 2)]
        plan = Plan(graph.name, fingerprint(graph), recompute_stages(graph, path), include_input=False)
        tilings = check_plan(graph, plan)
        figures = [chain.stage(a, b, p, False) for a, b, p in path]
        assert base + sum(m for m, _ in figures) == plan_macs(graph, tilings)[0]
        assert max(*(pk for _, pk in figures), *chain.per_op(False)[second:]) == plan_analytic(graph, plan, tilings).peak
    assert checked > 50 and streamed > 5 and after_add > 2


@pytest.mark.parametrize("stages", [1, 2])
def test_stream_search_matches_the_graph_and_the_exhaustive_enumeration(stages):
    """With stream stages the chain's schedule equals the graph's and the unpruned enumeration's,
    never has more MACs than recompute stages alone, and its plan's figures are the planner's."""
    rng = random.Random(7 + stages)
    limits = {"include_input": False, "stages": stages}
    streams = 0
    for spec in _stream_test_specs(rng, 4):
        graph, chain = build_net(spec), Chain(spec)
        per_op = chain.per_op(False)
        graph_path = True  # evaluate()'s graph path once per net (its schedule is compared at every budget)
        for sram in sorted({max(per_op) // d for d in (2, 3, 5)}):
            fast = chain_schedule(chain, sram, False, 4, stages=stages, stream=True)
            assert fast == mcunetv2_schedule(graph, sram, False, 4, stages=stages, stream=True)
            one = chain_schedule(chain, sram, False, 4)
            full = _exhaustive_stages(chain, sram, None if isinstance(one, int) else one, stages, stream=True)
            assert isinstance(fast, int) == (full is None)
            recompute = chain_schedule(chain, sram, False, 4, stages=stages)
            assert isinstance(recompute, int) or not isinstance(fast, int) and fast[:2] <= recompute[:2]
            if full is None:
                continue
            assert fast[:2] == full[:2]
            streams += any(p < 0 for p in fast[2::2])
            e = evaluate(spec, Constraints(sram, **limits))
            if graph_path:
                assert e == evaluate(spec, Constraints(sram, **limits), fast=False)
                graph_path = False
            assert ("stream" in e.schedule) == any(p < 0 for p in fast[2::2])
            cost = plan_cost(graph, best_plan(spec, e, Constraints(sram, **limits)))
            assert (cost.macs, cost.peak_analytic) == (e.schedule_macs, e.peak) == fast[:2]
            tiles = evaluate(spec, Constraints(sram, stream=False, **limits))  # --no-stream: recomputed tiles only
            assert "stream" not in tiles.schedule and (isinstance(recompute, int) or tiles.peak == recompute[1])
    assert streams >= 2
    with pytest.raises(UsageError, match="stream must be True or False"):
        Constraints(1024, stream="yes")
