"""Generated C for issue 10's operators, host build with ASan/UBSan (and window checks), byte for
byte against the Python executor: random CNNs with RESIZE_BILINEAR, TRANSPOSE_CONV, MAXIMUM/MINIMUM,
SQUARED_DIFFERENCE, PRELU, channel SLICE/STRIDED_SLICE and SPLIT/SPLIT_V, layer by layer (every op
in place that can be) and under random patch plans with the new ops inside stages; general slices
layer by layer; the reference kernels alone (FAST=) and the optimised ones (DSP code emulated)."""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import LAYER_KINDS, NEW_KINDS, CnnBuilder, random_cnn, unet_step
from test_codegen import C_BUILDS, assert_outputs_equal, needs_cc
from test_inplace import all_inplace
from test_kernels_litert_ops import act_t, const_t, q, single_op
from test_newops_plans import STREAM_KINDS
from test_stream import stream_case

from tinypatch.codegen import generate
from tinypatch.codegen.report import measure
from tinypatch.codegen.toolchain import make, missing_tools, run_host
from tinypatch.ir import Graph
from tinypatch.planning.cost import plan_cost
from tinypatch.planning.plan import HALO_MODES, Plan, Stage, fingerprint
from tinypatch.planning.search import choose, search
from tinypatch.planning.tiles import legal_ends, stage_info
from tinypatch.runtime.executor import run
from tinypatch.runtime.plan_executor import PlanExecutor

# more random C builds than the default: TP_NEWOPS_C_EXAMPLES=40 (local runs; CI keeps the default)
NEWOPS_BUILDS = settings(C_BUILDS, max_examples=int(os.environ.get("TP_NEWOPS_C_EXAMPLES", 6)))
NO_M7 = missing_tools("cortex-m7")

KINDS = NEW_KINDS + ("conv", "depthwise")
NEW_TYPES = ("RESIZE_BILINEAR", "TRANSPOSE_CONV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "PRELU", "SLICE",
             "STRIDED_SLICE")


@st.composite
def new_op_case(draw: st.DrawFn):
    """A random CNN with the new operators and a plan of up to two stages (random tiles and halos)."""
    g, x = draw(random_cnn(max_layers=6, kinds=draw(st.sampled_from([KINDS, LAYER_KINDS + NEW_KINDS]))))
    stages, first = [], 0
    for _ in range(draw(st.integers(0, 2))):
        options = [(s, e) for s in range(first, len(g.ops)) for e in legal_ends(g, s)]
        with_new = [(s, e) for s, e in options if any(g.ops[k].type in NEW_TYPES for k in range(s, e))]
        if not options:
            break
        start, end = draw(st.sampled_from(with_new or options))
        shape = g.tensors[stage_info(g, start, end).tiled].shape
        cuts = [sorted({0, shape[a], *draw(st.lists(st.integers(1, max(shape[a] - 1, 1)), max_size=3))})
                for a in (1, 2)]
        stages.append(Stage(start, end, cuts[0], cuts[1], {k: draw(st.sampled_from(HALO_MODES))
                                                           for k in range(start, end)}))
        first = end
    return g, x, Plan(g.name, fingerprint(g), stages, draw(st.booleans()))


def build_and_compare(g, x, p, out, fast: bool = True) -> None:
    generate(g, p, out)
    make(out, "host-check", variables=None if fast else {"FAST": ""})
    assert_outputs_equal(g, run_host(out, g, [x], "model_host_check"), [x])


@needs_cc
@NEWOPS_BUILDS
@given(new_op_case())
def test_new_ops_random_plans_are_exact(tmp_path_factory, case):
    g, x, p = case
    build_and_compare(g, x, p, tmp_path_factory.mktemp("newops"))


@needs_cc
@NEWOPS_BUILDS
@given(random_cnn(max_layers=6, kinds=KINDS), st.booleans())
def test_new_ops_layer_by_layer_in_place_reference_kernels(tmp_path_factory, case, fast):
    g, x = case
    p = all_inplace(g, Plan.layer_by_layer(g, include_input=True))
    out = tmp_path_factory.mktemp("newops_lbl")
    generate(g, p, out, inplace=False)
    make(out, "host-check", variables=None if fast else {"FAST": ""})
    assert_outputs_equal(g, run_host(out, g, [x], "model_host_check"), [x])


@needs_cc
@NEWOPS_BUILDS
@given(stream_case(kinds=STREAM_KINDS))
def test_new_pointwise_ops_in_stream_stages_are_exact(tmp_path_factory, case):
    g, x, p = case
    build_and_compare(g, x, p, tmp_path_factory.mktemp("newops_stream"))


@needs_cc
@pytest.mark.parametrize("op_type", ["SLICE", "STRIDED_SLICE"])
def test_general_slices_are_exact(op_type, tmp_path):
    """Slices along H, W and channels with steps (negative ones too), and a shrunk axis."""
    rng = np.random.default_rng(5)
    shape = (1, 7, 6, 5)
    x = rng.integers(-128, 128, shape).astype(np.int8)
    if op_type == "SLICE":
        ins = [const_t("b", np.array([0, 1, 2, 1], np.int32)), const_t("s", np.array([-1, 5, -1, 3], np.int32))]
        out, attrs = (1, 5, 4, 3), {}
    else:
        ins = [const_t("b", np.array([0, 6, 0, 1], np.int32)), const_t("e", np.array([1, 0, 5, 2], np.int32)),
               const_t("st", np.array([1, -2, 2, 1], np.int32))]
        out = (1, 3, 3)
        attrs = dict(begin_mask=0, end_mask=0, ellipsis_mask=0, new_axis_mask=0, shrink_axis_mask=8, offset=False)
    g = single_op(op_type, [act_t("x", shape, quant=q(0.1, 3)), *ins], act_t("y", out, quant=q(0.1, 3)), **attrs)
    build_and_compare(g, x, Plan.layer_by_layer(g), tmp_path)


def unet_plans(g: Graph) -> dict[str, Plan]:
    """Layer by layer, the search's least-peak plan, and a 3x2 stage over the upsampling path per halo mode."""
    plans = {"layer": Plan.layer_by_layer(g), "least-peak": choose(search(g)).plan}
    end = len(g.ops)
    for mode in HALO_MODES:
        plans[f"up-{mode}"] = Plan(g.name, fingerprint(g), [Stage(2, end, [0, 12, 25, 36], [0, 17, 30],
                                                                  {k: mode for k in range(2, end)})])
    return plans


def test_unet_step_plans_run_exactly_at_the_planned_peak():
    g, x = unet_step()
    want = run(g, [x])
    for name, p in unet_plans(g).items():
        result = PlanExecutor(g, p)(x)
        assert result.outputs[g.outputs[0]].tobytes() == want[g.outputs[0]].tobytes(), name
        assert result.arena_high_water == result.arena_size == plan_cost(g, p).peak, name


@needs_cc
@pytest.mark.parametrize("plan_name", ["layer", "least-peak", "up-recompute", "up-cache"])
def test_unet_step_host_build_is_exact(plan_name, tmp_path):
    g, x = unet_step()
    build_and_compare(g, x, unet_plans(g)[plan_name], tmp_path)


@pytest.mark.skipif(NO_M7 is not None, reason=f"Cortex-M toolchain/emulator: {NO_M7}")
@pytest.mark.parametrize("target,plan_name", [("cortex-m7", "layer"), ("cortex-m7", "up-cache_w"),
                                              ("cortex-m4", "least-peak"), ("cortex-m55", "up-cache")])
def test_unet_step_is_exact_on_cortex_m(target, plan_name, tmp_path):
    """The DSP transpose-conv path (SMLAD on pairs of pixels and channels) on emulated Cortex-M4/M7/M55."""
    g, x = unet_step()
    project = generate(g, unet_plans(g)[plan_name], tmp_path, target=target)
    assert "tp_tconv_s8" in (tmp_path / "model.c").read_text()
    assert measure(g, project, [x]).exact


def tconv_chain() -> tuple[Graph, np.ndarray]:
    """Three TRANSPOSE_CONVs covering the fast paths' tails: 3, 5 and 21 input channels (Helium: 8 per
    VMLADAVA, predicated rest), 5, 21 and 4 output channels (4 per pass), strides 2x2, 1x1 and 2x3,
    SAME and VALID, with and without bias."""
    rng = np.random.default_rng(23)
    b = CnnBuilder(rng, (1, 4, 5, 3), "tconv_chain")
    b.transpose_conv(5, 3, 3, (2, 2), "SAME", True, "RELU")
    b.transpose_conv(21, 2, 2, (1, 1), "VALID", False)
    b.transpose_conv(4, 5, 4, (2, 3), "VALID", True, "RELU6")
    return b.finish(), rng.integers(-128, 128, (1, 4, 5, 3), dtype=np.int8)


@needs_cc
@pytest.mark.parametrize("fast", [False, True], ids=["reference", "dsp-portable"])
def test_tconv_chain_host_build_is_exact(fast, tmp_path):
    g, x = tconv_chain()
    build_and_compare(g, x, Plan.layer_by_layer(g), tmp_path, fast)


@pytest.mark.parametrize("target,kernel", [("cortex-m55", "tp_mve_tconv_s8"), ("cortex-m7", "tp_fast_tconv_s8")])
def test_tconv_chain_is_exact_on_cortex_m(target, kernel, tmp_path):
    """The Helium transpose conv on an emulated Cortex-M55, the DSP one on a Cortex-M7 (both linked in)."""
    missing = missing_tools(target)
    if missing:
        pytest.skip(f"Cortex-M toolchain/emulator: {missing}")
    g, x = tconv_chain()
    project = generate(g, Plan.layer_by_layer(g), tmp_path, target=target)
    assert measure(g, project, [x], timeout=120).exact
    symbols = subprocess.run(["arm-none-eabi-nm", str(tmp_path / f"model_{target}.elf")], capture_output=True,
                             text=True, check=True).stdout
    assert re.search(rf"\b{kernel}\b", symbols), f"{kernel} not linked for {target}"
