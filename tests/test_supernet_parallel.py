"""Issue 14 item 5, training side: data-parallel supernet training. A step is K micro-batches
whose gradients are summed in a fixed order, so where they run (in process, Ray workers) cannot
change the weights. Small: the tiny space of test_nas_supernet, 256 digits, a few steps."""

from __future__ import annotations

import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from tinypatch import api
from tinypatch.nas.data import Dataset, digits, split
from tinypatch.nas.supernet import (
    Supernet,
    SupernetAccuracy,
    SupernetConfig,
    apply_grads,
    micro_grads,
    split_step,
    train_supernet,
)

TINY = SupernetConfig(resolutions=(32, 24), stem_channels=8, first_channels=8,
                      stages=((8, 2, (1, 2)), (16, 2, (1, 2))))


@pytest.fixture(scope="module")
def data():
    tr, held = split(digits(32), 0.2, seed=0)
    return Dataset(tr.x[:256], tr.y[:256], tr.classes), held


def _step(net, micros):
    """One step's gradients, BatchNorm running statistics and loss sum, in process."""
    state = net.state_dict()
    loss = apply_grads(net, [micro_grads(TINY, state, m) for m in micros])
    return [p.grad for p in net.parameters()], [b.clone() for b in net.buffers()], loss


def _specs():
    return (TINY.max_spec(), TINY.min_spec(), TINY.sample(np.random.default_rng(3)))


def test_split_step_is_fixed_and_weighted():
    x, y = np.zeros((10, 4, 4, 3), np.uint8), np.arange(10)
    parts = split_step(x, y, np.arange(10)[::-1], 3, (0, 0), _specs(), True)
    assert [list(m.y) for m in parts] == [[9, 8, 7, 6], [5, 4, 3], [2, 1, 0]]
    assert [m.weight for m in parts] == [0.4, 0.3, 0.3]
    assert len(split_step(x[:2], y[:2], np.arange(2), 3, (0, 0), _specs(), True)) == 2  # no empty ones


def test_two_micro_batches_of_a_doubled_batch_are_the_batch_exactly(data):
    """Exact: a batch of images A twice, split into K=2 micro-batches (each A, weight 1/2), gives
    bit for bit the step of A alone (halving is exact in binary and the two halves sum exactly):
    the weighting, the ordered sum and the averaged running statistics are right.

    Within float tolerance: it also equals the full-batch step on A twice (K=1: 32 images,
    BatchNorm over all; the gradient of the mean is that of A up to rounding, about 1e-5 of its
    norm). Not on digits at initialisation: their black background makes some channels constant
    over the batch, BatchNorm maps those to 0 +- rounding, and ReLU6's derivative there follows
    the rounding (amplified by 1/sqrt(eps)), so any change of summation order (even the thread
    count) moves those gradients by ~1%; hence random images for that half."""
    tr, _ = data
    torch.manual_seed(0)
    init = Supernet(TINY).state_dict()

    def step(x, y, parts):
        net = Supernet(TINY)
        net.load_state_dict(init)
        return _step(net, split_step(x, y, np.arange(len(y)), parts, (1, -2), _specs(), True))

    def twice(a):
        return np.concatenate([a, a])

    a_x, a_y = tr.x[:16], tr.y[:16]
    alone, halves = step(a_x, a_y, 1), step(twice(a_x), twice(a_y), 2)
    assert all(torch.equal(g, h) for g, h in zip(alone[0], halves[0], strict=True))
    assert all(torch.equal(b, c) for b, c in zip(alone[1], halves[1], strict=True))
    assert halves[2] == 2 * alone[2]  # the summed loss counts 32 images

    b_x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    alone, full = step(b_x, a_y, 1), step(twice(b_x), twice(a_y), 1)
    assert not all(torch.equal(g, f) for g, f in zip(alone[0], full[0]))  # a different computation...
    for g, f in zip(alone[0], full[0], strict=True):  # ...of the same gradient (per tensor, in norm:
        # some are rounding noise around an exact 0, e.g. a BatchNorm bias whose output is normalised again)
        assert float((f - g).norm()) <= 1e-4 * float(g.norm()) + 1e-6


def test_ray_training_with_two_workers_equals_in_process(data):
    """The acceptance: a local Ray cluster of 2 workers trains, for the same seed and K=2, the same
    state_dict (torch.equal on every tensor) and history as the in-process run, and the search
    scored by the two supernets gives the same result (the Ray one evaluated on Ray)."""
    pytest.importorskip("ray")
    from tinypatch.nas.executors import RayExecutor

    tr, held = (d.subset(np.arange(128)) for d in data)  # two steps per epoch: the point is equality, not accuracy
    kw = {"epochs": 2, "batch_size": 64, "seed": 0, "micro_batches": 2}
    local = train_supernet(tr, held, TINY, **kw)
    search = {"sram": "64KB", "space": TINY.to_space(), "population": 6, "parents": 3, "n_mutate": 3,
              "n_crossover": 3, "iterations": 2, "seed": 0}
    with RayExecutor(workers=2) as executor:
        assert executor.cpus == 2
        on_ray = train_supernet(tr, held, TINY, executor=executor, **kw)
        a, b = local.net.state_dict(), on_ray.net.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        found_ray = api.search(objective=SupernetAccuracy(on_ray, calib_batches=4), workers=2, **search)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in local.history] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in on_ray.history]
    found = api.search(objective=SupernetAccuracy(local, calib_batches=4), **search)
    assert found.search.history == found_ray.search.history
    assert found.search.best.spec == found_ray.search.best.spec
    assert found.search.best.score == found_ray.search.best.score


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv,message", [
    (["nas", "train", "digits", "-o", "sn.pt", "--ray-address", "127.0.0.1:{port}"], "cannot reach the Ray cluster"),
    (["search", "--data", "digits", "--sram", "8KB", "--ray-address", "127.0.0.1:{port}"],
     "cannot reach the Ray cluster"),
    (["nas", "train", "digits", "-o", "sn.pt", "--workers", "2"], "ray is not installed"),
])
def test_cli_ray_errors_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    import sys

    from tinypatch.cli import main

    monkeypatch.chdir(tmp_path)
    if message.startswith("ray is not"):
        monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main([a.format(port=_closed_port()) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "sn.pt").exists()
