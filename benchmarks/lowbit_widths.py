"""How many bits do the patch stage's values need, losslessly? Widths by grain.

Run: ``TINYPATCH_ASSETS=../shared python benchmarks/lowbit_widths.py [--models a,b] [--n 8]``.

Per model, the MCUNetV2 patch stage (single stage, recompute), over ``--n`` held-out crops run
whole-image at int8: every op of the stage with MACs reads a map (its first input); a group of that
map's values is stored exactly in ``w`` bits, the least width holding every ``d = q - zp`` of the
group (unsigned codes ``0..2^w-1`` for a map never below its zero point on these crops, else
two's complement; 0 bits for a group all at the zero point). Grains: one value, 2, 4 and 8
channels of a pixel, a whole pixel (all channels: the grain of the ``pixel`` step), the whole map
of one crop. Printed: the mean width weighted by the reading op's MACs, and the BitOPs reduction
it would give if every group were computed at its own width (``8 / width``, weights at 8 bits),
over all maps and over the maps after the image (the map the stage's first op with MACs reads). No rounding is involved, so a precision plan at
these widths would keep 100 % agreement: this is the headroom the values themselves hold, and at
which grain (docs/quantmcu.md quotes it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lowbit_zeros import arguments, models_on_crops  # noqa: E402

from tinypatch.analysis.macs import op_macs  # noqa: E402

GRAINS = {"value": 1, "2 ch": 2, "4 ch": 4, "8 ch": 8, "pixel": None, "map": 0}


def bits_for(lo: np.ndarray, hi: np.ndarray, unsigned: bool) -> np.ndarray:
    """Least widths storing every value in ``[lo, hi]`` (elementwise), 0 where both are 0."""
    if unsigned:
        return np.ceil(np.log2(hi + 1.0))
    need = np.maximum(np.ceil(np.log2(np.maximum(hi, 0) + 1.0)), np.ceil(np.log2(np.maximum(-lo, 1.0)))) + 1
    return np.where((lo == 0) & (hi == 0), 0.0, need)


def group_widths(d: np.ndarray, grain: int | None, unsigned: bool) -> np.ndarray:
    """Widths of the groups of ``d`` (one crop's map, HWC) at ``grain`` channels (None: a pixel, 0: the map)."""
    if grain == 0:
        return bits_for(np.array(d.min()), np.array(d.max()), unsigned)
    c = d.shape[-1]
    g = c if grain is None else grain
    if c % g:
        d = np.concatenate([d, np.zeros((*d.shape[:-1], g - c % g), d.dtype)], axis=-1)
    d = d.reshape(*d.shape[:-1], -1, g)
    return bits_for(d.min(-1), d.max(-1), unsigned)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, 8)
    print(f"MAC-weighted mean lossless width, bits (BitOPs reduction 8 / width), {args.n} held-out crops\n")
    print("| model | maps | " + " | ".join(GRAINS) + " |\n|---|---|" + "---|" * len(GRAINS))
    for name, g, plan, acts in models_on_crops(args.models, args.n):
        stage = plan.stages[0]
        reads = [(g.ops[k].inputs[0], op_macs(g, g.ops[k])) for k in range(stage.start, stage.end)]
        reads = [(t, m) for t, m in reads if m]
        image = reads[0][0]  # what the stage's first convolution reads: the input (quantized, padded)
        for label, keep in (("all", lambda t: True), ("after the image", lambda t: t != image)):
            cells = []
            for grain in GRAINS.values():
                macs = bits = 0.0
                for t, m in filter(lambda r: keep(r[0]), reads):
                    zp = int(g.tensors[t].quant.zero_point[0])  # type: ignore[union-attr]
                    ds = [a[t][0].astype(np.int32) - zp for a in acts]
                    unsigned = min(int(d.min()) for d in ds) >= 0
                    macs += m
                    bits += m * float(np.mean([group_widths(d, grain, unsigned).mean() for d in ds]))
                cells.append(f"{bits / macs:.2f} ({8 * macs / bits:.2f}x)")
            print(f"| {name} | {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
