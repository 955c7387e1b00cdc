"""The precision plan: per patch stage, per feature map, the bitwidth of non-outlier patches.

Data beside a :class:`~tinypatch.planning.plan.Plan` (JSON, fingerprinted with the graph and
the patch plan it was calibrated for). A map entry says: for a patch (the piece of the map a
tile computes, or for the stage input the piece a tile reads) whose largest ``|q - zp|`` is at
most ``threshold``, store the map in ``bits`` bits (signed or unsigned codes,
:mod:`tinypatch.kernels.lowbit`) with step ``2**shift`` (``step`` "static"), or with a step chosen
at run time from the values of the patch ("patch") or of each of its pixels ("pixel"), at most
``2**shift``; otherwise the patch is an *outlier*. With scope
``"rest"`` (the default) an outlier switches this map and every later map of the same tile
to 8 bits; with ``"map"`` only this map. The class is decided at run time from the patch's
own values. The arena stays sized for the worst case (every patch an outlier, i.e. int8).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.kernels.lowbit import BITWIDTHS, STEPS, packed_bytes, step_shift
from tinypatch.planning.memory import place_plan, plan_buffers
from tinypatch.planning.plan import Plan, fingerprint, parse_plan_json, read_plan_text
from tinypatch.safeio import write_text

PRECISION_FORMAT = "tinypatch-precision/2"  # /2 added the maps' "step"; /1 plans (all static) still load
READ_FORMATS = ("tinypatch-precision/1", PRECISION_FORMAT)
SCOPES = ("rest", "map")


@dataclass
class MapPrecision:
    tensor: str
    bits: int  # non-outlier patches
    threshold: int  # outlier test: max |q - zp| over the patch > threshold
    signed: bool
    shift: int = -1  # -1: derived from bits, signed and threshold (the largest shift a run-time step takes)
    step: str = "static"  # the shift: one per map, or chosen at run time per patch / per pixel (STEPS)

    def __post_init__(self) -> None:
        if self.step not in STEPS:
            raise PlanError(f"map {self.tensor!r}: step must be one of {STEPS}, got {self.step!r}")
        if self.bits not in BITWIDTHS:
            raise PlanError(f"map {self.tensor!r}: bits must be one of {BITWIDTHS}, got {self.bits}")
        if not 0 <= self.threshold <= 255:
            raise PlanError(f"map {self.tensor!r}: threshold must be in 0..255, got {self.threshold}")
        derived = step_shift(self.bits, self.signed, self.threshold) if self.bits < 8 else 0
        if self.shift == -1:
            self.shift = derived
        elif self.shift != derived:
            raise PlanError(f"map {self.tensor!r}: shift {self.shift} does not match bits/threshold ({derived})")


@dataclass
class StagePrecision:
    stage: int  # index into Plan.stages
    maps: list[MapPrecision] = field(default_factory=list)


@dataclass
class PrecisionPlan:
    model: str
    fingerprint: str  # the graph's
    plan_fingerprint: str  # the patch plan's
    stages: list[StagePrecision]
    scope: str = "rest"
    arena: str = "worst"  # sized for every patch an outlier
    notes: dict[str, Any] = field(default_factory=dict)  # how it was calibrated (quantile, lambda, ...)

    def check(self, graph: Graph, plan: Plan) -> None:
        """Refuse a precision plan calibrated for another model or patch plan."""
        if self.fingerprint != fingerprint(graph):
            raise PlanError(f"precision plan is for model {self.model!r} ({self.fingerprint}), not this one")
        if self.plan_fingerprint != plan_fingerprint(plan):
            raise PlanError("precision plan was calibrated for another patch plan")
        if self.scope not in SCOPES:
            raise PlanError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        for sp in self.stages:
            if not 0 <= sp.stage < len(plan.stages):
                raise PlanError(f"precision plan names stage {sp.stage}; the patch plan has {len(plan.stages)}")
            for m in sp.maps:
                if m.tensor not in graph.tensors:
                    raise PlanError(f"precision plan names unknown tensor {m.tensor!r}")

    def to_json(self) -> str:
        return json.dumps({"format": PRECISION_FORMAT, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> PrecisionPlan:
        d = parse_plan_json(text, "precision plan")
        if not isinstance(d, dict) or d.get("format") not in READ_FORMATS:
            raise PlanError(f"not a tinypatch precision plan (expected \"format\": \"{PRECISION_FORMAT}\")")
        try:
            stages = [StagePrecision(_typed(s, "stage", int), [
                MapPrecision(_typed(m, "tensor", str), _typed(m, "bits", int), _typed(m, "threshold", int),
                             _typed(m, "signed", bool), _typed(m, "shift", int, -1),
                             _typed(m, "step", str, "static")) for m in _typed(s, "maps", list)])
                for s in _typed(d, "stages", list)]
            return cls(_typed(d, "model", str), _typed(d, "fingerprint", str), _typed(d, "plan_fingerprint", str),
                       stages, _typed(d, "scope", str, "rest"), _typed(d, "arena", str, "worst"),
                       _typed(d, "notes", dict, {}))
        except (TypeError, AttributeError) as exc:
            raise PlanError(f"malformed precision plan: {exc}") from None

    @classmethod
    def load(cls, path: str) -> PrecisionPlan:
        return cls.from_json(read_plan_text(path, "precision plan"))

    def save(self, path: str) -> None:
        """Write the precision plan as JSON, atomically (:func:`tinypatch.safeio.write_text`)."""
        write_text(path, self.to_json() + "\n")


def _typed(d: Any, key: str, kind: type, default: Any = None) -> Any:
    """``d[key]`` if it is a JSON value of ``kind`` (integers are not booleans or floats)."""
    if not isinstance(d, dict):
        raise PlanError(f"malformed precision plan: expected an object holding {key!r}, got {type(d).__name__}")
    if key not in d and default is not None:
        return default
    v = d.get(key)
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise PlanError(f"precision plan field {key!r} must be {kind.__name__}, got {json.dumps(v)[:40]}")
    return v


def plan_fingerprint(plan: Plan) -> str:
    """A short hash of the patch plan's stages (what the precision plan's maps and patches depend on)."""
    return hashlib.sha256(json.dumps([s.to_dict() for s in plan.stages]).encode()).hexdigest()[:16]


@dataclass
class PrecisionMemory:
    worst_case: int  # arena peak with every patch an outlier (int8 tile buffers): what is allocated
    all_low_bit: int  # arena peak with every lowered tile buffer packed at its low bitwidth
    packed: dict[str, tuple[int, int]]  # tile buffer -> (int8 bytes, packed bytes)


def precision_memory(graph: Graph, plan: Plan, precision: PrecisionPlan) -> PrecisionMemory:
    """Arena peaks of the worst case (int8) and of every lowered tile buffer stored packed."""
    pb = plan_buffers(graph, plan)
    worst = place_plan(pb)
    low = {m.tensor: m for sp in precision.stages for m in sp.maps if m.bits < 8}
    tbuf = pb.liveness.tensor_buffer
    packed: dict[str, tuple[int, int]] = {}
    for t, m in low.items():
        if t in pb.tile_tensors and t in tbuf:
            size = next(x.size for x in pb.liveness.buffers if x.name == tbuf[t])
            blocks = {"static": 0, "patch": 1, "pixel": size // graph.tensors[t].shape[-1]}[m.step]
            packed[tbuf[t]] = (size, packed_bytes(size, m.bits, blocks))
    packed_pb = replace(pb, liveness=replace(pb.liveness, buffers=[
        replace(x, size=packed[x.name][1]) if x.name in packed else x for x in pb.liveness.buffers]))
    return PrecisionMemory(worst.peak, place_plan(packed_pb).peak, packed)
