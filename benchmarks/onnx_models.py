"""torchvision CNNs through the ONNX frontend: per model and quantization form, does it import,
does ``--arith onnxruntime`` equal onnxruntime byte for byte (random and photo inputs), does the
least-peak patch plan run exactly at its planned peak, is the generated C exact (tflite
arithmetic), and how many output bytes the two arithmetics differ on.

    python benchmarks/onnx_models.py [--resolution 33] [--random 10] [--no-c] [--models NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from onnx_models import FORMATS, TORCHVISION, photos, torchvision_model  # noqa: E402

from tinypatch.codegen import generate  # noqa: E402
from tinypatch.codegen.toolchain import make, run_host  # noqa: E402
from tinypatch.frontends.load import load_model  # noqa: E402
from tinypatch.frontends.onnx_reference import onnxruntime_outputs  # noqa: E402
from tinypatch.planning.search import search  # noqa: E402
from tinypatch.runtime.executor import run  # noqa: E402
from tinypatch.runtime.plan_executor import PlanExecutor  # noqa: E402


def inputs(g, res: int, n_random: int) -> list[np.ndarray]:  # noqa: ANN001
    t = g.tensors[g.inputs[0]]
    rs = np.random.RandomState(11)
    xs = [rs.randint(-128, 128, t.shape).astype(np.int8) for _ in range(n_random)]
    s, zp = float(t.quant.scale[0]), int(t.quant.zero_point[0])
    xs += [np.clip(np.rint(p / np.float32(s)) + zp, -128, 127).astype(np.int8).transpose(0, 2, 3, 1)
           for p in photos(res)]
    return xs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=33)
    ap.add_argument("--random", type=int, default=10)
    ap.add_argument("--no-c", action="store_true")
    ap.add_argument("--models", nargs="+", default=list(TORCHVISION), choices=TORCHVISION)
    a = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tp-onnx-"))
    print("| model | form | IR ops | ORT-exact inputs | bytes differing from ORT | plan exact (peak B) | C exact "
          "| tflite vs ORT arith: bytes differ |")
    print("|---|---|---|---|---|---|---|---|")
    for name in a.models:
        for fmt in FORMATS:
            t0 = time.perf_counter()
            path = str(torchvision_model(name, fmt, folder, a.resolution))
            g = load_model(path)
            xs = inputs(g, a.resolution, a.random)
            go = g.copy()
            go.meta["arith"] = "onnxruntime"
            exact, bad, arith_diff, total = 0, 0, 0, 0
            for x in xs:
                ours, ref, tfl = run(go, [x]), onnxruntime_outputs(path, g, [x]), run(g, [x])
                d = sum(int((ours[n] != ref[n]).sum()) for n in g.outputs)
                exact += d == 0
                bad += d
                arith_diff += sum(int((ours[n] != tfl[n]).sum()) for n in g.outputs)
                total += sum(ours[n].size for n in g.outputs)
            front = search(g).front
            plan = next((c.plan for c in front if c.plan.stages), front[0].plan)
            pr = PlanExecutor(g, plan)([xs[0]])
            plan_ok = all(pr.outputs[n].tobytes() == run(g, [xs[0]])[n].tobytes() for n in g.outputs) \
                and pr.arena_high_water == pr.arena_size
            c_ok = "-"
            if not a.no_c:
                out = folder / f"c-{name}-{fmt}"
                generate(g, plan, out)
                make(out, "host-check")
                got = run_host(out, g, [xs[-1]], "model_host_check")
                c_ok = "yes" if all(got[n].tobytes() == run(g, [xs[-1]])[n].tobytes() for n in g.outputs) else "NO"
            print(f"| {name} | {fmt} | {len(g.ops)} | {exact}/{len(xs)} | {bad} of {total} | "
                  f"{'yes' if plan_ok else 'NO'} ({pr.arena_size:,}) | {c_ok} | {arith_diff} of {total} |"
                  f"  <!-- {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
