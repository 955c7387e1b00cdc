"""From a supernet's subnet to an int8 ``.tflite`` (issue 14 item 4), in PyTorch.

1. :func:`extract`: the subnet's weights (sliced, kernel centre-cropped) and re-calibrated
   BatchNorm as a standalone :class:`Program`, the op sequence
   :func:`tinypatch.frontends.mcunet_config.build_net` makes of the spec (same op names);
2. :func:`finetune` in float, then BatchNorm folded into the convolutions;
3. post-training calibration (:func:`calibrate`): asymmetric int8 activations from the min/max
   seen on training batches, per-channel symmetric int8 conv weights (one scale for the FC),
   int32 biases at ``s_in * s_w``;
4. quantization-aware fine-tuning (:func:`qat`): every op's forward *is* the integer program
   (TFLite's reference arithmetic: int32 accumulators, fixed-point requantization, the ADD's
   20-bit rescaling, the MEAN's folded multiplier, the FC's double rescale), gradients flow
   through the float op (straight-through);
5. :func:`to_graph`: the int8 graph (``save_tflite`` writes it).

:meth:`Program.int8` is the "PyTorch int8 simulation": integer arithmetic in torch int64,
written independently of :mod:`tinypatch.kernels` (only the multiplier preparation is shared).
This module needs torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinypatch.errors import GraphError
from tinypatch.frontends.mcunet_config import build_net
from tinypatch.frontends.spec import RELU6, NetSpec
from tinypatch.ir import Graph, QuantParams
from tinypatch.kernels.conv import per_channel_multipliers
from tinypatch.kernels.fixedpoint import quantize_multiplier
from tinypatch.kernels.reduce import mean_multiplier
from tinypatch.nas.data import Dataset
from tinypatch.nas.supernet import (
    DynConv,
    DynDepthwise,
    Progress,
    TrainedSupernet,
    accuracy,
    augment,
    batches,
    recalibrate,
    same_pad,
    to_tensor,
)

INPUT = "input"
INPUT_SCALE = np.float32(1.0 / 255.0)  # pixel / 255 == INPUT_SCALE * ((pixel - 128) - (-128))
INPUT_ZP = -128
ADD_SHIFT = 20
INT32 = 1 << 32


# --- the program: build_net's op sequence with trainable float weights --------------------
@dataclass
class Quant:
    """Per-tensor activation quantization (float32 scale, int zero point)."""

    scale: np.float32
    zp: int

    def real(self, q: torch.Tensor) -> torch.Tensor:
        return (q - self.zp).to(torch.float32) * float(self.scale)


class ConvOp(nn.Module):
    """CONV_2D / DEPTHWISE_CONV_2D (SAME padding) with BatchNorm until :meth:`fold`."""

    def __init__(self, name: str, src: str, weight: torch.Tensor, stride: int, act: str, depthwise: bool,
                 bn: nn.BatchNorm2d | None) -> None:
        super().__init__()
        self.name, self.inputs, self.stride, self.act, self.depthwise = name, [src], stride, act, depthwise
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(torch.zeros(weight.shape[0]))
        self.bn = bn

    def _conv(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        k = w.shape[-1]
        return F.conv2d(same_pad(x, k, self.stride), w, b, stride=self.stride,
                        groups=x.shape[1] if self.depthwise else 1)

    def run_float(self, xs: list[torch.Tensor]) -> torch.Tensor:
        y = self._conv(xs[0], self.weight, self.bias)
        if self.bn is not None:
            y = self.bn(y)
        return F.relu6(y) if self.act == RELU6 else y

    def fold(self) -> None:
        """Fold BatchNorm (its running statistics) into weight and bias."""
        if self.bn is None:
            return
        bn = self.bn
        g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        with torch.no_grad():
            self.weight.mul_(g.view(-1, 1, 1, 1))
            self.bias.copy_((self.bias - bn.running_mean) * g + bn.bias)
        self.bn = None

    def weight_scale(self) -> np.ndarray:
        """Per-output-channel symmetric scale ``max|w| / 127`` (float32)."""
        m = self.weight.detach().abs().amax(dim=(1, 2, 3)).double().numpy()
        return np.maximum(m / 127.0, 1e-12).astype(np.float32)


class AddOp(nn.Module):
    def __init__(self, name: str, a: str, b: str) -> None:
        super().__init__()
        self.name, self.inputs = name, [a, b]

    def run_float(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return xs[0] + xs[1]


class MeanOp(nn.Module):
    def __init__(self, name: str, src: str) -> None:
        super().__init__()
        self.name, self.inputs = name, [src]

    def run_float(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return xs[0].mean(dim=(2, 3))


class FcOp(nn.Module):
    def __init__(self, name: str, src: str, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.name, self.inputs = name, [src]
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())

    def run_float(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return F.linear(xs[0], self.weight, self.bias)

    def weight_scale(self) -> np.ndarray:
        return np.array([max(float(self.weight.detach().abs().max()) / 127.0, 1e-12)], np.float32)


# --- integer arithmetic in torch (int64 holding int32 values) --------------------------------
def _wrap32(x: torch.Tensor) -> torch.Tensor:
    return torch.remainder(x + (1 << 31), INT32) - (1 << 31)


def _high_mul(a: torch.Tensor, m: torch.Tensor | int) -> torch.Tensor:
    """SaturatingRoundingDoublingHighMul for m > 0 (so INT32_MIN * INT32_MIN cannot occur)."""
    ab = a * m
    ab = ab + torch.where(ab >= 0, torch.tensor(1 << 30), torch.tensor(1 - (1 << 30)))
    return torch.where(ab >= 0, ab >> 31, -((-ab) >> 31))  # C division: truncation toward zero


def _divide_pot(x: torch.Tensor, e: torch.Tensor | int) -> torch.Tensor:
    """RoundingDivideByPOT: arithmetic shift right, rounding half away from zero."""
    e = torch.as_tensor(e, dtype=torch.int64)
    mask = (torch.ones_like(e) << e) - 1
    threshold = (mask >> 1) + (x < 0).to(torch.int64)
    return (x >> e) + ((x & mask) > threshold).to(torch.int64)


def _requantize(acc: torch.Tensor, m: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """MultiplyByQuantizedMultiplier (double rounding) with per-channel m, shift on dim 1."""
    left, right = shift.clamp(min=0), (-shift).clamp(min=0)
    return _divide_pot(_high_mul(_wrap32(acc << left), m), right)


def _round_away(x: torch.Tensor) -> torch.Tensor:
    a = x.abs()
    r = torch.floor(a)
    return torch.copysign(r + (a - r >= 0.5).to(x.dtype), x)


def _clamp(q: torch.Tensor, act: str, out: Quant) -> torch.Tensor:
    lo, hi = -128, 127
    if act == RELU6:
        lo = max(lo, out.zp + int(np.round(np.float32(0.0) / out.scale)))
        r = float(np.float32(6.0) / out.scale)  # roundf: half away from zero
        hi = min(hi, out.zp + int(math.copysign(math.floor(abs(r) + 0.5), r)))
    return q.clamp(lo, hi)


class Program(nn.Module):
    """A subnet as build_net's op sequence. ``quant`` (tensor name -> :class:`Quant`) is set by
    :func:`calibrate`; before it only :meth:`float` runs."""

    def __init__(self, spec: NetSpec, ops: list[nn.Module]) -> None:
        super().__init__()
        self.spec = spec
        self.ops = nn.ModuleList(ops)
        self.quant: dict[str, Quant] = {}

    @property
    def output(self) -> str:
        return self.ops[-1].name

    # --- float -------------------------------------------------------------------------
    def run_float(self, x: torch.Tensor) -> torch.Tensor:
        env = {INPUT: x}
        for op in self.ops:
            env[op.name] = op.run_float([env[n] for n in op.inputs])
        return env[self.output]

    def fold(self) -> None:
        for op in self.ops:
            if isinstance(op, ConvOp):
                op.fold()

    # --- integers ------------------------------------------------------------------------
    def int_weights(self, op: ConvOp | FcOp) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]:
        """(int8 weights as int64 with a straight-through float copy, weight scales, int32 bias as
        int64, bias scales); the float copy ``q * s`` carries the weight's gradient."""
        s_w = op.weight_scale()
        s_in = self.quant[op.inputs[0]].scale
        shape = (-1,) + (1,) * (op.weight.dim() - 1)
        s_t = torch.from_numpy(s_w.astype(np.float64)).view(shape)
        q = torch.clamp(torch.round(op.weight.detach().double() / s_t), -127, 127)
        s_b = (np.float64(s_in) * s_w.astype(np.float64))
        b = torch.round(op.bias.detach().double() / torch.from_numpy(np.broadcast_to(s_b, op.bias.shape).copy()))
        b = b.clamp(-(1 << 31), (1 << 31) - 1)
        return q.to(torch.int64), s_w, b.to(torch.int64), s_b

    def _int_op(self, op: nn.Module, qs: list[torch.Tensor]) -> torch.Tensor:
        out = self.quant[op.name]
        if isinstance(op, ConvOp):
            q_in = self.quant[op.inputs[0]]
            w, s_w, b, _ = self.int_weights(op)
            m, sh = per_channel_multipliers(q_in.scale, s_w, out.scale, w.shape[0])
            x = (qs[0] - q_in.zp).double()
            acc = op._conv(x, w.double(), None).round().to(torch.int64) + b.view(1, -1, 1, 1)
            y = _requantize(_wrap32(acc), torch.from_numpy(m).view(1, -1, 1, 1),
                            torch.from_numpy(sh).view(1, -1, 1, 1)) + out.zp
            return _clamp(y, op.act, out)
        if isinstance(op, AddOp):
            (a, b), (qa, qb) = qs, (self.quant[n] for n in op.inputs)
            twice = 2.0 * float(max(qa.scale, qb.scale))
            (m1, s1), (m2, s2) = quantize_multiplier(float(qa.scale) / twice), quantize_multiplier(float(qb.scale) / twice)
            mo, so = quantize_multiplier(twice / (float(1 << ADD_SHIFT) * float(out.scale)))
            raw = _divide_pot(_high_mul((a - qa.zp) << ADD_SHIFT, m1), -s1) + \
                _divide_pot(_high_mul((b - qb.zp) << ADD_SHIFT, m2), -s2)
            return (_divide_pot(_high_mul(raw, mo), -so) + out.zp).clamp(-128, 127)
        if isinstance(op, MeanOp):
            q_in = self.quant[op.inputs[0]]
            count = qs[0].shape[2] * qs[0].shape[3]
            m, sh = mean_multiplier(*quantize_multiplier(float(q_in.scale) / float(out.scale)), count)
            total = _wrap32(qs[0].sum(dim=(2, 3)) - q_in.zp * count)
            return (_requantize(total, torch.tensor(m), torch.tensor(sh)) + out.zp).clamp(-128, 127)
        assert isinstance(op, FcOp)
        q_in = self.quant[op.inputs[0]]
        w, s_w, b, _ = self.int_weights(op)
        acc = _wrap32(((qs[0] - q_in.zp).double() @ w.double().T).round().to(torch.int64) + b)
        eff = np.float64(q_in.scale) * np.float64(s_w[0]) / np.float64(out.scale)
        y = _round_away(acc.double() * float(eff)).to(torch.int64)
        return (y + out.zp).clamp(-128, 127)

    def int8(self, q: torch.Tensor) -> torch.Tensor:
        """The PyTorch int8 simulation: int8 input (NCHW, as int64) -> int8 logits (int64)."""
        env = {INPUT: q}
        with torch.no_grad():
            for op in self.ops:
                env[op.name] = self._int_op(op, [env[n] for n in op.inputs])
        return env[self.output]

    def qat(self, x: torch.Tensor) -> torch.Tensor:
        """Quantization-aware forward: values are the integer program's (dequantized), gradients
        those of the float ops on fake-quantized weights (straight-through)."""
        q = torch.round(x / float(INPUT_SCALE)).to(torch.int64) + INPUT_ZP
        envq, envf = {INPUT: q}, {INPUT: self.quant[INPUT].real(q)}
        for op in self.ops:
            with torch.no_grad():
                envq[op.name] = self._int_op(op, [envq[n] for n in op.inputs])
            xs = [envf[n] for n in op.inputs]
            if isinstance(op, (ConvOp, FcOp)):
                s_w = op.weight_scale()
                shape = (-1,) + (1,) * (op.weight.dim() - 1)
                s_t = torch.from_numpy(s_w).view(shape)
                w_fq = op.weight + (torch.clamp(torch.round(op.weight / s_t), -127, 127) * s_t - op.weight).detach()
                yf = op._conv(xs[0], w_fq, op.bias) if isinstance(op, ConvOp) else F.linear(xs[0], w_fq, op.bias)
                if isinstance(op, ConvOp) and op.act == RELU6:
                    yf = F.relu6(yf)
            else:
                yf = op.run_float(xs)
            envf[op.name] = yf + (self.quant[op.name].real(envq[op.name]) - yf).detach()
        return envf[self.output]


def quantize_input(x: np.ndarray) -> torch.Tensor:
    """uint8 NHWC pixels -> the int8 model input, NCHW int64 (``pixel - 128``)."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).to(torch.int64) + INPUT_ZP


# --- 1. extraction ---------------------------------------------------------------------
def extract(trained: TrainedSupernet, spec: NetSpec, calib_batches: int = 20, batch_size: int = 64,
            seed: int = 0) -> Program:
    """``spec``'s weights and re-calibrated BatchNorm, copied out of the supernet."""
    net = trained.net
    recalibrate(net, spec, to_tensor(trained.train.x, spec.resolution), batch_size, calib_batches, seed)
    stages = net.layout(spec)

    def conv(name: str, src: str, mod: DynConv | DynDepthwise, cin: int, cout: int, kernel: int, stride: int,
             act: str) -> ConvOp:
        if isinstance(mod, DynDepthwise):
            off = (mod.weight.shape[-1] - kernel) // 2
            w = mod.weight[:cout, :, off: off + kernel, off: off + kernel]
        else:
            w = mod.weight[:cout, :cin]
        src_bn = mod.bn.bn
        bn = nn.BatchNorm2d(cout)
        with torch.no_grad():
            for a in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, a).copy_(getattr(src_bn, a)[:cout])
        bn.eval()
        return ConvOp(name, src, w, stride, act, isinstance(mod, DynDepthwise), bn)

    ops: list[nn.Module] = [conv("stem", INPUT, net.stem, spec.in_channels, spec.stem_channels, 3,
                                 spec.stem_stride, RELU6)]
    mods = [net.first] + [m for mods, blks in zip(net.stages, stages) for m in list(mods)[: len(blks)]]
    blocks = [b for b in spec.blocks if b is not None]
    index = [i for i, b in enumerate(spec.blocks) if b is not None]
    x, cin = "stem", spec.stem_channels
    for i, b, m in zip(index, blocks, mods):
        n, h = f"blocks.{i}", x
        mid = b.mid_channels or round(cin * b.expand_ratio)
        if b.expand_ratio != 1:
            ops.append(conv(f"{n}.expand", h, m.expand, cin, mid, 1, 1, RELU6))
            h = f"{n}.expand"
        ops.append(conv(f"{n}.dw", h, m.dw, mid, mid, b.kernel, b.stride, RELU6))
        ops.append(conv(f"{n}.project", f"{n}.dw", m.project, mid, b.out_channels, 1, 1, "NONE"))
        h = f"{n}.project"
        if b.shortcut:
            ops.append(AddOp(f"{n}.add", h, x))
            h = f"{n}.add"
        x, cin = h, b.out_channels
    ops.append(MeanOp("head.pool", x))
    ops.append(FcOp("head.fc", "head.pool", net.classifier.weight[:, :cin], net.classifier.bias))
    return Program(spec, ops)


# --- 2-4. training, calibration, QAT ------------------------------------------------------
def _fit(program: Program, forward: Callable[[torch.Tensor], torch.Tensor], data: Dataset, epochs: int,
         lr: float, batch_size: int, seed: int, shift: int, label: str, progress: Progress | None,
         evaluate: Callable[[], float]) -> list[float]:
    rng = np.random.default_rng(seed)
    x_all, y_all = to_tensor(data.x, program.spec.resolution), torch.from_numpy(data.y)
    params = [p for p in program.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    steps = max(1, epochs * math.ceil(len(y_all) / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    accs = []
    for epoch in range(epochs):
        program.train()
        for idx in batches(len(y_all), batch_size, rng):
            opt.zero_grad()
            F.cross_entropy(forward(augment(x_all[idx].clone(), rng, shift)), y_all[idx]).backward()
            opt.step()
            sched.step()
        program.eval()
        accs.append(evaluate())
        if progress is not None:
            progress(f"{label} epoch {epoch + 1}/{epochs}: held-out accuracy {accs[-1]:.1%}")
    return accs


def finetune(program: Program, train: Dataset, holdout: Dataset, epochs: int, lr: float = 1e-3,
             batch_size: int = 64, seed: int = 0, shift: int = 2, progress: Progress | None = None) -> list[float]:
    """Float fine-tuning (BatchNorm in train mode), then BatchNorm folded."""
    for op in program.ops:
        if isinstance(op, ConvOp) and op.bn is not None:
            op.bn.train()
    accs = _fit(program, program.run_float, train, epochs, lr, batch_size, seed, shift, "fine-tune", progress,
                lambda: float_accuracy(program, holdout))
    program.fold()
    return accs


def calibrate(program: Program, data: Dataset, n_batches: int = 20, batch_size: int = 64, seed: int = 0) -> None:
    """Post-training calibration: each activation's int8 range from the min/max over ``n_batches``
    (0 always inside; RELU6 outputs at most 6); MEAN keeps its input's quantization."""
    x = to_tensor(data.x, program.spec.resolution)
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for idx in batches(len(x), batch_size, rng)[:n_batches]:
            env = {INPUT: x[idx]}
            for op in program.ops:
                y = env[op.name] = op.run_float([env[n] for n in op.inputs])
                lo[op.name] = min(lo.get(op.name, 0.0), float(y.min()))
                hi[op.name] = max(hi.get(op.name, 0.0), float(y.max()))
    quant = {INPUT: Quant(INPUT_SCALE, INPUT_ZP)}
    for op in program.ops:
        if isinstance(op, MeanOp):
            quant[op.name] = quant[op.inputs[0]]
            continue
        a, b = lo[op.name], hi[op.name]
        if isinstance(op, ConvOp) and op.act == RELU6:
            a, b = 0.0, min(b, 6.0)
        scale = np.float32(max(b - a, 1e-6) / 255.0)
        zp = int(np.clip(np.round(-128 - a / float(scale)), -128, 127))
        quant[op.name] = Quant(scale, zp)
    program.quant = quant


def qat(program: Program, train: Dataset, holdout: Dataset, epochs: int, lr: float = 2e-4, batch_size: int = 64,
        seed: int = 0, shift: int = 2, progress: Progress | None = None) -> list[float]:
    """Quantization-aware fine-tuning with :meth:`Program.qat` (activation ranges fixed by
    :func:`calibrate`, weight scales follow the weights); returns int8 held-out accuracy per epoch."""
    return _fit(program, program.qat, train, epochs, lr, batch_size, seed, shift, "QAT", progress,
                lambda: int8_accuracy(program, holdout))


def float_accuracy(program: Program, data: Dataset) -> float:
    program.eval()
    return accuracy(program.run_float, to_tensor(data.x, program.spec.resolution), torch.from_numpy(data.y))


def int8_predictions(program: Program, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 logits [N, classes], predictions) of the PyTorch int8 simulation on uint8 images."""
    from tinypatch.nas.supernet import resize_uint8

    q = quantize_input(resize_uint8(x, program.spec.resolution))
    logits = torch.cat([program.int8(q[i: i + 256]) for i in range(0, len(q), 256)]).numpy().astype(np.int8)
    return logits, logits.argmax(1)


def int8_accuracy(program: Program, data: Dataset) -> float:
    return float((int8_predictions(program, data.x)[1] == data.y).mean())


# --- 5. the int8 graph ----------------------------------------------------------------------
def to_graph(program: Program, name: str | None = None) -> Graph:
    """The int8 graph: :func:`build_net`'s structure for the spec, with the program's integer
    weights and quantization (inputs ``pixel - 128``, NHWC)."""
    spec = program.spec
    g = build_net(spec)
    g.name = name or spec.name
    ops = {op.name: op for op in program.ops}
    if [op.name for op in g.ops] != list(ops):
        raise GraphError(f"{spec.name}: the program's ops differ from build_net's")
    g.tensors[INPUT].quant = QuantParams.tensor(float(INPUT_SCALE), INPUT_ZP)
    for op in g.ops:
        mine = ops[op.name]
        q = program.quant[op.name]
        g.tensors[op.name].quant = QuantParams.tensor(float(q.scale), q.zp)
        if isinstance(mine, (ConvOp, FcOp)):
            w, s_w, b, s_b = program.int_weights(mine)
            w = w.numpy().astype(np.int8)
            if isinstance(mine, FcOp):
                data, axis = w, None
            elif mine.depthwise:  # [c, 1, kh, kw] -> [1, kh, kw, c]
                data, axis = w.transpose(1, 2, 3, 0), 3
            else:  # [out, in, kh, kw] -> [out, kh, kw, in]
                data, axis = w.transpose(0, 2, 3, 1), 0
            wt, bt = g.tensors[f"{op.name}.weight"], g.tensors[f"{op.name}.bias"]
            if wt.shape != data.shape or bt.shape != tuple(b.shape):
                raise GraphError(f"{op.name}: weights {data.shape} do not fit the graph's {wt.shape}")
            zeros = np.zeros(s_w.size, np.int64)
            wt.data, wt.quant = np.ascontiguousarray(data), QuantParams(s_w, zeros, axis)
            bt.data = b.numpy().astype(np.int32)
            bt.quant = QuantParams(s_b.astype(np.float32), zeros, None if axis is None else 0)
    g.meta["source"] = "tinypatch.nas.export"
    g.validate()
    return g


@dataclass
class Exported:
    """An exported subnet: its program, int8 graph and the accuracies along the way."""

    program: Program
    graph: Graph
    supernet_accuracy: float  # held-out, supernet weights after BN re-calibration
    finetune: list[float] = field(default_factory=list)  # float held-out accuracy per epoch
    ptq_accuracy: float = 0.0  # int8 after post-training calibration, before QAT
    qat: list[float] = field(default_factory=list)  # int8 held-out accuracy per QAT epoch


def export(trained: TrainedSupernet, spec: NetSpec, *, finetune_epochs: int = 2, qat_epochs: int = 2,
           calib_batches: int = 20, batch_size: int = 64, seed: int = 0,
           progress: Progress | None = None) -> Exported:
    """Steps 1-5 for ``spec``: extract, fine-tune, calibrate, QAT, int8 graph."""
    torch.manual_seed(seed)
    program = extract(trained, spec, calib_batches, batch_size, seed)
    program.eval()
    start = float_accuracy(program, trained.holdout)
    ft = finetune(program, trained.train, trained.holdout, finetune_epochs, batch_size=batch_size, seed=seed,
                  progress=progress)
    calibrate(program, trained.train, calib_batches, batch_size, seed)
    ptq = int8_accuracy(program, trained.holdout)
    if progress is not None:
        progress(f"int8 after post-training calibration: held-out accuracy {ptq:.1%}")
    q = qat(program, trained.train, trained.holdout, qat_epochs, batch_size=batch_size, seed=seed,
            progress=progress)
    return Exported(program, to_graph(program), start, ft, ptq, q)
