"""Host inference time per shared model, side by side in one run: LiteRT's reference kernels
(BUILTIN_REF, one thread), our whole-image executor, and the plan executor on each plan kind of
the model's `tinypatch plan` front: the default (chosen) plan, the least-peak plan and the
least-peak plan with a stream stage (when the front has one; kinds that name the same plan are
run once) and, with ``--sram S``, the fewest-MAC plan under S with the input outside the arena
(`tinypatch plan --sram S --no-input`, a board's budget: kind "budget"), with each plan's MACs over
layer by layer's. `python benchmarks/host_speed.py [--repeat N] [--clock wall|cpu] [--sram S] [MODEL ...]`. Everything is prepared once; the median of N interleaved runs is
printed (ms), with each ratio taken in the same run, and each executor's first run (a fresh
whole-image executor's, and the plan executor's, which walks every stage once on provenance to
record its arena effect and then replays it, see `runtime/stage_replay.py`) with the planned first
run over the whole-image first run and over the whole-image median. Preparation is not in any
figure; numpy's BLAS pool controller, made once per process by the first executor run, is made
before any is timed."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tinypatch import api, load
from tinypatch.assets import assets_dir, shared_model
from tinypatch.errors import BudgetError
from tinypatch.planning.check import check_plan
from tinypatch.planning.cost import plan_macs
from tinypatch.planning.plan import STREAM, Plan
from tinypatch.planning.rewrite import base_macs, rewritten
from tinypatch.runtime.executor import Executor
from tinypatch.runtime.inputs import model_inputs
from tinypatch.runtime.plan_executor import PlanExecutor
from tinypatch.runtime.threads import blas_threads


def _litert(path: str, x: list[np.ndarray]) -> Callable[[], object] | str:
    try:
        it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1)
        it.allocate_tensors()
    except ValueError as e:  # e.g. person_detect.tflite: LiteRT refuses its quantization (see _qdimfix)
        return "refused: " + str(e).split(".")[0]
    for d, v in zip(it.get_input_details(), x):
        it.set_tensor(d["index"], v)
    return it.invoke


def plan_kinds(model: str, sram: str | None = None) -> dict[str, Plan]:
    """The default plan, the least-peak plan and the least-peak stream plan of ``model``'s front, and
    with ``sram`` the fewest-MAC plan under it, input not counted, where one fits (kinds naming the
    same plan as an earlier kind are left out)."""
    result = api.plan(model)
    front = sorted(result.front.front, key=lambda s: (s.peak, s.macs))
    stream = [s for s in front if any(STREAM in st.halo.values() for st in s.plan.stages)]
    kinds = {"default": result.plan, "least-peak": front[0].plan}
    if stream:
        kinds["stream"] = stream[0].plan
    if sram is not None:
        try:
            kinds["budget"] = api.plan(model, sram=sram, include_input=False).plan
        except BudgetError as e:
            print(f"{model}: no budget plan ({e})")
    out: dict[str, Plan] = {}
    for kind, plan in kinds.items():
        if all(plan.to_dict() != p.to_dict() for p in out.values()):
            out[kind] = plan
    return out


def mac_ratio(graph: object, plan: Plan) -> float:
    """The plan's MACs (on the graph it rewrites, if it does) over the model's layer by layer
    (recomputed halos and recomputed ops make it more than 1)."""
    g = rewritten(graph, plan)  # type: ignore[arg-type]
    macs, _, _ = plan_macs(g, check_plan(g, plan))
    base = base_macs(g)
    return macs / base if base else 1.0


def describe(plan: Plan) -> str:
    if not plan.stages:
        return "layer by layer"
    modes = sorted({m for st in plan.stages for m in st.halo.values()} or {"recompute"})
    return f"{len(plan.stages)} st, {sum(st.n_tiles for st in plan.stages)} tiles, {'/'.join(modes)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("models", nargs="*", help="model files or shared model names (default: every shared .tflite)")
    p.add_argument("--repeat", type=int, default=5, help="runs per executor, interleaved (median printed)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="time every executor (LiteRT too) by the wall clock or by this process's CPU time "
                        "(on a busy machine a longer run is more often preempted, which only the wall clock counts)")
    p.add_argument("--sram", help="also run the fewest-MAC plan under this budget, input not counted (e.g. 32KB)")
    args = p.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    assets = assets_dir()
    models = args.models or ([str(m) for m in sorted((assets / "models").glob("*.tflite"))] if assets else [])
    print(f"median of {args.repeat} interleaved runs, ms ({args.clock} clock)\n\n"
          "| model | LiteRT ref | whole-image | whole / LiteRT | whole-image, first run | plan kind | plan "
          "| MACs / whole | planned, first run | first / whole first | first / whole | planned | planned / whole |\n"
          + "|---" * 13 + "|")
    with blas_threads():  # made once per process: not any executor's first run
        pass
    for m in models:
        m = shared_model(m)
        graph = load(m)
        x = model_inputs(graph, None)
        xs = [x[n] for n in graph.inputs] if isinstance(x, dict) else list(x)
        plans = plan_kinds(m, args.sram)
        whole = Executor(graph)
        runs: dict[str, Callable[[], object]] = {"whole": lambda w=whole, v=xs: w(v)}
        first: dict[str, float] = {}  # each executor's first run (the plan executor's walks every stage once)
        for kind, plan in {"whole": None, **plans}.items():
            if plan is None:
                t = clock()
                runs["whole"]()
                first["whole"] = (clock() - t) * 1e3
                continue
            planned = PlanExecutor(graph, plan)
            runs[kind] = lambda e=planned, v=xs: e(v)
            t = clock()
            runs[kind]()
            first[kind] = (clock() - t) * 1e3
        litert = _litert(m, xs)
        if callable(litert):
            runs["litert"] = litert
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeat):
            for k, f in runs.items():
                t = clock()
                f()
                times[k].append(clock() - t)
        ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        ref = f"{ms['litert']:,.2f}" if callable(litert) else litert
        ratio = f"{ms['whole'] / ms['litert']:.2f}x" if callable(litert) else ""
        for n, (kind, plan) in enumerate(plans.items()):
            head = f"| {graph.name} | {ref} | {ms['whole']:,.2f} | {ratio} | {first['whole']:,.2f} " if n == 0 \
                else "| | | | | "
            print(f"{head}| {kind} | {describe(plan)} | {mac_ratio(graph, plan):.2f}x | {first[kind]:,.2f} "
                  f"| {first[kind] / first['whole']:.2f}x | {first[kind] / ms['whole']:.2f}x "
                  f"| {ms[kind]:,.2f} | {ms[kind] / ms['whole']:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()
