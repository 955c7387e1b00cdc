"""Supernet training and search-to-board export as whole steps (what ``tinypatch nas`` runs).

:func:`train` loads the data, splits off the held-out part, trains the supernet and records how
to rebuild the split in the checkpoint. :func:`export_to_board` turns one subnet into an int8
``.tflite`` (fine-tune, calibrate, QAT), reads the file back, plans it under an SRAM budget and
measures held-out accuracy three ways (:mod:`tinypatch.nas.verify`). This module needs torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tinypatch.backends.tflite_writer import write_tflite
from tinypatch.frontends.spec import NetSpec
from tinypatch.ir import Graph
from tinypatch.nas.data import Dataset, load_data, split
from tinypatch.nas.export import Exported, export, int8_predictions
from tinypatch.nas.supernet import (
    Mapper,
    Progress,
    SupernetConfig,
    TrainedSupernet,
    data_digest,
    resize_uint8,
    train_supernet,
)
from tinypatch.nas.verify import Verification, verify
from tinypatch.planning.plan import Plan
from tinypatch.safeio import write_bytes


def train(source: str, config: SupernetConfig | None = None, *, resolutions: Sequence[int] | None = None,
          epochs: int = 10, holdout: float = 0.2, seed: int = 0, batch_size: int = 64, micro_batches: int = 1,
          executor: Mapper | None = None, progress: Progress | None = None) -> TrainedSupernet:
    """Train a supernet on the data at ``source`` (see :func:`tinypatch.nas.data.load_data`); the
    images are loaded at the largest resolution (an image folder: resized to it). Without
    ``config``: the default space for the data's classes at ``resolutions`` (default: the data's).
    ``micro_batches`` per step, run on ``executor``: see :func:`train_supernet`."""
    if config is not None and resolutions:
        config = replace(config, resolutions=tuple(resolutions))
    resolution = max(config.resolutions) if config is not None else max(resolutions) if resolutions else None
    data = load_data(source, resolution)
    if config is None:
        config = SupernetConfig(resolutions=tuple(resolutions or (data.resolution,)), num_classes=len(data.classes))
    tr, held = split(data, holdout, seed)
    trained = train_supernet(tr, held, config, epochs=epochs, batch_size=batch_size, seed=seed,
                             micro_batches=micro_batches, executor=executor, progress=progress)
    trained.data = {"source": os.fspath(source), "resolution": resolution, "holdout": holdout, "seed": seed,
                    "digest": data_digest(data), "images": len(data.y), "classes": data.classes}
    return trained


@dataclass
class Deployed:
    """An exported subnet: the int8 graph read back from its ``.tflite``, the plan, the checks."""

    exported: Exported
    graph: Graph
    tflite: bytes
    plan: Plan | None
    verification: Verification


def export_to_board(trained: TrainedSupernet, spec: NetSpec, output: str | os.PathLike[str], *,
                    plan: Callable[[Graph], Plan] | None = None, finetune_epochs: int = 2, qat_epochs: int = 2,
                    mcu_images: int | None = None, target: str = "cortex-m7",
                    project_dir: str | os.PathLike[str] | None = None, seed: int = 0,
                    progress: Progress | None = None) -> Deployed:
    """Export ``spec`` to int8, write ``output`` (.tflite, atomically), read it back, plan it with
    ``plan(graph)`` (None: no board run) and verify it on the held-out split."""
    from tinypatch.frontends.tflite import load_tflite

    ex = export(trained, spec, finetune_epochs=finetune_epochs, qat_epochs=qat_epochs, seed=seed, progress=progress)
    data = write_tflite(ex.graph)
    write_bytes(output, data)
    graph = load_tflite(os.fspath(output))
    held = trained.holdout
    held = Dataset(resize_uint8(held.x, spec.resolution), held.y, held.classes)
    logits, _ = int8_predictions(ex.program, held.x)
    chosen = plan(graph) if plan is not None else None
    checks = verify(graph, data, held, logits, chosen, mcu_images, target, project_dir, progress)
    return Deployed(ex, graph, data, chosen, checks)
