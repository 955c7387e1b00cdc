"""Per-patch mixed precision (QuantMCU-style) on the shared models: BitOPs, SRAM, fidelity.

Run: ``TINYPATCH_ASSETS=../shared python benchmarks/quantmcu.py [--models a,b] [--n-eval 500] [--json OUT]``;
``--models`` also takes model files (``--models my_imagenet_model.tflite --insns ''`` needs no shared assets):
any int8 image classifier is measured the same way.

Per model, two patch plans with the input outside the arena and no in-place ops: MCUNetV2's
(single stage, halos recomputed, least peak) and ours (the fewest MACs under the same SRAM,
stream stages left out: mixed precision runs tiled stages). Rows:

* ``int8``: the MCUNetV2 plan at int8 (the baseline: BitOPs, SRAM);
* ``QuantMCU-style``: MCUNetV2 plan, VDPC + VDQS with the training-free acceptance (a move
  stays while its entropy loss Omega <= ``--max-entropy-loss``), bitwidths ``--qm-bits``;
* ``ours``: each plan, VDPC + VDQS whose moves stay only if the calibration crops still agree
  with int8 (and the mean output change stays under ``--max-change`` x the int8 margin),
  bitwidths ``--bits``;
* ``floor``: every map of the MCUNetV2 plan's stage at ``--floor-bits`` with no outlier on the
  calibration crops: what a uniform lowering costs in agreement;
* the ``ours`` and ``floor`` rows come once per ``--steps`` entry (static, patch, pixel: the low-bit
  maps' shift per map, or chosen at run time per patch / per pixel); steps in ``--no-outlier-steps``
  (default pixel) run without outlier patches, and their held-out crops whole-image after the first
  one matched the tiled run (``runtime.mixed.PixelwiseRun``);
* ``margins``: no row; the 1 % and 5 % quantiles of int8's top-1 margin (top output minus the
  runner-up, real units) over the held-out crops: how close to a decision change they sit.

Calibration crops (``--n-calib``, ``--n-calib-ours`` for the slower least-MAC plans) and
held-out crops (``--n-eval``) come from different photos. BitOPs = MACs x 8 (weight bits) x the
activation bits each MAC's input was stored at, counted per patch as the executor runs, for
the patch stage(s); reduction against the same plan at int8. SRAM: the worst case (every
patch an outlier: the plan's peak, what is allocated) and with every lowered buffer packed.
Instructions (``--insns``, default Cortex-M7 and M55): the patch stage(s) of the generated C
(``tinypatch codegen --precision``) executed on QEMU, counted with the qemu-insncount plugin as
the program with each stage run twice minus the program as generated, summed over the first
``--insn-inputs`` held-out crops, for the int8 build and the mixed build of the same plan; the
mixed build's outputs are checked byte for byte against the Python plan executor. ``--profile``
adds the same count per kernel function (one QEMU run per function) for the first crop.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tinypatch import api
from tinypatch.assets import assets_dir
from tinypatch.codegen import generate
from tinypatch.codegen.report import stage_instructions, stage_profile
from tinypatch.codegen.toolchain import build_insncount
from tinypatch.planning.precision import PrecisionPlan
from tinypatch.runtime.crops import crops
from tinypatch.runtime.executor import run as run_whole
from tinypatch.runtime.plan_executor import PlanExecutor
from tinypatch.runtime.quantmcu import _outputs, measure, uniform
from tinypatch.safeio import write_text

MODELS = ("mlperf_vww_96_int8", "person_detect", "mcunet_vww", "mlperf_ic_resnet8_int8")
COLUMNS = ("model", "method", "plan", "SRAM worst / packed B", "BitOPs int8 /input", "BitOPs /input", "reduction",
           "top-1 agree (n)", "mean |Δout|", "outlier patches", "bitwidths", "insns int8 -> mixed /input", "s")


class Insns:
    """Patch-stage instructions of the generated C on emulated Cortex-M targets (int8 builds cached)."""

    def __init__(self, targets: list[str], n_inputs: int, workdir: Path, profile: bool = False) -> None:
        root = assets_dir()
        assert root is not None
        self.targets, self.n, self.work, self.profile = targets, n_inputs, workdir, profile
        self.plugin = build_insncount(root, workdir / "plugin")
        self.int8: dict[tuple, int] = {}

    def _count(self, graph, plan, prec, target: str, xs: list) -> int:
        project = generate(graph, plan, self.work / target, target=target, precision=prec, inplace=False, force=True)
        total = 0
        for x in xs:
            insns, out = stage_instructions(graph, project, [x], self.plugin)
            want = PlanExecutor(graph, plan, prec)([x]).outputs
            if not all(np.array_equal(out[n], want[n]) for n in graph.outputs):
                raise AssertionError(f"{graph.name} on {target}: the C outputs differ from the plan executor's")
            total += insns
        return total

    def row(self, graph, plan, prec, ev: list) -> dict:
        """{target: (int8, mixed)} instructions per input."""
        xs = ev[: self.n]
        out = {}
        for t in self.targets:
            key = (graph.name, json.dumps([s.to_dict() for s in plan.stages]), t)
            if key not in self.int8:
                self.int8[key] = self._count(graph, plan, None, t, xs)
            out[t] = (self.int8[key] / len(xs), self._count(graph, plan, prec, t, xs) / len(xs))
        return out

    def kernels(self, graph, plan, prec, x) -> dict:
        """{target: {kernel function: [int8, mixed]}}: the patch stage's instructions per kernel on input x."""
        out = {}
        for t in self.targets:
            per = [stage_profile(graph, generate(graph, plan, self.work / t, target=t, precision=p, inplace=False,
                                                 force=True), [x], self.plugin) for p in (None, prec)]
            out[t] = {k: [per[0].get(k, 0), per[1].get(k, 0)] for k in sorted(set(per[0]) | set(per[1]),
                                                                            key=lambda k: -max(per[0].get(k, 0),
                                                                                               per[1].get(k, 0)))}
        return out


def no_outliers(prec: PrecisionPlan) -> PrecisionPlan:
    """The same bitwidths and steps with thresholds 255: no patch is an outlier."""
    for sp in prec.stages:
        sp.maps = [replace(m, threshold=255, shift=-1) for m in sp.maps]
    prec.notes["outlier_rule"] = "none (threshold 255)"
    return prec


def bits(text: str) -> list[int]:
    return [int(b) for b in text.split(",")]


def _bits(precision) -> str:
    return " | ".join(" ".join(str(m.bits) for m in sp.maps) for sp in precision.stages)


def _row(model: str, method: str, label: str, r: api.QuantizeReport, seconds: float) -> dict:
    ev = r.evaluation
    b8, bm = ev.bitops
    tiles = sum(c.tiles for c in ev.counts.values())
    return {"model": model, "method": method, "plan": label, "sram_worst": r.memory.worst_case,
            "sram_packed": r.memory.all_low_bit, "bitops_int8": b8 / ev.n, "bitops": bm / ev.n,
            "reduction": r.bitops_reduction, "agreement": ev.agreement, "n": ev.n, "mean_abs_change": ev.mean_abs_change,
            "outlier_share": sum(c.outlier_tiles for c in ev.counts.values()) / max(tiles, 1),
            "bits": _bits(r.precision), "notes": r.precision.notes, "scope": r.precision.scope,
            "plan_stages": [s.to_dict() for s in r.plan.stages], "seconds": seconds}


def _is_file(model: str) -> bool:
    """Whether ``--models`` names a model file rather than a shared model."""
    return model.endswith((".tflite", ".onnx")) or "/" in model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated shared model names (under $TINYPATCH_ASSETS/models) or model files "
                         "(.tflite/.onnx paths), e.g. an ImageNet-trained model of your own")
    ap.add_argument("--methods", default="margins,int8,QuantMCU-style,ours-MCUNetV2,floor,ours-least-MAC")
    ap.add_argument("--n-calib", type=int, default=64)
    ap.add_argument("--n-calib-ours", type=int, default=24, help="calibration crops for the least-MAC plan")
    ap.add_argument("--n-eval", type=int, default=500)
    ap.add_argument("--n-eval-ours", type=int, default=500, help="held-out crops for the least-MAC plan")
    ap.add_argument("--quantile", type=float, default=0.9)
    ap.add_argument("--lam", type=float, default=0.5)
    ap.add_argument("--max-change", type=float, default=0.02)
    ap.add_argument("--max-entropy-loss", type=float, default=0.1)
    ap.add_argument("--max-margin-loss", type=float, default=1.0, help="ours: share of a calibration crop's margin "
                                                                       "a move may cost (1: off)")
    ap.add_argument("--bits", default="8,7,6,5,4,3,2")
    ap.add_argument("--bits-ours", default="8,6,4,2", help="bitwidth steps for the least-MAC plan (search time)")
    ap.add_argument("--qm-bits", default="8,6,4,2")
    ap.add_argument("--floor-bits", type=int, default=7)
    ap.add_argument("--steps", default="pixel", help="the low-bit maps' step for the ours and floor rows, one row per "
                                                    "entry: static, patch, pixel (run time, per patch / per pixel)")
    ap.add_argument("--no-outlier-steps", default="pixel",
                    help="steps whose ours rows have no outlier patches (thresholds 255; pixel steps then run the "
                         "held-out crops whole-image, checked against the tiled run)")
    ap.add_argument("--uniform-first", action="store_true", help="ours: lower all maps together first")
    ap.add_argument("--min-agreement", type=float, default=1.0, help="ours: calibration top-1 agreement a move keeps")
    ap.add_argument("--max-flip-risk", type=float, default=1.0,
                    help="ours: estimated flip rate a move may reach on the calibration crops (1: off)")
    ap.add_argument("--insns", default="cortex-m7,cortex-m55",
                    help="Cortex-M targets whose patch-stage instructions are counted on QEMU ('' : none)")
    ap.add_argument("--insn-inputs", type=int, default=2, help="held-out crops the instruction counts run on")
    ap.add_argument("--profile", action="store_true", help="also the patch stage's instructions per kernel function "
                                                           "(int8 and mixed build, first held-out crop)")
    ap.add_argument("--json", metavar="OUT", help="write the rows as JSON (rewritten after every row)")
    args = ap.parse_args(argv)
    root = assets_dir()
    names = args.models.split(",")
    if root is None and not all(_is_file(n) for n in names) or root is None and args.insns:
        print("set TINYPATCH_ASSETS to the folder holding models/ (and tools/qemu-insncount/ for --insns)",
              file=sys.stderr)
        return 2
    methods = args.methods.split(",")
    common = {"quantile": args.quantile, "lam": args.lam}
    steps = args.steps.split(",")
    ours = {"max_change": args.max_change, "min_agreement": args.min_agreement, "uniform_first": args.uniform_first,
            "max_margin_loss": args.max_margin_loss, "max_flip_risk": args.max_flip_risk,
            **common}

    def label(method: str, step: str) -> str:
        return method if steps == ["static"] else f"{method}, {step} step"
    rows: list[dict] = []
    margins: list[dict] = []
    tmp = tempfile.TemporaryDirectory()
    insns = Insns([t for t in args.insns.split(",") if t], args.insn_inputs, Path(tmp.name),
                                 args.profile) if args.insns else None

    def done(row: dict, graph=None, plan=None, prec=None, ev=None) -> None:
        row["insns"] = insns.row(graph, plan, prec, ev) if insns and prec is not None else {}
        if insns and insns.profile and prec is not None and any(m.bits < 8 for sp in prec.stages for m in sp.maps):
            row["kernels"] = insns.kernels(graph, plan, prec, ev[0])
        rows.append(row)
        print(f"{row['model']} {row['method']} ({row['plan']}): {row['reduction']:.2f}x, agreement "
              f"{row['agreement']:.1%} of {row['n']}, {row['seconds']:.0f} s", flush=True)
        if args.json:
            write_text(args.json, json.dumps({"rows": rows, "margins": margins}, indent=1))

    for model in names:
        name = Path(model).stem if _is_file(model) else model
        graph = api.load(model if _is_file(model) else str(root / "models" / f"{model}.tflite"))
        m2 = api.plan(graph, single_stage=True, strategy="recompute", inplace=False, include_input=False).plan
        t = graph.tensors[graph.inputs[0]]
        cal = list(crops(t, "calibration", args.n_calib, 0))
        ev = list(crops(t, "evaluation", args.n_eval, 1))
        if "margins" in methods:
            m = sorted(float(o[-1] - o[-2]) for o in (np.sort(_outputs(graph, run_whole(graph, [x]))) for x in ev))
            q = [m[int(f * (len(m) - 1))] for f in (0.01, 0.05)]
            margins.append({"model": name, "n": len(m), "q01": q[0], "q05": q[1]})
            print(f"{name}: int8 top-1 margin over {len(m)} held-out crops: 1% quantile {q[0]:.4f}, "
                  f"5% quantile {q[1]:.4f}", flush=True)
            if args.json:
                write_text(args.json, json.dumps({"rows": rows, "margins": margins}, indent=1))
        if "int8" in methods:
            t0 = time.perf_counter()
            r = api.quantize(graph, m2, calib=cal[:1], evaluate=ev, bitwidths=[8])
            done(_row(name, "int8", "MCUNetV2", r, time.perf_counter() - t0), graph, m2, r.precision, ev)
        if "QuantMCU-style" in methods:
            t0 = time.perf_counter()
            r = api.quantize(graph, m2, calib=cal, evaluate=ev, bitwidths=bits(args.qm_bits), accept="entropy",
                             max_entropy_loss=args.max_entropy_loss, **common)
            done(_row(name, "QuantMCU-style", "MCUNetV2", r, time.perf_counter() - t0), graph, m2, r.precision, ev)
        for step in steps if "ours-MCUNetV2" in methods else ():
            t0 = time.perf_counter()
            r = api.quantize(graph, m2, calib=cal, evaluate=ev, bitwidths=bits(args.bits), step=step,
                             outliers=step not in args.no_outlier_steps.split(","), **ours)
            done(_row(name, label("ours", step), "MCUNetV2", r, time.perf_counter() - t0), graph, m2, r.precision, ev)
        for step in steps if "floor" in methods else ():
            t0 = time.perf_counter()
            prec = uniform(graph, m2, cal, args.floor_bits, step)
            if step in args.no_outlier_steps.split(","):
                prec = no_outliers(prec)
            fid, _ = measure(graph, m2, prec, ev)
            b8, bm = fid.bitops
            tiles = sum(c.tiles for c in fid.counts.values())
            done({"model": name, "method": label(f"floor: all maps {args.floor_bits}-bit", step), "plan": "MCUNetV2",
                  "sram_worst": None, "sram_packed": None, "bitops_int8": b8 / fid.n, "bitops": bm / fid.n,
                  "reduction": b8 / bm, "agreement": fid.agreement, "n": fid.n, "mean_abs_change": fid.mean_abs_change,
                  "outlier_share": sum(c.outlier_tiles for c in fid.counts.values()) / max(tiles, 1),
                  "bits": _bits(prec), "notes": prec.notes, "scope": prec.scope, "seconds": time.perf_counter() - t0},
                 graph, m2, prec, ev)
        for step in steps if "ours-least-MAC" in methods else ():
            t0 = time.perf_counter()
            sram = api.plan(graph, single_stage=True, strategy="recompute", inplace=False, include_input=False).cost.peak
            least = api.plan(graph, sram=sram, stream=False, inplace=False, include_input=False).plan
            r = api.quantize(graph, least, calib=cal[:args.n_calib_ours], evaluate=ev[:args.n_eval_ours],
                             bitwidths=bits(args.bits_ours), step=step,
                             outliers=step not in args.no_outlier_steps.split(","), **ours)
            done(_row(name, label("ours", step), "least-MAC", r, time.perf_counter() - t0), graph, least, r.precision,
                 ev)
    print_table(rows, args)
    return 0


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    table = Table(title="per-patch mixed precision vs int8 (patch stages; held-out crops of other photos)")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("model", "method", "plan", "bitwidths") else "right")
    for x in rows:
        sram = f"{x['sram_worst']:,} / {x['sram_packed']:,}" if x["sram_worst"] is not None else "-"
        table.add_row(x["model"], x["method"], x["plan"], sram, f"{x['bitops_int8'] / 1e6:,.1f}M",
                      f"{x['bitops'] / 1e6:,.1f}M", f"{x['reduction']:.2f}x", f"{x['agreement']:.1%} ({x['n']})",
                      f"{x['mean_abs_change']:.4f}", f"{x['outlier_share']:.1%}", x["bits"], _insns(x),
                      f"{x['seconds']:.0f}")
    console = Console(width=220)
    console.print(table)
    for method in sorted({(x["method"], x["plan"]) for x in rows}):
        sel = [x for x in rows if (x["method"], x["plan"]) == method]
        console.print(f"{method[0]} ({method[1]}): mean reduction {sum(x['reduction'] for x in sel) / len(sel):.2f}x, "
                      f"lowest agreement {min(x['agreement'] for x in sel):.1%} over {len(sel)} model(s)",
                      highlight=False)
    for x in rows:
        for t, per in x.get("kernels", {}).items():
            console.print(f"{x['model']} {x['method']} ({x['plan']}), {t}: patch-stage instructions per kernel, "
                          "int8 -> mixed: " + ", ".join(f"{k} {a / 1e6:.3f}M -> {b / 1e6:.3f}M" for k, (a, b) in per.items()),
                          highlight=False)
    console.print(f"lambda {args.lam}; step(s) of the ours/floor rows: {args.steps} (no outlier patch with "
                  f"{args.no_outlier_steps}); outlier rule otherwise: a patch's max |q - zp| above the {args.quantile:g} "
                  f"quantile of the calibration patches' maxima (scope rest); ours: moves kept if the calibration crops "
                  f"agree (>= {args.min_agreement:.0%}), mean |Δout| <= {args.max_change} x int8 margin, no crop loses more than "
                  f"{args.max_margin_loss:g} of its margin and the flip risk is <= {args.max_flip_risk:g}"
                  f"{' (all maps lowered together first)' if args.uniform_first else ''}; QuantMCU-style: "
                  f"moves kept while Omega <= {args.max_entropy_loss}; BitOPs = MACs x 8 x activation bits; "
                  f"instructions: patch stage(s) of the generated C on QEMU ({args.insns or 'not measured'}), mean over "
                  f"{args.insn_inputs} held-out crop(s), int8 build -> mixed build (int8 / mixed)", highlight=False)


def _insns(x: dict) -> str:
    short = {"cortex-m4": "M4", "cortex-m7": "M7", "cortex-m55": "M55"}
    return "; ".join(f"{short.get(t, t)} {a / 1e6:.2f}M -> {b / 1e6:.2f}M ({a / b:.2f}x)"
                     for t, (a, b) in x.get("insns", {}).items()) or "-"


if __name__ == "__main__":
    sys.exit(main())
