"""QuantMCU-style calibration (VDPC + VDQS) and fidelity measurement of a precision plan.

* VDPC (value-driven patch classification): one int8 run over the calibration inputs records,
  per feature map of every tiled stage, the largest ``|q - zp|`` of each patch; the outlier
  threshold is that figure's ``quantile`` (default 0.9: about one patch in ten per map is an
  outlier). Maps never below their zero point get unsigned codes.
* VDQS (value-driven quantization search): greedy and iterative. Every map starts at 8 bits
  (with ``uniform_first``, first all maps lowered together one step at a time while accepted);
  each round scores lowering one map one step down the bitwidth set,
  ``S = -lambda * Omega + (1 - lambda) * Phi``, with Omega the relative loss of Shannon
  entropy of the map's calibration histogram when requantized (``(H8 - Hb) / H8``) and Phi the
  share of the stage's int8 BitOPs saved (its consumers' MACs x 8 x bits dropped, scaled by
  the non-outlier share); the best-scoring move is kept if the calibration inputs still agree
  with int8 (top-1 agreement >= ``min_agreement``, mean |output change| <= ``max_change`` of
  the mean int8 top-1/top-2 margin, and no calibration input losing more than
  ``max_margin_loss`` of its own int8 top-1 margin), else the map is frozen. With ``accept="entropy"`` (the
  training-free reading of the paper) no run decides: a move stays if its Omega is at most
  ``max_entropy_loss``. The memory constraint is the
  patch plan's: the arena stays sized for all-int8 patches, so no move can break it.

Ours, not the paper's (which does not publish them): the outlier rule, the bitwidth set, the
entropy estimator, lambda, the acceptance check and the greedy order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from tinypatch.analysis.macs import op_macs
from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.kernels.lowbit import (
    DEFAULT_SET,
    block_shift,
    requantize,
    requantize_blocks,
)
from tinypatch.planning.plan import STREAM, Plan, fingerprint
from tinypatch.planning.precision import (
    MapPrecision,
    PrecisionPlan,
    StagePrecision,
    plan_fingerprint,
)
from tinypatch.runtime.executor import Executor
from tinypatch.runtime.mixed import (
    MapStats,
    MixedPrecision,
    PixelwiseRun,
    StageCounts,
    stage_maps,
    tile_independent,
)
from tinypatch.runtime.mixed_batch import values_runner
from tinypatch.runtime.plan_executor import PlanExecutor


@dataclass
class QuantizeOptions:
    quantile: float = 0.9  # non-outlier share of calibration patches per map
    lam: float = 0.5  # lambda of S = -lambda * Omega + (1 - lambda) * Phi
    bitwidths: tuple[int, ...] = DEFAULT_SET
    scope: str = "rest"
    min_agreement: float = 1.0  # on the calibration inputs
    max_change: float = 0.25  # mean |output change| / mean int8 top-1 - top-2 margin
    accept: str = "agreement"  # a move stays if: the calibration run agrees ("agreement"), or Omega is small ("entropy")
    max_margin_loss: float = 1.0  # "agreement" also needs every calibration input to keep this share of its margin
    max_entropy_loss: float = 0.1  # the "entropy" acceptance: Omega of the move at most this
    step: str = "static"  # the maps' shift: static, or chosen at run time per "patch" / per "pixel"
    outliers: bool = True  # VDPC: outlier patches stay int8; False: thresholds 255 (no patch is one)
    uniform_first: bool = False  # before the per-map moves, lower every map together one step at a time
    max_flip_risk: float = 1.0  # "agreement" also needs the estimated flip rate (see flip_risk) at most this (1: off)


@dataclass
class Fidelity:
    n: int
    agreement: float  # top-1 agreement with int8 (tie-aware, see _agree)
    mean_abs_change: float  # mean |output - int8 output| (real units)
    counts: dict[int, StageCounts]  # per stage start: tiles, outlier tiles, BitOPs
    margin_loss: float = 0.0  # the largest share of an input's int8 top-1 margin lost (see _margin_loss)
    flip_risk: float = 0.0  # estimated share of inputs whose top-1 would flip (see flip_risk)

    @property
    def bitops(self) -> tuple[int, int]:
        """(int8, mixed) BitOPs of the patch stages, summed over the inputs."""
        return (sum(c.bitops_int8 for c in self.counts.values()), sum(c.bitops for c in self.counts.values()))


@dataclass
class SearchStep:
    tensor: str
    bits: int
    score: float
    accepted: bool
    agreement: float
    change: float


@dataclass
class QuantizeResult:
    precision: PrecisionPlan
    steps: list[SearchStep] = field(default_factory=list)
    calibration: Fidelity | None = None


def _outputs(graph: Graph, run_outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The first output as real values (flattened)."""
    name = graph.outputs[0]
    t = graph.tensors[name]
    x = run_outputs[name].astype(np.float64).ravel()
    if t.quant is not None and t.np_dtype.kind in "iu":
        x = (x - t.quant.zero_point[0]) * t.quant.scale[0]
    return x


def measure(graph: Graph, plan: Plan, precision: PrecisionPlan | None, inputs: Iterable[np.ndarray],
            reference: list[np.ndarray] | None = None, stop_below: float | None = None) -> tuple[Fidelity, list[np.ndarray]]:
    """Run ``inputs`` at mixed precision against int8 (``reference``: int8 outputs known);
    ``stop_below``: stop at the first disagreement that makes that agreement unreachable. A
    tile-independent precision plan (:func:`~tinypatch.runtime.mixed.tile_independent`) runs the
    first input tiled (its BitOPs, the same for every input then) and checks the whole-image run
    (:class:`~tinypatch.runtime.mixed.PixelwiseRun`) gives its bytes, then runs the rest whole-image."""
    mixed = MixedPrecision(graph, plan, precision)
    ex = values_runner(graph, plan, mixed)
    fast = PixelwiseRun(graph, plan, precision) if tile_independent(precision) else None  # type: ignore[arg-type]
    base = (Executor(graph) if fast else PlanExecutor(graph, plan)) if reference is None else None
    agree, change, refs, n, worst = 0, 0.0, [], 0, 0.0
    losses, margins = [], []
    inputs = list(inputs)
    for i, x in enumerate(inputs):
        if reference is not None:
            ref = reference[i]
        else:  # the plan's int8 bytes are the whole image's (the executors' contract)
            ref = _outputs(graph, base([x]) if fast else base([x]).outputs)  # type: ignore[misc, union-attr]
        refs.append(ref)
        if fast is None or i == 0:
            run = ex(x)
            if fast is not None and any(not np.array_equal(v, run[k]) for k, v in fast(x).items()):
                raise PlanError("the whole-image run of a tile-independent precision plan differs from the tiled run")
        else:
            run = fast(x)
        out = _outputs(graph, run)
        n += 1
        agree += int(_agree(out, ref))
        change += float(np.abs(out - ref).mean())
        worst = max(worst, _margin_loss(out, ref))
        losses.append(_lead(ref, ref) - _lead(out, ref))
        margins.append(_lead(ref, ref))
        if stop_below is not None and (n - agree) > (1 - stop_below) * len(inputs) + 1e-9:
            break
    if fast is not None:  # BitOPs from the first input's tiled run: with no outlier patch every input counts the same
        mixed.counts = {k: StageCounts(c.tiles * n, 0, c.bitops * n, c.bitops_int8 * n) for k, c in mixed.counts.items()}
    return Fidelity(n, agree / max(n, 1), change / max(n, 1), mixed.counts, worst, flip_risk(losses, margins)), refs


def _lead(out: np.ndarray, ref: np.ndarray) -> float:
    """How far ``out``'s value of int8's top class leads its best other class (0 for one output)."""
    if out.size < 2:
        return 0.0
    k = int(np.argmax(ref))
    return float(out[k] - np.delete(out, k).max())


def flip_risk(losses: list[float], margins: list[float]) -> float:
    """The estimated share of inputs whose top-1 flips: the chance that the lead an input loses
    (int8's top class over the runner-up, before minus after) exceeds the int8 margin of another,
    over all pairs of inputs with a positive margin. Pairing every loss with every margin smooths
    the count of actual flips, which a handful of inputs decides."""
    m = np.sort(np.asarray([x for x in margins if x > 0]))
    if not m.size or not losses:
        return 0.0
    return float(np.searchsorted(m, np.asarray(losses), side="left").mean() / m.size)


def _margin_loss(out: np.ndarray, ref: np.ndarray) -> float:
    """The share of int8's top-1 margin (its top class over the runner-up) that ``out`` lost;
    0 for a single output or a tied int8 top (the tie-aware agreement judges those)."""
    if ref.size < 2:
        return 0.0
    k = int(np.argmax(ref))
    margin = float(ref[k] - np.delete(ref, k).max())
    return 0.0 if margin <= 0 else max(0.0, (margin - float(out[k] - np.delete(out, k).max())) / margin)


def _agree(out: np.ndarray, ref: np.ndarray) -> bool:
    """Top-1 agreement, tie-aware: one model's top class is a top class of the other (int8
    softmax outputs often tie at their top step)."""
    return bool(ref[np.argmax(out)] == ref.max() or out[np.argmax(ref)] == out.max())


def _entropy(hist: np.ndarray) -> float:
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())


def _omega(st: MapStats, zp: int, m: MapPrecision) -> float:
    """Relative entropy loss of the map's value histogram requantized to ``m`` (a run-time step:
    of the sampled pixels of non-outlier patches, each requantized with its own block's shift)."""
    if m.step == "static":
        hist = st.hist
        values = np.arange(-128, 128, dtype=np.int8)
        low = np.bincount(requantize(values, zp, m.bits, m.shift, m.signed).astype(np.int32) + 128,
                          weights=hist, minlength=256)
    else:
        px, pm = np.concatenate(st.pixels), np.concatenate(st.pixel_patch_max)
        px = px[pm <= m.threshold]
        if not px.size:
            return 0.0
        hist = np.bincount(px.astype(np.int32).ravel() + 128, minlength=256)
        if m.step == "patch":  # one shift per patch: from its max
            shift = block_shift(pm[pm <= m.threshold], m.bits, m.signed)[:, None]
            q = requantize(px, zp, m.bits, shift, m.signed)
        else:
            q = requantize_blocks(px, zp, m.bits, m.signed, "pixel")
        low = np.bincount(q.astype(np.int32).ravel() + 128, minlength=256)
    h8 = _entropy(hist)
    return (h8 - _entropy(low)) / h8 if h8 > 0 else 0.0


def quantize(graph: Graph, plan: Plan, calib: list[np.ndarray], options: QuantizeOptions | None = None,
             log: Callable[[SearchStep], None] | None = None) -> QuantizeResult:
    """VDPC + VDQS over ``calib`` (model inputs): the precision plan and the search trace."""
    o = options or QuantizeOptions()
    if not plan.stages:
        raise PlanError("the plan has no patch stage: nothing to run at mixed precision (a plan with one: "
                        "`tinypatch plan MODEL --no-stream -o plan.json`, or --sram under the layer-by-layer peak)")
    if all(STREAM in s.halo.values() for s in plan.stages):
        raise PlanError("the plan has only stream stages, which run int8: nothing to run at mixed precision "
                        "(a plan without them: `tinypatch plan MODEL --no-stream -o plan.json`)")
    if not calib:
        raise PlanError("no calibration inputs")
    lows = sorted((b for b in o.bitwidths if b < 8), reverse=True)
    # VDPC: record int8 statistics
    rec = MixedPrecision(graph, plan, None, record=True)
    ex = values_runner(graph, plan, rec)
    refs = [_outputs(graph, ex(x)) for x in calib]
    margins = [np.sort(r)[-1] - np.sort(r)[-2] if r.size > 1 else abs(float(r[0])) for r in refs]
    change_cap = o.max_change * float(np.mean(margins))
    stages: list[StagePrecision] = []
    phi_unit: dict[str, float] = {}
    zps: dict[str, int] = {}
    for si, s in enumerate(plan.stages):
        if STREAM in s.halo.values():
            continue
        total = sum(op_macs(graph, graph.ops[k]) for k in range(s.start, s.end)) * 64
        maps = []
        for t in stage_maps(graph, plan, si):
            st = rec.stats[t]
            if not st.patch_max:
                continue
            thr = int(np.quantile(st.patch_max, o.quantile, method="higher")) if o.outliers else 255
            maps.append(MapPrecision(t, 8, thr, st.below_zero_point, step=o.step))
            zps[t] = int(graph.tensors[t].quant.zero_point[0])  # type: ignore[union-attr]
            users = [k for k in range(s.start, s.end) if graph.ops[k].inputs and graph.ops[k].inputs[0] == t]
            macs = sum(op_macs(graph, graph.ops[k]) for k in users)
            phi_unit[t] = macs * 8 * (o.quantile if o.outliers else 1.0) / total if total else 0.0
        stages.append(StagePrecision(si, maps))
    notes = {"outlier_rule": f"max|q-zp| of a patch > the {o.quantile:g} quantile of calibration patches' max"
             if o.outliers else "none (threshold 255: every patch low-bit, each block at its own run-time step)",
             "lambda": o.lam, "bitwidths": list(o.bitwidths), "calibration_inputs": len(calib), "accept": o.accept,
             "step": o.step, "uniform_first": o.uniform_first,
             **({"max_entropy_loss": o.max_entropy_loss} if o.accept == "entropy" else
                {"min_agreement": o.min_agreement, "max_change": o.max_change, "max_margin_loss": o.max_margin_loss,
                 "max_flip_risk": o.max_flip_risk})}
    prec = PrecisionPlan(graph.name, fingerprint(graph), plan_fingerprint(plan), stages, o.scope, "worst", notes)
    # VDQS: greedy moves one step down the bitwidth set
    frozen: set[str] = set()
    steps: list[SearchStep] = []
    entries = {m.tensor: m for sp in stages for m in sp.maps}
    last = None

    def accepts(omega: float) -> tuple[bool, Fidelity]:
        if o.accept == "entropy":  # training-free: no run, the entropy proxy alone decides
            return omega <= o.max_entropy_loss, Fidelity(0, float("nan"), float("nan"), {})
        fid, _ = measure(graph, plan, prec, calib, refs, o.min_agreement)
        return (fid.n == len(calib) and fid.agreement >= o.min_agreement and fid.mean_abs_change <= change_cap
                and fid.margin_loss <= o.max_margin_loss and fid.flip_risk <= o.max_flip_risk), fid

    for b in lows if o.uniform_first else ():  # coarse: every map one step lower together, while accepted
        old_entries = dict(entries)
        for t, m in old_entries.items():
            entries[t] = MapPrecision(t, b, m.threshold, m.signed, step=o.step)
            _swap(prec, entries[t])
        omega = max(_omega(rec.stats[t], zps[t], m) for t, m in entries.items())
        ok, fid = accepts(omega)
        steps.append(SearchStep("*", b, 0.0, ok, fid.agreement, fid.mean_abs_change))
        if log:
            log(steps[-1])
        if not ok:
            for m in old_entries.values():
                _swap(prec, m)
            entries = old_entries
            break
        last = fid if fid.n else None
    while True:
        cands = []
        for t, m in entries.items():
            nxt = [b for b in lows if b < m.bits]
            if t in frozen or not nxt:
                continue
            b = nxt[0]
            trial = MapPrecision(t, b, m.threshold, m.signed, step=o.step)
            omega = _omega(rec.stats[t], zps[t], trial)
            phi = phi_unit[t] * (m.bits - b)
            cands.append((-o.lam * omega + (1 - o.lam) * phi, t, b, omega))
        if not cands:
            break
        score, t, b, omega = max(cands)
        old = entries[t]
        new = MapPrecision(t, b, old.threshold, old.signed, step=o.step)
        _swap(prec, new)
        ok, fid = accepts(omega)
        steps.append(SearchStep(t, b, score, ok, fid.agreement, fid.mean_abs_change))
        if log:
            log(steps[-1])
        if ok:
            entries[t] = new
            last = fid if fid.n else None
        else:
            _swap(prec, old)
            frozen.add(t)
    if last is None:
        last, _ = measure(graph, plan, prec, calib, refs)
    return QuantizeResult(prec, steps, last)


def uniform(graph: Graph, plan: Plan, calib: list[np.ndarray], bits: int, step: str = "static") -> PrecisionPlan:
    """Every map of every tiled stage at ``bits``, its threshold the largest patch value of the
    int8 run over ``calib`` (maps computed from lowered ones may still exceed it), scope ``map``:
    how much a uniform lowering costs in fidelity (``benchmarks/quantmcu.py``'s floor rows)."""
    rec = MixedPrecision(graph, plan, None, record=True)
    ex = values_runner(graph, plan, rec)
    for x in calib:
        ex(x)
    stages = [StagePrecision(si, [MapPrecision(t, bits, max(rec.stats[t].patch_max), rec.stats[t].below_zero_point,
                                               step=step)
                                  for t in stage_maps(graph, plan, si) if rec.stats[t].patch_max])
              for si, s in enumerate(plan.stages) if STREAM not in s.halo.values()]
    return PrecisionPlan(graph.name, fingerprint(graph), plan_fingerprint(plan), stages, "map", "worst",
                         {"outlier_rule": "max|q-zp| of a patch > the largest of the int8 calibration run",
                          "lambda": None, "bitwidths": [bits], "calibration_inputs": len(calib), "step": step})


def _swap(prec: PrecisionPlan, m: MapPrecision) -> None:
    for sp in prec.stages:
        sp.maps = [m if x.tensor == m.tensor else x for x in sp.maps]
