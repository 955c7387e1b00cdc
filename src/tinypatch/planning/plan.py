"""The schedule: which operators run patch by patch, over which tile grid. JSON round-trips.

A :class:`Plan` is a list of :class:`Stage` objects over one graph; operators outside every
stage run layer by layer. A stage is a contiguous range of operators ``[start, end)`` whose
only tensor used after it is the output of its last operator (the stage output). The stage
output's H and W are cut into tiles by ``rows`` and ``cols`` (cut points, uneven allowed).
``inplace`` lists layer-by-layer operators that write their output over the input they read
last (:mod:`tinypatch.analysis.inplace_shift`). ``rewrites`` (optional) lists graph rewrites
(op reordering, recomputation: :mod:`tinypatch.planning.rewrite`) that turn the model into the
graph the stages index; ``fingerprint`` is always the model's, ``rewritten_fingerprint`` the
rewritten graph's. Everything else (regions, paddings, buffer sizes) is derived from the graph, never stored as
a source of truth: :mod:`tinypatch.planning.tiles` computes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.safeio import write_text

PLAN_FORMAT = "tinypatch-plan/1"
REWRITING_FORMAT = "tinypatch-plan/2"  # a plan with graph rewrites (readers of /1 must refuse it)
HALO_MODES = ("recompute", "cache_w", "cache")  # per-op halo handling inside a stage
STREAM = "stream"  # a whole-stage halo mode (every op but the last): see tinypatch.planning.stream
MAX_PLAN_BYTES = 16 * 2**20  # plans are kilobytes; refuse anything near this before parsing it
MAX_DEPTH = 4  # plan -> stages -> stage -> cut list
MAX_INDEX = 2**31 - 1  # operator indices and cut points


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
        """A stage from its JSON form, which must pass :func:`check_schema`'s stage rules."""
        _check_stage(d, "stage")
        halo = {int(k): v for k, v in d.get("halo", {}).items()}
        return cls(d["ops"][0], d["ops"][1], list(d["rows"]), list(d["cols"]), halo)


@dataclass
class Plan:
    """A whole-model schedule; ``stages`` empty means plain layer-by-layer inference."""

    model: str
    fingerprint: str
    stages: list[Stage] = field(default_factory=list)
    include_input: bool = True
    include_output: bool = True
    inplace: list[int] = field(default_factory=list)  # layer-by-layer ops writing over their input
    rewrites: list[dict[str, Any]] = field(default_factory=list)  # see tinypatch.planning.rewrite
    rewritten_fingerprint: str = ""  # the rewritten graph's fingerprint (with rewrites)

    @property
    def graph_fingerprint(self) -> str:
        """The fingerprint of the graph the stages index: the model's, or the rewritten graph's."""
        return self.rewritten_fingerprint if self.rewrites else self.fingerprint

    @classmethod
    def layer_by_layer(cls, graph: Graph, include_input: bool = True, include_output: bool = True) -> Plan:
        return cls(graph.name, fingerprint(graph), [], include_input, include_output)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REWRITING_FORMAT if self.rewrites else PLAN_FORMAT,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "include_input": self.include_input,
            "include_output": self.include_output,
            "stages": [s.to_dict() for s in self.stages],
            **({"inplace": sorted(self.inplace)} if self.inplace else {}),
            **({"rewrites": self.rewrites, "rewritten_fingerprint": self.rewritten_fingerprint}
               if self.rewrites else {}),
        }

    def to_json(self) -> str:
        """Stable, readable JSON: one key per line, number lists on one line."""
        text = json.dumps(self.to_dict(), indent=1)
        return re.sub(r"\[\s*([-0-9,\s]*?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",")
                      + "]", text)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        """A plan from its JSON form, after :func:`check_schema`."""
        check_schema(d)
        return cls(d["model"], d["fingerprint"], [Stage.from_dict(s) for s in d["stages"]],
                   d.get("include_input", True), d.get("include_output", True), sorted(d.get("inplace", [])),
                   [dict(r) for r in d.get("rewrites", [])], d.get("rewritten_fingerprint", ""))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(parse_plan_json(text, "plan"))

    @classmethod
    def load(cls, path: str) -> Plan:
        return cls.from_json(read_plan_text(path, "plan"))

    def save(self, path: str) -> None:
        """Write the plan as JSON, atomically (:func:`tinypatch.safeio.write_text`)."""
        write_text(path, self.to_json() + "\n")


def parse_plan_json(text: str, what: str) -> Any:
    """The parsed JSON of a plan file's text (``what``: its kind, for the messages); PlanError for
    oversized text (MAX_PLAN_BYTES), invalid JSON or nesting deep enough to exhaust the parser."""
    if len(text) > MAX_PLAN_BYTES:
        raise PlanError(f"{what} is {len(text):,} characters long, more than any {what} needs ({MAX_PLAN_BYTES:,})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise PlanError(f"{what} JSON is nested too deeply (a plan nests {MAX_DEPTH} levels at most)") from None


def read_plan_text(path: str, what: str) -> str:
    """The text of a plan file (``what``: its kind, for the message), read up to one character past
    MAX_PLAN_BYTES so the parser can refuse an oversized file; PlanError when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(MAX_PLAN_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None


def fingerprint(graph: Graph) -> str:
    """A short hash of the graph's operators and activation shapes (not its weights)."""
    h = hashlib.sha256()
    for op in graph.ops:
        shapes = [graph.tensors[t].shape for t in (*op.inputs, *op.outputs) if t]
        h.update(f"{op.type}{sorted(op.attrs.items())}{shapes};".encode())
    return h.hexdigest()[:16]


# --- the schema: every plan passes it before any use ----------------------------------------------
def check_schema(d: Any) -> None:
    """Refuse a plan's JSON form unless every field has the right type and range. Raises PlanError.

    Integers must be JSON integers (``4.7`` or ``true`` is not a cut point), cut lists strictly
    increase from 0, op ranges are ``[start, end)`` with ``0 <= start < end``, halo keys are op
    indices inside the stage, and nothing nests deeper than a plan does.
    """
    if not isinstance(d, dict) or d.get("format") not in (PLAN_FORMAT, REWRITING_FORMAT):
        raise PlanError(f"not a tinypatch plan (expected \"format\": \"{PLAN_FORMAT}\", or \"{REWRITING_FORMAT}\" "
                        f"with graph rewrites)")
    _check_depth(d)
    for key in ("model", "fingerprint"):
        if not isinstance(d.get(key), str):
            raise PlanError(f"plan field {key!r} must be a string, got {_show(d.get(key))}")
    for key in ("include_input", "include_output"):
        if key in d and not isinstance(d[key], bool):
            raise PlanError(f"plan field {key!r} must be true or false, got {_show(d[key])}")
    stages = d.get("stages")
    if not isinstance(stages, list):
        raise PlanError(f"plan field 'stages' must be a list, got {_show(stages)}")
    for k, stage in enumerate(stages):
        _check_stage(stage, f"stage {k}")
    inplace = d.get("inplace", [])
    if not isinstance(inplace, list) or not all(_is_index(v) for v in inplace) or len(set(inplace)) != len(inplace):
        raise PlanError(f"plan field 'inplace' must list distinct operator indices, got {_show(inplace)}")
    rewrites = d.get("rewrites", [])
    if not isinstance(rewrites, list):
        raise PlanError(f"plan field 'rewrites' must be a list, got {_show(rewrites)}")
    for k, r in enumerate(rewrites):
        check_rewrite(r, f"rewrite {k}")
    if bool(rewrites) != (d["format"] == REWRITING_FORMAT):
        raise PlanError(f"a plan lists graph 'rewrites' exactly when its format is {REWRITING_FORMAT}")
    if rewrites and not isinstance(d.get("rewritten_fingerprint"), str):
        raise PlanError("a plan with 'rewrites' needs the string field 'rewritten_fingerprint'")


def check_rewrite(r: Any, where: str) -> None:
    """A rewrite is ``{"order": [every op index once]}`` or ``{"recompute": [increasing op indices], "for": op}``."""
    if isinstance(r, dict) and set(r) == {"order"}:
        order = r["order"]
        if isinstance(order, list) and all(_is_index(v) for v in order) and sorted(order) == list(range(len(order))):
            return
        raise PlanError(f"{where}: 'order' must list every operator index once, got {_show(order)}")
    if isinstance(r, dict) and set(r) == {"recompute", "for"}:
        ops, consumer = r["recompute"], r["for"]
        if (isinstance(ops, list) and ops and all(_is_index(v) for v in ops)
                and all(a < b for a, b in pairwise(ops)) and _is_index(consumer) and ops[-1] < consumer):
            return
        raise PlanError(f"{where}: 'recompute' must list increasing operator indices before 'for' (an operator "
                        f"index), got {_show(r)}")
    raise PlanError(f"{where} must be {{\"order\": [...]}} or {{\"recompute\": [...], \"for\": N}}, got {_show(r)}")


def _check_stage(d: Any, where: str) -> None:
    if not isinstance(d, dict):
        raise PlanError(f"{where} must be an object with 'ops', 'rows' and 'cols', got {_show(d)}")
    ops = d.get("ops")
    if not (isinstance(ops, list) and len(ops) == 2 and all(_is_index(v) for v in ops) and ops[0] < ops[1]):
        raise PlanError(f"{where}: 'ops' must be [start, end] with integers 0 <= start < end, got {_show(ops)}")
    for key in ("rows", "cols"):
        cuts = d.get(key)
        if not (isinstance(cuts, list) and len(cuts) >= 2 and all(_is_index(v) for v in cuts) and cuts[0] == 0
                and all(a < b for a, b in zip(cuts, cuts[1:]))):
            raise PlanError(f"{where}: {key!r} must be integer cut points that start at 0 and strictly increase, "
                            f"got {_show(cuts)}")
    halo = d.get("halo", {})
    if not isinstance(halo, dict):
        raise PlanError(f"{where}: 'halo' must map op indices to modes, got {_show(halo)}")
    modes = (*HALO_MODES, STREAM)
    for k, v in halo.items():
        if not (k.isdigit() and ops[0] <= int(k) < ops[1]) or v not in modes:
            raise PlanError(f"{where}: bad halo entry {_show(k)}: {_show(v)} (keys are op indices inside the stage, "
                            f"values one of {', '.join(modes)})")


def _is_index(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INDEX


def _check_depth(d: Any) -> None:
    """Iteratively: a hostile plan may nest deeper than Python's recursion limit."""
    stack = [(d, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise PlanError(f"plan JSON is nested too deeply (a plan nests {MAX_DEPTH} levels at most)")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)


def _show(v: Any, limit: int = 60) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= limit else text[:limit] + "..."
