"""Fuzzing at scale: mutated real models and random networks against LiteRT's reference kernels.

Run: ``python benchmarks/fuzz.py [--mutations N] [--networks N] [--onnx N] [--workers W] [--seed S]``
(defaults: 100,000 mutated models, 10,000 random networks, 10,000 mutated ONNX models, 2 workers).

* **Mutated models**: case ``i`` takes one shared ``.tflite`` model (``$TINYPATCH_ASSETS/models``),
  rewrites 1 to 3 of its flatbuffer fields in memory (:mod:`tinypatch.backends.mutate`: shapes,
  tensor types, buffer indices, operator codes and indices, option values, quantization scales,
  zero points and axes, graph inputs/outputs, buffer lengths; a field kind is drawn first, then
  a field of that kind), and imports it (parse + the validation pass). An accepted model has its
  kernels prepared and its layer-by-layer plan checked and costed; small ones (``--run-macs``)
  also get the per-layer analysis, one inference and the C sources rendered in memory.
* **Mutated ONNX models**: case ``i`` takes one int8 ONNX model (``--onnx-models``, default
  torchvision's MobileNetV2 / MobileNetV3-Small / ShuffleNetV2 exported and quantized by
  onnxruntime in QDQ and QOperator form, built once into ``.cache/onnx-fuzz``; needs torch),
  applies 1 to 3 structural mutations (``benchmarks/onnx_mutate.py``: operator types, attributes,
  scales and zero points, initializer dims / types / bytes, input shapes, wiring, nodes) or flips
  its bytes, and imports it with the ONNX reader; accepted ones go through the same steps.
* **Random networks**: case ``i`` draws a random int8 CNN (:mod:`tinypatch.frontends.random_cnn`),
  writes it as ``.tflite``, imports it (the validation must accept it) and runs it with our
  executor and with LiteRT (BUILTIN_REF): every output byte must agree.

Outcomes per case: ``refused`` (the import refused it: one clear line), ``refused later`` (imported,
then refused by a kernel's or the planner's own check, also one clear line), ``accepted``
(imported, prepared, costed), ``ran`` (also analysed, executed and rendered to C), ``ran, C
refused`` (executed; the C generator refused an operator it does not generate, e.g. float
arithmetic), ``exact`` (random network equal to LiteRT),
``mismatch``, ``run refused`` (prepared and planned but refused while running: the checks
disagree), ``traceback`` (any other exception), ``hang`` (over ``--timeout`` seconds),
``rss`` (the worker's peak RSS went over ``--rss-mb``). Tracebacks, hangs, RSS and mismatches
are listed with their case ids; ``--case mutation:123`` reruns one case in this process and
prints its traceback. Cases are reproducible from ``--seed`` and the case id alone.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import queue
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from tinypatch.assets import assets_dir
from tinypatch.backends import write_tflite
from tinypatch.backends.mutate import Field, fields, mutate
from tinypatch.errors import TinypatchError, UnsupportedOperatorError
from tinypatch.frontends.tflite import parse_tflite
from tinypatch.ir import Graph

BAD = ("traceback", "hang", "rss", "mismatch", "run refused")
# how often each shared model is mutated: small models often (each case is cheap), big ones rarely
MODEL_WEIGHTS = {"hello_world_int8": 6, "mlperf_kws_dscnn_int8": 6, "mlperf_ic_resnet8_int8": 5,
                 "mlperf_vww_96_int8": 3, "person_detect": 2, "person_detect_qdimfix": 1, "mcunet_vww": 1,
                 "mcunetv2_large": 0.25}


class CaseTimeout(Exception):
    """Raised by SIGALRM inside a worker when a case runs too long."""


# --- the cases ----------------------------------------------------------------------------------
class Corpus:
    """The shared models, their mutable fields grouped by kind, and the case runners."""

    def __init__(self, models_dir: Path, run_macs: int, onnx_dir: Path | None = None) -> None:
        self.onnx_models = [p.read_bytes() for p in sorted(onnx_dir.glob("*.onnx"))] if onnx_dir else []
        self.onnx_file = Path(tempfile.gettempdir()) / f"tinypatch-fuzz-{os.getpid()}.onnx"
        self.models: list[tuple[str, bytes, dict[str, list[Field]]]] = []
        weights = []
        for p in sorted(models_dir.glob("*.tflite")):
            buf = p.read_bytes()
            by_kind: dict[str, list[Field]] = collections.defaultdict(list)
            for f in fields(buf):
                by_kind[f.kind].append(f)
            self.models.append((p.stem, buf, dict(by_kind)))
            weights.append(MODEL_WEIGHTS.get(p.stem, 1.0))
        if not self.models:
            raise SystemExit(f"no .tflite models in {models_dir}")
        self.p = np.asarray(weights) / sum(weights)
        self.run_macs = run_macs

    def mutation(self, seed: int, i: int) -> str:
        rng = np.random.default_rng([seed, 0, i])
        name, buf, by_kind = self.models[int(rng.choice(len(self.models), p=self.p))]
        kinds = sorted(by_kind)
        for _ in range(int(rng.integers(1, 4))):
            table = by_kind[kinds[int(rng.integers(len(kinds)))]]
            buf, _, _ = mutate(buf, rng, table)
        return self.check(buf, rng)

    def onnx_mutation(self, seed: int, i: int) -> str:
        from onnx_mutate import mutate_onnx

        from tinypatch.frontends.load import load_model

        if not self.onnx_models:
            raise SystemExit("no ONNX models to mutate (--onnx-models)")
        rng = np.random.default_rng([seed, 2, i])
        data = mutate_onnx(self.onnx_models[int(rng.integers(len(self.onnx_models)))], rng)
        self.onnx_file.write_bytes(data)
        try:
            graph = load_model(str(self.onnx_file))  # what every command does: import, validate, limits
        except TinypatchError:
            return "refused"
        return self.exercise(graph, rng)

    def check(self, buf: bytes, rng: np.random.Generator) -> str:
        try:
            graph = parse_tflite(buf)
        except TinypatchError:
            return "refused"
        return self.exercise(graph, rng)

    def exercise(self, graph: Graph, rng: np.random.Generator) -> str:
        """An imported model's kernels prepared, its plan checked and costed; small ones run and rendered."""
        from tinypatch.analysis.macs import cost_totals, op_costs
        from tinypatch.report.layer_memory import analyze
        from tinypatch.codegen import render
        from tinypatch.kernels import prepare
        from tinypatch.planning.check import check_plan
        from tinypatch.planning.cost import plan_cost
        from tinypatch.planning.plan import Plan
        from tinypatch.runtime.executor import run
        from tinypatch.runtime.inputs import random_input

        try:
            for op in graph.ops:
                prepare(graph, op)
            plan = Plan.layer_by_layer(graph)
            check_plan(graph, plan)
            plan_cost(graph, plan)
        except TinypatchError:
            return "refused later"
        if cost_totals(op_costs(graph)).macs > self.run_macs:
            return "accepted"
        try:
            analyze(graph)
            run(graph, [random_input(graph.tensors[t], int(rng.integers(1 << 30))) for t in graph.inputs])
        except TinypatchError:  # prepared and planned, then refused while running: a disagreement
            return "run refused"
        try:
            render(graph, plan, Path("unused"), "host", None, 2048)
        except UnsupportedOperatorError:  # C generation's own limits (float ops, ...): a clean refusal
            return "ran, C refused"
        return "ran"

    @staticmethod
    def network(seed: int, i: int) -> str:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from tinypatch.frontends.random_cnn import RngDraw, random_cnn
        from tinypatch.runtime.executor import run

        rng = np.random.default_rng([seed, 1, i])
        graph, x = random_cnn(RngDraw(rng), max_layers=int(rng.integers(1, 9)))
        content = write_tflite(graph)
        parsed = parse_tflite(content, name=graph.name)  # a well-formed network must pass the validation
        ours = run(parsed, [x])
        it = Interpreter(model_content=content, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        for d in it.get_output_details():
            ref = it.get_tensor(d["index"])
            mine = ours[d["name"]]
            if mine.dtype != ref.dtype or mine.shape != ref.shape or not np.array_equal(mine, ref):
                return "mismatch"
        return "exact"


def build_onnx_models(folder: Path) -> Path:
    """torchvision's MobileNetV2, MobileNetV3-Small and ShuffleNetV2-0.5 (random weights, 33x33) as
    int8 QDQ and QOperator ONNX files in ``folder`` (built once; needs torch and onnxruntime)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    try:
        from onnx_models import torchvision_model
    except ImportError as exc:
        raise SystemExit(f"building the ONNX corpus needs torch and onnxruntime ({exc}); pass --onnx 0") from None
    int8 = folder / "int8"
    int8.mkdir(parents=True, exist_ok=True)
    for name in ("mobilenet_v2", "mobilenet_v3_small", "shufflenet_v2_x0_5"):
        for fmt in ("QDQ", "QOperator"):
            path = torchvision_model(name, fmt, folder)
            if not (int8 / path.name).exists():
                (int8 / path.name).write_bytes(path.read_bytes())
    return int8


def run_case(corpus: Corpus, seed: int, case: str) -> str:
    kind, _, index = case.partition(":")
    if kind == "mutation":
        return corpus.mutation(seed, int(index))
    if kind == "network":
        return corpus.network(seed, int(index))
    if kind == "onnx":
        return corpus.onnx_mutation(seed, int(index))
    raise SystemExit(f"unknown case {case!r} (mutation:N, network:N or onnx:N)")


# --- workers ------------------------------------------------------------------------------------
def _alarm(signum: int, frame: object) -> None:
    raise CaseTimeout


def rss_mb() -> float:
    """Peak resident set size of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(wid: int, tasks: mp.Queue, results: mp.Queue, busy: mp.Array, args: argparse.Namespace) -> None:
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    corpus = Corpus(args.models, args.run_macs, args.onnx_models)
    while True:
        case = tasks.get()
        if case is None:
            results.put(("done", wid, rss_mb(), ""))
            return
        busy[wid] = time.time()
        signal.alarm(int(args.timeout))
        try:
            outcome, detail = run_case(corpus, args.seed, case), ""
        except CaseTimeout:
            outcome, detail = "hang", f"over {args.timeout} s"
        except Exception as exc:  # noqa: BLE001 - the fuzzer's job is to catch these
            outcome, detail = "traceback", "".join(traceback.format_exception_only(type(exc), exc)).strip()
        finally:
            signal.alarm(0)
            busy[wid] = 0.0
        peak = rss_mb()
        if peak > args.rss_mb:
            outcome, detail = "rss", f"peak RSS {peak:.0f} MiB"
        results.put((outcome, case, peak, detail))
        if outcome == "rss":  # a fresh process, so later cases are measured from a clean start
            results.put(("restart", wid, peak, ""))
            return


def fuzz(args: argparse.Namespace) -> dict:
    cases = ([f"mutation:{i}" for i in range(args.mutations)] + [f"network:{i}" for i in range(args.networks)]
             + [f"onnx:{i}" for i in range(args.onnx)])
    ctx = mp.get_context("fork")
    tasks: mp.Queue = ctx.Queue()
    results: mp.Queue = ctx.Queue()
    for c in cases:
        tasks.put(c)
    busy = ctx.Array("d", args.workers)
    procs: dict[int, mp.Process] = {}

    def start(wid: int) -> None:
        procs[wid] = ctx.Process(target=worker, args=(wid, tasks, results, busy, args), daemon=True)
        procs[wid].start()

    for w in range(args.workers):
        start(w)
    counts: collections.Counter = collections.Counter()
    by_kind: dict[str, collections.Counter] = {k: collections.Counter() for k in ("mutation", "network", "onnx")}
    bad: list[tuple[str, str, str]] = []
    peak = 0.0
    done = 0
    t0 = last = time.time()
    stopping = False
    while done < len(cases) or (stopping and any(p.is_alive() for p in procs.values())):
        try:
            outcome, who, rss, detail = results.get(timeout=1.0)
        except queue.Empty:
            outcome = None
        if outcome in ("done", "restart"):
            peak = max(peak, rss)
            if outcome == "restart":
                start(who)
            continue
        if outcome is not None:
            peak = max(peak, rss)
            done += 1
            counts[outcome] += 1
            by_kind[who.partition(":")[0]][outcome] += 1
            if outcome in BAD:
                bad.append((who, outcome, detail))
        now = time.time()
        for wid, p in list(procs.items()):  # a case stuck inside C code: kill its worker
            started = busy[wid]
            if started and now - started > 2 * args.timeout + 5 and p.is_alive():
                p.kill()
                p.join()
                busy[wid] = 0.0
                done += 1
                counts["hang"] += 1
                bad.append((f"worker {wid}", "hang", "killed after no answer"))
                start(wid)
        if args.progress and now - last > args.progress:
            last = now
            rate = done / max(now - t0, 1e-9)
            print(f"  {done:,}/{len(cases):,} cases, {rate:.1f}/s, {dict(counts)}", file=sys.stderr, flush=True)
        if done >= len(cases) and not stopping:
            stopping = True
            for _ in procs:
                tasks.put(None)
    for p in procs.values():
        p.join(timeout=5)
    seconds = time.time() - t0
    return {"seed": args.seed, "mutations": args.mutations, "networks": args.networks, "onnx": args.onnx,
            "workers": args.workers,
            "seconds": round(seconds, 1), "cases_per_second": round(len(cases) / max(seconds, 1e-9), 1),
            "outcomes": dict(counts), "mutation_outcomes": dict(by_kind["mutation"]),
            "network_outcomes": dict(by_kind["network"]), "onnx_outcomes": dict(by_kind["onnx"]), "peak_rss_mib": round(peak, 1),
            "rss_bound_mib": args.rss_mb, "timeout_s": args.timeout,
            "failures": [{"case": c, "outcome": o, "detail": d} for c, o, d in bad]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mutations", type=int, default=100_000, help="mutated shared models (default 100,000)")
    p.add_argument("--networks", type=int, default=10_000, help="random networks vs LiteRT (default 10,000)")
    p.add_argument("--onnx", type=int, default=10_000, help="mutated int8 ONNX models (default 10,000; needs onnx)")
    p.add_argument("--onnx-models", type=Path, default=None,
                   help="folder of int8 .onnx models to mutate (default: torchvision nets built into .cache/onnx-fuzz)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of every case (default 0)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    p.add_argument("--rss-mb", type=float, default=2048, help="peak RSS bound per worker, MiB (default 2048)")
    p.add_argument("--run-macs", type=int, default=8_000_000,
                   help="mutated models with at most this many MACs are also analysed, run and rendered to C")
    p.add_argument("--models", type=Path, default=None, help="folder of .tflite models (default: shared assets)")
    p.add_argument("--case", help="rerun one case (mutation:N, network:N or onnx:N) here and show its traceback")
    p.add_argument("--progress", type=float, default=30.0, help="seconds between progress lines (0: none)")
    p.add_argument("--json", type=Path, help="also write the summary as JSON")
    args = p.parse_args(argv)
    if args.models is None:
        assets = assets_dir()
        if assets is None:
            raise SystemExit("shared assets not found: set TINYPATCH_ASSETS or pass --models")
        args.models = assets / "models"
    if args.onnx_models is None and (args.onnx or (args.case or "").startswith("onnx:")):
        args.onnx_models = build_onnx_models(Path(__file__).resolve().parents[1] / ".cache" / "onnx-fuzz")
    if args.case:
        print(args.case, "->", run_case(Corpus(args.models, args.run_macs, args.onnx_models), args.seed, args.case))
        return 0
    summary = fuzz(args)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.json:
        from tinypatch.safeio import write_text

        write_text(args.json, text + "\n")
    failures = sum(summary["outcomes"].get(k, 0) for k in BAD)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
