"""Pareto fronts of peak SRAM vs MACs: tinypatch's search against msf-CNN, MCUNetV2 and Vela.

Run: ``python benchmarks/pareto.py [--json OUT] [--plot FILE.png] [--quick]``.

For each model, two fronts are computed by the same code (``tinypatch.planning.search``):

* **ours**: multi-stage fusion cut anywhere, tile grids, per-stage halo policy (recompute,
  cache_w, cache, cache of the high-resolution prefix) or column streaming through window
  buffers (msf-CNN's horizontally cached fused block), exact DP front;
* **MCUNetV2-style**: a single patch stage from the first layer, halos recomputed.

Accounting, stated per table:

* msf-CNN chains (zoo ``msf-*``, built from ``configs/msfcnn_chains.json``): msf-CNN's own
  convention, like for like: input + output of every layer, depthwise not in place, the model
  input and the final output not counted, no alignment; the peak is the most bytes live at
  once (the liveness lower bound, which the arena placement reaches or is reported beside);
  MAC factor = MACs with recomputation / MACs of the plain chain (conv and depthwise only).
  msf-CNN's published points (from that JSON) are checked for dominance: a point is
  dominated when our front has a schedule with no more memory and no larger MAC factor,
  one of them strictly better.
* real architectures (zoo models): MCUNetV2's convention for the input (not counted, it is
  streamed), every other activation counted, placed in a 16-byte aligned arena.
* shared .tflite models: placed arena peak, input counted and not counted. MLPerf Tiny VWW is
  compared with Arm Vela's 48.0 KiB (``--optimise Size``, input counted) at MAC factor 1.00.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from rich.console import Console
from rich.table import Table

from tinypatch.assets import assets_dir
from tinypatch.frontends.load import load_model
from tinypatch.planning.optimal import FrontResult
from tinypatch.planning.search import search
from tinypatch.safeio import write_text

CHAINS = ("msf-mbv2-w0.35-r144", "msf-mcunet-vww5-r80", "msf-mcunet-320kb-r176")
ZOO = ("mbv2-w0.35-r144", "mcunet-in1", "mcunet-in3", "proxyless-w0.3")
FACTORS = (1.00, 1.10, 1.40)
VELA_VWW_KIB = 48.0  # MANIFEST: ethos-u-vela 5.2.0 --optimise Size on mlperf_vww_96_int8


def published_points() -> dict[str, list[tuple[int, float]]]:
    """msf-CNN's published (peak bytes, MAC factor) points, read from the shared JSON."""
    root = assets_dir()
    if root is None:
        return {}
    text = json.loads((root / "configs" / "msfcnn_chains.json").read_text())["published_points"]
    out = {}
    for name in CHAINS:
        part = text.split(name + ":")[1].split("msf-")[0]
        out[name] = [(int(p), float(f)) for p, f in re.findall(r"(\d+) at (\d+\.\d+)", part)]
    return out


def peak(s) -> int:  # noqa: ANN001
    return s.peak if s.peak is not None else s.lower_bound


def at_factor(res: FrontResult, factor: float) -> int | None:
    """Least peak with MACs <= factor x plain MACs."""
    ok = [peak(s) for s in res.front if s.macs <= res.baseline.macs * factor + 1e-9]
    return min(ok) if ok else None


def factor_at(res: FrontResult, memory: int) -> float | None:
    """Least MAC factor with peak <= memory."""
    ok = [s.macs / res.baseline.macs for s in res.front if peak(s) <= memory]
    return min(ok) if ok else None


def dominates(res: FrontResult, memory: int, factor: float) -> bool:
    return any(peak(s) <= memory and s.macs / res.baseline.macs <= factor + 1e-9
               and (peak(s) < memory or s.macs / res.baseline.macs < factor - 1e-9) for s in res.front)


def fmt(v: float | int | None, kind: str = "B") -> str:
    if v is None:
        return "-"
    return f"{v:,}" if kind == "B" else f"{v:.3f}"


def fronts(name: str, **acct) -> tuple[FrontResult, FrontResult]:  # noqa: ANN003
    g = load_model(name)
    return search(g, **acct), search(g, strategy="recompute", single_stage=True, **acct)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    ap.add_argument("--plot", metavar="FILE.png", help="plot the msf-CNN MobileNetV2 chain fronts")
    ap.add_argument("--quick", action="store_true", help="skip the zoo and .tflite sections")
    args = ap.parse_args()
    console = Console(width=200)
    report: dict[str, object] = {}
    pubs = published_points()

    t = Table(title="msf-CNN chains, msf-CNN accounting (bytes; input and final output not counted; peak = most "
                    "bytes live at once)")
    for col in ("model", "front", "layer-by-layer", *[f"peak @F<={f:.2f}" for f in FACTORS], "peak (any F)",
                "search s"):
        t.add_column(col, justify="left" if col in ("model", "front") else "right")
    d = Table(title="msf-CNN published points vs our fronts (MAC factor F; dominated = we need no more memory "
                    "and no more MACs, one strictly less)")
    for col in ("model", "msf-CNN peak", "msf-CNN F", "our F at that peak", "our peak at that F",
                "MCUNetV2-style F at that peak", "dominated"):
        d.add_column(col, justify="left" if col == "model" else "right")
    dominated = total = 0
    chain_fronts = {}
    for name in CHAINS:
        acct = dict(include_input=False, include_output=False, alignment=1)
        t0 = time.perf_counter()
        ours, mcu = fronts(name, **acct)
        chain_fronts[name] = (ours, mcu)
        secs = time.perf_counter() - t0
        for label, res in (("ours", ours), ("MCUNetV2-style", mcu)):
            t.add_row(name, label, fmt(peak(res.baseline)), *[fmt(at_factor(res, f)) for f in FACTORS],
                      fmt(min(peak(s) for s in res.front)), f"{secs:.1f}" if label == "ours" else "")
        rows = []
        for mem, fac in pubs.get(name, []):
            dom = dominates(ours, mem, fac)
            dominated += dom
            total += 1
            rows.append({"msf_peak": mem, "msf_factor": fac, "our_factor": factor_at(ours, mem),
                         "our_peak": at_factor(ours, fac), "mcunetv2_factor": factor_at(mcu, mem),
                         "dominated": dom})
            d.add_row(name, f"{mem:,}", f"{fac:.3f}", fmt(factor_at(ours, mem), "F"), fmt(at_factor(ours, fac)),
                      fmt(factor_at(mcu, mem), "F"), "[green]yes[/]" if dom else "[red]no[/]")
        report[name] = {"ours": [(peak(s), s.macs / ours.baseline.macs) for s in ours.front],
                        "mcunetv2": [(peak(s), s.macs / mcu.baseline.macs) for s in mcu.front],
                        "published": rows, "seconds": secs}
    console.print(t)
    console.print(d)
    console.print(f"published msf-CNN points dominated by our front: {dominated} of {total}")

    if not args.quick:
        z = Table(title="real architectures (zoo), MCUNetV2 input convention: input not counted; placed 16-byte "
                        "aligned arena (bytes)")
        for col in ("model", "front", "layer-by-layer", *[f"peak @F<={f:.2f}" for f in FACTORS], "peak (any F)"):
            z.add_column(col, justify="left" if col in ("model", "front") else "right")
        for name in ZOO:
            ours, mcu = fronts(name, include_input=False)
            for label, res in (("ours", ours), ("MCUNetV2-style", mcu)):
                z.add_row(name, label, fmt(peak(res.baseline)), *[fmt(at_factor(res, f)) for f in FACTORS],
                          fmt(min(peak(s) for s in res.front)))
            report[name] = {"ours": [(peak(s), s.macs / ours.baseline.macs) for s in ours.front]}
        console.print(z)
        root = assets_dir()
        if root is not None:
            m = Table(title="shared .tflite models: placed 16-byte aligned arena peak (bytes), input counted / "
                            "not counted")
            for col in ("model", "front", "input", "layer-by-layer", *[f"peak @F<={f:.2f}" for f in FACTORS],
                        "peak (any F)"):
                m.add_column(col, justify="left" if col in ("model", "front", "input") else "right")
            for path in sorted((root / "models").glob("*.tflite")):
                if path.name == "hello_world_int8.tflite":
                    continue
                for inc in (True, False):
                    ours, mcu = fronts(str(path), include_input=inc)
                    for label, res in (("ours", ours), ("MCUNetV2-style", mcu)):
                        m.add_row(path.stem, label, "counted" if inc else "not counted", fmt(peak(res.baseline)),
                                  *[fmt(at_factor(res, f)) for f in FACTORS], fmt(min(peak(s) for s in res.front)))
                    if path.stem == "mlperf_vww_96_int8" and inc:
                        vww = at_factor(ours, 1.0)
                        report["vela_vww"] = {"ours_at_1.00": vww, "vela_kib": VELA_VWW_KIB}
            console.print(m)
            if "vela_vww" in report:
                v = report["vela_vww"]["ours_at_1.00"]  # type: ignore[index]
                console.print(f"MLPerf VWW, input counted, MAC factor 1.00: ours {v:,} B = {v / 1024:.1f} KiB vs "
                              f"Vela --optimise Size {VELA_VWW_KIB} KiB")
    if args.plot:
        from tinypatch.report.plots import plot_pareto

        name = CHAINS[0]
        ours, mcu = chain_fronts[name]
        plot_pareto(args.plot, f"{name}: peak memory vs MAC factor (msf-CNN accounting)",
                    {"tinypatch (multi-stage, halo caching)": [(peak(s), s.macs / ours.baseline.macs)
                                                              for s in ours.front],
                     "MCUNetV2-style single stage (same code)": [(peak(s), s.macs / mcu.baseline.macs)
                                                                 for s in mcu.front]},
                    {"msf-CNN published": pubs.get(name, [])}, ylabel="MAC factor (MACs / plain MACs)",
                    ymax=3.2, xlog=True)
        console.print(f"plot written to {args.plot}")
    if args.json:
        write_text(args.json, json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
