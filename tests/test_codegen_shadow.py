"""In-place safety checked in C: the shadow build (``make host-shadow``: every in-place call
shadowed byte by byte, DSP kernels with portable intrinsics, ``FAST=`` the reference kernels)
aborts when a kernel reads an input byte its output has already overwritten. It runs the
in-place plans of every shared model (layer by layer with the DSP kernels, the least-peak patch
plan with the reference ones) and of random CNNs, and checks the write-ahead figure stated next
to each host kernel: a shift computed with that figure is safe, and for the convolutions one
pixel less is not. (The Helium kernels only build for Cortex-M55: their figure is checked by
the tests' bytewise executor, not here.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODELS
from hypothesis import given
from inplace_bytes import c_write_ahead
from strategies import random_cnn
from test_codegen import C_BUILDS, graph, inputs, plan
from test_inplace import all_inplace

import tinypatch.analysis.inplace_shift as inplace_mod
from tinypatch.codegen import generate
from tinypatch.codegen.toolchain import make, missing_tools, run_host
from tinypatch.errors import ToolchainError
from tinypatch.frontends.synth import Builder
from tinypatch.planning.plan import Plan
from tinypatch.runtime.executor import run

NO_CC = missing_tools("host")
pytestmark = pytest.mark.skipif(NO_CC is not None, reason=f"host C compiler: {NO_CC}")
HEAVY = {"mcunetv2_large.tflite"}


def _shadow_exact(g, p, out, xs, inplace=True, fast=True):  # noqa: ANN001, ANN202
    project = generate(g, p, out, inplace=inplace)
    if not project.plan.inplace:
        pytest.skip("no op runs in place under this plan: nothing to shadow")
    make(out, "host-shadow", variables=None if fast else {"FAST": ""})
    got = run_host(out, g, xs, "model_host_shadow")
    want = run(g, xs)
    for n in g.outputs:
        assert got[n].tobytes() == want[n].tobytes()


def _cases() -> list:
    """Each shared model's in-place plans: layer by layer with the DSP kernels, the least-peak
    patch plan with the reference kernels."""
    return [pytest.param(p.name, mode, fast, id=f"{p.stem}-{mode}-{'dsp' if fast else 'ref'}",
                         marks=[pytest.mark.slow] if p.name in HEAVY else [])
            for p in MODELS if p.name != "hello_world_int8.tflite"
            for mode, fast in (("layer", True), ("patch-min-peak", False))] \
        or [pytest.param("person_detect.tflite", "layer", True, id="assets-absent")]


@pytest.mark.parametrize("name,mode,fast", _cases())
def test_shared_model_in_place_plans_never_read_overwritten_bytes(name, mode, fast, tmp_path):
    g = graph(name)
    p = plan(name, mode)
    if p is None:
        pytest.skip(f"{name} has no patch plan")
    _shadow_exact(g, p, tmp_path, inputs(name), fast=fast)


@C_BUILDS
@given(random_cnn(max_layers=6))
def test_random_cnn_every_op_in_place_never_reads_overwritten_bytes(tmp_path_factory, case):
    g, x = case
    p = all_inplace(g, Plan.layer_by_layer(g))
    if not p.inplace:
        return
    _shadow_exact(g, p, tmp_path_factory.mktemp("shadow"), [x], inplace=False)


def _one_op(kind: str):  # noqa: ANN202
    """A 1x1 conv (out of place) feeding the op under test (in place), 16 channels: pixels are
    whole multiples of the arena alignment, so the shift is not rounded past the figure; an even
    width, so the DSP kernel's last pixel pair ends its row."""
    b = Builder(kind, seed=3)
    x = b.conv(b.input((1, 7, 8, 16)), 16, 1, name="feed", act="NONE")
    if kind == "conv":
        y = b.conv(x, 32, 1, name="op", act="NONE")
    elif kind == "conv3":
        y = b.conv(x, 16, 3, name="op", act="NONE")
    elif kind == "depthwise":
        y = b.depthwise(x, 3, name="op", act="NONE")
    elif kind == "pad":
        y = b.pad(x, 1, 1, 2, 0, name="op")
    else:
        y = b.pool(x, kind, 3, 1, name="op", padding="SAME")
    return b.finish([y])


# (op kind, DSP build?) -> the C kernel that runs it in place on the host
KERNEL = {("conv", False): "tp_conv_s8", ("conv3", False): "tp_conv_s8", ("depthwise", False): "tp_dwconv_s8",
          ("avg", False): "tp_avgpool_s8", ("max", False): "tp_maxpool_s8", ("pad", False): "tp_pad",
          ("conv", True): "tp_fast_conv_s8", ("conv3", True): "tp_fast_conv_s8",
          ("depthwise", True): "tp_fast_dwconv_s8"}


@pytest.mark.parametrize("kind,fast", sorted(KERNEL), ids=[f"{k}-{'dsp' if f else 'ref'}" for k, f in sorted(KERNEL)])
def test_stated_write_ahead_of_each_host_kernel_is_safe(kind, fast, tmp_path, monkeypatch):
    """The op in place at the shift its own kernel's stated figure gives (not the planner's
    largest): no trap; a 1x1 conv widening 16 -> 32 channels at one pixel less does trap."""
    figure = c_write_ahead()[KERNEL[(kind, fast)]]
    g = _one_op(kind)
    xs = [np.random.default_rng(4).integers(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)]
    original = inplace_mod.window_shift

    def shifted(block: int):  # noqa: ANN202
        monkeypatch.setattr(inplace_mod, "window_shift", lambda graph, k, b=block: original(graph, k, b))

    shifted(figure)
    p = Plan.layer_by_layer(g)
    p.inplace = [1]
    _shadow_exact(g, p, tmp_path / "stated", xs, inplace=False, fast=fast)
    if kind == "conv":
        shifted(figure - 1)
        assert original(g, 1, figure - 1) < original(g, 1, figure)
        with pytest.raises(ToolchainError, match="tp_shadow"):
            _shadow_exact(g, p, tmp_path / "less", xs, inplace=False, fast=fast)
