"""The schedule: which operators run patch by patch, over which tile grid. JSON round-trips.

A :class:`Plan` is a list of :class:`Stage` objects over one graph; operators outside every
stage run layer by layer. A stage is a contiguous range of operators ``[start, end)`` whose
only tensor used after it is the output of its last operator (the stage output). The stage
output's H and W are cut into tiles by ``rows`` and ``cols`` (cut points, uneven allowed).
``inplace`` lists layer-by-layer operators that write their output over the input they read
last (:mod:`tinypatch.analysis.inplace_shift`). Everything else (regions, paddings, buffer sizes) is derived from the graph, never stored as
a source of truth: :mod:`tinypatch.planning.tiles` computes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from tinypatch.errors import PlanError
from tinypatch.ir import Graph

PLAN_FORMAT = "tinypatch-plan/1"
HALO_MODES = ("recompute", "cache_w", "cache")  # per-op halo handling inside a stage
STREAM = "stream"  # a whole-stage halo mode (every op but the last): see tinypatch.planning.stream


@dataclass
class Stage:
    """Operators ``[start, end)`` run tile by tile; tiles cut the stage output by rows x cols.

    Tiles run in raster order (row by row). ``halo`` maps an op index to how the overlap its
    output shares with the next tile is handled: "recompute" (the default, MCUNetV2),
    "cache_w" (keep the overlapping columns for the next tile in the row) or "cache" (also keep
    the overlapping rows for the next tile row, in a line buffer; with one tile column the
    tile buffer itself rolls down, like a line buffer of a streaming engine). "stream" is a
    whole-stage mode (every op but the last, one-column tiles): each row strip is computed
    column by column, pulled through window buffers (see :mod:`tinypatch.planning.stream`).
    """

    start: int
    end: int
    rows: list[int]
    cols: list[int]
    halo: dict[int, str] = field(default_factory=dict)

    def mode(self, op_index: int) -> str:
        return self.halo.get(op_index, "recompute")

    @property
    def grid(self) -> tuple[int, int]:
        return len(self.rows) - 1, len(self.cols) - 1

    @property
    def n_tiles(self) -> int:
        return self.grid[0] * self.grid[1]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ops": [self.start, self.end], "grid": list(self.grid), "rows": self.rows,
                             "cols": self.cols}
        halo = {str(k): v for k, v in sorted(self.halo.items()) if v != "recompute"}
        if halo:
            d["halo"] = halo
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stage:
        try:
            start, end = (int(x) for x in d["ops"])
            halo = {int(k): str(v) for k, v in d.get("halo", {}).items()}
            stage = cls(start, end, [int(x) for x in d["rows"]], [int(x) for x in d["cols"]], halo)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PlanError(f"malformed stage {d!r}: needs 'ops': [start, end], 'rows' and 'cols' cut lists") from exc
        bad = {k: v for k, v in halo.items() if v not in (*HALO_MODES, STREAM) or not start <= k < end}
        if bad:
            raise PlanError(f"bad halo entries {bad}: keys are op indices inside the stage, values one of "
                            f"{', '.join((*HALO_MODES, STREAM))}")
        return stage


@dataclass
class Plan:
    """A whole-model schedule; ``stages`` empty means plain layer-by-layer inference."""

    model: str
    fingerprint: str
    stages: list[Stage] = field(default_factory=list)
    include_input: bool = True
    include_output: bool = True
    inplace: list[int] = field(default_factory=list)  # layer-by-layer ops writing over their input

    @classmethod
    def layer_by_layer(cls, graph: Graph, include_input: bool = True, include_output: bool = True) -> Plan:
        return cls(graph.name, fingerprint(graph), [], include_input, include_output)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "include_input": self.include_input,
            "include_output": self.include_output,
            "stages": [s.to_dict() for s in self.stages],
            **({"inplace": sorted(self.inplace)} if self.inplace else {}),
        }

    def to_json(self) -> str:
        """Stable, readable JSON: one key per line, number lists on one line."""
        text = json.dumps(self.to_dict(), indent=1)
        return re.sub(r"\[\s*([-0-9,\s]*?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",")
                      + "]", text)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        if not isinstance(d, dict) or d.get("format") != PLAN_FORMAT:
            raise PlanError(f"not a tinypatch plan (expected \"format\": \"{PLAN_FORMAT}\")")
        try:
            return cls(str(d["model"]), str(d["fingerprint"]), [Stage.from_dict(s) for s in d["stages"]],
                       bool(d.get("include_input", True)), bool(d.get("include_output", True)),
                       sorted(int(k) for k in d.get("inplace", [])))
        except (KeyError, TypeError, ValueError) as exc:
            raise PlanError(f"malformed plan: missing or bad field {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from exc

    @classmethod
    def load(cls, path: str) -> Plan:
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_json(f.read())
        except OSError as exc:
            raise PlanError(f"cannot read plan {path}: {exc.strerror}") from exc

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json() + "\n")


def fingerprint(graph: Graph) -> str:
    """A short hash of the graph's operators and activation shapes (not its weights)."""
    h = hashlib.sha256()
    for op in graph.ops:
        shapes = [graph.tensors[t].shape for t in (*op.inputs, *op.outputs) if t]
        h.update(f"{op.type}{sorted(op.attrs.items())}{shapes};".encode())
    return h.hexdigest()[:16]
