"""The simulated arena measures bytes: a read of a freed or never-written byte fails, and the
high-water mark comes from the bytes read and written, not from the planner's offsets."""

from __future__ import annotations

import numpy as np
import pytest

from tinypatch.errors import PlanError
from tinypatch.frontends.synth import Builder
from tinypatch.planning.plan import Plan, Stage
from tinypatch.runtime.sim_arena import POISON, Arena
from tinypatch.runtime.plan_executor import PlanExecutor


def test_freed_and_unwritten_bytes_cannot_be_read():
    a = Arena(64)
    a.alloc("x", 0, 20)
    x = a.view("x", (20,), np.dtype(np.int8))
    with pytest.raises(PlanError, match="never-written"):
        a.read(x)
    x[:10] = 7
    a.wrote(x[:10])
    a.read(x[:10])
    with pytest.raises(PlanError):
        a.read(x[5:15])  # half of it never written
    a.free("x")
    assert (a.memory[:32] == POISON).all()
    with pytest.raises(PlanError):
        a.read(x[:10])
    assert a.touched_high_water == 10  # the claim was 32 bytes; 10 were touched


def test_touched_high_water_is_the_highest_byte_read_or_written():
    a = Arena(128)
    assert a.touched_high_water == 0
    a.alloc("y", 64, 40)
    y = a.view("y", (2, 5, 4), np.dtype(np.int8))
    y[1, :, 1:3] = 1
    a.wrote(y[1, :, 1:3])  # strided: bytes 64 + 20 + 4 * 4 + 1 .. + 2
    assert a.touched_high_water == 64 + 20 + 16 + 3
    a.read(np.zeros(8, np.int8))  # outside the arena: not recorded
    assert a.touched_high_water == 64 + 20 + 16 + 3


def _chain():
    b = Builder("chain")
    x = b.input((1, 12, 12, 3))
    y = b.conv(x, 8, 3, name="c0")
    y = b.depthwise(y, 3, name="d1")
    y = b.conv(y, 4, 1, name="c2")
    return b.finish([y])


@pytest.mark.parametrize("stages", [[], [Stage(0, 2, [0, 5, 12], [0, 4, 12], {0: "cache", 1: "cache"})]], ids=["lbl", "patch"])
def test_plan_runs_touch_up_to_the_planned_peak(stages):
    g = _chain()
    plan = Plan.layer_by_layer(g)
    plan.stages = stages
    x = np.random.default_rng(0).integers(-128, 128, (1, 12, 12, 3), dtype=np.int8)
    ex = PlanExecutor(g, plan)
    got = ex([x])
    assert got.arena_size - got.alignment < got.touched_high_water <= got.arena_size


def test_a_buffer_freed_one_step_early_is_caught():
    """The executor's lifetimes are the plan's: free a buffer before its last reader and the
    read finds poisoned bytes."""
    g = _chain()
    ex = PlanExecutor(g, Plan.layer_by_layer(g))
    x = np.zeros((1, 12, 12, 3), np.int8)
    ex([x])
    ends = {step: list(bufs) for step, bufs in ex.ends.items()}
    step = min(s for s, bufs in ends.items() if s > 0 and bufs)
    ex.ends = {**ends, step - 1: ends.get(step - 1, []) + ends[step], step: []}
    with pytest.raises(PlanError, match="freed"):
        ex([x])
