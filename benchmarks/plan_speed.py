"""Whole-process `tinypatch plan` seconds per shared model, MobileNetV2-1.0-224 built with explicit
PADs and mcunetv2_large with `--target cortex-m7 --no-input`; with `--against SRC` (another source
tree, e.g. a checkout of the code before a change) each case runs with both trees, alternating, and
the plan files (`-o`) of both are compared byte for byte.

`python benchmarks/plan_speed.py [--against DIR/src] [--repeat N] [--cases NAME ...]`

Each run is a fresh process (`tinypatch plan MODEL -o FILE`, tables printed; for MobileNetV2 with
explicit PADs, which the CLI cannot build, `tinypatch.plan(tinypatch.load("mbv2-w1.0-r224",
explicit_pad=True))` and `save`); the least of ``--repeat`` runs is printed, with the printed
"searched in" time (the plan's own time for MobileNetV2) in brackets.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tinypatch.assets import assets_dir

SHARED = ["hello_world_int8", "mcunet_vww", "mcunetv2_large", "mlperf_ic_resnet8_int8", "mlperf_kws_dscnn_int8",
          "mlperf_vww_96_int8", "person_detect", "person_detect_qdimfix"]
MBV2 = ("import sys, tinypatch; r = tinypatch.plan(tinypatch.load('mbv2-w1.0-r224', explicit_pad=True)); "
        "r.save(sys.argv[1]); print(f'searched in {r.front.seconds:.2f} s')")


def command(case: str, models: Path, out: str) -> list[str]:
    if case == "mbv2-pads":
        return [sys.executable, "-c", MBV2, out]
    cli = [sys.executable, "-m", "tinypatch.cli", "plan"]
    if case == "mcunetv2_large-m7-noinput":
        return [*cli, str(models / "mcunetv2_large.tflite"), "--target", "cortex-m7", "--no-input", "-o", out]
    return [*cli, str(models / f"{case}.tflite"), "-o", out]


def run(case: str, src: str, models: Path) -> tuple[float, float, bytes]:
    """(whole-process seconds, printed search seconds, the plan file)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "plan.json")
        t = time.perf_counter()
        done = subprocess.run(command(case, models, out), env={**os.environ, "PYTHONPATH": src, "COLUMNS": "200"},
                              capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t
        found = re.search(r"searched in ([0-9.]+) s", done.stdout)
        return wall, float(found.group(1)) if found else float("nan"), Path(out).read_bytes()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--against", help="another source tree (its src folder) to time side by side")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--cases", nargs="*", default=[*SHARED, "mbv2-pads", "mcunetv2_large-m7-noinput"])
    args = p.parse_args()
    assets = assets_dir()
    if assets is None:
        sys.exit("cannot run: shared assets not found (set TINYPATCH_ASSETS)")
    here = str(Path(__file__).resolve().parents[1] / "src")
    trees = [("this", here)] + ([("against", args.against)] if args.against else [])
    print(f"load average {os.getloadavg()[0]:.2f}")
    head = " | ".join(f"{name} s (searched in)" for name, _ in trees)
    print(f"| case | {head} |" + (" plan file |" if args.against else ""))
    print("|---|" + "---|" * (len(trees) + bool(args.against)))
    for case in args.cases:
        best: dict[str, tuple[float, float, bytes]] = {}
        for _ in range(args.repeat):
            for name, src in trees[::-1]:  # the other tree first, then this one, alternating
                r = run(case, src, assets / "models")
                if name not in best or r[0] < best[name][0]:
                    best[name] = r
        cells = " | ".join(f"{best[name][0]:.2f} ({best[name][1]:.2f})" for name, _ in trees)
        same = f" {'same' if best['this'][2] == best['against'][2] else 'DIFFERENT'} |" if args.against else ""
        print(f"| {case} | {cells} |{same}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
