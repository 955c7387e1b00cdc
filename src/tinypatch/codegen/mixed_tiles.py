"""C for a precision plan (per-patch mixed precision) inside the generated patch stages.

The statements follow :class:`tinypatch.runtime.mixed.MixedPrecision` step for step, so the
generated program stores the bytes the Python plan executor stores:

* after an op of a patch stage writes the fresh part of a lowered map, ``tp_lb_outside`` tests the
  patch (max |q - zp| > threshold: an outlier; a side the op's activation range cannot cross is
  not tested); a non-outlier patch is requantized in place to its low-bit grid: by byte arithmetic
  (``tp_lb_grid``) where the generator checks, value by value, that it equals
  :func:`tinypatch.kernels.lowbit.requantize` on everything such a patch can hold, else through a
  256-entry table filled from that function (``tp_lb_apply``);
* a lowered stage input (read by many overlapping tiles, so never changed in place) is tested on
  the window the op reads; a non-outlier window is gathered through the same byte arithmetic where
  checked, else through the table, a few input rows at a time, into a stack buffer the ordinary kernel reads (``tp_lb_spatial``: convolutions and
  pooling; a convolution whose one-pixel window does not fit reads through the table in the
  reference loops; other consumers are refused);
* scope ``rest``: a tile flag ``tp_hi`` set by the first outlier keeps every later map of the tile int8.

Lowered values are stored as their int8 value ``q'`` in the int8-sized tile buffers (the arena is
the plan's worst-case peak); storing the codes packed is not implemented. Stream stages with a
lowered map are refused, as by the Python executor.
"""

from __future__ import annotations

import numpy as np

from tinypatch.analysis.regions import reads_nchw, writes_nchw
from tinypatch.codegen.emitters import LOWBIT_SPATIAL, OpEmitter, Site, _conv_params, _pool_params
from tinypatch.codegen.storage import Unit
from tinypatch.codegen.views import View
from tinypatch.errors import PlanError, UnsupportedOperatorError
from tinypatch.ir import Graph
from tinypatch.kernels.lowbit import requantize
from tinypatch.planning.plan import STREAM, Plan
from tinypatch.planning.precision import MapPrecision, PrecisionPlan
from tinypatch.planning.tiles import StageTiling

GATHER = 384  # TP_LB_GATHER in tp_lowbit.h: stack bytes of a gathered window
FLAG = "tp_hi"  # scope rest: an outlier seen earlier in this tile


class MixedCode:
    """The precision plan's statements for the :class:`~tinypatch.codegen.schedule.Scheduler`."""

    def __init__(self, graph: Graph, plan: Plan, precision: PrecisionPlan, unit: Unit, emitter: OpEmitter) -> None:
        precision.check(graph, plan)
        self.graph, self.unit, self.emitter, self.scope = graph, unit, emitter, precision.scope
        self.maps: dict[int, dict[str, MapPrecision]] = {}  # stage start -> lowered tensor -> precision
        for sp in precision.stages:
            s = plan.stages[sp.stage]
            low = {m.tensor: m for m in sp.maps if m.bits < 8}
            if low and STREAM in s.halo.values():
                raise PlanError(f"stage {sp.stage} is a stream stage; mixed precision runs tiled stages only "
                                "(generated C as in the Python executor)")
            if low:
                self.maps.setdefault(s.start, {}).update(low)
        self._luts: dict[tuple[int, str], str] = {}

    def lowers(self, st: StageTiling) -> bool:
        return st.stage.start in self.maps

    def tile_begin(self, st: StageTiling) -> str:
        return f"int {FLAG} = 0;  /* an outlier patch earlier in this tile: the rest stays int8 */\n" \
            if self.lowers(st) and self.scope == "rest" else ""

    def _lut(self, st: StageTiling, m: MapPrecision) -> str:
        key = (st.stage.start, m.tensor)
        if key not in self._luts:
            zp = self._zp(m.tensor)
            q = np.arange(-128, 128, dtype=np.int64).astype(np.int8)
            self._luts[key] = self.unit.array("int8_t", f"tp_lb{st.stage.start}_{m.tensor}",
                                              requantize(q, zp, m.bits, m.shift, m.signed))
        return self._luts[key]

    def _zp(self, t: str) -> int:
        return int(self.graph.tensors[t].quant.zero_point[0])  # type: ignore[union-attr]

    def _act_range(self, k: int | None) -> tuple[int, int]:
        """The values op ``k``'s output can take (its fused activation's clamp; all of int8 for None)."""
        if k is not None and hasattr(self.emitter.kernels[k], "act_min"):
            return self.emitter.kernels[k].act_min, self.emitter.kernels[k].act_max
        return -128, 127

    def _grid(self, m: MapPrecision, lo: int, hi: int) -> bool:
        """Does ``tp_lb_grid``'s byte arithmetic give :func:`requantize`'s value on every value a non-outlier
        patch of map ``m`` can hold (within ``[lo, hi]`` and ``threshold`` of the zero point)? Checked
        value by value on a transcription of its byte steps."""
        zp = self._zp(m.tensor)
        q = np.arange(max(lo, zp - m.threshold), min(hi, zp + m.threshold) + 1)
        if not q.size or m.shift < 1:
            return False
        h = ((np.maximum(q - zp, 0) + (1 << (m.shift - 1))) >> 1) & ((0x1FF & ~((1 << m.shift) - 1)) >> 1)
        grid = np.minimum(np.minimum(2 * h, 255) + zp + 128, 255) - 128
        return np.array_equal(grid, requantize(q.astype(np.int8), zp, m.bits, m.shift, m.signed).astype(np.int64))

    def _requant_call(self, st: StageTiling, k: int, m: MapPrecision, y: View) -> str:
        """In-place requantization of op k's non-outlier patch: ``tp_lb_grid`` (byte arithmetic) where it is
        checked here to give the table's value on every value such a patch can hold, else the table."""
        n = f"({y.w}) * {y.c}"
        if self._grid(m, *self._act_range(k)):
            return f"tp_lb_grid({self._lut(st, m)}, {y.ptr}, {y.h}, {n}, {y.rs}, {self._zp(m.tensor)}, {m.shift});\n"
        return f"tp_lb_apply({self._lut(st, m)}, {y.ptr}, {y.h}, {n}, {y.rs});\n"

    def _test(self, var: str, v: View, m: MapPrecision, k: int | None = None) -> str:
        """``var`` = 1 when the patch in view ``v`` should stay int8 (outlier, or the tile flag). No
        scan where the threshold is at least the largest |q - zp| the map can hold (op ``k``'s
        activation range, or all of int8): no patch of it is an outlier."""
        zp = self._zp(m.tensor)
        lo, hi = self._act_range(k)
        if m.threshold >= max(hi - zp, zp - lo):
            return f"const int {var} = {FLAG if self.scope == 'rest' else 0};  /* never an outlier */\n"
        # a side the values cannot cross is left untested (-128 / 127)
        below = zp - m.threshold if zp - m.threshold > lo else -128
        above = zp + m.threshold if zp + m.threshold < hi else 127
        dev = f"tp_lb_outside({v.ptr}, {v.h}, ({v.w}) * {v.c}, {v.rs}, {below}, {above})"
        if self.scope == "rest":  # no test once the tile is int8 for good
            return f"if (!{FLAG} && {dev}) {FLAG} = 1;\nconst int {var} = {FLAG};\n"
        return f"const int {var} = {dev};\n"

    def wrap(self, st: StageTiling, k: int, site: Site, call: str) -> str:
        """Op k's kernel call in a tile with the precision plan's tests and requantization around it."""
        maps = self.maps.get(st.stage.start)
        if not maps:
            return call
        g = self.graph
        op = g.ops[k]
        produced = {g.ops[j].outputs[0] for j in st.info.tile_ops}
        pre = ""
        lowered: list[tuple[str, View, MapPrecision]] = []
        for p, t in enumerate(op.inputs):
            if t in maps and t not in produced and site.ins[p] is not None and not reads_nchw(g, op):
                var = f"hi{k}_{p}"
                pre += self._test(var, site.ins[p], maps[t])  # type: ignore[arg-type]
                lowered.append((var, site.ins[p], maps[t]))  # type: ignore[arg-type]
        if lowered:
            call = self._lut_call(st, k, site, lowered, call)
        out = op.outputs[0]
        post = ""
        if out in maps and out != st.info.output:
            if writes_nchw(g, op):
                raise UnsupportedOperatorError(op.type, k, "C code generation: a lowered map written NCHW")
            m, y = maps[out], site.out
            post = "{\n" + _indent(self._test(f"hi{k}", y, m, k) + f"if (!hi{k}) " + self._requant_call(st, k, m, y)) \
                + "}\n"
        return pre + call + post

    def _lut_call(self, st: StageTiling, k: int, site: Site, lowered: list[tuple[str, View, MapPrecision]],
                  call: str) -> str:
        """The int8 call, or for a non-outlier window the kernel reading it through the table."""
        op = self.graph.ops[k]
        e = self.emitter
        if op.type not in LOWBIT_SPATIAL or len(lowered) != 1 or k in e.storage.inplace:
            raise UnsupportedOperatorError(op.type, k, "C code generation: a lowered stage input is read by "
                                           "CONV_2D, DEPTHWISE_CONV_2D or a pooling op only (not in place)")
        kind, depthwise = LOWBIT_SPATIAL[op.type]
        var, x, m = lowered[0]
        y = site.out
        kern = e.kernels[k]
        conv = kind in ("TP_LB_CONV", "TP_LB_DWCONV")
        p = e.params(k, lambda: _conv_params(e, k, depthwise) if conv else _pool_params(e, k))
        (kh, kw), (sh, sw) = kern.kernel_hw, kern.stride
        dh, dw = kern.dilation if conv else (1, 1)
        cin = self.graph.tensors[x.tensor].shape[3]
        window = ((kh - 1) * dh + 1) * ((kw - 1) * dw + 1) * cin
        args = f"{x.ptr}, {x.h}, {x.w}, {x.rs}, {site.pads[0]}, {site.pads[1]}, {y.ptr}, {y.h}, {y.w}, {y.rs}"
        if window <= GATHER:
            grid = self._grid(m, -128, 127)
            geom = e.params((k, "lb_geom"), lambda: e.struct(k, "tp_lb_geom", dict(
                c=cin, oc=self.graph.tensors[op.outputs[0]].shape[3], kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw,
                zp=self._zp(m.tensor), shift=m.shift if grid else 0), 20))
            low = f"tp_lb_spatial({kind}, &{p}, {self._lut(st, m)}, &{geom}, {args});\n"
        elif conv:
            low = f"{'tp_lb_dwconv_s8' if depthwise else 'tp_lb_conv_s8'}(&{p}, {self._lut(st, m)}, {args});\n"
        else:
            raise UnsupportedOperatorError(op.type, k, f"C code generation: a lowered stage input window of {window} B "
                                           f"(more than {GATHER} B) read by a pooling op")
        return f"if (!{var}) {{\n" + _indent(x.check() + y.check() + low, 4) + "} else {\n" + _indent(call, 4) + "}\n"


def _indent(text: str, n: int = 4) -> str:
    pad = " " * n
    return "".join(pad + line + "\n" if line else "\n" for line in text.splitlines())
