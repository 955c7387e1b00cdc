"""How much work could low-bit patch kernels skip? Zero codes in the patch stage's maps.

Run: ``TINYPATCH_ASSETS=../shared python benchmarks/lowbit_zeros.py [--models a,b] [--n 4]``.

Per model, the maps of its MCUNetV2 patch stage (single stage, recompute; the maps a precision
plan may lower), over ``--n`` held-out crops run whole-image at int8: the share of values that
the low-bit grid of step ``2**s`` maps to code 0 (``|q - zp| < 2**(s-1)``; s = 0: ``q == zp``),
for s = 0..3, and the shares a kernel would skip at coarser grains: 4 channels of one pixel all
zero (one 32-bit load of a 1x1 convolution's input), and, for maps a depthwise convolution reads,
a 3x3 window of one channel all zero (one depthwise output computed from nothing but the bias).
A skip only pays where its share beats the cost of the test; docs/quantmcu.md's "Mixed plans in C"
quotes these figures.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

import numpy as np

from tinypatch import api
from tinypatch.assets import assets_dir
from tinypatch.ir import Graph
from tinypatch.planning.plan import Plan
from tinypatch.runtime.crops import crops
from tinypatch.runtime.executor import run
from tinypatch.runtime.mixed import stage_maps

MODELS = ("mlperf_vww_96_int8", "person_detect", "mcunet_vww", "mlperf_ic_resnet8_int8")
SHIFTS = (0, 1, 2, 3)


def zero_mask(q: np.ndarray, zp: int, s: int) -> np.ndarray:
    """Values the grid of step 2**s maps to code 0."""
    return np.abs(q.astype(np.int32) - zp) < (1 << (s - 1) if s else 1)


def window_share(z: np.ndarray) -> float:
    """Share of 3x3 windows (stride 1, inside the map) of one channel that are all zero; z is HWC."""
    h, w, _ = z.shape
    if h < 3 or w < 3:
        return float("nan")
    all_zero = np.ones((h - 2, w - 2, z.shape[2]), bool)
    for dy in range(3):
        for dx in range(3):
            all_zero &= z[dy:dy + h - 2, dx:dx + w - 2]
    return float(all_zero.mean())


def arguments(argv: list[str] | None, doc: str, n: int) -> argparse.Namespace:
    """``--models`` (comma-separated shared model names) and ``--n`` (held-out crops, default ``n``)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--n", type=int, default=n, help="held-out crops")
    return ap.parse_args(argv)


def models_on_crops(models: str, n: int) -> Iterator[tuple[str, Graph, Plan, list[dict[str, np.ndarray]]]]:
    """Each shared model of ``models`` (comma-separated names; SystemExit without TINYPATCH_ASSETS),
    its MCUNetV2 plan (one recompute stage from the first layer, input outside the arena) and every
    activation on ``n`` held-out crops, run whole-image at int8."""
    root = assets_dir()
    if root is None:
        sys.exit("set TINYPATCH_ASSETS to the folder holding models/")
    for name in models.split(","):
        g = api.load(str(root / "models" / f"{name}.tflite"))
        plan = api.plan(g, single_stage=True, strategy="recompute", inplace=False, include_input=False).plan
        yield name, g, plan, [run(g, [x], keep=True) for x in crops(g.tensors[g.inputs[0]], "evaluation", n, 1)]


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, 4)
    print("model | map | channels | read by | zero codes s=0/1/2/3 | 4-channel groups all zero s=0/3 | "
          "3x3 windows all zero s=0/3")
    for name, g, plan, acts in models_on_crops(args.models, args.n):
        for t in stage_maps(g, plan, 0):
            zp = int(g.tensors[t].quant.zero_point[0])  # type: ignore[union-attr]
            c = g.tensors[t].shape[3]
            readers = sorted({op.type for op in g.ops if t in op.inputs})
            vals = [a[t][0] for a in acts]
            share = [np.mean([zero_mask(v, zp, s).mean() for v in vals]) for s in SHIFTS]
            groups = [np.mean([zero_mask(v, zp, s).reshape(-1, c // 4, 4).all(-1).mean() for v in vals])
                      if c % 4 == 0 else float("nan") for s in (0, 3)]
            wins = [np.mean([window_share(zero_mask(v, zp, s)) for v in vals])
                    if "DEPTHWISE_CONV_2D" in readers else float("nan") for s in (0, 3)]
            print(f"{name} | {t[:40]} | {c} | {','.join(readers)} | {' / '.join(f'{x:.2f}' for x in share)} | "
                  f"{' / '.join(f'{x:.2f}' for x in groups)} | {' / '.join(f'{x:.2f}' for x in wins)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
