"""MCUNetV2 Table 1 and redistribution of MbV2, MnasNet-A1, FBNet-A and MCUNet-in3 at 4x4 patches.

Run: ``python benchmarks/redistribution.py [--grid 4] [--json OUT]`` (about a minute).

Figures of MCUNetV2's patch schedule (one stage from the first layer, recomputed halos, the
split with the fewest MACs at the least analytic peak, input not counted): patch side,
patch-stage MACs (border-clipped; full-size tiles in brackets, MCUNetV2's convention),
whole-network MACs and overhead, analytic peak. Then ``redistribute`` on each network with
the original's peak as the budget and MACs / parameters within 5%.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table

from tinypatch.frontends.mcunet_config import build_net
from tinypatch.frontends.zoo import spec_of
from tinypatch.planning.redistribute import PatchFigures, patch_figures, redistribute

MODELS = ("mbv2-w1.0-r224", "mnasnet-a1", "fbnet-a", "mcunet-in3")
PAPER = {"mbv2-w1.0-r224": "75x75, 130M, 330M, +42% / +10%, 172 kB",
         "mbv2-rd": "63x63, 73M, 301M, +18% / +3%, 172 kB"}


def cells(f: PatchFigures) -> list[str]:
    return [f"{f.patch}x{f.patch}", f"{f.stage_macs_patched / 1e6:.1f}M [{f.stage_macs_full_tiles / 1e6:.1f}M]",
            f"{f.stage_overhead:+.1%} [{f.stage_overhead_full_tiles:+.1%}]", f"{f.macs_patched / 1e6:.1f}M",
            f"{f.overhead:+.1%}", f"{f.peak / 1024:,.1f}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=4)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    cols = ("patch", "patch-stage MACs [full tiles]", "patch-stage overhead", "MACs", "overhead", "peak kB")
    t1 = Table(title=f"MCUNetV2 Table 1 from the specs ({args.grid}x{args.grid} patches)")
    t1.add_column("network")
    for c in cols:
        t1.add_column(c, justify="right")
    t1.add_column("MCUNetV2 Table 1")
    for name in ("mbv2-w1.0-r224", "mbv2-rd"):
        t1.add_row(name, *cells(patch_figures(build_net(spec_of(name)), args.grid)), PAPER[name])
    t2 = Table(title=f"redistribute at {args.grid}x{args.grid} (budget: the original's peak; MACs, params within 5%)")
    for c in ("network", "overhead before -> after", "ratio", "patch", "peak kB before -> after", "MACs change",
              "params change", "moves", "s"):
        t2.add_column(c, justify="left" if c in ("network", "moves") else "right")
    rows = []
    for name in MODELS:
        start = time.perf_counter()
        r = redistribute(spec_of(name), args.grid)
        o, f = r.original.figures, r.result.figures
        ratio = f.overhead / o.overhead if o.overhead else float("nan")
        t2.add_row(name, f"{o.overhead:+.1%} -> {f.overhead:+.1%}", f"{ratio:.2f}", f"{o.patch} -> {f.patch}",
                   f"{o.peak / 1024:,.1f} -> {f.peak / 1024:,.1f}", f"{f.macs / o.macs - 1:+.1%}",
                   f"{f.params / o.params - 1:+.1%}", "; ".join(s.move for s in r.steps),
                   f"{time.perf_counter() - start:.0f}")
        rows.append({"model": name, "before": o.overhead, "after": f.overhead, "peak_before": o.peak,
                     "peak_after": f.peak, "macs_change": f.macs / o.macs - 1, "params_change": f.params / o.params - 1,
                     "moves": [s.move for s in r.steps], "spec": r.result.spec.to_dict()})
    console = Console(width=220)
    console.print(t1)
    console.print(t2)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
