"""A weight-sharing supernet over MCUNet's space, trained in PyTorch (MCUNetV2 §3.3's accuracy source).

Layout (:class:`SupernetConfig`, the conventions of :class:`tinypatch.nas.space.SearchSpace`): a
3x3/2 stem, one MB1 3x3 block, then stages of inverted-residual blocks, each stage ``(base out
channels, first stride, depth choices)``. Every subnet is a
:class:`~tinypatch.frontends.spec.NetSpec` of that space; its weights are views of the largest
network's: the 7x7 depthwise kernel centre-cropped to 5x5 / 3x3 (elastic kernel), the first
channels of every conv (elastic expand ratio and width), the first blocks of every stage
(elastic depth 2/3/4). Convolutions pad like TFLite's SAME, so the int8 graph that
:func:`tinypatch.frontends.mcunet_config.build_net` makes of a spec computes the same function.

:func:`train_supernet` trains with the sandwich rule (largest, smallest and random subnets each
step, the smaller ones distilled from the largest), data-parallel: a step is K micro-batches whose
gradients (:func:`micro_grads`, on a replica, in process or on Ray workers) are summed in a fixed
order, so the weights do not depend on where they ran; :class:`SupernetAccuracy` is the search's
objective ``(NetSpec) -> float``: BatchNorm statistics re-calibrated for that subnet on N
training batches, then top-1 accuracy on the held-out split. This module needs torch.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinypatch.errors import ModelLoadError, UsageError
from tinypatch.frontends.spec import RELU6, BlockSpec, NetSpec
from tinypatch.frontends.synth import make_divisible
from tinypatch.nas.data import Dataset, load_data, split
from tinypatch.nas.space import SearchSpace
from tinypatch.safeio import write_bytes

KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
WIDTHS = (0.5, 0.75, 1.0)
DEPTHS = (2, 3, 4)
CHECKPOINT_FORMAT = "tinypatch-supernet"
Progress = Callable[[str], None]


Stage = tuple[int, int, tuple[int, ...]]  # (base out channels, first stride, depth choices)


@dataclass(frozen=True)
class SupernetConfig:
    """The space, in the conventions of :class:`tinypatch.nas.space.SearchSpace`: a 3x3/2 stem
    and an MB1 k3 block (widths elastic), then ``stages``; per block kernel, expand ratio and
    width (its out channels ``make_divisible(base * width, 8)``); a stride-1 block whose input
    and output channels agree has a residual shortcut; resolution from ``resolutions``."""

    resolutions: tuple[int, ...] = (32,)
    in_channels: int = 3
    num_classes: int = 10
    stem_channels: int = 16
    first_channels: int = 8
    stages: tuple[Stage, ...] = ((16, 2, DEPTHS), (24, 2, DEPTHS), (40, 1, DEPTHS))
    kernels: tuple[int, ...] = KERNELS
    expands: tuple[float, ...] = EXPANDS
    widths: tuple[float, ...] = WIDTHS

    def __post_init__(self) -> None:
        if not all(self.resolutions) or min(self.resolutions) < 4 or not self.stages or \
                any(not d or min(d) < 1 for _, _, d in self.stages) or min(self.kernels) < 1 or \
                any(k % 2 == 0 for k in self.kernels) or min(self.expands) <= 1 or min(self.widths) <= 0:
            raise UsageError("supernet: resolutions >= 4, odd kernels, expand ratios > 1, positive widths and "
                             "non-empty depth choices are needed")

    @property
    def max_kernel(self) -> int:
        return max(self.kernels)

    @property
    def max_expand(self) -> float:
        return max(self.expands)

    def channels(self, base: int, width: float) -> int:
        return make_divisible(base * width, 8)

    def to_space(self, name: str = "supernet") -> SearchSpace:
        """The search space whose networks are exactly this supernet's subnets."""
        return SearchSpace(kernels=self.kernels, expands=self.expands, widths=self.widths, resolutions=self.resolutions,
                           stages=self.stages, stem_channels=self.stem_channels, first_channels=self.first_channels,
                           num_classes=self.num_classes, name=name)

    def max_channels(self, base: int) -> int:
        return max(self.channels(base, w) for w in self.widths)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = [[c, s, list(ds)] for c, s, ds in self.stages]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> SupernetConfig:
        d = dict(d)
        d["stages"] = tuple((int(c), int(s), tuple(ds)) for c, s, ds in d["stages"])
        for k in ("resolutions", "kernels", "expands", "widths"):
            d[k] = tuple(d[k])
        return cls(**d)

    # --- subnets as NetSpecs ---------------------------------------------------------
    def spec(self, resolution: int, stem_width: float, first_width: float,
             stages: Sequence[Sequence[tuple[int, float, float]]], name: str = "subnet") -> NetSpec:
        """The subnet with ``stages[s][j] = (kernel, expand, width)`` (lengths: the depths)."""
        stem = self.channels(self.stem_channels, stem_width)
        cin = self.channels(self.first_channels, first_width)
        blocks = [BlockSpec(cin, 3, 1, 1, shortcut=cin == stem)]
        for (base, stride, _), blks in zip(self.stages, stages, strict=True):
            for j, (k, e, w) in enumerate(blks):
                out, st = self.channels(base, w), stride if j == 0 else 1
                blocks.append(BlockSpec(out, int(k), st, e, shortcut=st == 1 and out == cin))
                cin = out
        return NetSpec(name, int(resolution), stem, tuple(blocks), None, self.num_classes, self.in_channels,
                       source="tinypatch supernet")

    def _extreme(self, pick: Callable[[Sequence], object], name: str) -> NetSpec:
        return self.spec(pick(self.resolutions), pick(self.widths), pick(self.widths),
                         [[(pick(self.kernels), pick(self.expands), pick(self.widths))] * pick(d)
                          for _, _, d in self.stages], name)

    def max_spec(self) -> NetSpec:
        return self._extreme(max, "largest")

    def min_spec(self) -> NetSpec:
        return self._extreme(min, "smallest")

    def sample(self, rng: np.random.Generator, name: str = "subnet") -> NetSpec:
        """A uniformly random subnet (every choice independent, as the search space samples)."""
        def c(v: Sequence) -> object:
            return v[int(rng.integers(len(v)))]

        return self.spec(c(self.resolutions), c(self.widths), c(self.widths),
                         [[(c(self.kernels), c(self.expands), c(self.widths)) for _ in range(c(d))]
                          for _, _, d in self.stages], name)


# --- layers ------------------------------------------------------------------------------
def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad H and W as TFLite's SAME does (the extra pixel goes after)."""
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad order: W then H
        out = -(-n // stride)
        total = max((out - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class DynBN(nn.Module):
    """BatchNorm over the first ``c`` channels; ``calibrating``: running stats are the plain mean
    over the batches seen since :meth:`reset` (MCUNetV2's re-calibration)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.calibrating = False
        self.seen = 0

    def reset(self) -> None:
        self.bn.reset_running_stats()
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        bn = self.bn
        mean, var = bn.running_mean[:c], bn.running_var[:c]
        if self.calibrating:
            self.seen += 1
            m = 1.0 / self.seen
        else:
            m = bn.momentum
        return F.batch_norm(x, mean, var, bn.weight[:c], bn.bias[:c], self.training, m, bn.eps)


class DynConv(nn.Module):
    """A dense conv (square kernel) over the first input channels, giving the first ``cout``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bn = DynBN(cout)

    def forward(self, x: torch.Tensor, cout: int, stride: int = 1) -> torch.Tensor:
        w = self.weight[:cout, : x.shape[1]]
        k = w.shape[-1]
        return self.bn(F.conv2d(same_pad(x, k, stride), w, stride=stride))


class DynDepthwise(nn.Module):
    """A depthwise conv whose largest kernel is centre-cropped to the subnet's."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.bn = DynBN(channels)

    def forward(self, x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        c = x.shape[1]
        off = (self.weight.shape[-1] - kernel) // 2
        w = self.weight[:c, :, off: off + kernel, off: off + kernel]
        return self.bn(F.conv2d(same_pad(x, kernel, stride), w, stride=stride, groups=c))


class DynBlock(nn.Module):
    """Inverted residual: 1x1 expand (ReLU6), depthwise (ReLU6), 1x1 project; identity shortcut."""

    def __init__(self, cin: int, cout: int, max_expand: float, max_kernel: int, expand: bool = True) -> None:
        super().__init__()
        mid = round(cin * max_expand) if expand else cin
        self.expand = DynConv(cin, mid) if expand else None
        self.dw = DynDepthwise(mid, max_kernel)
        self.project = DynConv(mid, cout)

    def forward(self, x: torch.Tensor, b: BlockSpec) -> torch.Tensor:
        h = x
        if b.expand_ratio != 1:
            assert self.expand is not None
            h = F.relu6(self.expand(h, b.mid_channels or round(x.shape[1] * b.expand_ratio)))
        h = F.relu6(self.dw(h, b.kernel, b.stride))
        h = self.project(h, b.out_channels)
        return h + x if b.shortcut else h


class Supernet(nn.Module):
    """The largest network; ``forward(x, spec)`` runs the subnet ``spec`` (see :meth:`layout`)."""

    def __init__(self, config: SupernetConfig) -> None:
        super().__init__()
        c = self.config = config
        stem = c.max_channels(c.stem_channels)
        self.stem = DynConv(c.in_channels, stem, 3)
        cin = c.max_channels(c.first_channels)
        self.first = DynBlock(stem, cin, 1, 3, expand=False)
        self.stages = nn.ModuleList()
        for base, _, depths in c.stages:
            cmax = c.max_channels(base)
            self.stages.append(nn.ModuleList(
                DynBlock(cin if j == 0 else cmax, cmax, c.max_expand, c.max_kernel) for j in range(max(depths))))
            cin = cmax
        self.classifier = nn.Linear(cin, c.num_classes)

    def layout(self, spec: NetSpec) -> list[list[BlockSpec]]:
        """``spec``'s blocks after the MB1 block split into the stages (identity blocks dropped):
        the first split (longest stages first) where every stage has an allowed depth, its first
        block the stage's stride and the others stride 1, every block out channels the stage
        can make and a kernel, expand ratio and mid channels the supernet holds.
        ModelLoadError when there is none."""
        c = self.config
        where = f"{spec.name}: not a subnet of this supernet"
        if (spec.in_channels, spec.num_classes, spec.stem_kernel, spec.stem_stride) != (
                c.in_channels, c.num_classes, 3, 2) or spec.feature_mix is not None:
            raise ModelLoadError(f"{where} (input channels, classes, stem or feature mix differ)")
        if spec.stem_channels > self.stem.weight.shape[0]:
            raise ModelLoadError(f"{where} (stem has {spec.stem_channels} > {self.stem.weight.shape[0]} channels)")
        blocks = [b for b in spec.blocks if b is not None]
        b0 = blocks[0] if blocks else None
        if b0 is None or b0.expand_ratio != 1 or b0.kernel != 3 or b0.stride != 1 or not b0.depthwise \
                or b0.out_channels > self.first.project.weight.shape[0] or b0.use_se or b0.act != RELU6:
            raise ModelLoadError(f"{where} (block 0 must be MB1 k3 s1 with <= "
                                 f"{self.first.project.weight.shape[0]} channels)")
        rest = blocks[1:]

        def fits(s: int, j: int, b: BlockSpec, cin: int) -> bool:
            base, stride, _ = c.stages[s]
            mid = b.mid_channels or round(cin * b.expand_ratio)
            outs = {c.channels(base, w) for w in c.widths}
            return (b.out_channels in outs and b.kernel <= c.max_kernel and b.depthwise and not b.use_se
                    and b.act == RELU6 and b.stride == (stride if j == 0 else 1) and b.expand_ratio != 1
                    and mid <= self.stages[s][j].dw.weight.shape[0])

        def split(s: int, i: int, cin: int) -> list[list[BlockSpec]] | None:
            if s == len(c.stages):
                return [] if i == len(rest) else None
            for d in sorted(c.stages[s][2], reverse=True):
                run = rest[i: i + d]
                if len(run) < d:
                    continue
                ins = [cin] + [b.out_channels for b in run[:-1]]
                if all(fits(s, j, b, x) for j, (b, x) in enumerate(zip(run, ins))):
                    tail = split(s + 1, i + d, run[-1].out_channels)
                    if tail is not None:
                        return [list(run)] + tail
            return None

        stages = split(0, 0, b0.out_channels)
        if stages is None:
            raise ModelLoadError(f"{where} (its blocks fit no split into the supernet's stages)")
        return stages

    def forward(self, x: torch.Tensor, spec: NetSpec, stages: list[list[BlockSpec]] | None = None) -> torch.Tensor:
        stages = self.layout(spec) if stages is None else stages
        blocks = [b for b in spec.blocks if b is not None]
        h = F.relu6(self.stem(x, spec.stem_channels, 2))
        h = self.first(h, blocks[0])
        for mods, blks in zip(self.stages, stages):
            for m, b in zip(mods, blks):
                h = m(h, b)
        h = h.mean(dim=(2, 3))
        return F.linear(h, self.classifier.weight[:, : h.shape[1]], self.classifier.bias)

    def bns(self) -> list[DynBN]:
        return [m for m in self.modules() if isinstance(m, DynBN)]


# --- data to tensors ---------------------------------------------------------------------
def to_tensor(x: np.ndarray, resolution: int | None = None) -> torch.Tensor:
    """uint8 NHWC images -> float NCHW ``pixel / 255``, resized (bilinear, rounded back to
    whole pixels so the int8 model sees the same values) when ``resolution`` differs."""
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
    if resolution is not None and resolution != t.shape[-1]:
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False).round().clamp(0, 255)
    return t / 255.0


def resize_uint8(x: np.ndarray, resolution: int) -> np.ndarray:
    """The uint8 images :func:`to_tensor` feeds a model at ``resolution``."""
    if resolution == x.shape[1]:
        return x
    t = to_tensor(x, resolution) * 255.0
    return t.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def batches(n: int, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i: i + batch_size] for i in range(0, n, batch_size)]


def shift_offset(rng: np.random.Generator, shift: int) -> tuple[int, int]:
    """A random translation ``(dy, dx)`` of up to ``shift`` pixels (no draw when ``shift <= 0``)."""
    if shift <= 0:
        return 0, 0
    dy, dx = (int(v) for v in rng.integers(-shift, shift + 1, 2))
    return dy, dx


def translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` moved by ``(dy, dx)`` pixels, zero fill (a new tensor unless both are 0)."""
    if not dy and not dx:
        return x
    x = torch.roll(x, (dy, dx), dims=(2, 3))
    if dy > 0:
        x[:, :, :dy] = 0
    elif dy < 0:
        x[:, :, dy:] = 0
    if dx > 0:
        x[:, :, :, :dx] = 0
    elif dx < 0:
        x[:, :, :, dx:] = 0
    return x


def augment(x: torch.Tensor, rng: np.random.Generator, shift: int) -> torch.Tensor:
    """Random translation by up to ``shift`` pixels (zero fill), one offset per batch."""
    return translate(x, *shift_offset(rng, shift))


# --- training ----------------------------------------------------------------------------
@dataclass
class TrainedSupernet:
    """A trained supernet with its data split (indices into the data it was trained on)."""

    net: Supernet
    config: SupernetConfig
    train: Dataset
    holdout: Dataset
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    data: dict = field(default_factory=dict)  # how to rebuild the split: source, holdout, seed, digest
    micro_batches: int = 1  # per training step (the weights depend on it and the seed only)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Weights, config, history and the data split's recipe, written atomically (torch.save format)."""
        buf = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "state": self.net.state_dict(),
                    "history": self.history, "seconds": self.seconds, "data": self.data,
                    "micro_batches": self.micro_batches}, buf)
        write_bytes(path, buf.getvalue())


def data_digest(data: Dataset) -> str:
    """SHA-256 (16 hex digits) of images and labels: a checkpoint knows the data it was trained on."""
    h = hashlib.sha256(data.x.tobytes())
    h.update(data.y.tobytes())
    return h.hexdigest()[:16]


def load_supernet(path: str | os.PathLike[str], data: Dataset | None = None) -> TrainedSupernet:
    """Read a checkpoint written by :meth:`TrainedSupernet.save` with its data split: rebuilt from
    ``data`` (default: the source recorded in the checkpoint) with the recorded held-out fraction
    and seed; ModelLoadError when those images are not the ones it was trained on."""
    try:
        ck = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"supernet checkpoint not found: {path}") from None
    except Exception as exc:  # torch raises many kinds on a corrupted file
        raise ModelLoadError(f"{path}: not a readable supernet checkpoint ({type(exc).__name__})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise ModelLoadError(f"{path}: not a tinypatch supernet checkpoint")
    config = SupernetConfig.from_dict(ck["config"])
    net = Supernet(config)
    net.load_state_dict(ck["state"])
    meta = ck.get("data", {})
    if data is None:
        data = load_data(meta.get("source", ""), meta.get("resolution"))
    if meta.get("digest") not in (None, data_digest(data)):
        raise ModelLoadError(f"{path} was trained on other data than {meta.get('source', 'the data given')} "
                             f"(digest {meta.get('digest')} != {data_digest(data)})")
    train, holdout = split(data, meta.get("holdout", 0.2), meta.get("seed", 0))
    return TrainedSupernet(net, config, train, holdout, ck.get("history", []), ck.get("seconds", 0.0), meta,
                          ck.get("micro_batches", 1))


def check_data(config: SupernetConfig, data: Dataset) -> None:
    if data.channels != config.in_channels or len(data.classes) > config.num_classes:
        raise UsageError(f"the data has {data.channels} channels and {len(data.classes)} classes; the supernet "
                         f"expects {config.in_channels} and at most {config.num_classes}")


class Mapper(Protocol):
    """Where a step's micro-batches run: ``map(fn, items)`` with results in the order of ``items``
    (:class:`tinypatch.nas.executors.RayExecutor`; in process: the builtin ``map``)."""

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], /) -> Iterable[Any]: ...


@dataclass(frozen=True)
class MicroBatch:
    """One of a training step's micro-batches: all a worker needs besides the weights."""

    x: np.ndarray  # uint8 NHWC images
    y: np.ndarray  # labels
    offset: tuple[int, int]  # the step's translation (dy, dx)
    specs: tuple[NetSpec, ...]  # the step's subnets, the largest (hard labels) first
    weight: float  # its share of the step's images, n_k / n
    distill: bool


@dataclass
class MicroGrads:
    """What a micro-batch gives back: gradients (``net.parameters()`` order), BatchNorm running
    statistics after its forward passes, the largest subnet's cross-entropy summed over its images."""

    grads: list[torch.Tensor | None]
    stats: list[torch.Tensor]
    loss: float


@contextmanager
def deterministic() -> Iterator[None]:
    """One torch thread and deterministic algorithms (restored after): the same arithmetic, so the
    same bits, in every process on the same torch build and CPU kind."""
    threads = torch.get_num_threads()
    det, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn)


def split_step(x: np.ndarray, y: np.ndarray, idx: np.ndarray, parts: int, offset: tuple[int, int],
               specs: Sequence[NetSpec], distill: bool) -> list[MicroBatch]:
    """The step on images ``idx`` as ``parts`` micro-batches: ``np.array_split`` of ``idx`` (sizes
    differ by at most one; empty ones dropped), each weighted by its share of the images."""
    return [MicroBatch(x[p], y[p], offset, tuple(specs), len(p) / len(idx), distill)
            for p in np.array_split(idx, parts) if len(p)]


def _at(x: torch.Tensor, spec: NetSpec) -> torch.Tensor:
    r = spec.resolution
    return x if r == x.shape[-1] else F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False)


def _stats(net: Supernet) -> list[torch.Tensor]:
    return [t for m in net.bns() for t in (m.bn.running_mean, m.bn.running_var)]


_REPLICA: dict[SupernetConfig, Supernet] = {}  # this process's replica (one config at a time)


def micro_grads(config: SupernetConfig, state: dict[str, torch.Tensor], micro: MicroBatch) -> MicroGrads:
    """One micro-batch's gradient with the sandwich rule (the largest subnet on hard labels, the
    others on its soft labels when ``distill``), every loss weighted by the micro-batch's share of
    the step, computed on this process's replica of the supernet loaded with ``state`` under
    :func:`deterministic`: the same bits wherever it runs."""
    net = _REPLICA.get(config)
    if net is None:
        _REPLICA.clear()
        with torch.random.fork_rng(devices=[]):  # its initial weights are overwritten: leave the seed alone
            net = _REPLICA[config] = Supernet(config)
    net.load_state_dict(state)
    net.train()
    with deterministic():
        x, y = translate(to_tensor(micro.x), *micro.offset), torch.from_numpy(micro.y)
        big, *rest = micro.specs
        logits = net(_at(x, big), big)
        loss = F.cross_entropy(logits, y)
        (loss * micro.weight).backward()
        soft = F.softmax(logits.detach(), dim=1)
        for spec in rest:
            out = net(_at(x, spec), spec)
            sub = F.kl_div(F.log_softmax(out, 1), soft, reduction="batchmean") if micro.distill \
                else F.cross_entropy(out, y)
            (sub * micro.weight).backward()
    grads = []
    for p in net.parameters():
        grads.append(p.grad)
        p.grad = None
    return MicroGrads(grads, [t.clone() for t in _stats(net)], float(loss.detach()) * len(y))


def apply_grads(net: Supernet, results: Sequence[MicroGrads]) -> float:
    """Set ``net``'s gradients to the micro-batches' sum and its BatchNorm running statistics to
    their mean, both summed in the micro-batches' order; returns their summed loss."""
    for i, p in enumerate(net.parameters()):
        g = None
        for r in results:
            if r.grads[i] is not None:
                g = r.grads[i] if g is None else g + r.grads[i]
        p.grad = g
    with torch.no_grad():
        for i, t in enumerate(_stats(net)):
            acc = results[0].stats[i]
            for r in results[1:]:
                acc = acc + r.stats[i]
            t.copy_(acc / len(results))
    return sum(r.loss for r in results)


def train_supernet(train: Dataset, holdout: Dataset, config: SupernetConfig | None = None, *, epochs: int = 10,
                   batch_size: int = 64, lr: float = 3e-3, random_subnets: int = 2, distill: bool = True,
                   shift: int = 2, seed: int = 0, micro_batches: int = 1, executor: Mapper | None = None,
                   progress: Progress | None = None) -> TrainedSupernet:
    """Train a supernet on ``train`` with the sandwich rule: each step the largest subnet (hard
    labels), the smallest and ``random_subnets`` random ones (soft labels of the largest when
    ``distill``), gradients summed; AdamW with a cosine schedule, random shifts by ``shift`` px.

    A step is ``micro_batches`` micro-batches (:func:`split_step`, fixed split and order), each
    with its own BatchNorm batch statistics; their gradients (:func:`micro_grads`) are summed in
    order and their running statistics averaged (:func:`apply_grads`). They run on ``executor``
    (e.g. a :class:`~tinypatch.nas.executors.RayExecutor`) or in process; subnets and shifts are
    drawn here from the seeded RNG, so the weights depend on the seed and ``micro_batches`` only,
    bit for bit. ``progress`` receives one line per epoch (loss, largest / smallest held-out accuracy)."""
    if config is None:
        config = SupernetConfig(resolutions=(train.resolution,), in_channels=train.channels,
                                num_classes=len(train.classes))
    check_data(config, train)
    if epochs < 1 or batch_size < 1 or random_subnets < 0 or micro_batches < 1:
        raise UsageError("epochs, batch size and micro-batches must be positive, random subnets not negative")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = Supernet(config)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(train.y) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15)
    big, small = config.max_spec(), config.min_spec()
    result = TrainedSupernet(net, config, train, holdout, micro_batches=micro_batches)
    run = executor.map if executor is not None else map
    t0 = time.perf_counter()
    with deterministic():
        for epoch in range(epochs):
            net.train()
            total, count = 0.0, 0
            for idx in batches(len(train.y), batch_size, rng):
                offset = shift_offset(rng, shift)
                specs = [big, small] + [config.sample(rng) for _ in range(random_subnets)]
                micro = split_step(train.x, train.y, idx, micro_batches, offset, specs, distill)
                opt.zero_grad()
                total += apply_grads(net, list(run(partial(micro_grads, config, net.state_dict()), micro)))
                opt.step()
                sched.step()
                count += len(idx)
            acc = SupernetAccuracy(result, calib_batches=4)
            row = {"epoch": epoch + 1, "loss": total / count, "largest": acc(big), "smallest": acc(small),
                   "seconds": time.perf_counter() - t0}
            result.history.append(row)
            if progress is not None:
                progress(f"epoch {epoch + 1}/{epochs}: loss {row['loss']:.3f}, held-out accuracy largest "
                         f"{row['largest']:.1%}, smallest {row['smallest']:.1%} ({row['seconds']:.0f} s)")
    result.seconds = time.perf_counter() - t0
    return result


# --- the search objective ----------------------------------------------------------------
def recalibrate(net: Supernet, spec: NetSpec, x: torch.Tensor, batch_size: int, n_batches: int,
                seed: int = 0) -> None:
    """Reset BatchNorm statistics and re-estimate them for ``spec`` on ``n_batches`` batches of
    ``x`` (seeded draw), as MCUNetV2 does before measuring a subnet."""
    stages = net.layout(spec)
    rng = np.random.default_rng(seed)
    bns = net.bns()
    for bn in bns:
        bn.reset()
        bn.calibrating = True
    was = net.training
    net.train()
    try:
        with torch.no_grad():
            for idx in batches(len(x), batch_size, rng)[:n_batches]:
                net(x[idx], spec, stages)
    finally:
        for bn in bns:
            bn.calibrating = False
        net.train(was)


def accuracy(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
             batch_size: int = 256) -> float:
    with torch.no_grad():
        preds = torch.cat([model(x[i: i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    return float((preds == y).float().mean())


class SupernetAccuracy:
    """The search objective: ``objective(spec)`` is ``spec``'s held-out top-1 accuracy with the
    supernet's weights after BatchNorm re-calibration on ``calib_batches`` training batches of
    ``batch_size`` (MCUNetV2: 20 x 64). The input is resized to ``spec.resolution``. Results are
    cached by the spec's fingerprint. Computed under :func:`deterministic` (one torch thread), so
    a search scores a subnet the same in process and on any Ray worker."""

    def __init__(self, trained: TrainedSupernet, calib_batches: int = 20, batch_size: int = 64, seed: int = 0) -> None:
        self.trained = trained
        self.calib_batches, self.batch_size, self.seed = calib_batches, batch_size, seed
        self.cache: dict[str, float] = {}
        self._inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        digest = trained.data.get("digest", "")
        self.__name__ = f"held-out accuracy (supernet on {digest or 'its data'}, {calib_batches}x{batch_size} BN batches)"

    def _data(self, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
        if resolution not in self._inputs:
            self._inputs[resolution] = (to_tensor(self.trained.train.x, resolution),
                                        to_tensor(self.trained.holdout.x, resolution))
        return self._inputs[resolution]

    def __call__(self, spec: NetSpec) -> float:
        key = spec.fingerprint()
        if key not in self.cache:
            net = self.trained.net
            train_x, held_x = self._data(spec.resolution)
            with deterministic():  # the same figure in process and on any Ray worker
                recalibrate(net, spec, train_x, self.batch_size, self.calib_batches, self.seed)
                stages = net.layout(spec)
                net.eval()
                self.cache[key] = accuracy(lambda t: net(t, spec, stages), held_x,
                                           torch.from_numpy(self.trained.holdout.y))
        return self.cache[key]
