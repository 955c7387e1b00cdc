"""Architecture specs: MobileNetV2-like networks as editable, hashable, printable, JSON-saveable data.

A :class:`NetSpec` (stem, blocks, feature mix, resolution) says everything
:func:`tinypatch.frontends.mcunet_config.build_net` needs to build the int8 graph; every
built-in MobileNetV2 / MCUNet / ProxylessNAS / MnasNet / FBNet model is a spec first. Specs are
frozen dataclasses: edit with :meth:`NetSpec.with_block` or :func:`dataclasses.replace`.
``fingerprint()`` hashes the architecture (not the name); ``to_dict()`` / :func:`spec_from_dict`
and :func:`save_spec` / :func:`load_spec` round-trip it through JSON (``"format": "tinypatch-netspec"``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from tinypatch.errors import ModelLoadError
from tinypatch.safeio import write_text

FORMAT = "tinypatch-netspec"
RELU6 = "RELU6"  # a block's activation (the default), fused into its convolutions
ACTS = (RELU6, "RELU", "NONE")


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block; ``mid_channels`` None means ``round(in * expand_ratio)``.

    ``depthwise=False``: no depthwise conv (MCUNetV2's MbV2-RD first block: 1x1 convs only;
    ``kernel`` is then ignored and ``stride`` must be 1).
    """

    out_channels: int
    kernel: int
    stride: int
    expand_ratio: float
    shortcut: bool
    mid_channels: int | None = None
    act: str = "RELU6"
    use_se: bool = False
    depthwise: bool = True

    def label(self) -> str:
        """Short text like ``MB6 k5 s2 40 SE`` (``MB1 no-dw 16`` without a depthwise conv)."""
        e = f"{self.expand_ratio:g}"
        k = f"k{self.kernel}" if self.depthwise else "no-dw"
        return f"MB{e} {k} s{self.stride} {self.out_channels}" + (" SE" if self.use_se else "") + (
            " +skip" if self.shortcut else "")


@dataclass(frozen=True)
class NetSpec:
    """A MobileNetV2-like network; a ``None`` block is an identity (ZeroLayer / skip) block."""

    name: str
    resolution: int
    stem_channels: int
    blocks: tuple[BlockSpec | None, ...]
    feature_mix: int | None
    num_classes: int = 1000
    in_channels: int = 3
    stem_kernel: int = 3
    stem_stride: int = 2
    act: str = "RELU6"  # stem and feature mix activation
    source: str = ""  # where the architecture comes from (paper table, config file)

    def __post_init__(self) -> None:
        validate(self)

    def with_block(self, index: int, block: BlockSpec | None = None, **changes: Any) -> NetSpec:
        """A copy with block ``index`` replaced by ``block`` or edited with ``changes``."""
        old = self.blocks[index]
        if block is None:
            if old is None:
                raise ModelLoadError(f"{self.name}: block {index} is an identity block; pass a BlockSpec")
            block = replace(old, **changes)
        return replace(self, blocks=(*self.blocks[:index], block, *self.blocks[index + 1:]))

    def stage_depths(self) -> list[int]:
        """Blocks per stage, a stage being a run of blocks with the same output channels that
        only its first block may stride (identity blocks count in the stage they sit in)."""
        depths: list[int] = []
        last: BlockSpec | None = None
        for b in self.blocks:
            if not depths or b is not None and (last is None or b.stride > 1 or b.out_channels != last.out_channels):
                depths.append(0)
                last = b if b is not None else last
            if depths:
                depths[-1] += 1
        return depths

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blocks"] = [None if b is None else asdict(b) for b in self.blocks]
        return {"format": FORMAT, **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the architecture: everything but ``name`` and ``source``."""
        d = self.to_dict()
        for k in ("name", "source"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def describe(self) -> str:
        """One line per block, with the feature-map side each block produces."""
        side = -(-self.resolution // self.stem_stride)
        depths = ",".join(map(str, self.stage_depths()))
        source = f"  [{self.source}]" if self.source else ""
        lines = [(f"{self.name} ({self.fingerprint()}): {self.resolution}x{self.resolution}x{self.in_channels}, "
                  f"stage depths {depths}{source}"),
                 (f"  stem      conv {self.stem_kernel}x{self.stem_kernel} s{self.stem_stride} {self.stem_channels}"
                  f"  -> {side}x{side}")]
        for i, b in enumerate(self.blocks):
            if b is not None:
                side = -(-side // b.stride)
            lines.append(f"  blocks.{i:<2} {'skip' if b is None else b.label()}  -> {side}x{side}")
        if self.feature_mix:
            lines.append(f"  head      conv 1x1 {self.feature_mix}")
        lines.append(f"  head      pool, fc {self.num_classes}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def validate(spec: NetSpec) -> None:
    """Raise ModelLoadError on a spec that cannot be built (bad sizes, shortcut shapes)."""
    where = spec.name
    _types(spec, where, {"resolution": int, "stem_channels": int, "num_classes": int, "in_channels": int,
                         "stem_kernel": int, "stem_stride": int, "feature_mix": (int, type(None)), "name": str,
                         "source": str, "act": str})
    if min(spec.resolution, spec.stem_channels, spec.num_classes, spec.in_channels, spec.stem_kernel,
           spec.stem_stride) < 1 or (spec.feature_mix is not None and spec.feature_mix < 1):
        raise ModelLoadError(f"{where}: resolution, channels, classes, stem kernel and stride must be positive")
    if spec.act not in ACTS:
        raise ModelLoadError(f"{where}: unsupported activation {spec.act!r} (supported: {', '.join(ACTS)})")
    cin = spec.stem_channels
    for i, b in enumerate(spec.blocks):
        if b is None:
            continue
        w = f"{where}: blocks.{i}"
        if not isinstance(b, BlockSpec):
            raise ModelLoadError(f"{w}: not a BlockSpec")
        _types(b, w, {"out_channels": int, "kernel": int, "stride": int, "expand_ratio": (int, float),
                      "shortcut": bool, "mid_channels": (int, type(None)), "act": str, "use_se": bool,
                      "depthwise": bool})
        if b.mid_channels is not None and b.mid_channels < 1:
            raise ModelLoadError(f"{w}: mid_channels must be positive")
        if b.out_channels < 1 or b.stride < 1 or b.expand_ratio <= 0 or b.kernel < 1 or b.kernel % 2 == 0:
            raise ModelLoadError(f"{w}: bad kernel/stride/out_channels/expand_ratio ({b.kernel}, {b.stride}, "
                                 f"{b.out_channels}, {b.expand_ratio})")
        if b.act not in ACTS:
            raise ModelLoadError(f"{w}: unsupported activation {b.act!r}")
        if not b.depthwise and (b.stride != 1 or b.use_se):
            raise ModelLoadError(f"{w}: a block without a depthwise conv must have stride 1 and no SE")
        if b.shortcut and (b.stride != 1 or b.out_channels != cin):
            raise ModelLoadError(f"{w}: an identity shortcut needs stride 1 and in == out channels ({cin} -> "
                                 f"{b.out_channels})")
        cin = b.out_channels


def _types(obj: object, where: str, want: dict[str, type | tuple[type, ...]]) -> None:
    for name, types in want.items():
        v = getattr(obj, name)
        ok = isinstance(v, types) and (bool in (types if isinstance(types, tuple) else (types,))
                                       or not isinstance(v, bool))
        if not ok:
            kind = "a boolean" if types is bool else "a string" if types is str else "an integer" if types is int \
                else "a number or null" if types == (int, type(None)) else "a number"
            raise ModelLoadError(f"{where}: {name} must be {kind}, got {v!r}")


def spec_from_dict(d: Any, where: str = "spec") -> NetSpec:
    """The inverse of :meth:`NetSpec.to_dict`; ModelLoadError names what is wrong."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ModelLoadError(f"{where}: not a tinypatch architecture spec (\"format\": \"{FORMAT}\" missing)")
    known = {f.name for f in fields(NetSpec)}
    extra = sorted(set(d) - known - {"format"})
    if extra:
        raise ModelLoadError(f"{where}: unknown field(s) {', '.join(extra)}")
    if not isinstance(d.get("blocks"), list):
        raise ModelLoadError(f"{where}: 'blocks' must be a list")
    block_fields = {f.name for f in fields(BlockSpec)}
    blocks = []
    for i, b in enumerate(d["blocks"]):
        if b is None:
            blocks.append(None)
            continue
        if not isinstance(b, dict) or set(b) - block_fields:
            raise ModelLoadError(f"{where}: blocks[{i}] must be null or an object with fields "
                                 f"{', '.join(sorted(block_fields))}")
        try:
            blocks.append(BlockSpec(**b))
        except TypeError as exc:
            raise ModelLoadError(f"{where}: blocks[{i}]: {exc}") from None
    args = {k: v for k, v in d.items() if k in known}
    args["blocks"] = tuple(blocks)
    try:
        return NetSpec(**args)
    except TypeError as exc:
        raise ModelLoadError(f"{where}: {exc}") from None


def save_spec(spec: NetSpec, path: str | os.PathLike[str]) -> None:
    """Write ``spec`` as JSON, atomically (:func:`tinypatch.safeio.write_text`)."""
    write_text(path, spec.to_json() + "\n")


def load_spec(path: str | os.PathLike[str]) -> NetSpec:
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ModelLoadError(f"spec file not found: {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{p} is not a readable JSON file ({exc})") from None
    return spec_from_dict(data, p)


def is_spec_dict(d: Any) -> bool:
    return isinstance(d, dict) and d.get("format") == FORMAT
