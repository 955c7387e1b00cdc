"""Patch-based execution of real models: byte-identical to whole-image inference, arena as planned.

Every shared ``.tflite`` model with spatial layers runs under patch plans over several split
points (the shallowest and deepest legal stage ends and two in between), near-even and
hand-made uneven tile grids, each halo mode on every stage op and a seeded per-op mix, with
the input counted and not. For each plan: (a) the outputs equal
``tinypatch.runtime.executor.run`` byte for byte, (b) the measured arena high-water mark
equals the arena size the planner chose, (c) ``plan_cost`` reports that same peak.

Then MCUNetV2's MobileNetV2-1.0-224 figures (issue 3), and hand-made regression cases for
bugs the property tests found.
"""

from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
import pytest
from conftest import MODELS, model_path
from strategies import CnnBuilder

from tinypatch.analysis.analytic import analytic_memory
from tinypatch.analysis.regions import split_even
from tinypatch.frontends import zoo
from tinypatch.frontends.tflite import load_tflite
from tinypatch.ir import Graph
from tinypatch.planning.cost import plan_cost
from tinypatch.planning.plan import HALO_MODES, Plan, Stage, fingerprint
from tinypatch.planning.search import search
from tinypatch.planning.tiles import first_local_op, legal_ends, stage_info
from tinypatch.runtime.executor import run
from tinypatch.runtime.inputs import random_input
from tinypatch.runtime.plan_executor import PlanExecutor

BIG = "mcunetv2_large.tflite"  # 2.3 MB, 224x224: only a couple of plans
MODES = (*HALO_MODES, "mix")
DEPTHS = ("shallowest", "third", "two-thirds", "deepest")


@lru_cache(maxsize=None)
def model(name: str) -> tuple[Graph, list[np.ndarray], dict[str, np.ndarray]]:
    """The graph, a seeded random input and the whole-image outputs (once per worker)."""
    g = load_tflite(model_path(name))
    x = [random_input(g.tensors[t], seed=1) for t in g.inputs]
    return g, x, run(g, x)


def pick_end(graph: Graph, depth: str) -> tuple[int, int]:
    start = first_local_op(graph)
    assert start is not None
    ends = legal_ends(graph, start)
    index = {"shallowest": 0, "third": len(ends) // 3, "two-thirds": 2 * len(ends) // 3, "deepest": -1}[depth]
    return start, ends[index]


def tiled_shape(graph: Graph, start: int, end: int) -> tuple[int, ...]:
    """Shape of the map the tiles cut: the stage output, or the input of a closing global average."""
    return graph.tensors[stage_info(graph, start, end).tiled].shape


def cut_list(size: int, inner: list[int]) -> list[int]:
    """Cut points 0, ``inner`` (those inside the map) and ``size``: uneven tiles by hand."""
    return sorted({0, size, *(c for c in inner if 0 < c < size)})


def grids(h: int, w: int) -> list[tuple[list[int], list[int]]]:
    """3x5, 7x2 and 8x8 near-even grids, and an uneven one like rows [0, 1, 5, h]."""
    even = [(split_even(h, nh), split_even(w, nw)) for nh, nw in ((3, 5), (7, 2), (8, 8))]
    return [*even, (cut_list(h, [1, 5]), cut_list(w, [w // 2 + 1, w - 1]))]


def halo(mode: str, start: int, end: int, seed: int) -> dict[int, str]:
    if mode != "mix":
        return {k: mode for k in range(start, end)}
    rng = random.Random(seed)
    return {k: rng.choice(HALO_MODES) for k in range(start, end)}


def assert_exact(graph: Graph, x: list[np.ndarray], expected: dict[str, np.ndarray], plan: Plan) -> None:
    """(a) byte-identical outputs, (b) measured high-water == arena size, (c) == plan_cost's peak."""
    result = PlanExecutor(graph, plan)(x)
    for name, want in expected.items():
        got = result.outputs[name]
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), f"{name} differs: {plan.to_json(None)}"
    assert result.arena_high_water == result.arena_size, plan.to_json(None)
    cost = plan_cost(graph, plan)
    assert cost.peak == result.arena_size, plan.to_json(None)
    assert (cost.peak_with_input if plan.include_input else cost.peak_without_input) == cost.peak


SPATIAL = [p.name for p in MODELS if p.name not in ("hello_world_int8.tflite", BIG)]


def test_hello_world_has_no_patch_stage():
    g = load_tflite(model_path("hello_world_int8.tflite"))
    assert first_local_op(g) is None  # nothing to tile: the reason it is left out below


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("name", SPATIAL)
def test_shared_model_patch_plans_are_exact(name: str, depth: str):
    g, x, expected = model(name)
    start, end = pick_end(g, depth)
    out = tiled_shape(g, start, end)
    for i, (rows, cols) in enumerate(grids(out[1], out[2])):
        for j, mode in enumerate(MODES):  # every mode meets both input accountings across the grids
            stage = Stage(start, end, rows, cols, halo(mode, start, end, seed=i))
            assert_exact(g, x, expected, Plan(g.name, fingerprint(g), [stage], include_input=(i + j) % 2 == 0))


@pytest.mark.parametrize("depth,grid,mode,include_input", [
    ("deepest", (4, 4), "recompute", False),
    ("third", "uneven", "mix", True),
])
def test_mcunetv2_large_patch_plans_are_exact(depth: str, grid, mode: str, include_input: bool):
    g, x, expected = model(BIG)
    start, end = pick_end(g, depth)
    out = tiled_shape(g, start, end)
    rows, cols = grids(out[1], out[2])[-1] if grid == "uneven" else (split_even(out[1], grid[0]),
                                                                      split_even(out[2], grid[1]))
    plan = Plan(g.name, fingerprint(g), [Stage(start, end, rows, cols, halo(mode, start, end, 0))], include_input)
    assert_exact(g, x, expected, plan)


def test_two_stages_on_a_shared_model_are_exact():
    """Two patch stages, each with its own grid and halo mode, with a layer-by-layer gap."""
    g, x, expected = model("mlperf_vww_96_int8.tflite")
    ends = legal_ends(g, 0)
    first = ends[len(ends) // 4]
    second = next(s for s in range(first + 1, len(g.ops)) if legal_ends(g, s))
    last = legal_ends(g, second)[-1]
    out1, out2 = tiled_shape(g, 0, first), tiled_shape(g, second, last)
    stages = [Stage(0, first, split_even(out1[1], 5), split_even(out1[2], 3), halo("cache", 0, first, 0)),
              Stage(second, last, split_even(out2[1], 2), cut_list(out2[2], [1]), halo("mix", second, last, 1))]
    for include_input in (False, True):
        assert_exact(g, x, expected, Plan(g.name, fingerprint(g), stages, include_input))


@pytest.mark.parametrize("include_input", [False, True])
@pytest.mark.parametrize("name", SPATIAL)
def test_searched_plans_are_exact(name: str, include_input: bool):
    """The schedules the search reports (least peak within +10% and +20% MACs, least peak
    overall: what benchmarks/patch.py prints) run exactly, in the arena peak it reported."""
    g, x, expected = model(name)
    res = search(g, include_input=include_input)
    chosen = {id(s): s for s in (res.best_under_overhead(0.1), res.best_under_overhead(0.2),
                                 min(res.front, key=lambda s: (s.peak, s.macs)))}
    for s in chosen.values():
        assert_exact(g, x, expected, s.plan)
        assert plan_cost(g, s.plan).peak == s.peak


# --- MCUNetV2's MobileNetV2 figures (issue 3) -------------------------------------------------
@pytest.fixture(scope="module")
def mbv2() -> Graph:
    return zoo.build("mbv2-w1.0-r224")


def mbv2_plan(g: Graph, include_input: bool) -> Plan:
    """Stem + 4 inverted-residual blocks (ops [0, 13), stage output 28x28x32), 4x4 patches."""
    blocks = dict(g.meta["blocks"])
    stage_ops = [i for b in ("stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3") for i in blocks[b]]
    assert stage_ops == list(range(13))
    assert g.tensors[g.ops[12].outputs[0]].shape == (1, 28, 28, 32)
    return Plan(g.name, fingerprint(g), [Stage(0, 13, split_even(28, 4), split_even(28, 4))], include_input)


def test_mobilenetv2_layer_by_layer_analytic_peak(mbv2: Graph):
    assert analytic_memory(mbv2).peak == 1_404_928


def test_mobilenetv2_4x4_patches_macs_and_analytic_peak(mbv2: Graph):
    cost = plan_cost(mbv2, mbv2_plan(mbv2, include_input=False))
    assert round(cost.base_macs / 1e6, 2) == 300.77
    assert 0.08 <= cost.mac_overhead <= 0.12  # MCUNetV2: 301M -> 330M, about +10%
    assert 325e6 <= cost.macs <= 335e6
    # MCUNetV2 convention (input image not counted): the stage is no longer the peak; block 5's
    # expand conv is, its 28x28x32 input plus 28x28x192 output: about 172 kB (paper: 1372 -> 172 kB)
    expand = mbv2.ops[cost.peak_analytic_op]
    assert mbv2.meta["roles"][expand.name] == "expand"
    assert cost.peak_analytic_op in dict(mbv2.meta["blocks"])["blocks.4"]
    assert cost.peak_analytic == mbv2.tensors[expand.inputs[0]].size + mbv2.tensors[expand.outputs[0]].size
    assert cost.peak_analytic == 175_616 and round(cost.peak_analytic / 1024) == 172
    assert round(analytic_memory(mbv2).peak / cost.peak_analytic) == 8  # the paper: 8x


def test_mobilenetv2_4x4_patches_run_exactly(mbv2: Graph):
    x = random_input(mbv2.tensors[mbv2.inputs[0]], seed=2)
    assert_exact(mbv2, [x], run(mbv2, x), mbv2_plan(mbv2, include_input=False))


# --- regressions (each failed before the fix that names it) --------------------------------------
def run_case(builder: CnnBuilder, stage: Stage, include_input: bool = False) -> None:
    g = builder.finish()
    x = builder.rng.integers(-128, 128, g.tensors[g.inputs[0]].shape, dtype=np.int8)
    assert_exact(g, [x], run(g, x), Plan(g.name, fingerprint(g), [stage], include_input))


def test_tile_inside_a_pad_border_after_a_resize():
    """A tile reading only PAD's border needs an empty interval of the resize output; an empty
    interval once read like a one-element window (regions.AxisMap.input_span) and indexed past
    the resize's source table."""
    b = CnnBuilder(np.random.default_rng(0), (1, 5, 7, 1))
    b.resize(3, 4, False, False)
    b.pad(0, 0, 0, 1)
    run_case(b, Stage(0, 2, [0, 3], [0, 2, 4, 5]))


def test_line_buffer_rolls_through_a_tile_row_that_computes_nothing():
    """Cached rows must still move to the line buffer when a tile row computes none of the
    op's output (an even 4x1 SAME kernel makes the last two tile rows reuse only)."""
    b = CnnBuilder(np.random.default_rng(1), (1, 5, 7, 1))
    b.conv(1, 1, 1, (1, 1), (1, 1), "SAME")
    b.conv(1, 4, 1, (1, 1), (1, 1), "SAME")
    run_case(b, Stage(0, 2, [0, 2, 3, 4, 5], [0, 4, 7], {0: "cache"}))


@pytest.mark.parametrize("mode", ["cache_w", "cache"])
def test_cached_residual_keeps_outputs_computed_ahead(mode: str):
    """A residual read by a cached 1x1 conv (whose 7x7 depthwise consumer needs it all at the
    first tile) and by the ADD (one column per tile): the residual's buffer must keep the
    columns computed ahead, not shrink to what the ADD needs now (found on mcunet_vww)."""
    b = CnnBuilder(np.random.default_rng(7), (1, 5, 5, 3))
    skip = b.conv(4, 1, 1, (1, 1), (1, 1), "SAME")
    b.conv(6, 1, 1, (1, 1), (1, 1), "SAME", "RELU6")
    b.depthwise(1, 7, 7, (1, 1), (1, 1), "SAME", "RELU6")
    b.conv(4, 1, 1, (1, 1), (1, 1), "SAME")
    b.add(skip)
    run_case(b, Stage(0, 5, [0, 5], split_even(5, 5), {k: mode for k in range(5)}), include_input=True)


def test_plan_executor_takes_one_array_like_run():
    g, x, expected = model("person_detect.tflite")
    plan = Plan(g.name, fingerprint(g), [Stage(0, 3, [0, 20, 48], [0, 48])], True)
    outs = PlanExecutor(g, plan)(x[0]).outputs
    assert all(outs[k].tobytes() == v.tobytes() for k, v in expected.items())
