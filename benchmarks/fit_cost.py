"""Fit the instruction cost model (``tinypatch.planning.latency``) from QEMU counts.

Run: ``python benchmarks/fit_cost.py [--targets cortex-m7 cortex-m55] [--models NAME ...] [--measure-only | --fit-only]``
(needs arm-none-eabi-gcc, qemu-system-arm and the shared assets).

For every shared model and target it measures the generated program's executed instructions
(qemu-insncount) layer by layer and under a few patch plans of the searched front (the
least-peak plan, the fewest-MAC plan with a stage, a middle one; for mcunet_vww also the
input-outside front), checks the outputs byte for byte, and caches the counts with the plans in
``benchmarks/cost_counts.json`` (a run already there is not measured again). It then fits, per
target, non-negative coefficients per kernel path and feature by least squares on the relative
error, writes them to ``src/tinypatch/planning/latency_fit.json`` with this command, and prints
predicted against measured instructions for every run, and the errors when each model is left
out of the fit and predicted by the others' constants.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.optimize import lsq_linear

from tinypatch.assets import assets_dir
from tinypatch.codegen import generate
from tinypatch.codegen.project import deployed_plan
from tinypatch.codegen.report import measure
from tinypatch.codegen.toolchain import build_insncount, missing_tools
from tinypatch.frontends.tflite import load_tflite
from tinypatch.ir import Graph
from tinypatch.planning.latency import FEATURES, FIT_FILE, CostModel, plan_work
from tinypatch.planning.plan import Plan
from tinypatch.planning.check import check_plan
from tinypatch.planning.optimal import Choice, HaloPolicy, to_plan
from tinypatch.planning.search import search
from tinypatch.errors import BudgetError, TinypatchError
from tinypatch.frontends.synth import Builder
from tinypatch.runtime.inputs import random_input

sys.path.insert(0, str(Path(__file__).parent))
from mcu import model_input, stage_graph  # noqa: E402

COUNTS = Path(__file__).with_name("cost_counts.json")
DEFAULT_TARGETS = ("cortex-m7", "cortex-m55")


def fit_plans(graph: Graph, name: str) -> list[tuple[str, Plan]]:
    """Layer by layer and a few patch plans of the front (the fit's training schedules)."""
    out = [("layer by layer", Plan.layer_by_layer(graph))]
    fronts = [("", search(graph).front)]
    if name == "mcunet_vww.tflite":
        fronts.append(("input outside, ", search(graph, include_input=False).front))
    for tag, front in fronts:
        staged = [s for s in front if s.plan.stages]
        if not staged:
            continue
        picks = {0, len(staged) // 2, len(staged) - 1}
        out += [(f"{tag}{staged[i].label}", staged[i].plan) for i in sorted(picks)]
    return out


def synthetic_chains() -> dict[str, Graph]:
    """Small chains covering each kernel path at several widths (separate per-path constants)."""
    def chain(name: str, shape: tuple[int, ...], layers) -> Graph:
        b = Builder(name, seed=2)
        x = b.input(shape)
        for i, layer in enumerate(layers):
            x = layer(b, x, f"l{i}")
        return b.finish([x])
    return {
        "syn_a": chain("syn_a", (1, 40, 40, 8), [lambda b, x, n: b.conv(x, 16, 3, 1, name=n),
                                                lambda b, x, n: b.depthwise(x, 3, 1, name=n),
                                                lambda b, x, n: b.conv(x, 24, 1, 1, name=n),
                                                lambda b, x, n: b.depthwise(x, 3, 2, name=n),
                                                lambda b, x, n: b.conv(x, 32, 1, 1, name=n)]),
        "syn_b": chain("syn_b", (1, 48, 48, 3), [lambda b, x, n: b.conv(x, 8, 3, 2, name=n),
                                                lambda b, x, n: b.depthwise(x, 5, 1, name=n),
                                                lambda b, x, n: b.conv(x, 48, 1, 1, name=n),
                                                lambda b, x, n: b.depthwise(x, 7, 1, name=n),
                                                lambda b, x, n: b.conv(x, 12, 1, 1, name=n),
                                                lambda b, x, n: b.pool(x, "max", 2, name=n)]),
        "syn_c": chain("syn_c", (1, 16, 16, 64), [lambda b, x, n: b.conv(x, 32, 3, 1, name=n),
                                                 lambda b, x, n: b.conv(x, 64, 1, 1, name=n),
                                                 lambda b, x, n: b.pool(x, "avg", 3, 1, padding="SAME", name=n),
                                                 lambda b, x, n: b.depthwise(x, 3, 1, name=n),
                                                 lambda b, x, n: b.conv(x, 20, 1, 1, name=n)]),
    }


def synthetic_plans(graph: Graph) -> list[tuple[str, Plan]]:
    """Layer by layer, and the whole chain as one stage on several grids and halo modes, and streamed."""
    n = len(graph.ops)
    out = [("layer by layer", Plan.layer_by_layer(graph))]
    h = graph.tensors[graph.ops[-1].outputs[0]].shape[1]
    for grid, mode in (((2, 2), "recompute"), ((4, 4), "cache"), ((8, 8), "cache_w"), ((h, 1), "cache"),
                       ((3, h), "stream"), ((h, h), "stream")):
        plan = to_plan(graph, (Choice(0, n, grid, HaloPolicy(mode)),), True, True)
        try:
            check_plan(graph, plan)
        except TinypatchError:
            continue
        out.append((f"[0:{n}] {grid[0]}x{grid[1]} {mode}", plan))
    return out


def op_graphs(graph: Graph, name: str, every: int = 1) -> dict[str, Graph]:
    """Every ``every``-th op of a model that calls a kernel, as a one-op model ``name#opK``."""
    return {f"{name}#op{k}": stage_graph(graph, k, k + 1) for k in range(0, len(graph.ops), every)
            if plan_work(graph, Plan.layer_by_layer(graph))[k].path != "shape"}


def plan_key(target: str, model: str, plan: Plan) -> str:
    return f"{target}|{model}|{hashlib.sha1(plan.to_json().encode()).hexdigest()[:16]}"


def _save(counts: dict) -> None:
    """Merge ``counts`` into the cache file (another measuring run may have added runs meanwhile)."""
    if COUNTS.is_file():
        counts.update({k: v for k, v in json.loads(COUNTS.read_text()).items() if k not in counts})
    COUNTS.write_text(json.dumps(counts, indent=1, sort_keys=True) + "\n")


def measure_runs(targets: list[str], models: list[Path], synthetic: bool = True, per_op: bool = True) -> dict:
    """Measure every (target, model, plan) not yet in the cache; returns the cache."""
    counts = json.loads(COUNTS.read_text()) if COUNTS.is_file() else {}
    assets = assets_dir()
    with tempfile.TemporaryDirectory() as tmp:
        plugin = build_insncount(assets, Path(tmp) / "plugin")
        for path in models:
            g = load_tflite(str(path))
            x = model_input(g, path)
            plans = fit_plans(g, path.name)
            for target in targets:
                for label, plan in plans:
                    key = plan_key(target, path.name, plan)
                    if key in counts:
                        continue
                    try:
                        project = generate(g, plan, Path(tmp) / "p", target)
                    except BudgetError as exc:  # mcunetv2_large does not fit the Cortex-M55 board's 512 KB
                        print(f"skipped {target} {path.name} {label}: {exc}", flush=True)
                        continue
                    c = measure(g, project, x, plugin)
                    if not c.exact:
                        raise SystemExit(f"{path.name} {label} on {target}: outputs differ")
                    counts[key] = {"target": target, "model": path.name, "label": label, "plan": plan.to_dict(),
                                   "deployed": project.plan.to_dict(), "insns": c.insns,
                                   "kernel_insns": c.kernel_insns, "macs": c.macs}
                    _save(counts)
                    print(f"measured {target} {path.name} {label}: {c.insns:,}", flush=True)
        extra = dict(synthetic_chains()) if synthetic else {}
        if per_op:
            for path in models:
                extra.update(op_graphs(load_tflite(str(path)), path.name, 3 if path.stat().st_size > 1 << 20 else 1))
        if extra:
            for name, g in extra.items():
                x = [random_input(g.tensors[n], seed=i) for i, n in enumerate(g.inputs)]
                plans = synthetic_plans(g) if "#" not in name else [("layer by layer", Plan.layer_by_layer(g))]
                for target in targets:
                    for label, plan in plans:
                        key = plan_key(target, name, plan)
                        if key in counts:
                            continue
                        try:
                            project = generate(g, plan, Path(tmp) / "p", target)
                        except BudgetError:
                            continue
                        c = measure(g, project, x, plugin)
                        if not c.exact:
                            raise SystemExit(f"{name} {label} on {target}: outputs differ")
                        counts[key] = {"target": target, "model": name, "label": label, "plan": plan.to_dict(),
                                       "deployed": project.plan.to_dict(), "insns": c.insns,
                                       "kernel_insns": c.kernel_insns, "macs": c.macs}
                        _save(counts)
                        print(f"measured {target} {name} {label}: {c.insns:,}", flush=True)
    return counts


def design_row(graph: Graph, plan: Plan, columns: list[str]) -> np.ndarray:
    row = np.zeros(len(columns))
    idx = {c: i for i, c in enumerate(columns)}
    row[idx["const"]] = 1.0
    row[idx["io_byte"]] = sum(graph.tensors[t].nbytes for t in (*graph.inputs, *graph.outputs))
    for w in plan_work(graph, plan):
        for f, v in w.features(graph).items():
            if f"*:{f}" in idx:
                row[idx[f"*:{f}"]] += v
                continue
            col = idx.get(f"{w.path}:{f}", idx.get(f"{_base(w.path)}:{f}"))  # a variant: its own, else its base's
            if col is not None:
                row[col] += v
    return row


def deployed(graph: Graph, run: dict) -> Plan:
    """The plan the measured program ran: the run's plan with its in-place ops (as ``generate`` adds them)."""
    if "deployed" not in run:
        run["deployed"] = deployed_plan(graph, Plan.from_dict(run["plan"])).to_dict()
    return Plan.from_dict(run["deployed"])


SHARED = ("rows", "copy")  # one coefficient for every path: loop and halo-copy costs do not depend on the kernel
CONV_ONLY = ("tail", "rem2", "rem4")  # only the conv/depthwise kernels have pixel groups and 4-wide dot products
# what a variant of a kernel path changes: a stream stage calls it once per column; the reference
# kernel and the in-place variants differ in their inner loops only
VARIANT_FEATURES = {"stream.": ("work", "pixels", "calls", "rem2", "rem4"), ".ref": ("work",), ".inplace": ("work",)}
OP_WEIGHT = 0.2  # weight of a one-op model's relative error against a whole program's
SHRINK = 1e-2  # pulls a variant's coefficient towards its base path's
RIDGE = 1e-4  # pulls coefficients a few runs cannot tell apart towards 0 (relative-error units)


def _base(path: str) -> str:
    return path.removeprefix("stream.").removesuffix(".ref").removesuffix(".inplace")


def _columns(paths: list[str]) -> list[str]:
    """const, io bytes, the shared features, then per base path its features, then per variant path
    (stream, reference kernel, in place) the differences from its base path."""
    cols = ["const", "io_byte"] + [f"*:{f}" for f in SHARED]
    for p in sorted({_base(p) for p in paths}) + [p for p in paths if p != _base(p)]:
        conv = any(k in p for k in ("conv", "depthwise"))
        allowed = set(FEATURES) if p == _base(p) else {f for mark, fs in VARIANT_FEATURES.items() if mark in p
                                                      for f in fs}
        cols += [f"{p}:{f}" for f in FEATURES if f not in SHARED and f in allowed and (conv or f not in CONV_ONLY)]
    return cols


def fit(runs: list[dict], graphs: dict[str, Graph]) -> tuple[CostModel, list[tuple[dict, float]]]:
    """Non-negative least squares on relative errors over ``runs`` of one target, with a small ridge
    towards 0, and each variant's coefficient pulled towards its base path's (where the runs say
    little about it)."""
    plans = [(graphs[r["model"]], deployed(graphs[r["model"]], r)) for r in runs]
    paths = sorted({w.path for g, p in plans for w in plan_work(g, p)})
    columns = _columns(paths)
    a = np.array([design_row(g, p, columns) for g, p in plans])
    y = np.array([r["insns"] for r in runs], float)
    # relative errors, whole programs weighted above the one-op models; columns scaled to 1 so that
    # the ridge treats them alike
    weight = np.array([OP_WEIGHT if "#" in r["model"] else 1.0 for r in runs])
    rel = a / y[:, None] * weight[:, None]
    scale = rel.max(axis=0)
    scale[scale == 0] = 1.0
    rel = rel / scale
    idx = {c: i for i, c in enumerate(columns)}
    shrink = []
    for c, i in idx.items():
        p, _, f = c.partition(":")
        if p not in ("const", "io_byte", "*") and p != _base(p) and f"{_base(p)}:{f}" in idx:
            r = np.zeros(len(columns))
            r[i], r[idx[f"{_base(p)}:{f}"]] = 1.0, -scale[i] / scale[idx[f"{_base(p)}:{f}"]]
            shrink.append(np.sqrt(SHRINK) * r)
    lhs = np.vstack([rel, np.sqrt(RIDGE) * np.eye(len(columns)), *shrink])
    coef = lsq_linear(lhs, np.concatenate([weight, np.zeros(len(columns) + len(shrink))]), bounds=(0.0, np.inf)).x
    coef = coef / scale
    target = runs[0]["target"]
    value = dict(zip(columns, coef.tolist()))
    shared = {f: value[f"*:{f}"] for f in SHARED}
    paths_coef: dict[str, dict[str, float]] = {}
    for p in sorted({_base(p) for p in paths} | set(paths)):
        feats = {f: value.get(f"{p}:{f}", value.get(f"{_base(p)}:{f}", 0.0)) for f in FEATURES if f not in SHARED}
        paths_coef[p] = {f: round(v, 6) for f, v in {**feats, **shared}.items()}
    model = CostModel(target, round(float(coef[0]), 1), round(float(coef[1]), 4), paths_coef)
    return model, [(r, model.predict(g, p)) for r, (g, p) in zip(runs, plans)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", nargs="*", default=list(DEFAULT_TARGETS))
    ap.add_argument("--models", nargs="*", help="shared model file names (default: all)")
    ap.add_argument("--measure-only", action="store_true")
    ap.add_argument("--fit-only", action="store_true", help="fit the cached counts, measure nothing")
    ap.add_argument("--no-synthetic", action="store_true", help="leave out the synthetic chains")
    ap.add_argument("--no-per-op", action="store_true", help="leave out the one-op models cut from the shared models")
    args = ap.parse_args()
    assets = assets_dir()
    missing = [m for t in args.targets if (m := missing_tools(t))]
    if missing or assets is None:
        print(f"cannot run: {missing or 'shared assets not found (set TINYPATCH_ASSETS)'}")
        return 2
    paths = sorted((assets / "models").glob("*.tflite"))
    paths = [p for p in paths if p.name != "person_detect_qdimfix.tflite"]  # same graph as person_detect
    if args.models:
        paths = [p for p in paths if p.name in args.models]
    counts = json.loads(COUNTS.read_text()) if args.fit_only else measure_runs(args.targets, paths, not args.no_synthetic,
                                                                            not args.no_per_op)
    if args.measure_only:
        return 0
    graphs = {p.name: load_tflite(str(p)) for p in sorted((assets / "models").glob("*.tflite"))}
    graphs.update(synthetic_chains())
    for p in paths:
        graphs.update(op_graphs(graphs[p.name], p.name, 3 if p.stat().st_size > 1 << 20 else 1))
    data = json.loads(FIT_FILE.read_text()) if FIT_FILE.is_file() else {"targets": {}}
    data["command"] = "python benchmarks/fit_cost.py --targets " + " ".join(args.targets)
    data["runs"] = {}
    for target in args.targets:
        runs = [r for r in counts.values() if r["target"] == target and r["model"] in graphs]
        model, preds = fit(runs, graphs)
        _save(counts)  # with the deployed plans, computed once
        data["targets"][target] = {"const": model.const, "io_byte": model.io_byte, "paths": model.paths}
        data["runs"][target] = len(runs)
        worst = 0.0
        op_errs = [abs(p / r["insns"] - 1) for r, p in preds if "#" in r["model"]]
        if op_errs:
            print(f"{target}: {len(op_errs)} one-op models, worst error {max(op_errs):.1%}, "
                  f"{sum(e <= 0.1 for e in op_errs)} within +-10%")
        for r, p in sorted(preds, key=lambda x: (x[0]["model"], x[0]["label"])):
            err = p / r["insns"] - 1
            if "#" in r["model"]:
                continue
            worst = max(worst, abs(err))
            print(f"{target:11s} {r['model'].removesuffix('.tflite'):24s} {r['label'][:60]:60s} measured {r['insns']:>13,} "
                  f"predicted {p:>15,.0f} {err:+7.1%}")
        print(f"{target}: {len(runs)} runs, worst error {worst:.1%} over the whole programs")
        held = []  # leave one model out: fit on the others, predict its runs
        for name in sorted({r["model"] for r in runs if "#" not in r["model"]}):
            train = [r for r in runs if r["model"].split("#")[0] != name]
            other, _ = fit(train, graphs)
            held += [(r, other.predict(graphs[name], deployed(graphs[name], r))) for r in runs if r["model"] == name]
        errs = [abs(p / r["insns"] - 1) for r, p in held]
        worst_r, worst_p = max(held, key=lambda x: abs(x[1] / x[0]["insns"] - 1))
        print(f"{target}: leaving each model out of the fit, worst error on its runs {max(errs):.1%} "
              f"({worst_r['model']}, {worst_r['label'][:50]}), {sum(e <= 0.1 for e in errs)}/{len(errs)} within +-10%")
    FIT_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIT_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
