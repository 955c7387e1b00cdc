"""Whole-image inference with numpy's BLAS pinned to one thread (the executor's default) vs numpy's
own thread pool, per shared model: `python benchmarks/blas_threads.py [--repeat N] [MODEL ...]`."""

from __future__ import annotations

import argparse
import statistics
import time

from tinypatch import load
from tinypatch.assets import assets_dir, shared_model
from tinypatch.runtime.executor import run
from tinypatch.runtime.inputs import model_inputs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("models", nargs="*", help="model files or shared model names (default: every shared .tflite)")
    p.add_argument("--repeat", type=int, default=10, help="runs per setting, interleaved (median printed)")
    args = p.parse_args()
    assets = assets_dir()
    models = args.models or ([str(m) for m in sorted((assets / "models").glob("*.tflite"))] if assets else [])
    print("| model | numpy's threads ms | 1 thread ms | speed-up |\n|---|---|---|---|")
    for m in models:
        m = shared_model(m)
        graph = load(m)
        x = model_inputs(graph, None)
        run(graph, x)  # prepare
        times: dict[int | None, list[float]] = {None: [], 1: []}
        for _ in range(args.repeat):
            for threads, seconds in times.items():
                t = time.perf_counter()
                run(graph, x, threads=threads)
                seconds.append(time.perf_counter() - t)
        own, one = (statistics.median(times[k]) * 1e3 for k in (None, 1))
        print(f"| {graph.name} | {own:,.1f} | {one:,.1f} | {own / one:.2f}x |")


if __name__ == "__main__":
    main()
