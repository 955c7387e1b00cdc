"""Per-patch mixed precision (QuantMCU-style) on the shared models: BitOPs, SRAM, fidelity.

Run: ``TINYPATCH_ASSETS=../shared python benchmarks/quantmcu.py [--n-eval 500] [--json OUT]``.

For each model two patch plans, both with the input outside the arena and no in-place ops:
MCUNetV2's (single stage, halos recomputed, least peak) and ours (the fewest MACs under the
same SRAM, stream stages left out: mixed precision runs tiled stages). For each, ``quantize``
calibrates on ``--n-calib`` crops of the calibration photos and measures on ``--n-eval``
crops of the other photos: BitOPs of the patch stages (int8 vs mixed, per input, measured
with the run-time patch classes), the arena (worst case = all patches int8, and with every
lowered tile buffer packed), top-1 agreement with int8, mean |output change|, the share of
outlier patches, lambda and the outlier rule.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table

from tinypatch import api
from tinypatch.assets import assets_dir

MODELS = ("mlperf_vww_96_int8", "person_detect", "mcunet_vww", "mlperf_ic_resnet8_int8")


def plans(graph):
    """MCUNetV2's single-stage recompute plan and our least-MAC plan under its SRAM."""
    m2 = api.plan(graph, single_stage=True, strategy="recompute", inplace=False, include_input=False)
    ours = api.plan(graph, sram=m2.cost.peak, stream=False, inplace=False, include_input=False)
    return {"MCUNetV2": m2.plan, "ours": ours.plan}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--plans", default="MCUNetV2,ours")
    ap.add_argument("--n-calib", type=int, default=64)
    ap.add_argument("--n-eval", type=int, default=500)
    ap.add_argument("--quantile", type=float, default=0.9)
    ap.add_argument("--lam", type=float, default=0.5)
    ap.add_argument("--max-change", type=float, default=0.25)
    ap.add_argument("--bits", default="8,6,4,2")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    root = assets_dir()
    if root is None:
        print("set TINYPATCH_ASSETS to the folder holding models/", file=sys.stderr)
        return 2
    table = Table(title=f"per-patch mixed precision vs int8 ({args.n_eval} held-out crops per model)")
    for col in ("model", "plan", "SRAM worst / packed B", "BitOPs int8", "BitOPs mixed", "reduction", "top-1 agree",
                "mean |Δout|", "outlier patches", "bitwidths", "s"):
        table.add_column(col, justify="left" if col in ("model", "plan", "bitwidths") else "right")
    rows, rule = [], ""
    for name in args.models.split(","):
        graph = api.load(str(root / "models" / f"{name}.tflite"))
        for label, plan in plans(graph).items():
            if label not in args.plans.split(","):
                continue
            t0 = time.perf_counter()
            r = api.quantize(graph, plan, n_calib=args.n_calib, n_eval=args.n_eval, quantile=args.quantile,
                             lam=args.lam, max_change=args.max_change,
                             bitwidths=[int(b) for b in args.bits.split(",")])
            ev = r.evaluation
            b8, bm = ev.bitops
            tiles = sum(c.tiles for c in ev.counts.values())
            share = sum(c.outlier_tiles for c in ev.counts.values()) / max(tiles, 1)
            bits = " | ".join(" ".join(str(m.bits) for m in sp.maps) for sp in r.precision.stages)
            rule = r.precision.notes["outlier_rule"]
            table.add_row(name, label, f"{r.memory.worst_case:,} / {r.memory.all_low_bit:,}", f"{b8 / ev.n:,.0f}",
                          f"{bm / ev.n:,.0f}", f"{r.bitops_reduction:.2f}x", f"{ev.agreement:.1%}",
                          f"{ev.mean_abs_change:.4f}", f"{share:.1%}", bits, f"{time.perf_counter() - t0:.0f}")
            rows.append({"model": name, "plan": label, "plan_stages": [s.to_dict() for s in plan.stages],
                         **r.to_dict()["evaluation"], "memory": r.to_dict()["memory"],
                         "bits": bits, "reduction": r.bitops_reduction, "outlier_share": share})
            print(f"{name} {label}: {r.bitops_reduction:.2f}x, agreement {ev.agreement:.1%} ({ev.n})", flush=True)
    console = Console(width=200)
    console.print(table)
    if rows:
        mean = sum(x["reduction"] for x in rows) / len(rows)
        console.print(f"mean BitOPs reduction {mean:.2f}x; lowest agreement {min(x['agreement'] for x in rows):.1%}; "
                      f"lambda {args.lam}; outlier rule: {rule}; bitwidths {args.bits}; "
                      f"{args.n_calib} calibration crops", highlight=False)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
