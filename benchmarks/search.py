"""Joint architecture + schedule search vs MCUNet's per-layer search (MCUNetV2 §3.3, proxy objective).

Run: ``python benchmarks/search.py [--seed 0] [--iterations 30] [--population 100] [--stages 1..4] [--no-stream] [--boards 256,32]
[--workers N] [--target T --max-latency N [--clock HZ] [--objective macs|instructions]] [--json OUT]``
(the full run evaluates about 3,000 proposals per search, four searches: tens of minutes on one core).

For each board: the MACs-proxy search (TinyNAS's objective: the network's MACs) under the SRAM
limit (MCUNetV2's analytic convention, input not counted) and the flash limit (int8 weights +
int32 biases), once with patch schedules (p x p patches, p <= 4, every first-stage length; with
``--stages K``, default 2, also every run of up to K consecutive patch stages, each with its own p,
halos recomputed, or, unless ``--no-stream``, a stream stage (our planner's row strips computed column
by column through window buffers, where no tensor inside the stage has two readers): the multi-stage
side of our planner under the analytic convention; ``--stages 1 --no-stream``: MCUNetV2's single
stage) and once layer by layer only (p = 1, MCUNet's search), same space and seed:

- 256 kB SRAM / 1 MB flash (MCUNetV2-M4's board): MCUNet's ImageNet space (resolution 96-256);
- 32 kB SRAM / 1 MB flash: the same space for 2 classes at half width, with resolutions 48, 64
  and 80 added to MCUNet's 96-256 (``mcunet-vww``; MCUNetV2's VWW result is under 32 kB; no
  network of the ImageNet space fits 32 kB layer by layer, nor one of this space at resolution
  96 or more, so without them the per-layer search would find nothing).

With ``--target`` both searches also predict each feasible network's instructions on that target
(the fitted cost model of ``tinypatch plan --target``) and ``--max-latency`` bounds them (a count,
or a time with ``--clock``, one instruction per cycle); each schedule is then the one with the
fewest predicted instructions unless ``--objective macs``.

Acceptance (issue 14): joint >= 119M MACs at 256 kB; joint / per-layer >= 1.5x at 256 kB and
>= 3x at 32 kB. Prints seeds, run time, evaluation throughput and the machine's load (run times
on a shared machine are upper bounds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from rich.console import Console
from rich.table import Table

from tinypatch.api import parse_clock, parse_latency
from tinypatch.nas.evaluate import Constraints
from tinypatch.nas.evolution import SearchResult, evolve
from tinypatch.nas.space import mcunet_space, vww_space

KB, MB = 1024, 1024 * 1024
BOARDS = (("256 kB / 1 MB", mcunet_space, 256 * KB, 1 * MB, 1.5), ("32 kB / 1 MB", vww_space, 32 * KB, 1 * MB, 3.0))


def run(space_fn, sram: int, flash: int, patches: int, args: argparse.Namespace, executor) -> SearchResult:  # noqa: ANN001
    clock = None if args.clock is None else parse_clock(args.clock)
    latency = None if args.max_latency is None else parse_latency(args.max_latency, clock)
    objective = args.objective or ("instructions" if args.target else "macs")
    return evolve(space_fn(), Constraints(sram, flash, include_input=False, max_patches=patches, stages=args.stages,
                                          target=args.target, max_insns=latency, schedule_objective=objective,
                                          clock_hz=clock, stream=args.stream),
                  population=args.population, n_mutate=args.population // 2, n_crossover=args.population // 2,
                  parents=max(2, args.population // 5), iterations=args.iterations, seed=args.seed,
                  progress=sys.stderr.isatty(), executor=executor)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--population", type=int, default=100)
    ap.add_argument("--workers", type=int, help="evaluate on a local Ray cluster of N CPUs")
    ap.add_argument("--boards", default="256,32", help="which boards (SRAM kB), comma-separated")
    ap.add_argument("--stages", type=int, choices=(1, 2, 3, 4), default=2,
                    help="most patch stages of the joint search's schedules (default 2; 1: MCUNetV2's single stage)")
    ap.add_argument("--no-stream", dest="stream", action="store_false",
                    help="the joint search's stages recompute p x p tiles only (by default a stage may also stream)")
    ap.add_argument("--target", help="predict instructions on this target (cortex-m7, cortex-m55)")
    ap.add_argument("--max-latency", help="latency limit: predicted instructions (120M) or a time (20ms, with --clock)")
    ap.add_argument("--clock", help="clock for a time in --max-latency, e.g. 216MHz")
    ap.add_argument("--objective", choices=("macs", "instructions"), help="schedule choice (default: instructions "
                                                                          "with --target, else macs)")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()
    console = Console(width=200 if args.target else 160)
    console.print(f"seed {args.seed}, --stages {args.stages}{'' if args.stream else ' --no-stream'}; {os.cpu_count()} CPUs, load average "
                  f"{os.getloadavg()[0]:.1f} at the start (a shared machine: run times are upper bounds)",
                  highlight=False)
    started = time.perf_counter()
    executor = None
    if args.workers:
        from tinypatch.nas.executors import RayExecutor

        executor = RayExecutor(workers=args.workers)
    wanted = {int(b) for b in args.boards.split(",")}
    table = Table(title=f"MACs-proxy search, seed {args.seed}, {args.iterations} iterations x population "
                        f"{args.population} (analytic SRAM, input not counted"
                        + (f"; predicted instructions on {args.target}" if args.target else "")
                        + (f" <= {args.max_latency}" + (f" at {args.clock}" if args.clock else "") if args.max_latency
                           else "") + ")")
    for col in ("board", "space", "schedules", "best MACs", "SRAM kB", "flash kB",
                *(("instructions",) * bool(args.target)), "schedule", "resolution", "proposals", "evaluated", "feasible", "run time", "ms / evaluation"):
        table.add_column(col, justify="left" if col in ("board", "space", "schedules", "schedule") else "right")
    out, ok = [], True
    for board, space_fn, sram, flash, factor in BOARDS:
        if sram // KB not in wanted:
            continue
        best = {}
        by_insns = (args.objective or ("instructions" if args.target else "macs")) == "instructions"
        stream = ", stream" if args.stream and not by_insns else ""
        for patches, label in ((4, f"joint (p <= 4{stream}, {args.stages} stage{'s' * (args.stages > 1)})"),
                               (1, "per-layer (p = 1)")):
            t0 = time.perf_counter()
            r = run(space_fn, sram, flash, patches, args, executor)
            e = r.best.evaluation
            best[patches] = e.macs
            table.add_row(board, r.space.name, label, f"{e.macs / 1e6:.1f}M", f"{e.peak / KB:.1f}",
                          f"{e.flash / KB:.1f}", *((f"{e.insns / 1e6:.1f}M",) * bool(args.target)), e.schedule,
                          str(r.best.spec.resolution), str(r.proposals),
                          str(len(r.evaluations)), str(len(r.scores)), f"{r.seconds:.0f} s",
                          f"{1000 * r.seconds / max(1, len(r.evaluations)):.0f}")
            out.append({"board": board, "space": r.space.name, "patches": patches, "seed": args.seed,
                        "iterations": args.iterations, "population": args.population, **e.to_dict(),
                        "resolution": r.best.spec.resolution, "spec": r.best.spec.to_dict(),
                        "proposals": r.proposals, "evaluated": len(r.evaluations), "feasible": len(r.scores),
                        "seconds": r.seconds, "wall": time.perf_counter() - t0})
            console.print(f"{board} {label}: {e.macs / 1e6:.1f}M MACs in {r.seconds:.0f} s", highlight=False)
        ratio = best[4] / best[1]
        met = ratio >= factor and (sram != 256 * KB or best[4] >= 119e6)
        ok &= met or args.max_latency is not None
        console.print(f"{board}: joint / per-layer = {ratio:.2f}x (floor {factor:g}x"
                      + (f", joint >= 119M: {best[4] >= 119e6}" if sram == 256 * KB else "")
                      + f") -> {'met' if met else 'NOT met'}"
                      + (" (the floor is for searches without a latency limit)" if args.max_latency else ""),
                      highlight=False)
    console.print(table)
    console.print(f"total {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f} at the end",
                  highlight=False)
    if executor is not None:
        executor.close()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
