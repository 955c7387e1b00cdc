"""Time against op count: `analyze` and `plan` of plain chains of 3x3 convolutions (16x16x8, ReLU),
and `plan` of residual chains (blocks of two such convolutions and a skip ADD).

`python benchmarks/scaling.py [--analyze N ...] [--plan N ...] [--residual N ...] [--target T ...] [--limit S]`

Each measurement runs in its own process (fresh caches, one core) and is cut off after
``--limit`` seconds (printed as "> S"). `analyze` runs the layer-by-layer arena placement and
the in-place pass; `plan` the schedule search, the in-place pass over its front and the costs;
`plan --target T` the same, trading peak against T's predicted instructions (rows for the
``--plan`` and ``--residual`` sizes, per target).
In the plain chain no stage can beat layer by layer (each holds its input and output whole,
all that layer by layer needs), which the search proves per stage end; in the residual chain
stages do lower the peak, so every end costs its tilings and the front plans have many stages.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time

from tinypatch import api
from tinypatch.frontends.synth import Builder
from tinypatch.ir import Graph


def chain(n: int, residual: bool = False) -> Graph:
    """``n`` 3x3 convolutions 8 -> 8 channels on 16x16, SAME padding, ReLU; with ``residual``, ``n`` ops
    in blocks of two convolutions and an ADD of the block's input (ReLU after the ADD). The weights'
    gain makes up for the taps on the padding, so the scales stay steady however deep the chain."""
    b = Builder(f"chain{n}")
    x = b.input((1, 16, 16, 8))
    inside = 48 / 46  # 46 of a 16-wide axis' 48 taps of a 3-wide window land inside it
    for i in range(n // 3 if residual else n):
        h = b.conv(x, 8, 3, name=f"c{i}", act="RELU", gain=math.sqrt(2.0) * inside)
        if residual:
            h = b.add(x, b.conv(h, 8, 3, name=f"d{i}", gain=inside), name=f"s{i}", act="RELU")
        x = h
    return b.finish([x])


def measure(what: str, n: int, target: str | None = None) -> str:
    """One measurement (in this process): seconds, and the figure it produced."""
    g = chain(n, what == "residual")
    t = time.perf_counter()
    if what == "analyze":
        r = api.analyze(g).report
        figure = f"peak in place {r.peak_inplace} B, {len(r.inplace_ops)} ops in place"
    else:
        p = api.plan(g, target=target)
        figure = f"peak {p.cost.peak} B, front of {len(p.front.front)}"
        if target:
            figure += f", {p.schedule.insns / 1e6:.1f}M instructions predicted"
    return f"{time.perf_counter() - t:.2f}|{figure}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--analyze", type=int, nargs="*", default=[500, 1000, 2000, 5000, 10000])
    p.add_argument("--plan", type=int, nargs="*", default=[500, 1000, 2000, 5000, 10000])
    p.add_argument("--residual", type=int, nargs="*", default=[300, 600, 1200, 2100],
                   help="ops of the residual chains to plan")
    p.add_argument("--target", nargs="*", default=["cortex-m7"],
                   help="targets whose instruction objective `plan` is also timed with (none: leave out)")
    p.add_argument("--limit", type=float, default=120.0, help="seconds before a measurement is cut off")
    p.add_argument("--one", nargs=3, metavar=("WHAT", "N", "TARGET"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(measure(args.one[0], int(args.one[1]), args.one[2] or None))
        return
    rows = [("analyze", args.analyze, ""), ("plan", args.plan, ""), ("residual", args.residual, "")]
    rows += [(what, sizes, t) for t in args.target for what, sizes in (("plan", args.plan), ("residual", args.residual))]
    print("| command | ops | seconds | result |\n|---|---|---|---|")
    for what, sizes, target in rows:
        for n in sizes:
            try:
                out = subprocess.run([sys.executable, __file__, "--one", what, str(n), target], capture_output=True,
                                     text=True, timeout=args.limit, check=True).stdout.strip().splitlines()[-1]
                seconds, figure = out.split("|", 1)
            except subprocess.TimeoutExpired:
                seconds, figure = f"> {args.limit:.0f}", "cut off"
            except subprocess.CalledProcessError as exc:
                seconds, figure = "-", "failed: " + (exc.stderr.strip().splitlines() or ["?"])[-1]
            command = "plan" if what == "residual" else what
            command += f" --target {target}" * bool(target) + " (residual)" * (what == "residual")
            print(f"| {command} | {n:,} | {seconds} | {figure} |", flush=True)


if __name__ == "__main__":
    main()
