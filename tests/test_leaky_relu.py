"""LEAKY_RELU, added through the operator table (docs/adding-an-operator.md): its region, in-place
rule and stage legality come from the table; the plan executor and the generated C (a table
lookup) are exact inside patch and stream stages and in place. Its numpy kernel is checked against
LiteRT in tests/test_kernels_litert_ops.py."""

from __future__ import annotations

import numpy as np
import pytest
from test_codegen import assert_outputs_equal, needs_cc
from test_inplace import all_inplace
from test_stream import stream_stage
from strategies import CnnBuilder

from tinypatch.analysis.inplace_shift import InPlace, inplace_candidates
from tinypatch.analysis.regions import axis_maps, split_even
from tinypatch.codegen import generate
from tinypatch.codegen.toolchain import make, run_host
from tinypatch.ir import Graph
from tinypatch.planning.plan import Plan, Stage, fingerprint
from tinypatch.planning.tiles import legal_ends
from tinypatch.runtime.executor import run
from tinypatch.runtime.plan_executor import PlanExecutor

LEAKY = 1  # op index of the LEAKY_RELU


def _graph(alpha: float = 0.1, seed: int = 3) -> tuple[Graph, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = CnnBuilder(rng, (1, 12, 10, 3), "leaky")
    b.conv(6, 3, 3, (1, 1), (1, 1), "SAME")
    b._emit("LEAKY_RELU", [b.cur], b.shape(), b._fresh_quant(b._real_std(b.cur)), 40.0, alpha=alpha)
    b.depthwise(1, 3, 3, (2, 2), (1, 1), "SAME")
    b.conv(4, 1, 1, (1, 1), (1, 1), "VALID")
    g = b.finish()
    x = rng.integers(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)
    return g, x


def _plans(g: Graph) -> list[Plan]:
    h, w = g.tensors[g.ops[3].outputs[0]].shape[1:3]
    rows, cols = split_even(h, 3), split_even(w, 2)
    plans = [Plan(g.name, fingerprint(g), [Stage(0, 4, rows, cols, {k: mode for k in range(3)})])
             for mode in ("recompute", "cache_w", "cache")]
    plans.append(Plan(g.name, fingerprint(g), [stream_stage(g, 0, 4, rows)]))
    plans.append(all_inplace(g, Plan.layer_by_layer(g)))
    return plans


def test_traits_come_from_the_table():
    g, _ = _graph()
    mh, mw = axis_maps(g, g.ops[LEAKY])
    assert mh.kind == mw.kind == "identity"
    assert inplace_candidates(g, LEAKY) == [InPlace(g.ops[LEAKY].inputs[0], 0)]
    assert 4 in legal_ends(g, 0)  # a stage may run through it
    assert LEAKY in all_inplace(g, Plan.layer_by_layer(g)).inplace


@pytest.mark.parametrize("alpha", [0.1, 0.0, 1.5])
def test_plans_through_leaky_relu_are_exact(alpha):
    g, x = _graph(alpha)
    want = run(g, [x])[g.outputs[0]]
    for p in _plans(g):
        got = PlanExecutor(g, p)([x]).outputs[g.outputs[0]]
        assert got.tobytes() == want.tobytes(), p.to_dict()


@needs_cc
def test_generated_c_is_exact(tmp_path):
    g, x = _graph()
    for n, p in enumerate(_plans(g)):
        out = tmp_path / f"p{n}"
        generate(g, p, out, inplace=False)
        make(out, "host-check")
        assert_outputs_equal(g, run_host(out, g, [x], "model_host_check"), [x])
