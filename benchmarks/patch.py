"""Patch-based inference: least peak SRAM the schedule search finds, per MAC budget, per model.

Run: ``python benchmarks/patch.py [--json OUT] [--space all|mcunetv2|tinypatch|rewrite] [--models NAME ...]
[--verify]``.

Models: every shared ``.tflite`` model and the zoo models mbv2-w1.0-r224, mbv2-w0.35-r144,
proxyless-w0.3, mcunet-in0..in4 and the detectors mcunet-det (128x160) and mcunet-det-s (64x80),
whose first two outputs are made in the middle of the graph (synthetic weights; only the
architecture matters here), and the TensorFlow-made FPN detector ``fpn_detector_96_b1`` when
``python tools/make_tf_models.py`` has built it (cache: ``$TINYPATCH_TF_MODELS`` or ``.cache/tfmodels``).

Detectors get one more table (issue 10's acceptance): in the full space (with and without graph
rewrites), input not counted, is the least peak within +10% MACs below half the layer-by-layer
placed peak?

How each figure is measured (bytes; kB = 1024 B):

* every peak is a **placed** arena high-water mark: the plan's activation buffers
  (:func:`tinypatch.planning.memory.plan_buffers`: tile-local buffers at their largest tile,
  full-size stage inputs and outputs, halo caches and line buffers) placed by
  :func:`tinypatch.planning.arena.place` in one arena, each buffer at its real dtype and
  rounded up to 16 B, in-place RESHAPE; the model output is counted. Every table is given
  twice: **input counted** (TFLM's convention) and **input not counted** (MCUNetV2's: the
  image is streamed). The patch executor reproduces these peaks exactly (tests/test_patch_exact.py
  runs these very plans and checks measured high-water == planned peak; ``--verify`` does it here);
* layer-by-layer = the same placement with no patch stage;
* the best peak within +10% / +20% MACs: the least placed peak on the search's Pareto front
  among schedules whose border-clipped MACs (each tile computes only the pixels it needs)
  are at most 1.10 / 1.20 x the layer-by-layer MACs; unconstrained: the least peak of the front;
* search time: wall-clock seconds of one :func:`tinypatch.planning.search.search` call
  (single thread, placing the front included), on this machine.

Two schedule spaces, searched by the same code:

* ``mcunetv2``: MCUNetV2's: one patch stage from the first spatial operator to a legal split,
  tile grids 1..8 x 1..8, halos recomputed (``strategy="recompute", single_stage=True``);
* ``tinypatch``: the full space: several fused stages cut anywhere, grids up to 8x8 and
  strips, per-stage halo policy (recompute, cache along W, cache both) (``strategy="auto"``);
* ``rewrite``: the full space searched on the model and on its candidate rewrites (memory-aware
  op orders, maps recomputed for a late reader: :mod:`tinypatch.planning.rewrite_search`, as
  ``tinypatch plan`` does), fronts merged; MACs include the recomputed clones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tinypatch.assets import assets_dir
from tinypatch.frontends.load import load_model
from tinypatch.ir import Graph
from tinypatch.planning.optimal import FrontResult, Schedule
from tinypatch.planning.plan import Plan
from tinypatch.planning.rewrite import describe as describe_rewrites
from tinypatch.planning.rewrite_search import rewrite_front, schedule_graph
from tinypatch.planning.search import search
from tinypatch.planning.tiles import stage_info
from tinypatch.safeio import write_text

ZOO = ("mbv2-w1.0-r224", "mbv2-w0.35-r144", "proxyless-w0.3", "mcunet-in0", "mcunet-in1", "mcunet-in2",
       "mcunet-in3", "mcunet-in4", "mcunet-det", "mcunet-det-s")
SPACES = {"mcunetv2": {"strategy": "recompute", "single_stage": True}, "tinypatch": {"strategy": "auto"},
          "rewrite": {"strategy": "auto"}}
BUDGETS = (("<=10%", 0.10), ("<=20%", 0.20), ("any", None))
SHORT = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dw", "AVERAGE_POOL_2D": "avgpool", "MAX_POOL_2D": "maxpool",
         "QUANTIZE": "quant", "RESIZE_NEAREST_NEIGHBOR": "resize", "CONCATENATION": "concat"}


DETECTORS = ("mcunet-det", "mcunet-det-s", "fpn_detector_96_b1")
TF_MODELS = ("fpn_detector_96_b1",)  # built by tools/make_tf_models.py (needs TensorFlow once)


def tf_model_paths() -> list[str]:
    """The converter-made models above, when the cache of tools/make_tf_models.py holds them."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "tools" / "make_tf_models.py"
    spec = importlib.util.spec_from_file_location("make_tf_models", script)
    if spec is None or spec.loader is None:
        return []
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = module.default_root() / module.cache_key("small")
    return [str(folder / f"{n}.tflite") for n in TF_MODELS if (folder / f"{n}.tflite").exists()]


def model_specs(only: list[str] | None) -> list[str]:
    root = assets_dir()
    shared = [str(p) for p in sorted((root / "models").glob("*.tflite"))] if root else []
    return [s for s in shared + list(ZOO) + tf_model_paths() if not only or name_of(s) in only or s in only]


def name_of(spec: str) -> str:
    return Path(spec).stem if spec.endswith(".tflite") else spec


def describe(graph: Graph, plan: Plan) -> list[dict[str, Any]]:
    """Each stage of ``plan``: ops range, op types, tiled map, grid, largest tile, halo policy."""
    out = []
    for st in plan.stages:
        info = stage_info(graph, st.start, st.end)
        types = Counter(SHORT.get(graph.ops[k].type, graph.ops[k].type.lower()) for k in range(st.start, st.end))
        modes = sorted({st.mode(k) for k in info.tile_ops[:-1]}) or ["recompute"]
        tile = (max(b - a for a, b in zip(st.rows, st.rows[1:])), max(b - a for a, b in zip(st.cols, st.cols[1:])))
        out.append({"ops": [st.start, st.end], "op_types": dict(types),
                    "tiled": list(graph.tensors[info.tiled].shape), "accumulates_average": info.reduce is not None,
                    "grid": list(st.grid), "tile": list(tile), "halo": "+".join(modes)})
    return out


def stage_text(stages: list[dict[str, Any]], rewrites: str = "") -> str:
    if not stages:
        return "layer-by-layer"
    parts = [f"graph rewritten: {rewrites}"] if rewrites else []
    for s in stages:
        types = " ".join(f"{n}x{t}" if n > 1 else t for t, n in s["op_types"].items())
        tiled = "x".join(map(str, s["tiled"][1:])) + (", averaged tile by tile" if s["accumulates_average"] else "")
        parts.append(f"ops [{s['ops'][0]}:{s['ops'][1]}) ({types}) -> {tiled}, grid {s['grid'][0]}x{s['grid'][1]} "
                     f"(tiles <= {s['tile'][0]}x{s['tile'][1]}), {s['halo']}")
    return "\n".join(parts)


def point(graph: Graph, res: FrontResult, s: Schedule) -> dict[str, Any]:
    return {"peak": s.peak, "macs": s.macs, "mac_overhead": s.macs / res.baseline.macs - 1,
            "stages": describe(schedule_graph(s, graph), s.plan), "rewrites": describe_rewrites(s.plan.rewrites),
            "plan": s.plan.to_dict()}


def verify(graph: Graph, s: Schedule) -> bool:
    """Run the plan on a seeded random input: outputs equal the model's whole-image inference, arena
    as planned (a plan with rewrites runs the graph they make of the model)."""
    from tinypatch.runtime.executor import run
    from tinypatch.runtime.inputs import random_input
    from tinypatch.runtime.plan_executor import PlanExecutor

    x = [random_input(graph.tensors[t], seed=0) for t in graph.inputs]
    got, want = PlanExecutor(graph, s.plan)(x), run(graph, x)
    same = all(np.array_equal(got.outputs[k], v) for k, v in want.items())
    return same and got.arena_high_water == got.arena_size == s.peak


def measure(spec: str, spaces: list[str], check: bool) -> list[dict[str, Any]]:
    graph = load_model(spec)
    rows = []
    for include_input in (True, False):
        for space in spaces:
            t0 = time.perf_counter()
            if space == "rewrite":
                res = rewrite_front(graph, lambda g, inc=include_input: search(g, include_input=inc, strategy="auto"))
            else:
                res = search(graph, include_input=include_input, **SPACES[space])  # type: ignore[arg-type]
            seconds = time.perf_counter() - t0
            best = {}
            for label, limit in BUDGETS:
                s = res.best_under_overhead(limit) if limit is not None else min(res.front,
                                                                                  key=lambda s: (s.peak, s.macs))
                best[label] = point(graph, res, s) | ({"verified": verify(graph, s)} if check else {})
            rows.append({"model": name_of(spec), "include_input": include_input, "space": space,
                         "layer_by_layer": res.baseline.peak, "base_macs": res.baseline.macs, "best": best,
                         "front_size": len(res.front), "search_s": seconds})
    return rows


def kb(n: int) -> str:
    return f"{n / 1024:,.1f}" if n >= 1024 else f"{n} B"


def cell(base: int, p: dict[str, Any]) -> str:
    mark = "" if "verified" not in p else (" [green]ok[/]" if p["verified"] else " [red]MISMATCH[/]")
    return f"{kb(p['peak'])} ({base / p['peak']:.1f}x)\n{p['mac_overhead']:+.1%} MACs{mark}"


def print_tables(console: Console, rows: list[dict[str, Any]]) -> None:
    for include_input in (True, False):
        acct = "input counted" if include_input else "input not counted (MCUNetV2 convention)"
        t = Table(title=f"peak SRAM, kB = 1024 B: placed arena, 16-byte aligned buffers, {acct}, output counted",
                  show_lines=True)
        for col in ("model", "space", "layer-by-layer", "best <= +10% MACs", "best <= +20% MACs", "best (any MACs)",
                    "search s"):
            t.add_column(col, justify="left" if col in ("model", "space") else "right")
        for r in (r for r in rows if r["include_input"] == include_input):
            t.add_row(r["model"], r["space"], kb(r["layer_by_layer"]),
                      *[cell(r["layer_by_layer"], r["best"][label]) for label, _ in BUDGETS], f"{r['search_s']:.2f}")
        console.print(t)
        s = Table(title=f"schedules chosen ({acct}): ops [start:end) (op types) -> tiled map HxWxC (the stage "
                        f"output, or a closing global average's input), grid, largest tile, halo policy",
                  show_lines=True)
        for col in ("model", "space", "budget", "schedule"):
            s.add_column(col)
        for r in (r for r in rows if r["include_input"] == include_input):
            for label, _ in BUDGETS:
                p = r["best"][label]
                s.add_row(r["model"], r["space"], label, stage_text(p["stages"], p.get("rewrites", "")))
        console.print(s)


def detector_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per detector and full space (with / without rewrites; input not counted): layer-by-layer peak,
    half of it, the least peak within +10% MACs and whether it is below half."""
    out = []
    for r in rows:
        if r["model"] in DETECTORS and r["space"] in ("tinypatch", "rewrite") and not r["include_input"]:
            best = r["best"]["<=10%"]
            half = r["layer_by_layer"] // 2
            out.append({"model": r["model"], "space": r["space"], "layer_by_layer": r["layer_by_layer"], "half": half,
                        "peak_10": best["peak"], "mac_overhead_10": best["mac_overhead"],
                        "least_peak": r["best"]["any"]["peak"], "below_half": best["peak"] < half})
    return out


def print_detectors(console: Console, rows: list[dict[str, Any]]) -> None:
    det = detector_rows(rows)
    if not det:
        return
    t = Table(title="detectors (issue 10): least peak at <= +10% MACs vs half the layer-by-layer placed peak, "
                    "input not counted, full schedule space (rewrite: with graph rewrites)")
    for col in ("model", "space", "layer-by-layer B", "half B", "peak <= +10% MACs B", "MAC overhead", "below half",
                "least peak (any MACs) B"):
        t.add_column(col, justify="left" if col in ("model", "space") else "right")
    for d in det:
        t.add_row(d["model"], d["space"], f"{d['layer_by_layer']:,}", f"{d['half']:,}", f"{d['peak_10']:,}",
                  f"{d['mac_overhead_10']:+.1%}", "yes" if d["below_half"] else "[red]NO[/]", f"{d['least_peak']:,}")
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write every figure and chosen plan as JSON")
    ap.add_argument("--space", choices=("all", *SPACES), default="all", help="schedule space(s) to search")
    ap.add_argument("--models", nargs="+", metavar="NAME", help="only these (file stem or zoo name)")
    ap.add_argument("--verify", action="store_true",
                    help="run every chosen plan in the patch executor and check it (slow on large models)")
    args = ap.parse_args(argv)
    console = Console(width=200)
    spaces = list(SPACES) if args.space == "all" else [args.space]
    specs = model_specs(args.models)
    if not specs:
        console.print("no models: set TINYPATCH_ASSETS for the shared .tflite models, or check --models")
        return 2
    t0 = time.perf_counter()
    rows = [r for spec in specs for r in measure(spec, spaces, args.verify)]
    print_tables(console, rows)
    print_detectors(console, rows)
    console.print(f"{len(specs)} models, {len(rows)} searches in {time.perf_counter() - t0:.0f} s. Peaks: placed "
                  "arena high-water marks (tinypatch.planning.arena.place) of each plan's buffers, real dtypes, "
                  "16 B aligned; (Nx) = layer-by-layer / patch peak; MAC overhead border-clipped vs layer-by-layer.",
                  highlight=False)
    if args.json:
        write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
