"""Run-time side of a precision plan: classify each patch from its own values, requantize its
feature maps to their low-bit grids, and count BitOPs (MACs x weight bits x activation bits).

:class:`MixedPrecision` is the hook :class:`~tinypatch.runtime.plan_executor.PlanExecutor`
calls inside a patch stage: :meth:`begin_tile` per tile, :meth:`read` for a stage input a tile
reads, :meth:`wrote` for the piece of a map a tile computed. With ``record=True`` it also keeps
the statistics calibration needs (per-patch max |q - zp|, value histograms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinypatch.analysis.macs import op_macs
from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.kernels.lowbit import requantize, requantize_blocks
from tinypatch.planning.plan import STREAM, Plan
from tinypatch.planning.precision import MapPrecision, PrecisionPlan
from tinypatch.runtime.executor import Executor

WEIGHT_BITS = 8


@dataclass
class StageCounts:
    tiles: int = 0
    outlier_tiles: int = 0  # tiles in which some map's patch failed the outlier test
    bitops: int = 0
    bitops_int8: int = 0


@dataclass
class MapStats:
    """Calibration statistics of one map (int8 values, every patch)."""

    patch_max: list[int] = field(default_factory=list)  # max |q - zp| per patch
    hist: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))  # counts of q + 128
    below_zero_point: bool = False
    pixels: list[np.ndarray] = field(default_factory=list)  # up to SAMPLE pixels (channel vectors) per patch
    pixel_patch_max: list[np.ndarray] = field(default_factory=list)  # their patch's max |q - zp|


SAMPLE = 64  # pixels kept per patch for the entropy estimate of run-time steps


def sample_pixels(x: np.ndarray) -> np.ndarray:
    """Up to :data:`SAMPLE` evenly spaced pixels (channel vectors) of a patch, copied (``x`` may be
    a view of bytes that later writes change)."""
    px = x.reshape(-1, x.shape[-1])
    return np.array(px[:: max(1, len(px) // SAMPLE)][:SAMPLE])


def stage_maps(graph: Graph, plan: Plan, stage: int) -> list[str]:
    """The feature maps of a stage a precision plan may lower: activation inputs the stage's ops
    read from outside it, then the outputs of its ops but the last (the stage output stays int8)."""
    s = plan.stages[stage]
    produced = {graph.ops[k].outputs[0] for k in range(s.start, s.end)}
    ext: list[str] = []
    for k in range(s.start, s.end):
        for t in graph.ops[k].inputs:
            if t and not graph.tensors[t].is_const and t not in produced and t not in ext \
                    and graph.tensors[t].dtype == "int8":
                ext.append(t)
    inner = [graph.ops[k].outputs[0] for k in range(s.start, s.end - 1)]
    return ext + [t for t in inner if graph.tensors[t].dtype == "int8"]


class MixedPrecision:
    def __init__(self, graph: Graph, plan: Plan, precision: PrecisionPlan | None, record: bool = False) -> None:
        self.graph, self.record = graph, record
        self.scope = precision.scope if precision else "rest"
        if precision is not None:
            precision.check(graph, plan)
        self.maps: dict[int, dict[str, MapPrecision]] = {}  # stage start -> tensor -> precision
        for sp in precision.stages if precision else []:
            s = plan.stages[sp.stage]
            if STREAM in s.halo.values() and any(m.bits < 8 for m in sp.maps):
                raise PlanError(f"stage {sp.stage} is a stream stage; mixed precision runs tiled stages only")
            self.maps[s.start] = {m.tensor: m for m in sp.maps}
        self.starts = [s.start for s in plan.stages]
        self.counts = {s.start: StageCounts() for s in plan.stages}
        self.stats: dict[str, MapStats] = {}
        if record:
            for i in range(len(plan.stages)):
                for t in stage_maps(graph, plan, i):
                    self.stats[t] = MapStats()
        self.per_pixel = {}
        for k, op in enumerate(graph.ops):
            out = graph.tensors[op.outputs[0]]
            pixels = int(np.prod(out.shape[:-1])) if len(out.shape) == 4 else 1
            self.per_pixel[k] = op_macs(graph, op) // max(pixels, 1)
        self._bits: dict[str, int] = {}
        self._high = False
        self._outlier = False
        self._stage = -1

    def begin_tile(self, stage_start: int) -> None:
        self._close_tile()
        self._stage, self._bits, self._high, self._outlier = stage_start, {}, False, False

    def end_stage(self) -> None:
        self._close_tile()
        self._stage = -1

    def _close_tile(self) -> None:
        if self._stage >= 0:
            c = self.counts[self._stage]
            c.tiles += 1
            c.outlier_tiles += self._outlier

    def _apply(self, name: str, x: np.ndarray) -> np.ndarray:
        if self.record and name in self.stats and x.size:
            zp = int(self.graph.tensors[name].quant.zero_point[0])  # type: ignore[union-attr]
            st = self.stats[name]
            d = x.astype(np.int32) - zp
            st.patch_max.append(int(np.abs(d).max()))
            st.hist += np.bincount((x.astype(np.int32) + 128).ravel(), minlength=256)
            st.below_zero_point |= bool(d.min() < 0)
            px = sample_pixels(x)
            st.pixels.append(px)
            st.pixel_patch_max.append(np.full(len(px), st.patch_max[-1], np.int32))
        m = self.maps.get(self._stage, {}).get(name)
        if m is None or m.bits >= 8 or not x.size:
            self._bits[name] = 8
            return x
        zp = int(self.graph.tensors[name].quant.zero_point[0])  # type: ignore[union-attr]
        outlier = int(np.abs(x.astype(np.int32) - zp).max()) > m.threshold
        self._outlier |= outlier
        if outlier and self.scope == "rest":
            self._high = True
        if outlier or self._high:
            self._bits[name] = 8
            return x
        self._bits[name] = m.bits
        return lower(x, zp, m)

    def read(self, name: str, x: np.ndarray) -> np.ndarray:
        """A stage input's piece read by a tile (before the op uses it)."""
        return self._apply(name, x)

    def wrote(self, k: int, value: np.ndarray, is_stage_output: bool) -> np.ndarray:
        """Op k's freshly computed piece in the current tile: count its BitOPs, lower it."""
        op = self.graph.ops[k]
        macs = self.per_pixel[k] * int(np.prod(value.shape[:-1]))
        if macs:
            c = self.counts[self._stage]
            c.bitops += macs * WEIGHT_BITS * self._bits.get(op.inputs[0], 8)
            c.bitops_int8 += macs * WEIGHT_BITS * 8
        if is_stage_output:
            return value
        return self._apply(op.outputs[0], value)


def lower(x: np.ndarray, zp: int, m: MapPrecision) -> np.ndarray:
    """``x`` (int8 codes, zero point ``zp``) requantized as map ``m`` stores a non-outlier patch:
    at its static step, or at the step of each patch or pixel (:mod:`tinypatch.kernels.lowbit`)."""
    if m.step == "static":
        return requantize(x, zp, m.bits, m.shift, m.signed)
    return requantize_blocks(x, zp, m.bits, m.signed, m.step)


def tile_independent(precision: PrecisionPlan | None) -> bool:
    """True when the plan's low-bit values do not depend on the tiling: no lowered map can hold an
    outlier patch (threshold 255 covers every |q - zp|) and no step is chosen per patch. Each value
    is then requantized from its own pixel alone, so a patch stage computes what the whole-image
    graph computes with every lowered map requantized (:class:`PixelwiseRun`)."""
    return precision is not None and all(m.bits >= 8 or (m.threshold >= 255 and m.step != "patch")
                                         for sp in precision.stages for m in sp.maps)


class PixelwiseRun:
    """A tile-independent precision plan (:func:`tile_independent`) run on the whole image: the
    prepared kernels in graph order, each op of a patch stage reading that stage's lowered maps
    requantized (static or per-pixel step). Gives the plan executor's outputs, fast (one numpy call
    per op); BitOPs are not counted here."""

    def __init__(self, graph: Graph, plan: Plan, precision: PrecisionPlan) -> None:
        if not tile_independent(precision):
            raise PlanError("the precision plan depends on the tiling (outlier patches or a per-patch step)")
        precision.check(graph, plan)
        self.graph, self.ex = graph, Executor(graph)
        self.stage: dict[int, int] = {}  # op -> its stage's index into precision.stages
        self.maps: list[dict[str, MapPrecision]] = []
        for i, sp in enumerate(precision.stages):
            s = plan.stages[sp.stage]
            self.stage.update({k: i for k in range(s.start, s.end)})
            self.maps.append({m.tensor: m for m in sp.maps if m.bits < 8})

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        g = self.graph
        env = self.ex.check_inputs([x])
        low: dict[tuple[int, str], np.ndarray] = {}
        for k, (op, kernel) in enumerate(zip(g.ops, self.ex.kernels)):
            i = self.stage.get(k)
            args = []
            for t in kernel.input_names:
                m = self.maps[i].get(t) if i is not None else None
                if m is not None:
                    if (i, t) not in low:
                        zp = int(g.tensors[t].quant.zero_point[0])  # type: ignore[union-attr]
                        low[i, t] = lower(env[t], zp, m)
                    args.append(low[i, t])
                else:
                    args.append(env[t])
            for name, value in zip(op.outputs, kernel(args)):
                env[name] = value
        return {n: env[n] for n in g.outputs}
