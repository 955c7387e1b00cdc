"""Issue 10's acceptance on the TensorFlow-made models (``tools/make_tf_models.py``), one row each.

Run: ``python benchmarks/tf_models.py [--models NAME ...] [--size small|full] [--no-rewrite]``
(builds the models once when the cache lacks them: needs TensorFlow then).

Per model, input not counted (MCUNetV2's convention), the search's space without in-place ops
(as ``benchmarks/patch.py``), on the model and on its candidate graph rewrites (memory-aware op
orders, recomputation: :mod:`tinypatch.planning.rewrite_search`, as ``tinypatch plan``;
``--no-rewrite``: the model's own op order only): the layer-by-layer placed peak, half of it,
the least peak of the front (and its MAC overhead, clones included), and the plan run: the
fewest-MAC plan under half when one fits, else the least-peak plan, with the rewrites it makes. That plan runs in the patch executor on the model's real-photo input
(byte-identical to whole-image inference? measured high-water mark == planned peak?) and its
generated C on the host with ASan/UBSan (``host-check``; byte-identical?). ``tests/test_tf_models.py``
checks the same through the CLI (in-place ops included) and every tensor against LiteRT.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np

from tinypatch.codegen import generate
from tinypatch.codegen.toolchain import make, run_host
from tinypatch.errors import BudgetError, UnsupportedOperatorError
from tinypatch.frontends.tflite import load_tflite
from tinypatch.planning.rewrite import describe
from tinypatch.planning.rewrite_search import rewrite_front
from tinypatch.planning.search import choose, search
from tinypatch.runtime.executor import run
from tinypatch.runtime.plan_executor import PlanExecutor


def _make_tf_models():  # tools/make_tf_models.py, importable without TensorFlow
    path = Path(__file__).resolve().parents[1] / "tools" / "make_tf_models.py"
    spec = importlib.util.spec_from_file_location("make_tf_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(folder: Path, name: str, rewrite: bool = True) -> str:
    t0 = time.perf_counter()
    try:
        g = load_tflite(folder / f"{name}.tflite")
    except UnsupportedOperatorError as exc:
        return f"| {name} | does not import: {exc} |"
    front = (rewrite_front(g, lambda h: search(h, include_input=False)) if rewrite
             else search(g, include_input=False))
    base = front.baseline
    half = base.peak // 2
    least = min(front.front, key=lambda s: (s.peak, s.macs))
    try:
        chosen, label = choose(front, sram=half), "under half"
    except BudgetError:
        chosen, label = least, "least peak (half unreachable)"
    xs = [np.load(folder / f"{name}.real.npy")]
    want = run(g, xs)
    got = PlanExecutor(g, chosen.plan)(xs)
    same = all(got.outputs[n].tobytes() == want[n].tobytes() for n in g.outputs)
    with tempfile.TemporaryDirectory() as tmp:
        generate(g, chosen.plan, Path(tmp))
        make(Path(tmp), "host-check")
        c_out = run_host(Path(tmp), g, xs, "model_host_check")
    c_same = all(c_out[n].tobytes() == want[n].tobytes() for n in g.outputs)
    return (f"| {name} | {len(g.ops)} | {base.peak:,} | {half:,} | {least.peak:,} ({least.macs / base.macs - 1:+.1%}) "
            f"| {label}: {chosen.peak:,} ({chosen.macs / base.macs - 1:+.1%}, {len(chosen.plan.stages)} stages) "
            f"| {describe(chosen.plan.rewrites) or '-'} "
            f"| {got.arena_high_water:,} {'==' if got.arena_high_water == chosen.peak else '!='} planned, "
            f"{'byte-identical' if same else 'DIFFERS'} | {'exact' if c_same else 'DIFFERS'} "
            f"| {time.perf_counter() - t0:.0f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", metavar="NAME", help="only these model file stems")
    ap.add_argument("--size", choices=("small", "full"), default="small", help="make_tf_models.py size")
    ap.add_argument("--no-rewrite", dest="rewrite", action="store_false",
                    help="search the model's op order only (no reordered or recomputing graphs)")
    args = ap.parse_args(argv)
    tf = _make_tf_models()
    folder = tf.ensure_models(size=args.size, log=lambda message: None)
    unknown = sorted(set(args.models or ()) - set(tf.model_names(args.size)))
    if unknown:
        ap.error(f"no model {', '.join(unknown)} at size {args.size}; the stems: {', '.join(tf.model_names(args.size))}")
    names = [n for n in tf.model_names(args.size) if not args.models or n in args.models]
    print("| model | ops | layer by layer B | half B | least peak B (MACs) | plan run B (MACs) | graph rewrites "
          "| Python executor | host C | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        print(row(folder, name, args.rewrite), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
