"""Issue 10's operators inside patch stages and in whole random CNNs.

* Random int8 CNNs mixing RESIZE_BILINEAR, TRANSPOSE_CONV, MAXIMUM/MINIMUM, SQUARED_DIFFERENCE,
  PRELU and channel SLICE/STRIDED_SLICE with convs: every tensor equals LiteRT (BUILTIN_REF).
* The same CNNs under patch plans (one or two stages, random grids and halo modes) with a
  new operator inside a stage: byte-identical to whole-image inference, measured arena
  high-water mark == planned peak == ``plan_cost``.
* The bilinear and transpose-conv axis maps against brute force: the span of an output
  interval is exactly the hull of the input positions the kernel reads for it.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from litert_ref import assert_matches_litert
from strategies import LAYER_KINDS, NEW_KINDS, assert_same_graph, random_cnn
from test_patch_properties import assert_runs_exactly, legal_stages, stage
from test_stream import assert_stream_exact, stream_case

from tinypatch.analysis.regions import AxisMap
from tinypatch.backends import write_tflite
from tinypatch.frontends.tflite import parse_tflite
from tinypatch.ir import Graph
from tinypatch.ir.ops import pad_before
from tinypatch.kernels.resize import bilinear_axis
from tinypatch.planning.plan import Plan, Stage, fingerprint

SETTINGS = settings(deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])
KINDS = NEW_KINDS + ("conv", "depthwise", "max_pool")
NEW_TYPES = ("RESIZE_BILINEAR", "TRANSPOSE_CONV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "PRELU", "SLICE",
             "STRIDED_SLICE")


@settings(SETTINGS, max_examples=40)
@given(random_cnn(max_layers=5, kinds=KINDS))
def test_random_cnns_with_new_ops_match_litert(case):
    graph, x = case
    content = write_tflite(graph)
    assert_same_graph(graph, parse_tflite(content, name=graph.name))
    assert_matches_litert(graph, content, x)


@st.composite
def new_op_plan(draw: st.DrawFn) -> tuple[Graph, np.ndarray, Plan]:
    """A random CNN with new operators and a plan of one or two stages, one holding a new op."""
    graph, x = draw(random_cnn(max_layers=5, kinds=draw(st.sampled_from([KINDS, LAYER_KINDS + NEW_KINDS]))))
    stages: list[Stage] = []
    first = 0
    for _ in range(draw(st.integers(1, 2))):
        options = legal_stages(graph, first)
        if not options:
            break
        start, end = draw(st.sampled_from(options))
        stages.append(draw(stage(graph, start, end)))
        first = end
    assume(any(graph.ops[k].type in NEW_TYPES for s in stages for k in range(s.start, s.end)))
    return graph, x, Plan(graph.name, fingerprint(graph), stages, draw(st.booleans()))


@settings(SETTINGS, max_examples=300)
@given(new_op_plan())
def test_new_ops_inside_stages_are_exact_at_the_planned_peak(case):
    assert_runs_exactly(*case)


# the new ops that can stream (same-size point-wise / channel ranges), between convolutions
STREAM_KINDS = ("maximum", "minimum", "squared_difference", "prelu", "channel_slice", "conv", "depthwise")


@settings(SETTINGS, max_examples=100)
@given(stream_case(kinds=STREAM_KINDS))
def test_new_pointwise_ops_in_stream_stages_are_exact(case):
    graph, x, plan = case
    assert_stream_exact(graph, plan, [x])


@st.composite
def table_map(draw: st.DrawFn) -> tuple[AxisMap, set[int], tuple[int, int]]:
    """A nearest, bilinear or transpose-conv axis map, an output interval and the inputs it reads, by brute force."""
    in_size = draw(st.integers(1, 30))
    kind = draw(st.sampled_from(["bilinear", "nearest", "transpose"]))
    if kind == "nearest":
        out_size = draw(st.integers(1, 60))
        ac, hp = draw(st.sampled_from([(False, False), (True, False), (False, True)]))
        m = AxisMap("nearest", in_size, out_size, align_corners=ac, half_pixel_centers=hp)
        reads = [{int(i)} for i in m.source_index(np.arange(out_size))]
    elif kind == "bilinear":
        out_size = draw(st.integers(1, 60))
        ac, hp = draw(st.sampled_from([(False, False), (True, False), (False, True)]))
        m = AxisMap("bilinear", in_size, out_size, align_corners=ac, half_pixel_centers=hp)
        lower, upper, _ = bilinear_axis(out_size, in_size, ac, hp)
        reads = [{int(lower[o]), int(upper[o])} for o in range(out_size)]
    else:
        k, s = draw(st.integers(1, 5)), draw(st.integers(1, 3))
        padding = draw(st.sampled_from(["SAME", "VALID"]))
        out_size = in_size * s if padding == "SAME" else (in_size - 1) * s + k
        pad = pad_before(out_size, k, s, 1, padding)
        m = AxisMap("transpose", in_size, out_size, k, s, pad=pad)
        reads = [{i for i in range(in_size) for t in range(k) if i * s - pad + t == o} for o in range(out_size)]
    a = draw(st.integers(0, out_size - 1))
    b = draw(st.integers(a + 1, out_size))
    return m, set().union(*reads[a:b]), (a, b)


@settings(SETTINGS, max_examples=400)
@given(table_map())
def test_table_map_spans_are_the_hull_of_what_the_kernel_reads(case):
    m, reads, out = case
    (lo, hi), before, after = m.input_span(out)
    assert (before, after) == (0, 0)
    s, e = m.table_span(np.array([out[0]]), np.array([out[1]]))  # the search's vectorised spans agree
    assert (lo, hi) == (int(s[0]), int(e[0]))
    if reads:
        assert (lo, hi) == (min(reads), max(reads) + 1)
    else:
        assert lo >= hi
