"""Issue 14 end to end on real data: supernet -> search under a patch-only SRAM limit -> int8 -> board.

Run: ``python benchmarks/nas_digits.py [--epochs 15] [--sram 4KB] [--json OUT]`` (about 15 minutes on
one core; ``--quick`` for a 2-minute smoke run).

1. a weight-sharing supernet (kernel 3/5/7, expand 3/4/6, width 0.5/0.75/1 per block, depth 2/3/4,
   resolution 24/28/32) trained with the sandwich rule on scikit-learn's digits upscaled to 32x32,
   20% of every class held out;
2. the SRAM limit (placed arena, input counted) is checked to lie below the layer-by-layer peak of
   the space's smallest network: no network of the space fits it layer by layer;
3. MCUNetV2's evolution (population, parents, mutation/crossover children), each candidate scored
   by its held-out accuracy from the supernet after BatchNorm re-calibration (20 x 64 images);
   the per-layer-only search (p = 1) on the same space and seed is run beside it;
4. the winner fine-tuned, calibrated to int8 and fine-tuned quantization-aware, written as .tflite,
   planned under the limit, and its held-out accuracy measured by the PyTorch int8 simulation, our
   executor, LiteRT BUILTIN_REF and the generated C on Cortex-M7 (QEMU), every held-out image.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from tinypatch import api
from tinypatch.errors import BudgetError
from tinypatch.frontends.mcunet_config import build_net
from tinypatch.nas.pipeline import export_to_board, train
from tinypatch.nas.supernet import SupernetAccuracy, SupernetConfig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--sram", default="4KB")
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--qat-epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--quick", action="store_true", help="2 epochs, population 6, 2 iterations, 1+1 export epochs")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.population, args.iterations, args.finetune_epochs, args.qat_epochs = 2, 6, 2, 1, 1
    torch.set_num_threads(args.threads)
    sram = api.parse_size(args.sram)
    config = SupernetConfig(resolutions=(24, 28, 32))
    times: dict[str, float] = {}
    out: dict = {"sram": sram, "seed": args.seed}

    t0 = time.perf_counter()
    trained = train("digits:32", config, epochs=args.epochs, seed=args.seed, progress=print)
    times["train"] = time.perf_counter() - t0
    out["training"] = trained.history

    smallest = api.plan(build_net(config.min_spec()), inplace=False)  # the search's accounting: no in-place ops
    out["smallest_layer_peak"] = smallest.baseline.peak
    print(f"smallest network of the space: layer-by-layer peak {smallest.baseline.peak:,} B, least patch peak "
          f"{smallest.cost.peak:,} B; SRAM limit {sram:,} B")
    if smallest.baseline.peak <= sram:
        print("the limit admits layer-by-layer schedules: choose a lower --sram")
        return 1

    objective = SupernetAccuracy(trained, calib_batches=20, seed=args.seed)
    kw = dict(sram=sram, convention="placed", space=config.to_space(), objective=objective, population=args.population,  # noqa: C408
              parents=max(2, args.population // 5), n_mutate=args.population // 2, n_crossover=args.population // 2,
              iterations=args.iterations, seed=args.seed)
    t0 = time.perf_counter()
    found = api.search(**kw)
    times["search"] = time.perf_counter() - t0
    best = found.search.best
    print(f"joint search: best held-out accuracy {best.score:.2%} ({best.evaluation.schedule}, "
          f"{best.evaluation.peak:,} B, {best.evaluation.macs:,} MACs), {len(found.search.evaluations)} networks "
          f"evaluated in {times['search']:.0f} s")
    try:
        per_layer = api.search(**{**kw, "max_patches": 1})
        out["per_layer_best"] = per_layer.search.best.score
        print(f"per-layer-only search (p = 1): best {per_layer.search.best.score:.2%}")
    except BudgetError as exc:
        out["per_layer_best"] = None
        print(f"per-layer-only search (p = 1): nothing feasible ({exc})")
    print(best.spec.describe())

    holder: dict = {}

    def plan(graph):  # noqa: ANN001, ANN202
        holder["plan"] = api.plan(graph, sram=sram)
        return holder["plan"].plan

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        deployed = export_to_board(trained, best.spec, Path(tmp) / "winner.tflite", plan=plan,
                                   finetune_epochs=args.finetune_epochs, qat_epochs=args.qat_epochs, seed=args.seed,
                                   progress=print)
    times["export_and_checks"] = time.perf_counter() - t0
    p, ex = holder["plan"], deployed.exported
    print(f"\nwinner: {p.schedule.label}: placed peak {p.cost.peak:,} B (layer by layer {p.baseline.peak:,} B, limit "
          f"{sram:,} B), MACs {p.cost.macs:,} ({p.cost.mac_overhead:+.1%} over {p.cost.base_macs:,}), "
          f".tflite {len(deployed.tflite):,} B")
    print(f"held-out accuracy: supernet {ex.supernet_accuracy:.2%} -> fine-tuned float {ex.finetune[-1]:.2%} -> "
          f"int8 calibrated {ex.ptq_accuracy:.2%} -> int8 QAT {ex.qat[-1]:.2%}")
    for w in deployed.verification.ways:
        same = {True: "identical bytes to the executor", False: "DIFFERENT from the executor", None: "reference"}
        print(f"  {w.name:32} {w.images:4} images  {w.accuracy:.2%}  {same[w.identical]}  {w.note}")
    print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    out.update(winner=best.spec.to_dict(), search_score=best.score, schedule=p.schedule.label, peak=p.cost.peak,
               layer_peak=p.baseline.peak, macs=p.cost.macs, base_macs=p.cost.base_macs, tflite_bytes=len(deployed.tflite),
               supernet_accuracy=ex.supernet_accuracy, finetune=ex.finetune, ptq=ex.ptq_accuracy, qat=ex.qat,
               verification=deployed.verification.to_dict(), seconds=times)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0 if deployed.verification.ok else 1


if __name__ == "__main__":
    sys.exit(main())
