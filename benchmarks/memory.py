"""Layer-by-layer activation memory of every shared .tflite model: analytic, bound, ours, TFLM.

Run: ``python benchmarks/memory.py [--models DIR] [--json OUT]``.

How each column is measured (bytes; kB = 1024 B):

* analytic: the MCUNetV2 convention (int8 activations, in+out per op, in-place depthwise,
  residual skip live at the depthwise/SE ops), model input and output counted;
* lower bound: most bytes live at one op step, each tensor at its real dtype, sizes rounded
  to 16 B, input and output counted as TFLM does (input from the first op, output to the last);
* ours: :func:`tinypatch.planning.arena.plan_arena` with that same accounting (16-byte
  alignment, in-place RESHAPE);
* ours, in place: the same with the operators that lower the arena writing their output over
  their input in raster order (:func:`tinypatch.planning.inplace.add_inplace`; what
  ``tinypatch codegen`` builds); the lower bound above does not apply to it;
* TFLM emulated: our re-implementation of TFLM's GreedyMemoryPlanner on the same buffers
  (no aliasing);
* TFLM measured: the "Arena allocation head" line that the TFLite Micro Python interpreter
  (``tflite_micro.python.tflite_micro.runtime``) prints from ``print_allocations()`` after
  loading the model (:func:`tinypatch.runtime.tflm.tflm_head`).
  The head is TFLM's non-persistent plan: activations plus any kernel scratch buffers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinypatch.report.layer_memory import analyze
from tinypatch.assets import assets_dir
from tinypatch.frontends.tflite import load_tflite
from tinypatch.planning.arena import plan_arena
from tinypatch.runtime.tflm import tflm_head as measured_tflm_head
from tinypatch.safeio import write_text


def tflm_head(path: Path) -> int | None:
    """TFLM's arena head for ``path``, or None when tflite-micro is not installed."""
    try:
        return measured_tflm_head(path)
    except ImportError:
        return None


def measure(path: Path) -> dict[str, object]:
    g = load_tflite(path)
    report = analyze(g)
    tflm = plan_arena(g, aliasing=False, method="tflm")
    no_input = plan_arena(g, include_input=False)
    return {
        "model": path.name, "ops": len(g.ops), "buffers": len(tflm.placement.buffers),
        "analytic": report.peak_analytic, "analytic_op": report.peak_analytic_op,
        "lower_bound": report.lower_bound, "ours": report.peak_placed, "strategy": report.strategy,
        "ours_inplace": report.peak_inplace, "inplace_ops": len(report.inplace_ops),
        "ours_input_not_counted": no_input.peak, "tflm_emulated": tflm.peak, "tflm_measured": tflm_head(path),
    }


def kb(n: object) -> str:
    return "n/a" if n is None else f"{int(n) / 1024:,.2f}"  # type: ignore[call-overload]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = assets_dir()
    ap.add_argument("--models", type=Path, default=default / "models" if default else None,
                    help="folder of .tflite files (default: the shared assets)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    console = Console(width=200)
    if args.models is None or not args.models.is_dir():
        console.print("no model folder: set TINYPATCH_ASSETS or pass --models")
        return 2
    rows = [measure(p) for p in sorted(args.models.glob("*.tflite"))]
    table = Table(title="layer-by-layer activation memory, kB = 1024 B (input and output counted, "
                        "16 B alignment unless stated)")
    for col in ("model", "analytic (MCUNetV2)", "lower bound", "ours", "strategy", "ours, input not counted",
                "TFLM emulated", "TFLM measured head", "ours / TFLM", "ours, in place (ops)", "in place / TFLM"):
        table.add_column(col, justify="left" if col in ("model", "strategy") else "right")
    for r in rows:
        head = r["tflm_measured"]
        ratio = f"{r['ours'] / head:.3f}" if head else "n/a"  # type: ignore[operator]
        ratio_inplace = f"{r['ours_inplace'] / head:.3f}" if head else "n/a"  # type: ignore[operator]
        table.add_row(str(r["model"]), kb(r["analytic"]), kb(r["lower_bound"]), kb(r["ours"]), str(r["strategy"]),
                      kb(r["ours_input_not_counted"]), kb(r["tflm_emulated"]), kb(head), ratio,
                      f"{kb(r['ours_inplace'])} ({r['inplace_ops']})", ratio_inplace)
    console.print(table)
    console.print("analytic: int8 activations, in+out per op, in-place depthwise, residual skip live at "
                  "depthwise/SE ops. lower bound / ours / TFLM: real dtypes, 16 B aligned; TFLM measured = "
                  "'Arena allocation head' from tflite_micro runtime print_allocations().", highlight=False)
    if args.json:
        write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
