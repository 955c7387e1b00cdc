"""Issue 10's operators: a U-Net step planned patch by patch, and the transpose conv's DSP kernel.

Run: ``python benchmarks/newops.py [--target cortex-m7]``

First the U-Net step of ``tests/strategies.py::unet_step`` (TRANSPOSE_CONV, channel concat,
PRELU, RESIZE_BILINEAR, MAXIMUM): the layer-by-layer placed peak and the search's least-peak plan,
each run by the plan executor (byte-identical to whole-image inference, measured high-water mark).
Then executed instructions per MAC on emulated Cortex-M:
One-layer int8 models (the upsampling layers of a small U-Net / FPN): TRANSPOSE_CONV 3x3 and
2x2 stride 2 (SAME), and for scale a 3x3 CONV_2D of the same size. Each is generated, built with
the optimised kernels (``-DTP_FAST``: the DSP path) and with the reference kernels only
(``FAST=``), run on QEMU and compared with the Python executor; the kernel code's executed
instructions come from the shared assets' ``qemu-insncount`` plugin (needs TINYPATCH_ASSETS).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from strategies import CnnBuilder, unet_step  # noqa: E402

from tinypatch.analysis.macs import op_macs  # noqa: E402
from tinypatch.assets import assets_dir  # noqa: E402
from tinypatch.codegen import generate  # noqa: E402
from tinypatch.codegen.targets import MCU_TARGETS  # noqa: E402
from tinypatch.codegen.toolchain import build_insncount, make, missing_tools, run_qemu  # noqa: E402
from tinypatch.ir import Graph  # noqa: E402
from tinypatch.planning.cost import plan_cost  # noqa: E402
from tinypatch.planning.plan import Plan  # noqa: E402
from tinypatch.planning.search import choose, search  # noqa: E402
from tinypatch.runtime.executor import run  # noqa: E402
from tinypatch.runtime.plan_executor import PlanExecutor  # noqa: E402


def layers() -> dict[str, tuple[Graph, np.ndarray]]:
    out = {}
    for name, shape, add in (
        ("transpose conv 3x3 s2 12x12x16->24x24x16", (1, 12, 12, 16),
         lambda b: b.transpose_conv(16, 3, 3, (2, 2), "SAME", True)),
        ("transpose conv 2x2 s2 12x12x32->24x24x16", (1, 12, 12, 32),
         lambda b: b.transpose_conv(16, 2, 2, (2, 2), "SAME", True)),
        ("conv 3x3 s1 24x24x16->24x24x16 (for scale)", (1, 24, 24, 16),
         lambda b: b.conv(16, 3, 3, (1, 1), (1, 1), "SAME")),
    ):
        rng = np.random.default_rng(1)
        b = CnnBuilder(rng, shape, name.split()[0])
        add(b)
        out[name] = (b.finish(), rng.integers(-128, 128, shape, dtype=np.int8))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=MCU_TARGETS, default="cortex-m7")
    args = ap.parse_args()
    console = Console(width=160)
    g, x = unet_step()
    want = run(g, [x])[g.outputs[0]]
    u = Table(title="U-Net step (input and output counted, 16-byte aligned arena)")
    for col in ("schedule", "placed peak B", "measured B", "MACs", "byte-identical"):
        u.add_column(col, justify="left" if col == "schedule" else "right")
    front = search(g)
    for label, plan in (("layer by layer", Plan.layer_by_layer(g)), ("least peak", choose(front).plan),
                        ("least peak at <= +10% MACs", choose(front, max_mac_overhead=0.1).plan)):
        r = PlanExecutor(g, plan)(x)
        cost = plan_cost(g, plan)
        stages = " + ".join(f"[{s.start}:{s.end}] {len(s.rows) - 1}x{len(s.cols) - 1} {s.mode(s.start)}"
                            for s in plan.stages)
        u.add_row(f"{label} {stages}".strip(), f"{cost.peak:,}", f"{r.arena_high_water:,}", f"{cost.macs:,}",
                  "yes" if r.outputs[g.outputs[0]].tobytes() == want.tobytes() else "NO")
    console.print(u)
    missing = missing_tools(args.target)
    assets = assets_dir()
    if missing or assets is None:
        console.print(f"cannot run: {missing or 'shared assets not found (set TINYPATCH_ASSETS)'}")
        return 2
    t = Table(title=f"{args.target}: kernel instructions / MAC, optimised (-DTP_FAST) vs reference kernels")
    for col in ("layer", "MACs", "optimised", "reference", "speed-up", "exact"):
        t.add_column(col, justify="left" if col == "layer" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        plugin = build_insncount(assets, Path(tmp) / "plugin")
        for k, (name, (g, x)) in enumerate(layers().items()):
            macs = sum(op_macs(g, op) for op in g.ops)
            want = run(g, [x])[g.outputs[0]]
            per_mac, exact = [], True
            for fast in (True, False):
                path = Path(tmp) / f"l{k}_{int(fast)}"
                generate(g, Plan.layer_by_layer(g), path, args.target, inplace=False)
                make(path, args.target, variables=None if fast else {"FAST": ""})
                q = run_qemu(path, g, [x], args.target, plugin)
                exact &= q.outputs[g.outputs[0]].tobytes() == want.tobytes()
                per_mac.append(q.kernel_insns / macs)
            t.add_row(name, f"{macs:,}", f"{per_mac[0]:.2f}", f"{per_mac[1]:.2f}", f"{per_mac[1] / per_mac[0]:.1f}x",
                      "yes" if exact else "NO")
    console.print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
