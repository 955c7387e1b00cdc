"""Do cached halos lower the analytic peak of the joint search's schedules? (issue 14, MCUNetV2 §3.3)

Run: ``python benchmarks/cached_stages.py [--json SEARCH.json ...] [--random N] [--resolutions 128,160]
[--seed S] [--stages K] [--grids]`` (``SEARCH.json``: ``benchmarks/search.py --json``; its joint winners).

The search's analytic convention (``src/tinypatch/nas/evaluate.py``) costs schedules of up to K
consecutive patch stages from the first op, then layer by layer; each stage was p x p tiles
(p <= 4) with recomputed halos until stream stages were added. Our planner also keeps halos:
``cache_w`` (columns kept for the next tile of a row), ``cache`` (rows too, in full-width line
buffers; with one tile column: full-width row strips whose tile buffers roll down), on grids of
1..4 tiles per axis or of tiles 4, 2 or 1 long, and streams columns (``stream``).
For each network this prints the least analytic peak (``plan_analytic`` on the built graph: int8,
in+out per op, in-place depthwise, input not counted) over that K-stage structure, each stage
drawn from one set of tilings:

- ``recompute p<=4``: p x p, halos recomputed (what the search enumerated before stream stages);
- ``+ cache, cache_w, cached strips``: also ``cache`` and ``cache_w`` p x p and cached full-width
  row strips (every planner strip count);
- ``+ stream``: recompute p x p, or ``stream`` stages (row strips, every planner strip count,
  computed column by column through window buffers, msf-CNN's; only where no tensor inside the
  stage has two readers): the search's schedules now;
- with ``--grids``: ``recompute, planner grids`` (every planner grid a x b, halos recomputed) and
  ``+ cache, cache_w, planner grids`` (minutes per network).

Exact: a min-max over the stage ends (a schedule's peak is the max of its stages' peaks and of
the layers after the last stage), every tiling of every legal stage costed on the graph.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from functools import cache

from rich.console import Console
from rich.table import Table

from tinypatch.analysis.analytic import analytic_memory
from tinypatch.analysis.regions import split_even
from tinypatch.errors import PlanError
from tinypatch.frontends.mcunet_config import build_net
from tinypatch.frontends.spec import NetSpec, spec_from_dict
from tinypatch.nas.space import vww_space
from tinypatch.planning.cost import plan_analytic
from tinypatch.planning.optimal import axis_counts
from tinypatch.planning.plan import STREAM, Plan, Stage, fingerprint
from tinypatch.planning.tiles import legal_ends, tile_stage

Tiling = tuple[int, int, str]  # (row tiles, column tiles, halo mode)
KEEP = ("cache", "cache_w")


def _square(side: int) -> list[Tiling]:
    return [(p, p, "recompute") for p in range(2, min(4, side) + 1)]


def _streams(side: int) -> list[Tiling]:
    return [(g, side, STREAM) for g in axis_counts(side, 4)]


def _kept(side: int) -> list[Tiling]:
    return [(p, p, m) for p in range(2, min(4, side) + 1) for m in KEEP] + [(g, 1, "cache") for g in axis_counts(side, 4)
                                                                            if g > 1]


def _grids(side: int, modes: tuple[str, ...]) -> list[Tiling]:
    counts = axis_counts(side, 4)
    return [(a, b, m) for a in counts for b in counts if a * b > 1 for m in modes]


SETS: dict[str, Callable[[int], list[Tiling]]] = {
    "recompute p<=4": _square,
    "+ cache, cache_w, cached strips": lambda side: _square(side) + _kept(side),
    "+ stream": lambda side: _square(side) + _streams(side),
    "recompute, planner grids": lambda side: _grids(side, ("recompute",)),
    "+ cache, cache_w, planner grids": lambda side: _grids(side, ("recompute", *KEEP)),
}


def least_peaks(spec: NetSpec, stages: int, sets: list[str]) -> dict[str, tuple[int, str]]:
    """Per set: the least analytic peak over up to ``stages`` consecutive patch stages from op 0, and its schedule."""
    g = build_net(spec)
    fp = fingerprint(g)
    per_op = analytic_memory(g, include_input=False).per_op
    n = len(g.ops)
    tail = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        tail[i] = max(per_op[i], tail[i + 1])
    shape = [g.tensors[op.outputs[0]].shape for op in g.ops]
    ends = cache(lambda s: [e for e in legal_ends(g, s) if len(shape[e - 1]) == 4])

    @cache
    def peak(s: int, e: int, t: Tiling) -> int | None:
        rows, cols, mode = t
        side = shape[e - 1]
        stage = Stage(s, e, split_even(side[1], rows), split_even(side[2], cols),
                      {} if mode == "recompute" else {k: mode for k in range(s, e - 1)})
        try:
            st = tile_stage(g, stage)
        except PlanError:  # e.g. a cached halo a later tile needs again after a gap
            return None
        return max(plan_analytic(g, Plan(g.name, fp, [stage], include_input=False), [st]).per_op[s:e])

    def best_stage(s: int, e: int, name: str, below: int) -> tuple[int, str] | None:
        found = None
        for t in SETS[name](shape[e - 1][1]):
            if t[0] > shape[e - 1][1] or t[1] > shape[e - 1][2]:
                continue
            pk = peak(s, e, t)
            if pk is not None and pk < below and (found is None or pk < found[0]):
                found = (pk, f"[{s}:{e}] {t[0]}x{t[1]} {t[2]}")
        return found

    @cache
    def least(s: int, k: int, name: str) -> tuple[int, str]:
        best = (tail[s], "layer by layer" if s == 0 else "")
        if k == 0:
            return best
        for e in ends(s):
            full_out = shape[e - 1][1] * shape[e - 1][2] * shape[e - 1][3]  # written whole by the last op
            if full_out >= best[0]:
                continue
            stage = best_stage(s, e, name, best[0])
            if stage is None:
                continue
            rest = least(e, k - 1, name)
            if max(stage[0], rest[0]) < best[0]:
                best = (max(stage[0], rest[0]), stage[1] + (" + " + rest[1] if rest[1] else ""))
        return best

    return {name: least(0, stages, name) for name in sets}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", nargs="*", default=[], help="benchmarks/search.py --json files (their joint winners)")
    ap.add_argument("--random", type=int, default=0, help="also N random networks of the mcunet-vww space")
    ap.add_argument("--resolutions", default="128,160", help="resolutions of the random networks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stages", type=int, default=2, choices=(1, 2, 3, 4))
    ap.add_argument("--grids", action="store_true", help="also the planner-grid sets (minutes per network)")
    args = ap.parse_args()
    nets: list[tuple[str, NetSpec, str]] = []
    for path in args.json:
        with open(path, encoding="utf-8") as f:
            for r in json.load(f):
                if r["schedule"] != "layer-by-layer":  # the joint winners
                    nets.append((f"seed {r['seed']} winner", spec_from_dict(r["spec"]),
                                 f"{r['peak'] / 1024:.1f} kB, {r['schedule']}"))
    space, rng = vww_space(), random.Random(args.seed)
    for res in (int(r) for r in args.resolutions.split(",") if args.random):
        for i in range(args.random):
            nets.append((f"random {i}, seed {args.seed}", space.to_spec((float(res), *space.sample(rng)[1:])), "-"))
    sets = list(SETS) if args.grids else list(SETS)[:3]
    console = Console(width=220)
    table = Table(title=f"least analytic peak (kB) over up to {args.stages} consecutive patch stages, then layer by "
                        f"layer (input not counted)")
    for col in ("network", "res", "search's schedule", *sets, "least schedule (last set)", "s"):
        table.add_column(col, justify="left" if col in ("network", "search's schedule", "least schedule (last set)")
                         else "right")
    for label, spec, found in nets:
        t0 = time.perf_counter()
        out = least_peaks(spec, args.stages, sets)
        table.add_row(label, str(spec.resolution), found, *(f"{out[s][0] / 1024:.1f}" for s in sets),
                      out[sets[-1]][1], f"{time.perf_counter() - t0:.0f}")
        console.print(f"{label} ({spec.fingerprint()}, {spec.resolution}): "
                      + "; ".join(f"{s}: {out[s][0]} B {out[s][1]}" for s in sets), highlight=False)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
