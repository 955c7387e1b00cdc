"""Predicted executed instructions of a plan's generated C on a target (a fitted linear model).

Each op runs on a *kernel path* named from its operator-table traits (:func:`op_path`: conv
1x1, other conv, depthwise, else the C function of the row, e.g. ``pad``, ``add_s8``,
``lut_s8``; ``stream.`` in front inside a stream stage, whose kernels are called once per
column; ``.ref`` / ``.inplace`` behind a convolution on the reference kernel or in place). Per
path the model charges instructions per unit of five features of the work an op does in a
schedule (:class:`OpWork`):

* ``work``: MACs plus element operations (pooling windows, element-wise ops, reductions);
* ``tail``: MACs on the remainder of a 4-wide dot product (contiguous filter row, or depthwise
  channels, not a multiple of 4): the DSP/Helium kernels run those one by one;
* ``elems``: output elements computed (requantization, stores);
* ``pixels`` and ``rows``: output pixels and output rows computed (loop and border set-up);
* ``rem2``, ``rem4``: pixels left over when each row a call computes is cut into groups of 2
  (the DSP kernels' pixel pairs) or 4 (Helium's), which run on slower one-pixel paths;
* ``copy``: bytes a cached halo moves between tiles (slid left, rolled up, saved to and
  restored from a line buffer);
* ``calls``: kernel calls (prologue, the schedule's span tables, views and branches);

plus a constant (start-up, stack painting) and the model's input and output bytes (semihosted
I/O). The coefficients per target are fitted by ``benchmarks/fit_cost.py`` from QEMU instruction
counts (the ``qemu-insncount`` plugin) of generated projects and stored in ``latency_fit.json``
beside this module, with the command that made them.

The search uses the same model per op as three numbers (:meth:`CostModel.op_rates`):
instructions per computed output pixel, per computed row and per call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from weakref import WeakKeyDictionary

from tinypatch.analysis.macs import op_elem_ops, op_macs
from tinypatch.errors import PlanError
from tinypatch.ir import Graph
from tinypatch.ir.optable import Macs, op_def
from tinypatch.kernels import prepare
from tinypatch.planning.plan import Plan
from tinypatch.planning.tiles import StageTiling, tile_stage

FEATURES = ("work", "tail", "elems", "pixels", "rows", "calls", "rem2", "rem4", "copy")
FIT_FILE = Path(__file__).with_name("latency_fit.json")
OBJECTIVES = ("instructions", "macs")


_FAST: WeakKeyDictionary[Graph, dict[int, bool]] = WeakKeyDictionary()  # op -> runs the optimised kernel


def _fast_path(graph: Graph, k: int) -> bool:
    """Does conv/depthwise op ``k`` run the optimised C kernel (else the reference one)?"""
    known = _FAST.setdefault(graph, {})
    if k not in known:
        known[k] = prepare(graph, graph.ops[k]).fast_path()  # type: ignore[attr-defined]
    return known[k]


def op_path(graph: Graph, k: int, stream: bool = False, inplace: bool = False) -> str:
    """The kernel path op ``k`` runs on, from its operator-table traits (``.ref``: a convolution the
    optimised kernels cannot run exactly, which falls back to the reference kernel; ``.inplace``: a
    convolution writing over its input, whose kernels keep to raster order)."""
    op = graph.ops[k]
    d = op_def(op.type)
    if d.macs in (Macs.CONV, Macs.DEPTHWISE):
        w = graph.tensors[op.inputs[1]].shape
        path = "depthwise" if d.macs == Macs.DEPTHWISE else "conv1x1" if w[1] == w[2] == 1 else "conv"
        if not _fast_path(graph, k):
            path += ".ref"
        elif inplace:
            path += ".inplace"
    elif d.c_kernels:  # the C function that runs it (pools, PAD, element-wise ops, lookups, FC, ...)
        path = d.c_kernels[0].removeprefix("tp_")
    else:
        path = d.kind.value  # no kernel call (RESHAPE: an alias)
    return f"stream.{path}" if stream else path


def _pixels(graph: Graph, k: int) -> int:
    shape = graph.tensors[graph.ops[k].outputs[0]].shape
    return shape[1] * shape[2] if len(shape) == 4 and shape[1] * shape[2] else 1


def _tail_fraction(graph: Graph, k: int) -> float:
    """Share of op k's MACs on the remainder of 4-wide dot products."""
    op = graph.ops[k]
    rule = op_def(op.type).macs
    if rule == Macs.NONE:
        return 0.0
    w = graph.tensors[op.inputs[1]].shape
    n = w[2] * w[3] if rule == Macs.CONV else w[-1]  # contiguous filter row / depthwise channels / FC inputs
    return (n % 4) / n if n else 0.0


@dataclass(frozen=True)
class PixelRates:
    """Per output pixel of op k: work, tail MACs and elements (the features proportional to pixels)."""

    work: float
    tail: float
    elems: float


def pixel_rates(graph: Graph, k: int) -> PixelRates:
    op = graph.ops[k]
    p = _pixels(graph, k)
    macs = op_macs(graph, op)
    out = graph.tensors[op.outputs[0]]
    elems = out.size // p if len(out.shape) == 4 else out.size
    return PixelRates((macs + op_elem_ops(graph, op)) / p, macs * _tail_fraction(graph, k) / p, elems)


@dataclass
class OpWork:
    """What op ``k`` computes in a schedule: output pixels, rows and kernel calls, on ``path``."""

    k: int
    path: str
    pixels: int
    rows: int
    calls: int
    rem2: int = 0
    rem4: int = 0
    copy: int = 0

    def features(self, graph: Graph) -> dict[str, float]:
        r = pixel_rates(graph, self.k)
        return {"work": r.work * self.pixels, "tail": r.tail * self.pixels, "elems": r.elems * self.pixels,
                "pixels": float(self.pixels), "rows": float(self.rows), "calls": float(self.calls),
                "rem2": float(self.rem2), "rem4": float(self.rem4), "copy": float(self.copy)}


def _halo_bytes(graph: Graph, st: StageTiling, k: int) -> int:
    """Bytes op k's kept halo moves over the tiles of ``st``: columns slid left, rows restored
    (and, with a line buffer, saved) for the next tile row."""
    px = graph.tensors[graph.ops[k].outputs[0]].shape[3]
    moved = 0
    for i, sh in enumerate(st.h.spans):
        for j, sw in enumerate(st.w.spans):
            (h0, h1), (w0, w1) = sh[k].need, sw[k].need
            if h1 <= h0 or w1 <= w0:
                continue
            if k in st.w.cached and j > 0:
                moved += (sw[k].out[0] - w0) * (h1 - h0)
            if k in st.h.cached and i > 0:
                moved += (sh[k].out[0] - h0) * (w1 - sw[k].out[0]) * (2 if st.line_buffer(k) else 1)
    return moved * px


def _stage_work(graph: Graph, st: StageTiling) -> list[OpWork]:
    out = []
    for k in st.info.tile_ops:
        hs = [s[k].out[1] - s[k].out[0] for s in st.h.spans]
        ws = [s[k].out[1] - s[k].out[0] for s in st.w.spans]
        nh, nw = sum(1 for x in hs if x > 0), sum(1 for x in ws if x > 0)
        rows = sum(hs) * (sum(ws) if st.stream else nw)  # a stream call computes one column of rows
        rem = [sum(hs) * sum(x % m for x in ws) for m in (2, 4)]
        copy = _halo_bytes(graph, st, k) if st.cached(k) and not st.stream else 0
        out.append(OpWork(k, op_path(graph, k, st.stream), sum(hs) * sum(ws), rows, nh * nw, *rem, copy))
    if st.info.reduce is not None:  # per-tile channel sums, then one finishing call
        k = st.info.reduce
        out.append(OpWork(k, op_path(graph, k), _pixels(graph, k), 1, st.stage.n_tiles))
    return out


def plan_work(graph: Graph, plan: Plan) -> list[OpWork]:
    """One :class:`OpWork` per op of the graph under ``plan`` (layer-by-layer ops: one call)."""
    staged: dict[int, StageTiling] = {}
    users = graph.consumers() if plan.stages else None
    for stage in plan.stages:
        staged[stage.start] = tile_stage(graph, stage, users)
    out, k = [], 0
    while k < len(graph.ops):
        if k in staged:
            st = staged[k]
            out += _stage_work(graph, st)
            k = st.stage.end
            continue
        shape = graph.tensors[graph.ops[k].outputs[0]].shape
        h, w = (shape[1], shape[2]) if len(shape) == 4 else (1, 1)
        out.append(OpWork(k, op_path(graph, k, inplace=k in plan.inplace), _pixels(graph, k), h, 1, h * (w % 2),
                          h * (w % 4)))
        k += 1
    return out


@dataclass(frozen=True)
class OpRates:
    """Predicted instructions of one op: per computed output pixel, per computed row, per call, and
    per pixel left over from groups of 2 and of 4 in a row, per halo byte moved."""

    pixel: float
    row: float
    call: float
    rem2: float
    rem4: float
    copy: float


@dataclass
class CostModel:
    """Fitted instruction coefficients of one target (see the module docstring)."""

    target: str
    const: float
    io_byte: float
    paths: dict[str, dict[str, float]]
    command: str = ""

    def coef(self, path: str) -> dict[str, float]:
        if path in self.paths:
            return self.paths[path]
        base = path.removesuffix(".ref").removesuffix(".inplace")
        for other in (path.removeprefix("stream."), base, base.removeprefix("stream.")):  # never measured: the closest
            if other in self.paths:
                return self.paths[other]
        return {}

    def op_rates(self, graph: Graph, k: int, stream: bool = False) -> OpRates:
        """The op's rates out of place (the search runs before the in-place pass)."""
        c = self.coef(op_path(graph, k, stream))
        r = pixel_rates(graph, k)
        pixel = c.get("work", 0) * r.work + c.get("tail", 0) * r.tail + c.get("elems", 0) * r.elems \
            + c.get("pixels", 0)
        return OpRates(pixel, c.get("rows", 0), c.get("calls", 0), c.get("rem2", 0), c.get("rem4", 0),
                       c.get("copy", 0))

    def op_insns(self, graph: Graph, w: OpWork) -> float:
        c = self.coef(w.path)
        return sum(c.get(f, 0.0) * v for f, v in w.features(graph).items())

    def fixed(self, graph: Graph) -> float:
        """Start-up and I/O instructions outside the ops."""
        io = sum(graph.tensors[t].nbytes for t in (*graph.inputs, *graph.outputs))
        return self.const + self.io_byte * io

    def predict(self, graph: Graph, plan: Plan) -> float:
        """Predicted executed instructions of the whole generated program under ``plan``."""
        return self.fixed(graph) + sum(self.op_insns(graph, w) for w in plan_work(graph, plan))

    def per_op(self, graph: Graph, plan: Plan) -> list[tuple[OpWork, float]]:
        return [(w, self.op_insns(graph, w)) for w in plan_work(graph, plan)]


def plan_calls(graph: Graph, plan: Plan) -> int:
    """Kernel calls of the generated code under ``plan``."""
    return sum(w.calls for w in plan_work(graph, plan))


@cache
def _fit_data() -> dict:
    if not FIT_FILE.is_file():
        return {}
    return json.loads(FIT_FILE.read_text())


def fitted_targets() -> tuple[str, ...]:
    return tuple(_fit_data().get("targets", {}))


def cost_model(target: str) -> CostModel:
    """The fitted model of ``target``; PlanError when it has none."""
    data = _fit_data()
    t = data.get("targets", {}).get(target)
    if t is None:
        have = ", ".join(data.get("targets", {})) or "none"
        raise PlanError(f"no instruction cost model for target {target!r} (fitted: {have})")
    return CostModel(target, t["const"], t["io_byte"], t["paths"], data.get("command", ""))
