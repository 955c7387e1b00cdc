"""C emission of every operator: its constant parameters (emitted once) and its kernel call.

Parameters are taken from the numpy kernels' prepared state (``tinypatch.kernels.prepare``),
so multipliers, shifts and activation ranges are the very numbers the Python executor uses.
Unary int8 operators (RELU, RELU6, LEAKY_RELU, LOGISTIC, HARD_SWISH, int8 QUANTIZE, DEQUANTIZE and the
requantization inside CONCATENATION) become 256-entry tables filled by running the numpy
kernel on every int8 value, so they are bit-exact by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tinypatch.codegen import cfmt
from tinypatch.codegen.storage import Storage, Unit
from tinypatch.codegen.views import View, align4, contiguous_strides, full_view
from tinypatch.errors import UnsupportedOperatorError
from tinypatch.ir import Graph
from tinypatch.ir.optable import MOVE_DTYPES, CTypes, Reduce, op_def
from tinypatch.kernels import PreparedOp, prepare
from tinypatch.kernels.conv import requant_bound_ok
from tinypatch.kernels.fixedpoint import (
    exp_on_negative_values,
    multiply_by_quantized_multiplier,
    wrap32,
)
from tinypatch.kernels.quantize import requantize
from tinypatch.kernels.reduce import mean_multiplier
from tinypatch.kernels.softmax import SCALED_DIFF_INTEGER_BITS



@dataclass
class Site:
    """One use of an operator: views of its inputs (per ``op.inputs`` entry) and output."""

    k: int
    ins: list[View | None]
    out: View
    pads: tuple[str, str] = ("0", "0")  # zero padding (top, left) before the input window
    win: tuple[str, str, str, str] = ("0", "0", "0", "0")  # out y0, out x0, read y0, read x0
    stage: bool = False


@dataclass
class OpEmitter:
    graph: Graph
    storage: Storage
    unit: Unit
    target: str = "host"
    kernels: list[PreparedOp] = field(init=False)
    _params: dict[object, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kernels = [prepare(self.graph, op) for op in self.graph.ops]
        for k in range(len(self.graph.ops)):
            self.check(k)

    # --- validation -----------------------------------------------------------------
    def unsupported(self, k: int, detail: str) -> UnsupportedOperatorError:
        return UnsupportedOperatorError(self.graph.ops[k].type, k, f"C code generation: {detail}")

    def check(self, k: int) -> None:
        """Raise UnsupportedOperatorError unless op ``k`` can be generated."""
        op, g = self.graph.ops[k], self.graph
        if op.type not in _EMITTERS:
            raise self.unsupported(k, "no C kernel for this operator")
        tensors = [g.tensors[t] for t in (*op.inputs, *op.outputs) if t]
        if any(len(t.shape) > 4 for t in tensors):
            raise self.unsupported(k, "tensors of rank > 4")
        if len(op.outputs) != 1 and not op_def(op.type).multi_output:
            raise self.unsupported(k, "more than one output")
        acts = [g.tensors[t] for t in op.inputs if t and not g.tensors[t].is_const]
        out = g.tensors[op.outputs[0]]
        d = op_def(op.type)
        if d.c_types == CTypes.MOVE:
            if out.dtype not in MOVE_DTYPES:
                raise self.unsupported(k, f"dtype {out.dtype}")
        elif d.c_types == CTypes.QUANTIZE:
            if acts[0].dtype not in ("int8", "float32") or out.dtype != "int8":
                raise self.unsupported(k, f"{acts[0].dtype} -> {out.dtype}")
        elif d.c_types == CTypes.DEQUANTIZE:
            if out.dtype != "float32":
                raise self.unsupported(k, f"output dtype {out.dtype}")
        elif out.dtype != "int8" or any(t.dtype != "int8" for t in acts):
            raise self.unsupported(k, "only int8 (quantized) arithmetic is generated; float operators are not")
        if d.spatial and (len(out.shape) != 4 or out.shape[0] != 1):
            raise self.unsupported(k, f"needs a 1xHxWxC output, got {out.shape}")
        has_bias = d.bias and len(op.inputs) > 2 and op.inputs[2]
        if has_bias and (g.tensors[op.inputs[2]].dtype != "int32" or not g.tensors[op.inputs[2]].is_const):
            raise self.unsupported(k, "bias must be a constant int32 tensor")
        problem = _CHECKS[op.type](self, k) if op.type in _CHECKS else None
        if problem:
            raise self.unsupported(k, problem)

    # --- emission -------------------------------------------------------------------
    def call(self, site: Site) -> str:
        """C statements running the operator on a site (parameters declared on first use)."""
        return _EMITTERS[self.graph.ops[site.k].type](self, site)

    def params(self, key: object, build: Callable[[], str]) -> str:
        """Name of a parameter block (key: op index, or (op index, tag)), emitted once by ``build``."""
        if key not in self._params:
            self._params[key] = build()
        return self._params[key]

    def struct(self, k: int, c_type: str, fields: dict[str, object], size: int = 32) -> str:
        name = self.unit.name(f"tp_p{k}")
        body = ", ".join(f".{f} = {v}" for f, v in fields.items())
        self.unit.add(f"static const {c_type} {name} = {{{body}}};\n", size)
        return name

    def lut(self, k: int, table: np.ndarray, c_type: str = "int8_t") -> str:
        return self.unit.array(c_type, f"tp_lut{k}", table)

    def act_view(self, site: Site, pos: int = 0) -> View:
        """The view of the pos-th activation input."""
        views = [v for t, v in zip(self.graph.ops[site.k].inputs, site.ins)
                 if t and not self.graph.tensors[t].is_const]
        return views[pos]


# --- operators ---------------------------------------------------------------------------
def _spatial_call(fn: str, p: str, e: OpEmitter, s: Site) -> str:
    x, y = e.act_view(s), s.out
    return (x.check() + y.check()
            + f"{fn}(&{p}, {x.ptr}, {x.h}, {x.w}, {x.rs}, {s.pads[0]}, {s.pads[1]}, {y.ptr}, {y.h}, {y.w}, {y.rs});\n")


def fast_requant(kern: PreparedOp, w_per_channel: np.ndarray) -> list[tuple[int, ...]] | None:
    """Rows of ``tp_rq`` (bias with the input zero point folded in, multiplier, rounding, left
    and right shifts) when every accumulator a channel can produce, |bias| + 255 * sum |w|,
    stays below 2^(30 - left): the optimised requantization is then exact. Else None."""
    if not requant_bound_ok(kern.bias, kern.shift, w_per_channel):
        return None
    w = np.asarray(w_per_channel, np.int64)
    bias = np.broadcast_to(np.asarray(kern.bias, np.int64), (w.shape[0],))
    left = np.maximum(kern.shift, 0)
    right = np.maximum(-kern.shift, 0)
    folded = wrap32(bias - kern.in_zp * w.sum(axis=1))
    return [(int(b), int(m), (1 << int(r - 1)) if r else 0, -1 if r else 0, int(lft) + 1, int(r))
            for b, m, r, lft in zip(folded, kern.multiplier, right, left)]


# ops that may read a lowered stage input of a mixed-precision plan (codegen/mixed_tiles.py):
# tp_lb_spatial's kind, and whether it is a depthwise conv
LOWBIT_SPATIAL = {"CONV_2D": ("TP_LB_CONV", False), "DEPTHWISE_CONV_2D": ("TP_LB_DWCONV", True),
                  "AVERAGE_POOL_2D": ("TP_LB_AVGPOOL", False), "MAX_POOL_2D": ("TP_LB_MAXPOOL", False)}

# lanes of the Helium depthwise accumulators: channels of a 16-block in widening-multiply order
MVE_LANES = (0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15)


def mve_depthwise_table(rows: list[tuple[int, ...]]) -> np.ndarray:
    """Per block of 16 channels: folded bias, multiplier, left shift, negative-rounding mask and
    minus the right shift, each as 16 int32 in :data:`MVE_LANES` order (zeros past the last channel)."""
    blocks = -(-len(rows) // 16)
    out = np.zeros((blocks, 5, 16), np.int64)
    for b in range(blocks):
        for lane, ch in enumerate(MVE_LANES):
            if b * 16 + ch < len(rows):
                bias, mult, _, nmask, lsh, rsh = rows[b * 16 + ch]
                out[b, :, lane] = (bias, mult, lsh - 1, nmask, -rsh)
    return out.ravel()


def _conv_params(e: OpEmitter, k: int, depthwise: bool) -> str:
    kern = e.kernels[k]
    op = e.graph.ops[k]
    bias = e.storage.const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] else "NULL"
    cin = e.graph.tensors[op.inputs[0]].shape[3]
    w = kern.weights
    rows = fast_requant(kern, w[0].reshape(-1, kern.cout).T if depthwise else w.reshape(kern.cout, -1))
    rq = "NULL"
    if rows is not None:
        rq = e.unit.name(f"tp_rq{k}")
        e.unit.add(cfmt.struct_array("tp_rq", rq, rows), 20 * len(rows))
    mve = "NULL"
    if rows is not None and depthwise and e.target == "cortex-m55":
        mve = e.unit.array("int32_t", f"tp_mve{k}", mve_depthwise_table(rows), align=16)
    fields = dict(w=e.storage.const(op.inputs[1]), bias=bias,
                  mult=e.unit.array("int32_t", f"tp_m{k}", kern.multiplier),
                  shift=e.unit.array("int8_t", f"tp_s{k}", kern.shift), rq=rq, mve=mve,
                  cin=cin, cout=kern.cout, kh=kern.kernel_hw[0], kw=kern.kernel_hw[1],
                  sh=kern.stride[0], sw=kern.stride[1], dh=kern.dilation[0], dw=kern.dilation[1],
                  dm=kern.depth_multiplier if depthwise else 1, in_zp=kern.in_zp, out_zp=kern.out_zp,
                  act_min=kern.act_min, act_max=kern.act_max, inplace=int(k in e.storage.inplace))
    return e.struct(k, "tp_conv_p", fields)


def _conv(e: OpEmitter, s: Site) -> str:
    return _spatial_call("tp_conv_s8", e.params(s.k, lambda: _conv_params(e, s.k, False)), e, s)


def _dwconv(e: OpEmitter, s: Site) -> str:
    return _spatial_call("tp_dwconv_s8", e.params(s.k, lambda: _conv_params(e, s.k, True)), e, s)


def _pool_params(e: OpEmitter, k: int) -> str:
    kern = e.kernels[k]
    return e.struct(k, "tp_pool_p", dict(c=kern.out.shape[3], kh=kern.kernel_hw[0], kw=kern.kernel_hw[1],
                                         sh=kern.stride[0], sw=kern.stride[1], act_min=kern.act_min,
                                         act_max=kern.act_max), 14)


def _avgpool(e: OpEmitter, s: Site) -> str:
    return _spatial_call("tp_avgpool_s8", e.params(s.k, lambda: _pool_params(e, s.k)), e, s)


def _maxpool(e: OpEmitter, s: Site) -> str:
    return _spatial_call("tp_maxpool_s8", e.params(s.k, lambda: _pool_params(e, s.k)), e, s)


def _fc_params(e: OpEmitter, k: int) -> str:
    kern = e.kernels[k]
    op = e.graph.ops[k]
    w = e.graph.tensors[op.inputs[1]]
    bias = e.storage.const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] else "NULL"
    w_zp = 0 if w.quant.per_channel else int(w.quant.zero_point[0])
    return e.struct(k, "tp_fc_p", dict(w=e.storage.const(op.inputs[1]), bias=bias,
                                       scale=e.unit.array("double", f"tp_fcs{k}", kern.effective_scale),
                                       units=kern.units, depth=kern.depth, per_channel=1, in_zp=kern.in_zp,
                                       w_zp=w_zp, out_zp=kern.out_zp, act_min=kern.act_min, act_max=kern.act_max))


def _fc(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    x = e.act_view(s)
    size = e.graph.tensors[x.tensor].size
    if size % kern.depth:
        raise e.unsupported(s.k, f"input of {size} values is not a multiple of depth {kern.depth}")
    p = e.params(s.k, lambda: _fc_params(e, s.k))
    return f"tp_fc_s8(&{p}, {x.ptr}, {size // kern.depth}, {s.out.ptr});\n"


def _binary(e: OpEmitter, s: Site, fn: str, p: str) -> str:
    a, b, y = s.ins[0], s.ins[1], s.out
    return (y.check() + f"{fn}(&{p}, {y.dims()}, {a.ptr}, {a.strides()}, {b.ptr}, {b.strides()}, "
            f"{y.ptr}, {y.strides()});\n")


def _add(e: OpEmitter, s: Site) -> str:
    def build() -> str:
        kern = e.kernels[s.k]
        return e.struct(s.k, "tp_add_p", dict(m1=kern.m1, m2=kern.m2, mo=kern.mo, sh1=kern.sh1, sh2=kern.sh2,
                                              sho=kern.sho, zp1=kern.zp1, zp2=kern.zp2, out_zp=kern.out_zp,
                                              act_min=kern.act_min, act_max=kern.act_max))
    return _binary(e, s, "tp_add_s8", e.params(s.k, build))


def _mul(e: OpEmitter, s: Site) -> str:
    def build() -> str:
        kern = e.kernels[s.k]
        return e.struct(s.k, "tp_mul_p", dict(m=kern.multiplier, shift=kern.shift, zp1=kern.zp1, zp2=kern.zp2,
                                              out_zp=kern.out_zp, act_min=kern.act_min, act_max=kern.act_max))
    return _binary(e, s, "tp_mul_s8", e.params(s.k, build))


def _maxmin(e: OpEmitter, s: Site) -> str:
    a, b, y = s.ins[0], s.ins[1], s.out
    return (y.check() + f"tp_maxmin_s8({int(e.graph.ops[s.k].type == 'MAXIMUM')}, {y.dims()}, {a.ptr}, "
            f"{a.strides()}, {b.ptr}, {b.strides()}, {y.ptr}, {y.strides()});\n")


def _sqdiff(e: OpEmitter, s: Site) -> str:
    def build() -> str:
        kern = e.kernels[s.k]
        return e.struct(s.k, "tp_sqdiff_p", dict(m1=kern.m1, m2=kern.m2, mo=kern.mo, sh1=kern.sh1, sh2=kern.sh2,
                                                 sho=kern.sho, zp1=kern.zp1, zp2=kern.zp2, out_zp=kern.out_zp))
    return _binary(e, s, "tp_sqdiff_s8", e.params(s.k, build))


def _prelu(e: OpEmitter, s: Site) -> str:
    def build() -> str:
        kern = e.kernels[s.k]
        return e.struct(s.k, "tp_prelu_p", dict(m_pos=kern.m_pos, m_neg=kern.m_neg, sh_pos=kern.sh_pos,
                                                sh_neg=kern.sh_neg, zp=kern.zp1, zp_alpha=kern.zp2,
                                                out_zp=kern.out_zp))
    return _binary(e, s, "tp_prelu_s8", e.params(s.k, build))


_INT8_VALUES = np.arange(-128, 128, dtype=np.int64).astype(np.int8)


def _unary_lut(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    x, y = e.act_view(s), s.out
    if kern.dtype == "float32":  # DEQUANTIZE
        lut = e.params(s.k, lambda: e.lut(s.k, kern([_INT8_VALUES])[0], "float"))
        return y.check() + f"tp_lut_f32({lut}, {y.dims()}, {x.ptr}, {x.strides()}, {y.ptr}, {y.strides()});\n"
    lut = e.params(s.k, lambda: e.lut(s.k, kern([_INT8_VALUES])[0]))
    return y.check() + f"tp_lut_s8({lut}, {y.dims()}, {x.ptr}, {x.strides()}, {y.ptr}, {y.strides()});\n"


def _quantize(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    if kern.src_dtype == "int8":
        return _unary_lut(e, s)
    x, y = e.act_view(s), s.out
    return (y.check() + f"tp_quantize_f32({cfmt.float_lit(kern.out_scale)}, {kern.out_zp}, {y.dims()}, {x.ptr}, "
            f"{x.strides()}, {y.ptr}, {y.strides()});\n")


def _mean(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    x = e.act_view(s)
    shape = e.graph.tensors[x.tensor].shape
    lead = 4 - len(shape)
    d4 = align4(shape)
    reduce = [int(a - lead in kern.axes) for a in range(4)]
    count = int(np.prod([d4[a] for a in range(4) if reduce[a]], dtype=np.int64))

    def build() -> str:
        m, shift = mean_multiplier(*kern.base, count)
        return e.struct(s.k, "tp_mean_p", dict(m=m, shift=shift, in_zp=kern.in_zp, out_zp=kern.out_zp, count=count))
    p = e.params(s.k, build)
    dims = "(const int32_t[4]){" + ", ".join(map(str, d4)) + "}"
    red = "(const int32_t[4]){" + ", ".join(map(str, reduce)) + "}"
    return f"tp_mean_s8(&{p}, {dims}, {red}, {x.ptr}, {s.out.ptr});\n"


def reduce_finish(e: OpEmitter, k: int, sums: str, out: str) -> str:
    """The int8 result of a global average (MEAN over H, W or a whole-map AVERAGE_POOL_2D) ending a
    patch stage, from the per-channel int32 sums its tiles accumulated."""
    kern = e.kernels[k]
    op = e.graph.ops[k]
    _, h, w, c = e.graph.tensors[op.inputs[0]].shape
    if op_def(op.type).reduce == Reduce.AXES:
        def build() -> str:
            m, shift = mean_multiplier(*kern.base, h * w)
            return e.struct(k, "tp_mean_p", dict(m=m, shift=shift, in_zp=kern.in_zp, out_zp=kern.out_zp,
                                                 count=h * w))
        return f"tp_mean_finish_s8(&{e.params((k, 'finish'), build)}, {sums}, {c}, {out});\n"
    return f"tp_avgpool_finish_s8(&{e.params(k, lambda: _pool_params(e, k))}, {sums}, {h * w}, {out});\n"


def _softmax(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    x = e.act_view(s)
    shape = e.graph.tensors[x.tensor].shape
    depth = shape[-1]

    def build() -> str:
        diffs = -np.arange(256, dtype=np.int64)
        scaled = multiply_by_quantized_multiplier(diffs, kern.multiplier, kern.left_shift)
        exps = e.unit.array("int32_t", f"tp_exp{s.k}", exp_on_negative_values(scaled, SCALED_DIFF_INTEGER_BITS))
        return e.struct(s.k, "tp_softmax_p", dict(exps=exps, diff_min=kern.diff_min))
    p = e.params(s.k, build)
    rows = e.graph.tensors[x.tensor].size // depth
    return f"tp_softmax_s8(&{p}, {x.ptr}, {rows}, {depth}, {s.out.ptr});\n"


def _reshape(e: OpEmitter, s: Site) -> str:
    x = e.act_view(s)
    if e.storage.raw(x.tensor) == e.storage.raw(s.out.tensor):
        return "/* in place: same bytes, new shape */\n"
    return f"memmove({s.out.ptr}, {x.ptr}, {e.graph.tensors[s.out.tensor].nbytes});\n"


def _transpose(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    x = e.act_view(s)
    if s.stage:  # NCHW <-> NHWC in a patch stage: both windows are seen in NHWC order (one of them strided)
        return s.out.check() + f"tp_copy({s.out.esize}, {s.out.dims()}, {x.ptr}, {x.strides()}, {s.out.ptr}, " \
                               f"{s.out.strides()});\n"
    in_shape = e.graph.tensors[x.tensor].shape
    lead = 4 - len(in_shape)
    perm = list(range(lead)) + [p + lead for p in kern.perm]
    src = contiguous_strides(align4(in_shape))
    sx = "(const int32_t[4]){" + ", ".join(str(src[p]) for p in perm) + "}"
    y = s.out
    return f"tp_copy({y.esize}, {y.dims()}, {x.ptr}, {sx}, {y.ptr}, {y.strides()});\n"


def _pad(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    x, y = e.act_view(s), s.out
    value = e.params(s.k, lambda: e.unit.array(cfmt.ctype(kern.dtype), f"tp_padv{s.k}", np.array([kern.value])))
    if s.stage:
        before = f"(const int32_t[4]){{0, {s.pads[0]}, {s.pads[1]}, 0}}"
    else:
        rows = [(0, 0)] * (4 - len(kern.paddings)) + list(kern.paddings)
        before = "(const int32_t[4]){" + ", ".join(str(r[0]) for r in rows) + "}"
    return (x.check() + y.check() + f"tp_pad({y.esize}, {value}, {x.dims()}, {before}, {x.ptr}, {x.strides()}, "
            f"{y.dims()}, {y.ptr}, {y.strides()});\n")


def _resize(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    x, y = e.act_view(s), s.out

    def build() -> str:
        in_hw = e.graph.tensors[x.tensor].shape[1:3]
        rows, cols = kern.source_indices(in_hw)
        r = e.unit.array("int16_t", f"tp_rows{s.k}", rows)
        c = e.unit.array("int16_t", f"tp_cols{s.k}", cols)
        return f"{r}|{c}"
    rows, cols = e.params(s.k, build).split("|")
    oy, ox, ry, rx = s.win
    return (x.check() + y.check() + f"tp_resize_nn({rows} + {oy}, {cols} + {ox}, {ry}, {rx}, {y.c}, {y.esize}, "
            f"{x.ptr}, {x.rs}, {y.ptr}, {y.h}, {y.w}, {y.rs});\n")


def _resize_bilinear(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    x, y = e.act_view(s), s.out

    def build() -> str:
        names = [e.unit.array("int16_t", f"tp_bl{s.k}{tag}{axis}", table)
                 for axis, tables in (("y", kern.axis(0)), ("x", kern.axis(1))) for tag, table in zip("luw", tables)]
        return "|".join(names)
    ylo, yhi, yw, xlo, xhi, xw = e.params(s.k, build).split("|")
    oy, ox, ry, rx = s.win
    return (x.check() + y.check() + f"tp_resize_bl_s8({ylo} + {oy}, {yhi} + {oy}, {yw} + {oy}, {xlo} + {ox}, "
            f"{xhi} + {ox}, {xw} + {ox}, {ry}, {rx}, {y.c}, {x.ptr}, {x.rs}, {y.ptr}, {y.h}, {y.w}, {y.rs});\n")


def _tconv_params(e: OpEmitter, k: int) -> str:
    kern = e.kernels[k]
    op = e.graph.ops[k]
    bias = e.storage.const(op.inputs[3]) if len(op.inputs) > 3 and op.inputs[3] else "NULL"
    rows = fast_requant(kern, kern.weights.reshape(kern.cout, -1))
    rq = "NULL"
    if rows is not None:
        rq = e.unit.name(f"tp_rq{k}")
        e.unit.add(cfmt.struct_array("tp_rq", rq, rows), 20 * len(rows))
    fields = dict(w=e.storage.const(op.inputs[1]), bias=bias, mult=e.unit.array("int32_t", f"tp_m{k}", kern.multiplier),
                  shift=e.unit.array("int8_t", f"tp_s{k}", kern.shift), rq=rq, mve="NULL", cin=kern.cin,
                  cout=kern.cout, kh=kern.kernel_hw[0], kw=kern.kernel_hw[1], sh=kern.stride[0], sw=kern.stride[1],
                  dh=1, dw=1, dm=1, in_zp=kern.in_zp, out_zp=kern.out_zp, act_min=kern.act_min,
                  act_max=kern.act_max, inplace=0)
    return e.struct(k, "tp_conv_p", fields)


def _tconv(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    x, y = e.act_view(s), s.out
    p = e.params(s.k, lambda: _tconv_params(e, s.k))
    oy, ox, ry, rx = s.win
    return (x.check() + y.check() + f"tp_tconv_s8(&{p}, {x.ptr}, {x.h}, {x.w}, {x.rs}, {ry}, {rx}, "
            f"{oy} + {kern.pad[0]}, {ox} + {kern.pad[1]}, {y.ptr}, {y.h}, {y.w}, {y.rs});\n")


def _slice(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    x, y = e.act_view(s), s.out
    channels = kern.channel_range()
    if s.stage or channels is not None:  # a range of channels of every pixel (of the tile)
        assert channels is not None
        return x.check() + y.check() + f"tp_copy({y.esize}, {y.dims()}, {x.ptr} + {channels[0]}, " \
            f"{x.strides()}, {y.ptr}, {y.strides()});\n"
    shape = e.graph.tensors[x.tensor].shape
    lead = 4 - len(shape)
    cs = contiguous_strides(align4(shape))
    idx = [slice(0, 1, 1)] * lead + list(kern.index)
    starts = [sl.indices(d)[0] for sl, d in zip(idx, align4(shape))]
    steps = [sl.indices(d)[2] for sl, d in zip(idx, align4(shape))]
    dims = align4(np.empty(shape, np.int8)[kern.index].shape)
    offset = sum(a * c for a, c in zip(starts, cs))
    sx = "(const int32_t[4]){" + ", ".join(str(st * c) for st, c in zip(steps, cs)) + "}"
    d = "(const int32_t[4]){" + ", ".join(map(str, dims)) + "}"
    sy = "(const int32_t[4]){" + ", ".join(map(str, contiguous_strides(dims))) + "}"
    return f"tp_copy({y.esize}, {d}, {x.ptr} + {offset}, {sx}, {y.ptr}, {sy});\n"


def _split(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    x = e.act_view(s)
    shape = e.graph.tensors[x.tensor].shape
    axis = kern.axis + 4 - len(shape)
    cs = contiguous_strides(align4(shape))
    lines = []
    for t, (a, b) in zip(e.graph.ops[s.k].outputs, zip(kern.bounds[:-1], kern.bounds[1:])):
        y = full_view(e.storage, t)
        dims = list(align4(shape))
        dims[axis] = b - a
        d = "(const int32_t[4]){" + ", ".join(map(str, dims)) + "}"
        sx = "(const int32_t[4]){" + ", ".join(map(str, cs)) + "}"
        sy = "(const int32_t[4]){" + ", ".join(map(str, contiguous_strides(tuple(dims)))) + "}"  # type: ignore[arg-type]
        lines.append(f"tp_copy({y.esize}, {d}, {x.ptr} + {a * cs[axis]}, {sx}, {y.ptr}, {sy});\n")
    return "".join(lines)


def _concat(e: OpEmitter, s: Site) -> str:
    kern = e.kernels[s.k]
    y = s.out
    out_shape = e.graph.tensors[y.tensor].shape
    axis = kern.axis + 4 - len(out_shape)
    out_strides = contiguous_strides(align4(out_shape))
    lines, offset = [y.check()], 0
    for pos, (t, x) in enumerate(zip(e.graph.ops[s.k].inputs, s.ins)):
        shape4 = align4(e.graph.tensors[t].shape)
        if s.stage:  # channels of a tile window
            dst = f"({y.ptr} + {offset})"
            dims, sy = x.dims(), y.strides()
        else:
            dst = f"({y.ptr} + {offset * out_strides[axis]})"
            dims = "(const int32_t[4]){" + ", ".join(map(str, shape4)) + "}"
            sy = "(const int32_t[4]){" + ", ".join(map(str, out_strides)) + "}"
        rq = kern.rescale[pos]
        if rq is None:
            lines.append(f"tp_copy({y.esize}, {dims}, {x.ptr}, {x.strides()}, {dst}, {sy});\n")
        else:
            lut = e.params((s.k, pos), lambda rq=rq: e.lut(s.k, requantize(_INT8_VALUES, *rq)))
            lines.append(f"tp_lut_s8({lut}, {dims}, {x.ptr}, {x.strides()}, {dst}, {sy});\n")
        offset += shape4[axis]
    return "".join(lines)


_EMITTERS: dict[str, Callable[[OpEmitter, Site], str]] = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _dwconv, "AVERAGE_POOL_2D": _avgpool, "MAX_POOL_2D": _maxpool,
    "FULLY_CONNECTED": _fc, "ADD": _add, "MUL": _mul, "MEAN": _mean, "SOFTMAX": _softmax,
    "RESHAPE": _reshape, "TRANSPOSE": _transpose, "PAD": _pad, "RESIZE_NEAREST_NEIGHBOR": _resize,
    "CONCATENATION": _concat, "QUANTIZE": _quantize, "DEQUANTIZE": _unary_lut,
    "RELU": _unary_lut, "RELU6": _unary_lut, "LEAKY_RELU": _unary_lut, "LOGISTIC": _unary_lut,
    "HARD_SWISH": _unary_lut, "HARD_SIGMOID": _unary_lut,
    "RESIZE_BILINEAR": _resize_bilinear, "TRANSPOSE_CONV": _tconv, "MAXIMUM": _maxmin, "MINIMUM": _maxmin,
    "SQUARED_DIFFERENCE": _sqdiff, "PRELU": _prelu, "SLICE": _slice, "STRIDED_SLICE": _slice, "SPLIT": _split,
    "SPLIT_V": _split,
}


# --- operator-specific limits of the C kernels (a reason, or None when the op can be generated) ---
def _check_conv(e: OpEmitter, k: int) -> str | None:
    op = e.graph.ops[k]
    grouped = e.graph.tensors[op.inputs[1]].shape[3] != e.graph.tensors[op.inputs[0]].shape[3]
    return "grouped convolution" if grouped else None


def _check_add(e: OpEmitter, k: int) -> str | None:
    kern = e.kernels[k]
    return "input/output scales need a multiplier >= 1" if max(kern.sh1, kern.sh2, kern.sho) > 0 else None


def _check_pad(e: OpEmitter, k: int) -> str | None:
    paddings = e.kernels[k].paddings
    return "negative paddings" if paddings and np.any(np.asarray(paddings) < 0) else None


def _check_upsampling(e: OpEmitter, k: int) -> str | None:
    op = e.graph.ops[k]
    if max(e.graph.tensors[op.outputs[0]].shape[1:3]) > 32767:  # int16 index tables
        return "output larger than 32767 rows or columns"
    bias = op.inputs[3] if len(op.inputs) > 3 else ""  # TRANSPOSE_CONV: (shape, filter, input, bias)
    if bias and (e.graph.tensors[bias].dtype != "int32" or not e.graph.tensors[bias].is_const):
        return "bias must be a constant int32 tensor"
    return None


_CHECKS: dict[str, Callable[[OpEmitter, int], str | None]] = {
    "CONV_2D": _check_conv, "ADD": _check_add, "PAD": _check_pad, "RESIZE_BILINEAR": _check_upsampling,
    "TRANSPOSE_CONV": _check_upsampling,
}


def supported_ops() -> tuple[str, ...]:
    """Operator types the C generator handles."""
    return tuple(sorted(_EMITTERS))
