"""The search's shortcuts for long graphs (left-out stage starts, persistent layer-by-layer runs)
keep its front exactly, with the MAC objective and with a target's predicted instructions, and a
long chain plans in near-linear time."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import tinypatch.planning.optimal as O
from tinypatch.frontends.synth import Builder
from tinypatch.frontends.zoo import build
from tinypatch.planning.search import search

from strategies import random_cnn


def conv_chain(n: int, residual: bool = False, size: int = 16):
    """``n`` 3x3 convolutions 8 -> 8 on ``size`` x ``size``; with ``residual``, blocks of two and a skip ADD."""
    b = Builder(f"chain{n}", seed=3)
    x = b.input((1, size, size, 8))
    with np.errstate(divide="ignore", invalid="ignore"):  # the synthetic scales underflow deep in the chain
        for i in range(n // 2 if residual else n):
            h = b.conv(x, 8, 3, name=f"c{i}", act="RELU")
            if residual:
                h = b.conv(h, 8, 3, name=f"d{i}")
                h = b.add(x, h, name=f"s{i}", act="RELU")
            x = h
    return b.finish([x])


def _front(g, **kw):
    res = search(g, **kw)
    return res.baseline.peak, [(s.lower_bound, s.macs, s.peak, s.choices, s.plan.to_dict(), s.insns, s.calls)
                               for s in res.front], res.options


def _unpruned(monkeypatch) -> None:
    """Cost every stage start (no proof that one is matched layer by layer is used)."""
    monkeypatch.setattr(O, "_layer_wins", lambda *a: False)
    monkeypatch.setattr(O, "_below_dominated", lambda *a: False)


@pytest.mark.parametrize("make", [lambda: conv_chain(14), lambda: conv_chain(16, residual=True),
                                  lambda: conv_chain(12, residual=True, size=40), lambda: build("mcunet-in0")],
                         ids=["chain", "residual", "residual-40", "mcunet-in0"])
def test_left_out_starts_never_change_the_front(make, monkeypatch):
    g = make()
    for kw in ({}, {"strategy": "recompute"}, {"include_input": False}):
        pruned = _front(g, **kw)
        with monkeypatch.context() as m:
            _unpruned(m)
            full = _front(g, **kw)
        assert pruned[:2] == full[:2], kw
        assert pruned[2] < full[2], kw  # some starts were left out


@pytest.mark.parametrize("make", [lambda: conv_chain(14), lambda: conv_chain(16, residual=True),
                                  lambda: build("mcunet-in0")], ids=["chain", "residual", "mcunet-in0"])
def test_left_out_starts_never_change_the_front_with_a_cost_model(make, monkeypatch):
    """With a target's predicted instructions (either objective, input counted or not) the starts the
    proofs leave out change no schedule, figure or plan of the front; on the plain chain some are left
    out on Cortex-M7 (on Cortex-M55 a stream stage is predicted cheaper than layer by layer: no proof)."""
    g = make()
    for kw in ({"target": "cortex-m7"}, {"target": "cortex-m55", "include_input": False},
               {"target": "cortex-m7", "objective": "macs"}, {"target": "cortex-m7", "strategy": "recompute"}):
        pruned = _front(g, **kw)
        with monkeypatch.context() as m:
            _unpruned(m)
            full = _front(g, **kw)
        assert pruned[:2] == full[:2], kw
        assert pruned[2] <= full[2], kw
        if g.name == "chain14" and kw["target"] == "cortex-m7":  # Cortex-M55's stream kernels are predicted cheaper
            assert pruned[2] < full[2], kw


def test_a_negative_coefficient_turns_the_cost_proofs_off():
    """The proofs bound what a stage may cost less than layer by layer only with coefficients >= 0."""
    from tinypatch.planning.latency import cost_model, op_path

    g, model = conv_chain(4), cost_model("cortex-m7")
    c = O._Costs(g, True, True, 16, model, by_cost=True)
    assert c.deficit_prefix is not None and c.deficit_prefix[-1] == 0  # 16 wide: no left-over pixels
    assert O._layer_wins(c, 2, 0, 1)
    path = model.coef(op_path(g, 0))
    model.paths = {p: {**v, "rows": -1.0} if v is path else v for p, v in model.paths.items()}
    c = O._Costs(g, True, True, 16, model, by_cost=True)
    assert c.deficit_prefix is None and not O._layer_wins(c, 2, 0, 1)


@settings(max_examples=15, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(random_cnn(max_layers=6, head=False))
def test_left_out_starts_never_change_the_front_of_random_cnns(case):
    g = case[0]
    for kw in ({}, {"target": "cortex-m7"}):
        pruned = _front(g, **kw)
        with pytest.MonkeyPatch.context() as m:
            _unpruned(m)
            assert _front(g, **kw)[:2] == pruned[:2], kw


def _reference_dp(c: O._Costs, cuts: list[int], opts) -> list[tuple]:
    """The DP over every segment [a, b), layer-by-layer ones included, found in order (the search's
    DP before persistent runs): same labels, same ties."""
    full = {}
    for ia, a in enumerate(cuts):
        for b in cuts[ia + 1:]:
            stages = [o for o in opts.get((a, b), []) if o.choice.grid is not None]
            full[(a, b)] = [O._segment(c, a, b), *stages]
    labels = {cuts[0]: [O.Option(0, 0, (), 0.0, 0)]}
    for ib, b in enumerate(cuts[1:], 1):
        cand = []
        for a in cuts[:ib]:
            edge = full[(a, b)]
            keep = O._pareto_filter(*O._option_objectives(edge, c.by_cost))
            for lab in labels[a]:
                for k in keep:
                    e = edge[k]
                    cand.append(O.Option(max(lab.lower_bound, e.lower_bound), lab.macs + e.macs,
                                         lab.choice + (e.choice,), lab.cost + e.cost, lab.calls + e.calls))
        labels[b] = [cand[i] for i in O._pareto_filter(*O._option_objectives(cand, c.by_cost))]
    return [(x.lower_bound, x.macs, x.choice) for x in labels[cuts[-1]]]


@pytest.mark.parametrize("name", ["mcunet-in0", "residual"])
@pytest.mark.parametrize("model", [None, "cortex-m7"])
def test_dp_with_persistent_runs_equals_the_dp_over_every_segment(name, model):
    from tinypatch.planning.latency import cost_model

    g = build(name) if name != "residual" else conv_chain(12, residual=True, size=24)
    c = O._Costs(g, True, True, 16, cost_model(model) if model else None, by_cost=model is not None)
    cuts = O.cut_positions(g)
    opts = O._segment_options(c, cuts, 8, O.POLICIES, False)
    assert O._dp(cuts, opts, c) == _reference_dp(c, cuts, opts)


def test_a_long_chain_plans_in_near_linear_time():
    """300 convolutions: every stage end is settled without costing tilings from every earlier start
    (the search took over a minute on a 200-op chain before)."""
    g = conv_chain(300)
    calls = 0
    table = O._axis_table

    def counted(*a):
        nonlocal calls
        calls += 1
        return table(*a)

    t = time.perf_counter()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(O, "_axis_table", counted)
        res = search(g)
    assert time.perf_counter() - t < 30
    assert calls <= len(g.ops)  # at most one window of starts per stage end
    assert [s.label for s in res.front] == ["layer-by-layer"] and res.front[0].peak == res.baseline.peak


def test_a_long_chain_plans_in_near_linear_time_with_a_cost_model():
    """The same with a target's predicted instructions as the objective (before: every end costed
    every earlier start, 31 s for a 400-op chain)."""
    g = conv_chain(300)
    starts = 0
    table = O._axis_table

    def counted(c, st, *a):
        nonlocal starts
        starts += len(st.starts)
        return table(c, st, *a)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(O, "_axis_table", counted)
        res = search(g, target="cortex-m7")
    assert starts <= 4 * len(g.ops)  # stage starts tiled: a short window per end (every earlier start: 45,150)
    assert [s.label for s in res.front] == ["layer-by-layer"]
