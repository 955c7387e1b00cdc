"""MCUNet / ProxylessNAS JSON architecture configs -> int8 graphs with synthetic weights.

The format (``ProxylessNASNets`` in MCUNet's model zoo): ``first_conv`` (ConvLayer),
``blocks`` (MobileInvertedResidualBlock holding an MBInvertedConvLayer or a ZeroLayer, and an
IdentityLayer ``shortcut`` or null), ``feature_mix_layer`` (1x1 ConvLayer or null),
``classifier`` (LinearLayer) and an optional ``resolution``. Configs carry no weights, so
weights come from :class:`~tinypatch.frontends.synth.Builder` (batch norm folded).

Every architecture (JSON or built-in) becomes a :class:`~tinypatch.frontends.spec.NetSpec` first, and
:func:`build_net` turns any spec into the same op sequence:

- ``stem``: CONV_2D (role ``stem``);
- ``blocks.{i}`` (i = index in the config's ``blocks`` list): 1x1 CONV_2D ``expand`` (absent
  when expand_ratio is 1), DEPTHWISE_CONV_2D ``dw`` (absent when the spec says ``depthwise=False``),
  optional SE ops (role ``se``), 1x1
  CONV_2D ``project`` (no activation), ADD ``add`` when the block has a shortcut. A ZeroLayer
  block is the identity (as in ProxylessNAS) and adds no op and no ``meta["blocks"]`` entry;
- ``head``: optional 1x1 CONV_2D ``head.conv`` (the feature mix layer), MEAN over H and W
  ``head.pool``, FULLY_CONNECTED ``head.fc`` (the graph output), all role ``head``.

Padding is TFLite SAME by default; ``explicit_pad=True`` reproduces PyTorch's symmetric
``kernel // 2`` padding (a PAD op, role ``pad``, where SAME would place the window differently).
"""

from __future__ import annotations

import json
import os
from typing import Any

from tinypatch.errors import ModelLoadError
from tinypatch.frontends.spec import BlockSpec, NetSpec
from tinypatch.frontends.synth import Builder, make_divisible
from tinypatch.ir import Graph

_ACTS = {"relu6": "RELU6", "relu": "RELU", None: "NONE"}


def build_net(spec: NetSpec, *, resolution: int | None = None, num_classes: int | None = None, seed: int = 0,
              explicit_pad: bool = False) -> Graph:
    """Build ``spec`` (optionally at another resolution / class count) as an int8 graph."""
    r = spec.resolution if resolution is None else resolution
    classes = spec.num_classes if num_classes is None else num_classes
    if r < 1 or classes < 1:
        raise ModelLoadError(f"{spec.name}: resolution and num_classes must be positive (got {r}, {classes})")

    def pad(k: int) -> int | str:
        return k // 2 if explicit_pad else "SAME"

    b = Builder(spec.name, seed)
    x = b.input((1, r, r, spec.in_channels))
    with b.block("stem"):
        x = b.conv(x, spec.stem_channels, spec.stem_kernel, spec.stem_stride, padding=pad(spec.stem_kernel),
                   act=spec.act, name="stem", role="stem")
    for i, blk in enumerate(spec.blocks):
        if blk is None:
            continue
        n, cin = f"blocks.{i}", b.shape(x)[3]
        mid = blk.mid_channels or round(cin * blk.expand_ratio)
        with b.block(n):
            h = x
            if blk.expand_ratio != 1:
                h = b.conv(h, mid, 1, act=blk.act, name=f"{n}.expand", role="expand")
            if blk.depthwise:
                h = b.depthwise(h, blk.kernel, blk.stride, padding=pad(blk.kernel), act=blk.act, name=f"{n}.dw")
            if blk.use_se:
                h = b.squeeze_excite(h, make_divisible(b.shape(h)[3] // 4, 8), name=f"{n}.se")
            h = b.conv(h, blk.out_channels, 1, act="NONE", name=f"{n}.project", role="project")
            x = b.add(h, x, name=f"{n}.add") if blk.shortcut else h
    with b.block("head"):
        if spec.feature_mix:
            x = b.conv(x, spec.feature_mix, 1, act=spec.act, name="head.conv", role="head")
        x = b.mean(x, name="head.pool", role="head")
        x = b.fully_connected(x, classes, name="head.fc", role="head")
    g = b.finish([x])
    g.meta["resolution"] = r
    return g


def load_config(path_or_dict: str | os.PathLike[str] | dict[str, Any], resolution: int | None = None, *,
                num_classes: int | None = None, seed: int = 0, explicit_pad: bool = False) -> Graph:
    """Read an MCUNet/ProxylessNAS JSON config (file or parsed dict) into a graph.

    ``resolution`` overrides (or supplies) the config's input resolution. Raises
    :class:`ModelLoadError` for unreadable, malformed or unsupported configs.
    """
    if isinstance(path_or_dict, dict):
        cfg, name = path_or_dict, "mcunet-config"
    else:
        path = os.fspath(path_or_dict)
        cfg, name = read_json(path), os.path.splitext(os.path.basename(path))[0]
    spec = parse_config(cfg, name=name, resolution=resolution)
    return build_net(spec, num_classes=num_classes, seed=seed, explicit_pad=explicit_pad)


def read_json(path: str) -> Any:
    """Parse a JSON file, turning every failure into :class:`ModelLoadError`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ModelLoadError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not a readable JSON file ({exc})") from None
    except RecursionError:
        raise ModelLoadError(f"{path} is nested too deeply to be a model config") from None


def parse_config(cfg: Any, name: str = "mcunet-config", resolution: int | None = None) -> NetSpec:
    """Validate a parsed ProxylessNASNets config and turn it into a :class:`NetSpec`."""
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{name}: a config must be a JSON object, got {type(cfg).__name__}")
    if "blocks" not in cfg and "models" in cfg:
        raise ModelLoadError(f"{name} is an msf-CNN chains file, not an MCUNet config: load it with "
                             f"msfcnn.load_msfcnn_chains or name one chain as FILE.json#CHAIN")
    first = _field(cfg, "first_conv", dict, name)
    _check_conv_layer(first, f"{name}: first_conv")
    stem_act = _act(first.get("act_func"), f"{name}: first_conv")
    stem = channels = _field(first, "out_channels", int, f"{name}: first_conv")
    blocks: list[BlockSpec | None] = []
    for i, blk in enumerate(_field(cfg, "blocks", list, name)):
        spec = _parse_block(blk, channels, f"{name}: blocks[{i}]")
        blocks.append(spec)
        channels = spec.out_channels if spec else channels
    mix = cfg.get("feature_mix_layer")
    if mix is not None:
        where = f"{name}: feature_mix_layer"
        _check_conv_layer(mix, where)
        if _field(mix, "kernel_size", int, where) != 1 or mix.get("stride", 1) != 1:
            raise ModelLoadError(f"{where}: only a 1x1 stride-1 feature mix layer is supported")
        if _act(mix.get("act_func"), where) != stem_act:
            raise ModelLoadError(f"{where}: its activation must match first_conv's")
        _expect_in(mix, "in_channels", channels, where)
        channels = _field(mix, "out_channels", int, where)
    cls = _field(cfg, "classifier", dict, name)
    if cls.get("name") != "LinearLayer":
        raise ModelLoadError(f"{name}: classifier must be a LinearLayer, got {cls.get('name')!r}")
    _expect_in(cls, "in_features", channels, f"{name}: classifier")
    res = resolution if resolution is not None else cfg.get("resolution")
    if not isinstance(res, int) or isinstance(res, bool) or res < 1:
        raise ModelLoadError(f"{name}: no valid input resolution in the config ({res!r}); pass resolution=")
    return NetSpec(
        name=name, resolution=res, stem_channels=stem,
        blocks=tuple(blocks), feature_mix=None if mix is None else channels,
        num_classes=_field(cls, "out_features", int, f"{name}: classifier"),
        in_channels=_field(first, "in_channels", int, f"{name}: first_conv"),
        stem_kernel=_field(first, "kernel_size", int, f"{name}: first_conv"),
        stem_stride=_field(first, "stride", int, f"{name}: first_conv"), act=stem_act)


def _parse_block(blk: Any, cin: int, where: str) -> BlockSpec | None:
    if not isinstance(blk, dict) or blk.get("name") != "MobileInvertedResidualBlock":
        raise ModelLoadError(f"{where}: expected a MobileInvertedResidualBlock")
    conv = _field(blk, "mobile_inverted_conv", dict, where)
    shortcut = blk.get("shortcut")
    if shortcut is not None and (not isinstance(shortcut, dict) or shortcut.get("name") != "IdentityLayer"):
        raise ModelLoadError(f"{where}: only an IdentityLayer shortcut (or null) is supported")
    where = f"{where}.mobile_inverted_conv"
    if conv.get("name") == "ZeroLayer":
        if conv.get("stride", 1) != 1:
            raise ModelLoadError(f"{where}: a ZeroLayer block must have stride 1")
        return None
    if conv.get("name") != "MBInvertedConvLayer":
        raise ModelLoadError(f"{where}: unsupported layer {conv.get('name')!r}")
    _expect_in(conv, "in_channels", cin, where)
    out = _field(conv, "out_channels", int, where)
    kernel, stride = _field(conv, "kernel_size", int, where), _field(conv, "stride", int, where)
    expand = _field(conv, "expand_ratio", (int, float), where)
    mid = conv.get("mid_channels")
    if mid is not None and (not isinstance(mid, int) or mid < 1):
        raise ModelLoadError(f"{where}: mid_channels must be a positive integer or null")
    if kernel < 1 or kernel % 2 == 0 or stride < 1 or out < 1 or expand <= 0:
        raise ModelLoadError(f"{where}: bad kernel_size/stride/out_channels/expand_ratio "
                             f"({kernel}, {stride}, {out}, {expand})")
    if shortcut is not None and (stride != 1 or out != cin):
        raise ModelLoadError(f"{where}: an identity shortcut needs stride 1 and in == out channels")
    act = _act(conv.get("act_func", "relu6"), where)
    use_se = conv.get("use_se") or False
    return BlockSpec(out, kernel, stride, expand, shortcut is not None, mid, act, bool(use_se))


def _check_conv_layer(layer: Any, where: str) -> None:
    if not isinstance(layer, dict) or layer.get("name") != "ConvLayer":
        raise ModelLoadError(f"{where}: expected a ConvLayer")
    if layer.get("groups", 1) != 1 or layer.get("dilation", 1) != 1:
        raise ModelLoadError(f"{where}: grouped or dilated ConvLayer is not supported")


def _act(value: Any, where: str) -> str:
    if value not in _ACTS:
        raise ModelLoadError(f"{where}: unsupported act_func {value!r} (supported: relu6, relu, null)")
    return _ACTS[value]


def _field(d: dict[str, Any], key: str, types: type | tuple[type, ...], where: str) -> Any:
    value = d.get(key)
    if value is None or not isinstance(value, types) or isinstance(value, bool):
        want = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ModelLoadError(f"{where}: '{key}' must be {want}, got {value!r}")
    return value


def _expect_in(d: dict[str, Any], key: str, expected: int, where: str) -> None:
    value = d.get(key)
    if isinstance(value, list) and len(value) == 1:  # older configs wrap channel counts in a list
        value = value[0]
    if value != expected:
        raise ModelLoadError(f"{where}: {key} is {value!r} but the previous layer gives {expected}")
