"""Patch-based execution of random CNNs: exact, with the planned arena, over every schedule kind.

Hypothesis draws a random int8 CNN (``strategies.random_cnn``), one or two patch stages at
legal cuts, a tile grid per stage (near-even up to 8x8 and the search's 4-, 2- and 1-long
strips, or random uneven cut lists), a halo mode per operator and whether the input is
counted; a second test draws residual CNNs whose stage caches every halo. The plan must run
byte-identical to whole-image inference with a measured arena high-water mark equal to the
planned peak. The geometry is checked on its own against brute force: ``input_span`` and the
per-tile spans of :func:`tinypatch.planning.tiles.tile_axis`, element by element.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import random_cnn

from tinypatch.analysis.regions import AxisMap, split_even
from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.ir.ops import out_size, pad_before
from tinypatch.planning.cost import plan_cost
from tinypatch.planning.optimal import axis_counts
from tinypatch.planning.plan import HALO_MODES, Plan, Stage, fingerprint
from tinypatch.planning.tiles import input_maps, legal_ends, stage_info, tile_axis
from tinypatch.runtime.executor import run
from tinypatch.runtime.plan_executor import PlanExecutor

SETTINGS = settings(max_examples=600, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])
RESIDUAL_KINDS = ("conv", "depthwise", "residual_add")  # where halo caches are hardest to keep


# --- strategies --------------------------------------------------------------------------
@st.composite
def cuts(draw: st.DrawFn, size: int) -> list[int]:
    """Tile cut points over ``size``: near-even tiles as the search tries them (1..8 tiles,
    or strips 4, 2 and 1 long), or a random uneven list."""
    n = draw(st.sampled_from(axis_counts(size, 8)))
    if draw(st.booleans()):
        return split_even(size, n)
    n = min(n, 8)
    inner = draw(st.lists(st.integers(1, size - 1), min_size=n - 1, max_size=n - 1, unique=True)) if size > 1 else []
    return [0, *sorted(inner), size]


def tiled_shape(graph: Graph, start: int, end: int) -> tuple[int, ...]:
    """Shape of the map the tiles cut: the stage output, or the input of a closing global average."""
    return graph.tensors[stage_info(graph, start, end).tiled].shape


@st.composite
def stage(draw: st.DrawFn, graph: Graph, start: int, end: int) -> Stage:
    shape = tiled_shape(graph, start, end)
    halo = {k: draw(st.sampled_from(HALO_MODES)) for k in range(start, end)}
    return Stage(start, end, draw(cuts(shape[1])), draw(cuts(shape[2])), halo)


def legal_stages(graph: Graph, first: int) -> list[tuple[int, int]]:
    return [(s, e) for s in range(first, len(graph.ops)) for e in legal_ends(graph, s)]


@st.composite
def patch_case(draw: st.DrawFn) -> tuple[Graph, np.ndarray, Plan]:
    """A random CNN, its input, and a plan of one or two stages at random legal cuts."""
    graph, x = draw(random_cnn(max_layers=5))
    stages: list[Stage] = []
    first = 0
    for _ in range(draw(st.integers(1, 2))):
        options = legal_stages(graph, first)
        if not options:
            break
        start, end = draw(st.sampled_from(options))
        stages.append(draw(stage(graph, start, end)))
        first = end
    assume(stages)
    return graph, x, Plan(graph.name, fingerprint(graph), stages, draw(st.booleans()))


# --- execution -------------------------------------------------------------------------
def assert_runs_exactly(graph: Graph, x: np.ndarray, plan: Plan) -> None:
    result = PlanExecutor(graph, plan)(x)
    expected = run(graph, x)
    for name, want in expected.items():
        got = result.outputs[name]
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), f"{name} differs under {plan.to_json()}"
    assert result.arena_high_water == result.arena_size
    assert plan_cost(graph, plan).peak == result.arena_size


@SETTINGS
@given(patch_case())
def test_patch_execution_is_exact_and_measured_peak_is_planned(case):
    assert_runs_exactly(*case)


@st.composite
def cached_case(draw: st.DrawFn) -> tuple[Graph, np.ndarray, Plan]:
    """Residual CNNs with one stage whose ops all keep their halos: where caches are hardest
    (a residual read by a cached op and by the ADD, one-wide tiles, reuse-only tiles)."""
    graph, x = draw(random_cnn(max_layers=4, kinds=RESIDUAL_KINDS, head=False))
    start, end = draw(st.sampled_from(legal_stages(graph, 0)))
    mode = draw(st.sampled_from(["cache_w", "cache"]))
    shape = tiled_shape(graph, start, end)
    stage_ = Stage(start, end, draw(cuts(shape[1])), draw(cuts(shape[2])), {k: mode for k in range(start, end)})
    return graph, x, Plan(graph.name, fingerprint(graph), [stage_], draw(st.booleans()))


@settings(SETTINGS, max_examples=600)
@given(cached_case())
def test_cached_stages_are_exact_and_measured_peak_is_planned(case):
    assert_runs_exactly(*case)


# --- geometry against brute force ----------------------------------------------------------
def brute_reads(m: AxisMap, out: set[int]) -> set[int]:
    """Input positions the outputs ``out`` read, element by element (in-range ones only)."""
    if m.kind == "identity":
        return {0} if m.in_size == 1 and out else set(out)
    if m.kind == "nearest":
        return {int(v) for v in m.source_index(np.array(sorted(out), np.int64))} if out else set()
    taps = (o * m.stride - m.pad + k * m.dilation for o in out for k in range(m.kernel))
    return {p for p in taps if 0 <= p < m.in_size}


@st.composite
def window_map(draw: st.DrawFn) -> tuple[AxisMap, tuple[int, int]]:
    size = draw(st.integers(1, 40))
    kernel, stride, dilation = draw(st.integers(1, 7)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    assume(padding == "SAME" or (kernel - 1) * dilation + 1 <= size)
    n_out = out_size(size, kernel, stride, dilation, padding)
    m = AxisMap("window", size, n_out, kernel, stride, dilation, pad_before(size, kernel, stride, dilation, padding))
    a = draw(st.integers(0, n_out - 1))
    return m, (a, draw(st.integers(a + 1, n_out)))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(window_map())
def test_input_span_holds_the_taps_inside_the_window_and_pads_only_at_borders(case):
    m, (a, b) = case
    (lo, hi), before, after = m.input_span((a, b))
    first = a * m.stride - m.pad  # where whole-image inference puts the first window
    window = (b - a - 1) * m.stride + m.extent  # what the kernel slides over, padding included
    taps = brute_reads(m, set(range(a, b)))
    assert taps <= set(range(lo, hi))
    assert max(first, 0) <= lo <= hi <= min(first + window, m.in_size) or lo == hi
    assert before + (hi - lo) + after == window
    if hi > lo:
        assert lo - before == first
    assert before == 0 or lo == 0 or lo == hi
    assert after == 0 or hi == m.in_size or lo == hi
    assert m.input_span((a, a)) == ((0, 0), 0, 0)


@st.composite
def axis_case(draw: st.DrawFn) -> tuple[Graph, tuple[int, int], int, list[int], frozenset[int]]:
    graph, _ = draw(st.one_of(random_cnn(max_layers=5, head=False),
                              random_cnn(max_layers=4, kinds=RESIDUAL_KINDS, head=False)))
    start, end = draw(st.sampled_from(legal_stages(graph, 0)))
    axis = draw(st.integers(0, 1))
    info = stage_info(graph, start, end)
    size = graph.tensors[info.tiled].shape[1 + axis]
    body = info.tile_ops[:-1]  # the op writing the tiled map never keeps a halo
    cached = frozenset(body) if draw(st.booleans()) else frozenset(k for k in body if draw(st.booleans()))
    return graph, (start, end), axis, draw(cuts(size)), cached


@SETTINGS
@given(axis_case())
def test_tile_spans_cover_exactly_what_is_needed(case):
    """Per tile: what each op must hold (its consumers' reads for their computed outputs)
    lies in its region and was computed by this tile or an earlier one; recomputed ops
    compute exactly the hull of it, cached ops never compute a position twice and reuse only
    what their buffer kept; reads hold every tap (brute force); pads only at true borders;
    the tiled map (stage output, or a closing global average's input) is tiled exactly."""
    graph, (start, end), axis, cut, cached = case
    info = stage_info(graph, start, end)
    try:
        til = tile_axis(graph, info, axis, cut, cached)
    except PlanError as exc:  # only a cache that cannot keep its halo may be refused
        assert cached and "cannot cache" in str(exc), exc
        return
    maps = input_maps(graph, info.tile_ops, axis)
    computed: dict[int, set[int]] = {k: set() for k in info.tile_ops}
    valid: dict[int, set[int]] = {}  # cached op -> positions its buffer holds computed values of
    for t, (a, b) in enumerate(zip(cut[:-1], cut[1:])):
        required: dict[str, set[int]] = {info.tiled: set(range(a, b))}
        for k in reversed(info.tile_ops):
            op, span = graph.ops[k], til.spans[t][k]
            want, out = required.get(op.outputs[0], set()), set(range(*span.out))
            assert out <= set(range(*span.need)) and want <= set(range(*span.need)), f"op {k}, tile {t}"
            if k in cached:
                assert not out & computed[k], f"op {k}, tile {t}: recomputes {sorted(out & computed[k])}"
                reused = want - out
                assert reused <= valid.get(k, set()), f"op {k}, tile {t}: {sorted(reused)} not kept"
                if span.need[0] < span.need[1]:  # the buffer slides to the new region, then computes out
                    valid[k] = (set(range(*span.need)) & valid.get(k, set())) | out
            else:
                assert out == hull_set(want), f"op {k}, tile {t}: computes {span.out}, needs {sorted(want)}"
            computed[k] |= out
            assert want <= computed[k], f"op {k}, tile {t}: {sorted(want - computed[k])} never computed"
            for name, m, read in zip(op.inputs, maps[k], span.reads):
                if m is not None:
                    assert brute_reads(m, out) <= set(range(*read)), f"op {k}, tile {t}: reads {read}"
                    assert m.input_span(span.out)[0] == read
                    required.setdefault(name, set()).update(range(*read))
            (lo, hi), size = span.reads[0] or (0, 0), graph.tensors[op.inputs[0]].shape[1 + axis]
            assert span.pads[0] == 0 or lo == 0 or lo == hi, f"op {k}, tile {t}: pads inside the map"
            assert span.pads[1] == 0 or hi == size or lo == hi, f"op {k}, tile {t}: pads inside the map"
    last = info.tile_ops[-1]
    assert [til.spans[t][last].out for t in range(len(cut) - 1)] == list(zip(cut[:-1], cut[1:]))


def hull_set(positions: set[int]) -> set[int]:
    """Every position from the least to the greatest of ``positions``."""
    return set(range(min(positions), max(positions) + 1)) if positions else set()
