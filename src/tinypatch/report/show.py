"""``tinypatch show``: what the compiler decided, as text or JSON, before any C is compiled.

* the IR: one line per operator (index, type, inputs and outputs with shape, dtype and
  quantization);
* per patch stage, per axis and tile: the interval of the tiled map, the interval of every
  stage input read, and per operator the interval it holds (``need``), the part it computes
  (``out``), the halo rows/columns it keeps from the previous tile and those it recomputes;
* the arena map: every buffer with its offset, size and lifetime (first and last op).

The plan is prepared as the C generator prepares it (:func:`tinypatch.codegen.project.deployed_plan`)
and its buffers are placed by the generator's own :class:`~tinypatch.codegen.storage.Storage`, so
the printed offsets are the ones in ``model.c``.
"""

from __future__ import annotations

from typing import Any

from tinypatch.codegen.project import deployed_plan
from tinypatch.codegen.storage import Storage, Unit
from tinypatch.ir import Graph, Tensor
from tinypatch.planning.plan import Plan
from tinypatch.planning.rewrite import rewritten
from tinypatch.planning.tiles import AxisTiling, StageTiling


def _tensor(t: Tensor) -> dict[str, Any]:
    d: dict[str, Any] = {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "const": t.is_const}
    if t.quant is not None:
        q = t.quant
        d["quant"] = ({"scale": float(q.scale[0]), "zero_point": int(q.zero_point[0])} if not q.per_channel else
                      {"per_channel": int(q.scale.size), "axis": q.axis})
    return d


def _axis(tiling: AxisTiling, st: StageTiling) -> list[dict[str, Any]]:
    tiles = []
    done: dict[int, int] = {}  # op -> end of what earlier tiles computed
    for i, (spans, region) in enumerate(zip(tiling.spans, tiling.regions)):
        ops = []
        for k in st.info.tile_ops:
            s = spans[k]
            fresh = s.out[1] > s.out[0]
            recomputed = max(0, min(done.get(k, 0), s.out[1]) - s.out[0]) if fresh else 0
            if fresh:
                done[k] = max(done.get(k, 0), s.out[1])
            ops.append({"op": k, "need": list(s.need), "out": list(s.out), "kept": s.out[0] - s.need[0] if fresh else 0,
                        "recomputed": recomputed, "pads": list(s.pads)})
        tiles.append({"tile": i, "tiled": list(region[st.info.tiled]),
                      "inputs": {t: list(region[t]) for t in st.info.inputs if t in region}, "ops": ops})
    return tiles


def _stage(st: StageTiling) -> dict[str, Any]:
    s = st.stage
    return {"ops": [s.start, s.end], "grid": list(s.grid), "modes": {str(k): s.mode(k) for k in st.info.tile_ops},
            "tiled": st.info.tiled, "inputs": st.info.inputs, "output": st.info.output, "reduce": st.info.reduce,
            "window_buffers": st.rings, "rows": _axis(st.h, st), "cols": _axis(st.w, st)}


def pipeline(graph: Graph, plan: Plan | None = None, inplace: bool = True) -> dict[str, Any]:
    """The IR, the plan's stages and tiles, and the arena map, as plain data."""
    graph = rewritten(graph, plan) if plan is not None else graph
    plan = deployed_plan(graph, plan, inplace)
    storage = Storage(graph, plan, Unit())
    holders: dict[str, list[str]] = {}
    for t, b in storage.buffer_of.items():
        holders.setdefault(b, []).append(t)
    placement = storage.placement
    anchors = storage.buffers.liveness.anchors
    buffers = [{"buffer": b.name, "tensors": holders.get(b.name, []), "offset": placement.offsets[b.name],
                "size": placement.sizes[b.name], "bytes": b.size, "first_op": b.start, "last_op": b.end,
                "over": ({"buffer": anchors[b.name][0], "shift": anchors[b.name][1]} if b.name in anchors else None)}
               for b in placement.buffers]
    ops = [{"index": k, "type": op.type, "name": op.name,
            "inputs": [_tensor(graph.tensors[t]) for t in op.inputs if t],
            "outputs": [_tensor(graph.tensors[t]) for t in op.outputs]} for k, op in enumerate(graph.ops)]
    return {"model": graph.name, "inputs": graph.inputs, "outputs": graph.outputs, "ops": ops,
            "plan": plan.to_dict(), "stages": [_stage(st) for st in storage.buffers.tilings],
            "arena": {"bytes": storage.arena_size, "alignment": placement.alignment, "strategy": placement.strategy,
                      "buffers": sorted(buffers, key=lambda b: (b["first_op"], b["offset"]))},
            "outside_arena": sorted(storage.io)}


# --- text ------------------------------------------------------------------------------------
class _Names:
    """Short tensor names for the text: %0, %1, ... in order of appearance (the legend maps them back)."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        return self.ids.setdefault(name, f"%{len(self.ids)}")


def _q(d: dict[str, Any]) -> str:
    q = d.get("quant")
    if q is None:
        return ""
    if "per_channel" in q:
        return f" q=per-channel({q['per_channel']}, axis {q['axis']})"
    return f" q={q['scale']:.6g}/{q['zero_point']}"


def _t(d: dict[str, Any], n: _Names) -> str:
    return f"{n(d['name'])}{' const' if d['const'] else ''} {d['dtype']}[{'x'.join(map(str, d['shape']))}]{_q(d)}"


def _iv(iv: list[int]) -> str:
    return f"[{iv[0]}, {iv[1]})"


def _tiles(axis: str, tiles: list[dict[str, Any]], n: _Names) -> list[str]:
    lines = []
    for tile in tiles:
        ins = ", ".join(f"{n(t)} {_iv(iv)}" for t, iv in tile["inputs"].items())
        lines.append(f"    {axis} tile {tile['tile']}: {_iv(tile['tiled'])} <- {ins}")
        for o in tile["ops"]:
            halo = []
            if o["kept"]:
                halo.append(f"kept {o['kept']}")
            if o["recomputed"]:
                halo.append(f"recomputed {o['recomputed']}")
            if any(o["pads"]):
                halo.append(f"pads {o['pads'][0]}/{o['pads'][1]}")
            lines.append(f"      op {o['op']}: need {_iv(o['need'])} out {_iv(o['out'])}"
                         + (f" ({', '.join(halo)})" if halo else ""))
    return lines


def format_pipeline(p: dict[str, Any]) -> str:
    """The text of ``tinypatch show`` (tensors as %N; the legend at the end gives their names)."""
    n = _Names()
    for t in p["inputs"]:
        n(t)
    lines = [f"model {p['model']}: {len(p['ops'])} ops, inputs {', '.join(map(n, p['inputs']))}", "", "ops:"]
    width = max((len(o["type"]) for o in p["ops"]), default=0)
    for o in p["ops"]:
        ins = ", ".join(_t(d, n) for d in o["inputs"])
        outs = ", ".join(_t(d, n) for d in o["outputs"])
        lines.append(f"  {o['index']:>3} {o['type']:<{width}}  {ins} -> {outs}")
    lines.append(f"outputs: {', '.join(map(n, p['outputs']))}")
    lines.append("")
    inplace = p["plan"].get("inplace", [])
    lines.append(f"schedule: {len(p['stages'])} patch stage(s), the other ops layer by layer"
                 + (f"; in place: ops {', '.join(map(str, inplace))}" if inplace else ""))
    for k, s in enumerate(p["stages"]):
        modes = ", ".join(f"{i} {m}" for i, m in s["modes"].items())
        lines.append(f"  stage {k}: ops [{s['ops'][0]}, {s['ops'][1]}) on {s['grid'][0]}x{s['grid'][1]} tiles of "
                     f"{n(s['tiled'])} (modes: {modes})"
                     + (f", then op {s['reduce']} from per-channel sums" if s["reduce"] is not None else ""))
        if s["window_buffers"]:
            lines.append("    window buffers (columns): "
                         + ", ".join(f"{n(t)} {w}" for t, w in s["window_buffers"].items()))
        lines += _tiles("rows", s["rows"], n) + _tiles("cols", s["cols"], n)
    a = p["arena"]
    lines += ["", f"arena: {a['bytes']:,} B ({a['alignment']}-byte aligned, placement {a['strategy']})",
              f"  {'offset':>8} {'size':>8}  {'ops':<9}  buffer"]
    for b in a["buffers"]:
        name = n(b["buffer"]) if b["buffer"] in n.ids or not b["tensors"] else n(b["tensors"][0])
        if "#" in b["buffer"]:  # a line buffer or an accumulator of a stage: named after its tensor
            base, tag = b["buffer"].split("#", 1)
            name = f"{n(base)}#{tag}"
        also = [n(t) for t in b["tensors"] if t != b["buffer"]]
        over = f"  (in place over {n(b['over']['buffer'])}, shift {b['over']['shift']})" if b["over"] else ""
        lines.append(f"  {b['offset']:>8} {b['size']:>8}  {b['first_op']:>4}-{b['last_op']:<4}  {name}"
                     + (f" (= {', '.join(also)})" if also else "") + over)
    if p["outside_arena"]:
        lines.append(f"outside the arena: {', '.join(map(n, p['outside_arena']))}")
    lines += ["", "tensors:"] + [f"  {i} = {name}" for name, i in n.ids.items()]
    return "\n".join(lines) + "\n"
