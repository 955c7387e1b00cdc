"""First runs in fresh processes: what one ``tinypatch run`` pays, measured more than once.

Run: ``python benchmarks/first_run.py [--fresh 5] [--sram 32KB] [MODEL ...]`` (default: every
shared ``.tflite``).

``host_speed.py`` times each executor's first run once, in one process, and single shots of
10-40 ms swing by a third on a busy machine. Here, per model, the plans of ``host_speed.py``'s
kinds (the default, least-peak and stream plans of the front, with ``--sram`` the fewest-MAC plan
under it, input not counted) are made once and saved; then ``--fresh`` child processes each load the
model, prepare (untimed) one whole-image executor so that no timed one pays the process's first
kernel preparation, make numpy's BLAS pool controller, and time by their own CPU clock the building
of a whole-image executor and of one plan executor per kind, then the whole-image executor's first
run, then each plan executor's first run (its walk on provenance and first replay), the kinds in an
order rotated from child to child. Printed per plan: the median first run over the children (ms),
the median and range of the children's ratios planned / whole-image first run (issue 13: a planned
first run within 3x), and the same for building plus first run, what ``tinypatch run`` times for
each executor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from host_speed import describe, plan_kinds  # noqa: E402

from tinypatch import load  # noqa: E402
from tinypatch.assets import assets_dir, shared_model  # noqa: E402
from tinypatch.planning.plan import Plan  # noqa: E402


def child(model: str, plans: dict[str, str], turn: int) -> dict[str, float]:
    """One fresh process's first runs (ms, CPU clock): the whole-image executor's, then each plan's."""
    from tinypatch.runtime.executor import Executor
    from tinypatch.runtime.inputs import model_inputs
    from tinypatch.runtime.plan_executor import PlanExecutor
    from tinypatch.runtime.threads import blas_threads

    graph = load(model)
    x = model_inputs(graph, None)
    xs = [x[n] for n in graph.inputs] if isinstance(x, dict) else list(x)
    kinds = list(plans)
    kinds = kinds[turn % len(kinds):] + kinds[: turn % len(kinds)]
    loaded = {k: Plan.load(plans[k]) for k in kinds}
    Executor(graph)  # the kernels' preparation made once untimed: no executor pays the process's first one
    with blas_threads():  # made once per process: not any executor's first run
        pass
    out: dict[str, float] = {}
    built: dict[str, Executor | PlanExecutor] = {}
    for name, make in [("whole", lambda: Executor(graph)),
                       *((k, lambda k=k: PlanExecutor(graph, loaded[k])) for k in kinds)]:
        t = time.process_time()
        built[name] = make()
        out[f"{name} built"] = (time.process_time() - t) * 1e3
    for name, run in built.items():
        t = time.process_time()
        run(xs)
        out[name] = (time.process_time() - t) * 1e3
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", help="model files or shared model names (default: every shared .tflite)")
    p.add_argument("--fresh", type=int, default=5, help="child processes per model")
    p.add_argument("--sram", help="also the fewest-MAC plan under this budget, input not counted (e.g. 32KB)")
    p.add_argument("--child", nargs=3, metavar=("MODEL", "PLANS", "TURN"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        model, plans, turn = args.child
        print(json.dumps(child(model, json.loads(plans), int(turn))))
        return 0
    if args.fresh < 1:
        p.error("--fresh must be at least 1")
    assets = assets_dir()
    models = args.models or ([str(m) for m in sorted((assets / "models").glob("*.tflite"))] if assets else [])
    print(f"first runs, CPU ms: median over {args.fresh} fresh processes; ratio planned / whole-image first run "
          "per process, median (range); built + first run: the executor's building too, as `tinypatch run` times "
          "each\n\n| model | whole-image first run | whole-image built + first run | plan kind | plan "
          "| planned first run | first / whole first | planned built + first run | built + first / whole |"
          "\n|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            m = shared_model(m)
            kinds = plan_kinds(m, args.sram)
            paths = {}
            for kind, plan in kinds.items():
                paths[kind] = str(Path(tmp) / f"{kind}.json")
                plan.save(paths[kind])
            runs = []
            for turn in range(args.fresh):
                r = subprocess.run([sys.executable, __file__, "--child", m, json.dumps(paths), str(turn)],
                                   capture_output=True, text=True, check=True)
                runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
            whole = statistics.median(r["whole"] for r in runs)
            whole_built = statistics.median(r["whole built"] + r["whole"] for r in runs)
            for n, (kind, plan) in enumerate(kinds.items()):
                ratios = [r[kind] / r["whole"] for r in runs]
                both = [(r[f"{kind} built"] + r[kind]) / (r["whole built"] + r["whole"]) for r in runs]
                head = f"| {Path(m).stem} | {whole:,.2f} | {whole_built:,.2f} " if n == 0 else "| | | "
                print(f"{head}| {kind} | {describe(plan)} | {statistics.median(r[kind] for r in runs):,.2f} "
                      f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) "
                      f"| {statistics.median(r[f'{kind} built'] + r[kind] for r in runs):,.2f} "
                      f"| {statistics.median(both):.2f}x ({min(both):.2f}-{max(both):.2f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
