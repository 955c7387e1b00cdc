"""What makes a plan executor's first run cheaper must not change what it computes: memoized tiling
figures equal the computed ones, an arena's reused views follow its claims, and the replay's
checks (:class:`~tinypatch.runtime.stage_replay.TiledChecks`) build the same batched groups
whether or not like tile ops are skipped before their like class is looked up."""

from __future__ import annotations

import numpy as np
import pytest

import tinypatch.runtime.stage_replay as sr
from tinypatch.errors import PlanError
from tinypatch.planning.memory import plan_buffers
from tinypatch.planning.rewrite import rewritten
from tinypatch.runtime.sim_arena import Arena, IdArena

MODELS = ["mlperf_ic_resnet8_int8", "mlperf_kws_dscnn_int8", "mlperf_vww_96_int8", "person_detect", "mcunet_vww"]


def _tilings(name: str):
    """Every stage tiling of the plans the host-speed benchmark runs on shared model ``name``
    (``--sram 32KB`` included), with the graph each plan runs on."""
    from conftest import model_path
    from test_plan_batching import _plan_kinds

    from tinypatch import load

    path = str(model_path(f"{name}.tflite"))
    g = load(path)
    for plan in _plan_kinds(path).values():
        graph = rewritten(g, plan)
        for st in plan_buffers(graph, plan).tilings:
            yield graph, st


def _groups(checks: sr.TiledChecks) -> list[tuple]:
    return [(grp.k, grp.pads, grp.tiles, grp.windows, grp.out) for grp in checks.groups]


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_memoized_tilings_and_reduced_checks_equal_the_computed_ones(name, monkeypatch):
    """Per stage of every benchmarked plan: each axis's memoized ``extent`` and ``overlap`` (asked twice)
    equal the union and halo computed from the regions, and :class:`TiledChecks` builds the same groups
    (the same batched calls, in the same order) as when every tile op is looked up in its like class."""
    for graph, st in _tilings(name):
        for axis in (st.h, st.w):
            for t in st.info.internal + [st.info.tiled]:
                spans = [r[t] for r in axis.regions if r[t][0] < r[t][1]]
                want = (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else (0, 0)
                assert axis.extent(t) == want and axis.extent(t) == want
            for k in st.info.tile_ops:
                want = max(s[k].out[0] - s[k].need[0] for s in axis.spans)
                assert axis.overlap(k) == want and axis.overlap(k) == want
        kernels = [None] * len(graph.ops)
        got = sr.TiledChecks(graph, kernels, st)
        with monkeypatch.context() as m:  # every exact tile row (column) counted as the first of its class
            m.setattr(sr, "_firsts", lambda kinds, spans, k: set(range(len(spans))))
            full = sr.TiledChecks(graph, kernels, st)
        assert got.usable == full.usable and _groups(got) == _groups(full)


@pytest.mark.parametrize("cls", [Arena, IdArena])
def test_reused_views_follow_the_claims(cls):
    """A view is made once per claim, shape and dtype: the same view while the claim stands, a view of
    the new bytes after the buffer is claimed elsewhere, and a request larger than the claim or of a
    freed buffer raises every time."""
    a = cls(256, 16)
    a.alloc("x", 0, 32)
    v = a.view("x", (1, 2, 2, 4), np.dtype(np.int8))
    assert a.view("x", (1, 2, 2, 4), np.dtype(np.int8)) is v
    v[...] = 7
    a.free("x")
    with pytest.raises(PlanError, match="not live"):
        a.view("x", (1, 2, 2, 4), np.dtype(np.int8))
    a.alloc("x", 64, 16)
    w = a.view("x", (1, 2, 2, 4), np.dtype(np.int8))
    assert w is not v and np.shares_memory(w, a.memory[64:80])
    for _ in range(2):
        with pytest.raises(PlanError, match="holds 16 bytes, 32 requested"):
            a.view("x", (1, 2, 4, 4), np.dtype(np.int8))
