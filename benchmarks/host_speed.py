"""Host inference time per shared model, side by side in one run: LiteRT's reference kernels
(BUILTIN_REF, one thread), our whole-image executor, and the plan executor running the least-peak
plan of the default front (`tinypatch plan`, the most tiles): `python benchmarks/host_speed.py
[--repeat N] [MODEL ...]`. Prepared once each; the median of N interleaved runs is printed."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tinypatch import api, load
from tinypatch.assets import assets_dir
from tinypatch.runtime.executor import executor_for
from tinypatch.runtime.inputs import model_inputs
from tinypatch.runtime.plan_executor import PlanExecutor


def _litert(path: str, x: list[np.ndarray]) -> Callable[[], None]:
    it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF, num_threads=1)
    it.allocate_tensors()
    for d, v in zip(it.get_input_details(), x):
        it.set_tensor(d["index"], v)
    return it.invoke


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("models", nargs="*", help="models (default: every shared .tflite)")
    p.add_argument("--repeat", type=int, default=5, help="runs per executor, interleaved (median printed)")
    args = p.parse_args()
    assets = assets_dir()
    models = args.models or ([str(m) for m in sorted((assets / "models").glob("*.tflite"))] if assets else [])
    print("| model | LiteRT ref ms | whole-image ms | whole / LiteRT | plan (tiles) | planned ms | planned / whole |\n"
          "|---|---|---|---|---|---|---|")
    for m in models:
        graph = load(m)
        x = model_inputs(graph, None)
        xs = [x[n] for n in graph.inputs] if isinstance(x, dict) else list(x)
        chosen = api.plan(graph).plan
        whole, planned = executor_for(graph), PlanExecutor(graph, chosen)
        runs = {"whole": lambda w=whole, v=xs: w(v), "plan": lambda p=planned, v=xs: p(v)}
        try:
            runs["litert"] = _litert(m, xs)
        except ValueError as e:  # e.g. person_detect.tflite: LiteRT refuses its quantization (see _qdimfix)
            print(f"| {graph.name} | refused: {str(e).split('.')[0]} | | | | | |")
            continue
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeat):
            for k, f in runs.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
        ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        tiles = sum(s.grid[0] * s.grid[1] for s in chosen.stages)
        print(f"| {graph.name} | {ms['litert']:,.1f} | {ms['whole']:,.1f} | {ms['whole'] / ms['litert']:.2f}x "
              f"| {len(chosen.stages)} stages, {tiles} tiles | {ms['plan']:,.1f} | {ms['plan'] / ms['whole']:.2f}x |",
              flush=True)


if __name__ == "__main__":
    main()
