"""NCHW inputs and outputs (PyTorch exports): a leading TRANSPOSE to NHWC runs inside the first
patch stage, each tile reading its window of the NCHW input directly, and a trailing TRANSPOSE of
an NHWC map to an NCHW graph output inside the last one, each tile writing its window of the NCHW
output directly, so the model plans like its NHWC twin.

The twin nets share weights (same builder seed and layer names); LiteRT checks the NCHW one
tensor by tensor; every front plan runs exactly at its planned peak in Python, and plans with
each halo policy run exactly in C under ASan/UBSan.
"""

from __future__ import annotations

import pytest
from litert_ref import assert_matches_litert
from test_codegen import assert_outputs_equal, needs_cc

from tinypatch.analysis.regions import axis_maps, nhwc_shape, reads_nchw, writes_nchw
from tinypatch.backends import write_tflite
from tinypatch.codegen import generate
from tinypatch.codegen.toolchain import make, run_host
from tinypatch.frontends.synth import Builder
from tinypatch.ir import Graph
from tinypatch.planning.plan import Plan, Stage
from tinypatch.planning.search import search
from tinypatch.planning.columns import column_maps
from tinypatch.runtime.executor import run
from tinypatch.runtime.inputs import random_input
from tinypatch.runtime.plan_executor import PlanExecutor


def twin(nchw: bool, h: int = 40, w: int = 48) -> Graph:
    """A small inverted-residual net; ``nchw``: its input is NCHW, transposed to NHWC first."""
    b = Builder("twin", seed=3)
    if nchw:
        x = b.transpose(b.input((1, 3, h, w)), (0, 2, 3, 1), name="to_nhwc")
    else:
        x = b.input((1, h, w, 3))
    x = b.conv(x, 16, 3, 2, name="c0")
    y = b.conv(x, 32, 1, 1, name="e1")
    y = b.depthwise(y, 3, 1, name="d1")
    x = b.add(b.conv(y, 16, 1, 1, name="p1", act="NONE"), x, name="a1")
    x = b.depthwise(b.conv(x, 48, 1, 1, name="e2"), 3, 2, name="d2")
    x = b.conv(x, 24, 1, 1, name="p2", act="NONE")
    return b.finish([b.mean(x, name="gap")])


def test_only_a_leading_nchw_transpose_is_local():
    g = twin(True)
    assert reads_nchw(g, g.ops[0]) and axis_maps(g, g.ops[0]) is not None
    assert column_maps(g, 0) is None  # no stream stage through it
    assert not any(reads_nchw(g, op) for op in g.ops[1:])


def test_nchw_model_matches_litert_tensor_by_tensor():
    g = twin(True)
    content = write_tflite(g)
    x = random_input(g.tensors[g.inputs[0]], 4)
    assert_matches_litert(g, content, x)


def _front_runs_exactly(g, include_input: bool):  # noqa: ANN001, ANN202
    """The search's front for ``g``, every plan run byte-identically at measured == planned peak."""
    res = search(g, include_input=include_input)
    x = [random_input(g.tensors[g.inputs[0]], 1)]
    ref = run(g, x)
    for s in res.front:
        out = PlanExecutor(g, s.plan)(x)
        assert out.arena_high_water == out.arena_size == s.peak, s.label
        assert all(out.outputs[n].tobytes() == ref[n].tobytes() for n in g.outputs), s.label
    return res


@pytest.mark.parametrize("include_input", [True, False])
def test_nchw_model_reaches_its_nhwc_twins_least_peak(include_input):
    least = {}
    for nchw in (False, True):
        g = twin(nchw)
        res = _front_runs_exactly(g, include_input)
        least[nchw] = min(s.peak for s in res.front)
    image = g.tensors[g.inputs[0]].nbytes
    assert least[True] <= least[False] + image, least
    if include_input:  # below the old floor: the whole input plus its transposed copy
        assert least[True] < 2 * image, least


@needs_cc
@pytest.mark.parametrize("halo", ["recompute", "cache_w", "cache"])
def test_generated_c_reads_the_nchw_input_tile_by_tile(halo, tmp_path):
    g = twin(True)
    end = next(i for i, op in enumerate(g.ops) if op.name == "a1") + 1  # transpose .. residual add
    rows, cols = [0, 7, 13, 20], [0, 9, 17, 24]
    modes = {} if halo == "recompute" else {k: halo for k in range(end - 1)}
    plan = Plan(g.name, Plan.layer_by_layer(g).fingerprint, [Stage(0, end, rows, cols, modes)])
    xs = [random_input(g.tensors[g.inputs[0]], 6)]
    out = PlanExecutor(g, plan)(xs)
    assert all(out.outputs[n].tobytes() == run(g, xs)[n].tobytes() for n in g.outputs)
    generate(g, plan, tmp_path)
    make(tmp_path, "host-check")
    assert_outputs_equal(g, run_host(tmp_path, g, xs, "model_host_check"), xs)


def twin_out(nchw: bool, h: int = 40, w: int = 48) -> Graph:
    """A small fully convolutional net (its output a full 20x24x8 map, like a segmentation head);
    ``nchw``: NCHW input and output (a TRANSPOSE first and last)."""
    b = Builder("twin_out", seed=5)
    x = b.transpose(b.input((1, 3, h, w)), (0, 2, 3, 1), name="to_nhwc") if nchw else b.input((1, h, w, 3))
    x = b.conv(x, 16, 3, 2, name="c0")
    y = b.depthwise(b.conv(x, 32, 1, 1, name="e1"), 3, 1, name="d1")
    x = b.add(b.conv(y, 16, 1, 1, name="p1", act="NONE"), x, name="a1")
    x = b.conv(x, 8, 3, 1, name="head", act="NONE")
    if nchw:
        x = b.transpose(x, (0, 3, 1, 2), name="to_nchw")
    return b.finish([x])


def test_only_a_trailing_transpose_to_an_nchw_output_is_local():
    g = twin_out(True)
    last = len(g.ops) - 1
    assert writes_nchw(g, g.ops[last]) and axis_maps(g, g.ops[last]) is not None
    assert column_maps(g, last) is None  # no stream stage through it
    assert not any(writes_nchw(g, op) for op in g.ops[:last]) and not reads_nchw(g, g.ops[last])
    assert nhwc_shape(g, g.outputs[0]) == (1, 20, 24, 8) and g.tensors[g.outputs[0]].shape == (1, 8, 20, 24)


def test_nchw_in_out_model_matches_litert_tensor_by_tensor():
    g = twin_out(True)
    x = random_input(g.tensors[g.inputs[0]], 4)
    assert_matches_litert(g, write_tflite(g), x)


@pytest.mark.parametrize("include_input", [True, False])
def test_nchw_in_out_model_reaches_its_nhwc_twins_least_peak(include_input):
    """Every front plan exact at its planned peak; the least peak within the input's size of the
    NHWC twin's, and below the old floor of a whole output plus its NHWC copy."""
    least = {}
    for nchw in (False, True):
        g = twin_out(nchw)
        res = _front_runs_exactly(g, include_input)
        least[nchw] = min(res.front, key=lambda s: s.peak)
    assert least[True].peak <= least[False].peak + g.tensors[g.inputs[0]].nbytes, (least[True].peak,
                                                                                   least[False].peak)
    if not include_input:  # then the output dominates: the trailing TRANSPOSE runs tile by tile
        assert least[True].plan.stages[-1].end == len(g.ops)
        assert least[True].peak < 2 * g.tensors[g.outputs[0]].nbytes


@needs_cc
@pytest.mark.parametrize("halo", ["recompute", "cache_w", "cache"])
def test_generated_c_writes_the_nchw_output_tile_by_tile(halo, tmp_path):
    """A stage from the residual add through the trailing TRANSPOSE, and one over the whole net."""
    g = twin_out(True)
    start = next(i for i, op in enumerate(g.ops) if op.name == "a1")
    rows, cols = [0, 7, 13, 20], [0, 9, 17, 24]
    xs = [random_input(g.tensors[g.inputs[0]], 6)]
    want = run(g, xs)
    for a in (start, 0):
        modes = {} if halo == "recompute" else {k: halo for k in range(a, len(g.ops) - 1)}
        plan = Plan(g.name, Plan.layer_by_layer(g).fingerprint, [Stage(a, len(g.ops), rows, cols, modes)])
        out = PlanExecutor(g, plan)(xs)
        assert all(out.outputs[n].tobytes() == want[n].tobytes() for n in g.outputs)
        generate(g, plan, tmp_path / str(a))
        make(tmp_path / str(a), "host-check")
        assert_outputs_equal(g, run_host(tmp_path / str(a), g, xs, "model_host_check"), xs)
