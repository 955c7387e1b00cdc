"""The operator table: every fact about an operator type that passes outside ``kernels/`` need.

One :class:`OpDef` row per operator. Analysis, planning, runtime and code generation ask
:func:`op_def` (how does the output region map to the input? may it run in place? how are
its MACs counted? which C data types does it take?) and never name an operator type. The
numpy kernel (``kernels/``), the C emitter (``codegen/emitters.py``) and the TFLite writer register
the same names; ``tests/test_optable.py`` fails when one of them misses an operator.
See ``docs/adding-an-operator.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Kind(str, Enum):
    """What an operator's output pixel depends on."""

    WINDOW = "window"  # a window of input pixels (conv, pool, pad, resize)
    POINTWISE = "pointwise"  # the same pixel of every input (element-wise, channel concat)
    GLOBAL = "global"  # the whole input (FC, softmax, reductions)
    SHAPE = "shape"  # moves bytes without arithmetic over a changed shape (reshape, transpose)


class Region(str, Enum):
    """How an output interval along H or W maps to the input interval it reads."""

    WINDOW = "window"  # [o*stride - pad, ... + extent) from :attr:`OpDef.window`
    PAD = "pad"  # a 1x1 window shifted by the constant paddings (input 1)
    IDENTITY = "identity"  # output pixel (y, x) reads input pixel (y, x) of every activation
    CONCAT = "concat"  # identity, when concatenating channels of equal-sized maps
    NEAREST = "nearest"  # a nearest-neighbour gather (runs on a tile by its own index tables)
    BILINEAR = "bilinear"  # a bilinear gather: two source rows/cols per output one (index tables)
    TRANSPOSE = "transpose"  # a transpose conv: output o gathers inputs i with i*stride - pad + tap = o
    CHANNEL_SLICE = "channel_slice"  # identity when the slice keeps N, H and W whole (a channel range)
    NONE = "none"  # needs its whole input: cannot run inside a patch stage


class InPlace(str, Enum):
    """How an operator may write its output over an input it is the last reader of."""

    NO = "no"
    WINDOW = "window"  # raster order, output ``window_shift`` bytes below input 0
    ELEMENTWISE = "elementwise"  # element i read before it is written: shift 0
    ALIAS = "alias"  # same bytes, new shape: output shares input 0's buffer
    CHANNELS = "channels"  # a channel range of each pixel, copied in raster order to or below it: shift 0


class Macs(str, Enum):
    """How multiply-accumulates are counted (``analysis.macs``)."""

    NONE = "none"
    CONV = "conv"  # out elements * kh * kw * in_c (filter [out_c, kh, kw, in_c])
    DEPTHWISE = "depthwise"  # out elements * kh * kw (filter [1, kh, kw, out_c])
    FC = "fc"  # out elements * in features (filter [out, in])
    TRANSPOSE = "transpose"  # (input, tap) pairs landing inside the output * in_c * out_c (filter [out_c, kh, kw, in_c])


class ElemOps(str, Enum):
    """Arithmetic outside MACs (``analysis.macs``)."""

    NONE = "none"
    PER_OUTPUT = "per_output"  # one per output element
    PER_WINDOW = "per_window"  # filter_h * filter_w per output element
    PER_INPUT = "per_input"  # one per element of input 0


class Reduce(str, Enum):
    """Whether the operator can be a global average ending a patch stage (per-channel sums)."""

    NO = "no"
    AXES = "axes"  # MEAN over the constant axes (input 1) = {H, W}
    FULL_WINDOW = "full_window"  # a VALID pool whose window is the whole map


class CTypes(str, Enum):
    """Data types the C generator accepts."""

    INT8 = "int8"  # int8 activations in and out (quantized arithmetic)
    MOVE = "move"  # data movement: int8, uint8, int32 or float32
    QUANTIZE = "quantize"  # int8 or float32 in, int8 out
    DEQUANTIZE = "dequantize"  # int8 in, float32 out


MOVE_DTYPES = ("int8", "uint8", "int32", "float32")


@dataclass(frozen=True)
class Window:
    """Attributes giving a window operator's geometry.

    ``kernel`` names the attributes (filter_h, filter_w) holding the window size, or is None
    when the size comes from the filter tensor (input 1, ``[_, kh, kw, _]``). ``dilation`` is
    None when the operator has none (1).
    """

    kernel: tuple[str, str] | None = None
    stride: tuple[str, str] = ("stride_h", "stride_w")
    dilation: tuple[str, str] | None = ("dilation_h", "dilation_w")
    padding: str = "padding"  # "SAME" | "VALID"


@dataclass(frozen=True)
class OpDef:
    """One operator type and its traits."""

    name: str
    kind: Kind
    region: Region
    kernel: str  # numpy kernel class, ``module.Class`` under ``tinypatch.kernels``
    c_kernels: tuple[str, ...]  # C functions (codegen/c) that implement it
    c_types: CTypes = CTypes.INT8
    quantization: str = "int8 per-tensor activations; float32 (numpy only)"  # what the kernels accept (docs)
    window: Window | None = None
    inplace: InPlace = InPlace.NO
    macs: Macs = Macs.NONE
    elem_ops: ElemOps = ElemOps.NONE
    reduce: Reduce = Reduce.NO
    bias: bool = False  # input 2 is an optional constant int32 bias
    const_operands: bool = False  # a constant input may be a data operand (a tensor view in C)
    residual_join: bool = False  # joins a residual block's skip (analytic MCUNetV2 convention)
    analytic_inplace: bool = False  # in place under the analytic MCUNetV2 convention (depthwise)
    permutes: bool = False  # input 1 is a constant axis permutation (an NCHW->NHWC one of a graph input tiles)
    multi_output: bool = False  # several outputs (never inside a patch stage; one C copy per output)
    attrs: dict[str, Any] = field(default_factory=dict)  # attribute defaults (TFLite schema names)
    limits: str = ""  # what is not supported (documentation)
    tflite_builtin: bool = True  # False: imported from another format (ONNX), the TFLite writer cannot write it

    @property
    def local(self) -> bool:
        """Can its output be computed tile by tile (inside a patch stage)?"""
        return self.region != Region.NONE

    @property
    def spatial(self) -> bool:
        """Does it read a window of NHWC pixels (needs a 1xHxWxC output in C)?"""
        return self.region in (Region.WINDOW, Region.PAD, Region.NEAREST, Region.BILINEAR, Region.TRANSPOSE)

    @property
    def batches(self) -> bool:
        """Can its numpy kernel run like tiles stacked along the batch axis in one call (the plan
        executor's batched recompute tiles)? Not gathers, nor slices (their constants index N)."""
        return self.region in (Region.WINDOW, Region.PAD, Region.IDENTITY, Region.CONCAT)

    @property
    def gather(self) -> bool:
        """Does its numpy kernel compute a tile's output window itself (``window(x, origin, out)``)?"""
        return self.region in (Region.NEAREST, Region.BILINEAR, Region.TRANSPOSE)


_ACT = dict(fused_activation_function="NONE")
_CONV = dict(padding="SAME", stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, **_ACT)
_POOL = dict(padding="VALID", stride_h=1, stride_w=1, filter_h=1, filter_w=1, **_ACT)
_POOL_WINDOW = Window(kernel=("filter_h", "filter_w"), dilation=None)
_WEIGHTS = "int8 per-tensor activations, int8 per-channel or per-tensor weights, int32 bias; float32 (numpy only)"

OPS: dict[str, OpDef] = {d.name: d for d in (
    OpDef("CONV_2D", Kind.WINDOW, Region.WINDOW, "conv.Conv2D", ("tp_conv_s8",), window=Window(),
          inplace=InPlace.WINDOW, macs=Macs.CONV, bias=True, attrs=_CONV, quantization=_WEIGHTS,
          limits="C: no grouped convolution"),
    OpDef("DEPTHWISE_CONV_2D", Kind.WINDOW, Region.WINDOW, "conv.DepthwiseConv2D", ("tp_dwconv_s8",),
          window=Window(), inplace=InPlace.WINDOW, macs=Macs.DEPTHWISE, bias=True, analytic_inplace=True,
          attrs=dict(_CONV, depth_multiplier=1), quantization=_WEIGHTS),
    OpDef("AVERAGE_POOL_2D", Kind.WINDOW, Region.WINDOW, "pool.AveragePool2D",
          ("tp_avgpool_s8", "tp_avgpool_finish_s8"), window=_POOL_WINDOW, inplace=InPlace.WINDOW,
          elem_ops=ElemOps.PER_WINDOW, reduce=Reduce.FULL_WINDOW,
          attrs=_POOL),
    OpDef("MAX_POOL_2D", Kind.WINDOW, Region.WINDOW, "pool.MaxPool2D", ("tp_maxpool_s8",), window=_POOL_WINDOW,
          inplace=InPlace.WINDOW, elem_ops=ElemOps.PER_WINDOW, attrs=_POOL),
    OpDef("PAD", Kind.WINDOW, Region.PAD, "shape.Pad", ("tp_pad",), c_types=CTypes.MOVE, inplace=InPlace.WINDOW,
          quantization="any dtype (int8 pads with the zero point)",
          limits="inside a patch stage: no padding of N or C; C: no negative paddings"),
    OpDef("RESIZE_NEAREST_NEIGHBOR", Kind.WINDOW, Region.NEAREST, "resize.ResizeNearest", ("tp_resize_nn",),
          attrs=dict(align_corners=False, half_pixel_centers=False)),
    OpDef("FULLY_CONNECTED", Kind.GLOBAL, Region.NONE, "fully_connected.FullyConnected", ("tp_fc_s8",),
          macs=Macs.FC, bias=True, attrs=dict(_ACT, keep_num_dims=False), quantization=_WEIGHTS),
    OpDef("MEAN", Kind.GLOBAL, Region.NONE, "reduce.Mean", ("tp_mean_s8", "tp_mean_finish_s8"),
          elem_ops=ElemOps.PER_INPUT, reduce=Reduce.AXES, attrs=dict(keep_dims=False)),
    OpDef("SOFTMAX", Kind.GLOBAL, Region.NONE, "softmax.Softmax", ("tp_softmax_s8",), elem_ops=ElemOps.PER_INPUT,
          attrs=dict(beta=1.0)),
    OpDef("ADD", Kind.POINTWISE, Region.IDENTITY, "binary.Add", ("tp_add_s8",), inplace=InPlace.ELEMENTWISE,
          elem_ops=ElemOps.PER_OUTPUT, const_operands=True, residual_join=True, attrs=_ACT,
          limits="numpy broadcasting; C: input/output scales whose multiplier is < 1"),
    OpDef("MUL", Kind.POINTWISE, Region.IDENTITY, "binary.Mul", ("tp_mul_s8",), inplace=InPlace.ELEMENTWISE,
          elem_ops=ElemOps.PER_OUTPUT, const_operands=True, attrs=_ACT, limits="numpy broadcasting"),
    OpDef("RELU", Kind.POINTWISE, Region.IDENTITY, "activations.Relu", ("tp_lut_s8",), inplace=InPlace.ELEMENTWISE),
    OpDef("RELU6", Kind.POINTWISE, Region.IDENTITY, "activations.Relu6", ("tp_lut_s8",),
          inplace=InPlace.ELEMENTWISE),
    OpDef("LEAKY_RELU", Kind.POINTWISE, Region.IDENTITY, "activations.LeakyRelu", ("tp_lut_s8",),
          inplace=InPlace.ELEMENTWISE, attrs=dict(alpha=0.0)),
    OpDef("LOGISTIC", Kind.POINTWISE, Region.IDENTITY, "activations.Logistic", ("tp_lut_s8",),
          inplace=InPlace.ELEMENTWISE),
    OpDef("HARD_SWISH", Kind.POINTWISE, Region.IDENTITY, "activations.HardSwish", ("tp_lut_s8",),
          inplace=InPlace.ELEMENTWISE),
    OpDef("HARD_SIGMOID", Kind.POINTWISE, Region.IDENTITY, "activations.HardSigmoid", ("tp_lut_s8",),
          inplace=InPlace.ELEMENTWISE, attrs=dict(alpha=0.2, beta=0.5), tflite_builtin=False,
          limits="ONNX HardSigmoid (no TFLite builtin): int8 through a 256-entry table"),
    OpDef("QUANTIZE", Kind.POINTWISE, Region.IDENTITY, "quantize.Quantize", ("tp_lut_s8", "tp_quantize_f32"),
          c_types=CTypes.QUANTIZE, inplace=InPlace.ELEMENTWISE, quantization="int8 or float32 in, int8 out",
          limits="per-tensor output"),
    OpDef("DEQUANTIZE", Kind.POINTWISE, Region.IDENTITY, "quantize.Dequantize", ("tp_lut_f32",),
          c_types=CTypes.DEQUANTIZE, quantization="int8 in, float32 out"),
    OpDef("CONCATENATION", Kind.POINTWISE, Region.CONCAT, "shape.Concatenation", ("tp_copy", "tp_lut_s8"),
          c_types=CTypes.MOVE, const_operands=True, attrs=dict(axis=-1, **_ACT),
          quantization="any dtype; int8 inputs requantized to the output's scale",
          limits="inside a patch stage: channel axis only"),
    OpDef("RESHAPE", Kind.SHAPE, Region.NONE, "shape.Reshape", (), c_types=CTypes.MOVE, inplace=InPlace.ALIAS,
          quantization="any dtype"),
    OpDef("TRANSPOSE", Kind.SHAPE, Region.NONE, "shape.Transpose", ("tp_copy",), c_types=CTypes.MOVE,
          permutes=True, quantization="any dtype", limits="rank <= 4"),
    OpDef("RESIZE_BILINEAR", Kind.WINDOW, Region.BILINEAR, "resize.ResizeBilinear", ("tp_resize_bl_s8",),
          attrs=dict(align_corners=False, half_pixel_centers=False),
          quantization="int8 (TFLite's 1/1024 integer path); float32 (numpy only)",
          limits="not in place; not both align_corners and half_pixel_centers (TFLite refuses it)"),
    OpDef("TRANSPOSE_CONV", Kind.WINDOW, Region.TRANSPOSE, "transpose_conv.TransposeConv",
          ("tp_tconv_s8",), macs=Macs.TRANSPOSE,
          attrs=dict(padding="SAME", stride_h=1, stride_w=1, **_ACT),
          quantization="int8 activations, int8 per-channel or per-tensor weights, optional int32 bias (input 3)",
          limits="int8 only; not in place; C DSP path (M4/M7/M55) when the requantization is provably exact"),
    OpDef("MAXIMUM", Kind.POINTWISE, Region.IDENTITY, "binary.MaximumMinimum", ("tp_maxmin_s8",),
          inplace=InPlace.ELEMENTWISE, elem_ops=ElemOps.PER_OUTPUT, const_operands=True,
          quantization="int8, compared as stored (as TFLite does, whatever the scales)",
          limits="numpy broadcasting"),
    OpDef("MINIMUM", Kind.POINTWISE, Region.IDENTITY, "binary.MaximumMinimum", ("tp_maxmin_s8",),
          inplace=InPlace.ELEMENTWISE, elem_ops=ElemOps.PER_OUTPUT, const_operands=True,
          quantization="int8, compared as stored (as TFLite does, whatever the scales)",
          limits="numpy broadcasting"),
    OpDef("SQUARED_DIFFERENCE", Kind.POINTWISE, Region.IDENTITY, "binary.SquaredDifference", ("tp_sqdiff_s8",),
          inplace=InPlace.ELEMENTWISE, elem_ops=ElemOps.PER_OUTPUT, const_operands=True,
          limits="numpy broadcasting"),
    OpDef("PRELU", Kind.POINTWISE, Region.IDENTITY, "binary.Prelu", ("tp_prelu_s8",), inplace=InPlace.ELEMENTWISE,
          elem_ops=ElemOps.PER_OUTPUT, const_operands=True, limits="alpha broadcast against the input"),
    OpDef("SLICE", Kind.POINTWISE, Region.CHANNEL_SLICE, "slicing.Slice", ("tp_copy",), c_types=CTypes.MOVE,
          inplace=InPlace.CHANNELS, quantization="any dtype",
          limits="constant begin/size; inside a patch stage and in place: channel ranges only"),
    OpDef("STRIDED_SLICE", Kind.POINTWISE, Region.CHANNEL_SLICE, "slicing.StridedSlice", ("tp_copy",),
          c_types=CTypes.MOVE, inplace=InPlace.CHANNELS, quantization="any dtype",
          attrs=dict(begin_mask=0, end_mask=0, ellipsis_mask=0, new_axis_mask=0, shrink_axis_mask=0, offset=False),
          limits="constant begin/end/strides; no ellipsis or new-axis masks, no shrunk axis with a negative "
                 "stride or an index outside the axis; inside a patch stage and in place: channel ranges only"),
    OpDef("SPLIT", Kind.SHAPE, Region.NONE, "slicing.Split", ("tp_copy",), c_types=CTypes.MOVE, multi_output=True,
          attrs=dict(num_splits=1), quantization="any dtype", limits="layer by layer only (several outputs)"),
    OpDef("SPLIT_V", Kind.SHAPE, Region.NONE, "slicing.Split", ("tp_copy",), c_types=CTypes.MOVE,
          multi_output=True, attrs=dict(num_splits=1), quantization="any dtype",
          limits="layer by layer only (several outputs); constant sizes"),
)}

# An operator type not in the table: opaque (needs its whole input, no MACs, never in place).
_OPAQUE = OpDef("?", Kind.GLOBAL, Region.NONE, "", ())


def op_def(op_type: str) -> OpDef:
    """The table row of ``op_type`` (an opaque row for an unregistered type)."""
    return OPS.get(op_type, _OPAQUE)


def registered_ops() -> tuple[str, ...]:
    """Every operator type in the table, sorted."""
    return tuple(sorted(OPS))
