"""Where a plan executor's first run goes: per-phase CPU ms of the default plan's first run, beside a
fresh whole-image executor's first run. Phases (each timed around its method, nested time in the
outer one): the walk on provenance (`PlanExecutor._walk_ids`), the replay's checks' set-up
(`TiledChecks.__init__`), the shadow (`PlanExecutor._shadow`: the stage's ops on the whole image),
the padded-tile calls (`TiledChecks.values`) and the layer-by-layer ops (`PlanExecutor._run_op`).
`python benchmarks/first_run_phases.py MODEL [--sram S] [--runs N]`: the process's first runs (a
whole-image executor's, then the plan executor's: cold, as one `tinypatch run`), then with N > 0 the
medians of N more fresh executors' first runs (warm); ``--sram S``: the fewest-MAC plan under S with the
input outside the arena instead (`tinypatch plan --sram S --no-input`, host_speed.py's "budget").
Preparation and planning are not timed; numpy's BLAS pool controller is made before any run."""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import tinypatch.runtime.plan_executor as pe
import tinypatch.runtime.stage_replay as sr
from tinypatch import api, load
from tinypatch.assets import shared_model
from tinypatch.runtime.executor import Executor
from tinypatch.runtime.inputs import model_inputs
from tinypatch.runtime.threads import blas_threads

PHASES = [(pe.PlanExecutor, "_walk_ids", "walk"), (sr.TiledChecks, "__init__", "set-up"),
          (pe.PlanExecutor, "_shadow", "shadow"), (sr.TiledChecks, "values", "tile calls"),
          (pe.PlanExecutor, "_run_op", "layer ops")]


def _timed(f: Callable, label: str, spent: dict[str, float]) -> Callable:
    @functools.wraps(f)
    def run(*a: object, **k: object) -> object:
        t = time.process_time()
        try:
            return f(*a, **k)
        finally:
            spent[label] = spent.get(label, 0.0) + time.process_time() - t
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", help="a model file or a shared model name (mcunet_vww)")
    p.add_argument("--sram", help="the fewest-MAC plan under this budget, input not counted (e.g. 32KB)")
    p.add_argument("--runs", type=int, default=0, help="fresh executors' first runs after the cold one (medians)")
    args = p.parse_args()
    args.model = shared_model(args.model)
    graph = load(args.model)
    x = model_inputs(graph, None)
    xs = [x[n] for n in graph.inputs] if isinstance(x, dict) else list(x)
    plan = api.plan(args.model, sram=args.sram, include_input=False).plan if args.sram else api.plan(args.model).plan
    spent: dict[str, float] = {}
    for cls, name, label in PHASES:
        setattr(cls, name, _timed(getattr(cls, name), label, spent))
    with blas_threads():  # made once per process: not any executor's first run
        pass
    rows: list[dict[str, float]] = []
    for _ in range(1 + args.runs):
        spent.clear()
        whole = Executor(graph)
        t = time.process_time()
        whole(xs)
        w = time.process_time() - t
        planned = pe.PlanExecutor(graph, plan)
        t = time.process_time()
        planned(xs)
        rows.append({"whole-image": w, "planned": time.process_time() - t, **spent})

    def line(what: str, row: dict[str, float]) -> str:
        phases = ", ".join(f"{label} {row.get(label, 0.0) * 1e3:.2f}" for _, _, label in PHASES)
        return (f"{what}: whole-image first run {row['whole-image'] * 1e3:.2f} ms, planned {row['planned'] * 1e3:.2f} ms "
                f"({row['planned'] / row['whole-image']:.2f}x): {phases}")
    print(line(f"{graph.name}, cold", rows[0]))
    if args.runs:
        print(line(f"median of {args.runs}", {k: statistics.median(r.get(k, 0.0) for r in rows[1:]) for k in rows[1]}))


if __name__ == "__main__":
    main()
