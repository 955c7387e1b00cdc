"""Built-in model zoo: int8 CNNs with deterministic synthetic weights, built by name.

Families (``build(name, **overrides)``):

- ``mbv2-w{W}-r{R}``: torchvision's MobileNetV2 at width W and resolution R (channels
  ``make_divisible(c * W, 8)``, last conv ``make_divisible(1280 * max(1, W), 8)``).
- ``mbv1-w{W}-r{R}``: MobileNetV1 (TF-slim widths ``max(int(c * W), 8)``) with an
  AVERAGE_POOL_2D / RESHAPE / FULLY_CONNECTED / SOFTMAX head, like the TFLM / MLPerf VWW models.
- ``mcunet-in0`` .. ``mcunet-in4``, ``proxyless-w0.3``, ``proxyless-w0.25``, ``mbv2-w0.35``,
  ``mbv2-w0.3``: MCUNet's model-zoo architectures (ProxylessNASNets configs). The two MobileNetV2
  configs follow the MobileNetV2 rule except that their last conv is scaled *down* with the
  width (``make_divisible(1280 * W, 8)``, MCUNet's choice), unlike ``mbv2-w{W}-r{R}``.
- ``mnasnet-a1``, ``fbnet-a``, ``mbv2-rd``: MnasNet-A1, FBNet-A and MCUNetV2's MbV2-RD from
  their papers' tables (:mod:`tinypatch.frontends.archs`). ``spec_of(name)`` gives the
  :class:`~tinypatch.frontends.spec.NetSpec` of every model above.
- ``msf-mbv2-w0.35-r144``, ``msf-mcunet-vww5-r80``, ``msf-mcunet-320kb-r176``: msf-CNN's plain
  chains (no residuals, no head; see :mod:`tinypatch.frontends.msfcnn`).
- ``mcunet-det`` (128x160, HxW) and ``mcunet-det-s`` (64x80, half width): MCUNet person-detector-like
  graphs with three outputs, two of them made in the middle of the graph
  (:mod:`tinypatch.frontends.detector`); overrides ``seed`` and ``resolution``.

Overrides: ``seed`` (weights), ``resolution`` (square input size), ``explicit_pad`` (PyTorch
padding with PAD ops instead of SAME) and, except for msf chains, ``num_classes``.

Graph metadata, read by the analyses: ``meta["blocks"]`` lists ``(block name, [op indices])``
in graph order (``stem``, ``blocks.{i}``, ``head``; ``blocks.{i}`` counts from the first
inverted-residual block, torchvision's ``features.{i+1}``); ``meta["roles"]`` maps each op
name to its role: ``stem``, ``expand``, ``dw``, ``se``, ``project``, ``add``, ``pad``,
``head`` (MobileNetV2 / MCUNet); ``stem``, ``dw``, ``pw``, ``head`` (MobileNetV1); ``stem``,
``expand``, ``dw``, ``project``, ``conv``, ``pad`` (msf chains). ``meta["zoo"]`` holds the name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tinypatch.errors import ModelLoadError
from tinypatch.frontends.archs import fbnet_a, mbv2_rd, mnasnet_a1
from tinypatch.frontends.detector import DETECTORS, build_detector
from tinypatch.frontends.mcunet_config import BlockSpec, NetSpec, build_net
from tinypatch.frontends.msfcnn import ChainSpec, build_chain, mbconv_layers
from tinypatch.frontends.synth import Builder, make_divisible
from tinypatch.ir import Graph

NET_OVERRIDES = ("seed", "resolution", "num_classes", "explicit_pad")
CHAIN_OVERRIDES = ("seed", "resolution", "explicit_pad")
DETECTOR_OVERRIDES = ("seed", "resolution")
_PATTERN = re.compile(r"^(mbv1|mbv2)-w(\d+(?:\.\d+)?)-r(\d+)$")

# MobileNetV2 inverted-residual settings: (expand t, channels c, repeats n, first stride s)
_MBV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# MobileNetV1 depthwise-separable layers: (pointwise channels, depthwise stride)
_MBV1 = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1))

# MCUNet model zoo architectures, from MCUNet's configs (mit-han-lab/tinyml, MIT licence):
# name -> (config file, resolution, stem channels, feature-mix channels or None,
#          blocks as (expand ratio, kernel, stride, out channels, identity shortcut) or None
#          for a ZeroLayer (identity) block). Every layer uses ReLU6; no SE; 1000 classes.
_MCUNET: dict[str, tuple[str, int, int, int | None, list[tuple[int, int, int, int, int] | None]]] = {
    "mcunet-in0": ("mcunet-10fps", 48, 24, None, [
        (1, 3, 1, 16, 0), (4, 5, 2, 16, 0), (3, 3, 1, 16, 1), (4, 3, 1, 16, 1), (5, 7, 2, 24, 0),
        (4, 5, 1, 24, 1), (5, 5, 1, 24, 1), (5, 7, 2, 48, 0), (4, 5, 1, 48, 1), (5, 3, 1, 56, 0),
        (4, 5, 1, 56, 1), (5, 3, 1, 56, 1), (6, 3, 2, 112, 0), (4, 5, 1, 112, 1), (6, 3, 1, 192, 0)]),
    "mcunet-in1": ("mcunet-5fps", 96, 16, None, [
        (1, 3, 1, 8, 0), (4, 3, 2, 16, 0), (3, 3, 1, 16, 1), (3, 7, 2, 24, 0), (5, 3, 1, 24, 1),
        (5, 3, 2, 40, 0), (4, 7, 1, 40, 1), (4, 5, 1, 48, 0), (3, 3, 1, 48, 1), (4, 3, 1, 48, 1),
        (5, 7, 2, 96, 0), (4, 5, 1, 96, 1), (4, 5, 1, 96, 1), (6, 3, 1, 160, 0)]),
    "mcunet-in2": ("mcunet-256kb-1mb", 160, 16, None, [
        (1, 3, 1, 8, 0), (3, 5, 2, 16, 0), (6, 7, 1, 16, 1), (5, 3, 1, 16, 1), (5, 5, 1, 16, 1),
        (5, 3, 2, 24, 0), (6, 7, 1, 24, 1), (6, 5, 1, 24, 1), (4, 7, 2, 40, 0), (5, 5, 1, 40, 1),
        (5, 3, 1, 48, 0), (5, 5, 1, 48, 1), (4, 3, 1, 48, 1), (6, 5, 2, 96, 0), (4, 5, 1, 96, 1),
        (3, 5, 1, 96, 1), (4, 3, 1, 96, 1), (5, 5, 1, 160, 0)]),
    "mcunet-in3": ("mcunet-320kb-1mb", 176, 16, None, [
        (1, 3, 1, 8, 0), (3, 7, 2, 16, 0), (5, 3, 1, 16, 1), (5, 7, 1, 16, 1), (4, 5, 1, 16, 1),
        (5, 5, 2, 24, 0), (5, 5, 1, 24, 1), (5, 5, 1, 24, 1), (5, 3, 2, 40, 0), (6, 7, 1, 40, 1),
        (4, 5, 1, 40, 1), (5, 5, 1, 48, 0), (5, 7, 1, 48, 1), (5, 3, 1, 48, 1), (6, 3, 2, 96, 0),
        (5, 7, 1, 96, 1), (4, 3, 1, 96, 1), (5, 7, 1, 160, 0)]),
    "mcunet-in4": ("mcunet-512kb-2mb", 160, 32, None, [
        (1, 3, 1, 16, 0), (3, 7, 2, 24, 0), (5, 3, 1, 24, 1), (4, 5, 1, 24, 1), (5, 7, 2, 40, 0),
        (4, 3, 1, 40, 1), (4, 7, 1, 40, 1), (3, 7, 2, 80, 0), (3, 3, 1, 80, 1), (3, 7, 1, 80, 1),
        (4, 3, 1, 96, 0), (3, 5, 1, 96, 1), (3, 5, 1, 96, 1), (4, 7, 2, 192, 0), (3, 7, 1, 192, 1),
        (3, 5, 1, 192, 1), (4, 5, 1, 320, 0)]),
    "proxyless-w0.3": ("proxyless-w0.3-r176", 176, 16, 384, [
        (1, 3, 1, 8, 0), (3, 5, 2, 16, 0), (3, 3, 1, 16, 1), None, None, (3, 7, 2, 16, 0), (3, 3, 1, 16, 1),
        (3, 5, 1, 16, 1), (3, 5, 1, 16, 1), (6, 7, 2, 24, 0), (3, 5, 1, 24, 1), (3, 5, 1, 24, 1),
        (3, 5, 1, 24, 1), (6, 5, 1, 32, 0), (3, 5, 1, 32, 1), (3, 5, 1, 32, 1), (3, 5, 1, 32, 1),
        (6, 7, 2, 64, 0), (6, 7, 1, 64, 1), (3, 7, 1, 64, 1), (3, 7, 1, 64, 1), (6, 7, 1, 96, 0)]),
    "proxyless-w0.25": ("proxyless-w0.25-r112", 112, 8, 320, [
        (1, 3, 1, 8, 0), (3, 5, 2, 8, 0), (3, 3, 1, 8, 1), None, None, (3, 7, 2, 16, 0), (3, 3, 1, 16, 1),
        (3, 5, 1, 16, 1), (3, 5, 1, 16, 1), (6, 7, 2, 24, 0), (3, 5, 1, 24, 1), (3, 5, 1, 24, 1),
        (3, 5, 1, 24, 1), (6, 5, 1, 24, 0), (3, 5, 1, 24, 1), (3, 5, 1, 24, 1), (3, 5, 1, 24, 1),
        (6, 7, 2, 48, 0), (6, 7, 1, 48, 1), (3, 7, 1, 48, 1), (3, 7, 1, 48, 1), (6, 7, 1, 80, 0)]),
}
# MCUNet's MobileNetV2 configs: name -> (config file, width, resolution)
_MCUNET_MBV2 = {"mbv2-w0.35": ("mbv2-w0.35-r144", 0.35, 144), "mbv2-w0.3": ("mbv2-w0.3-r80", 0.3, 80)}

# msf-CNN chains (msfcnn_chains.json): MBConv blocks (expand ratio, kernel, stride, out channels)
_MSF_VWW5 = ((1, 3, 1, 8), (6, 3, 2, 16), (3, 3, 1, 16), (3, 3, 1, 16), (3, 7, 2, 24), (6, 3, 1, 24),
             (5, 5, 1, 24), (6, 7, 2, 40), (6, 7, 1, 40), (6, 3, 1, 48), (4, 3, 1, 48), (5, 5, 2, 96),
             (5, 3, 1, 96), (4, 3, 1, 96), (3, 7, 1, 160))


def mobilenet_v2_spec(width: float, resolution: int, name: str, scale_last_down: bool = False) -> NetSpec:
    """MobileNetV2 as torchvision builds it (``scale_last_down``: MCUNet's last-conv width)."""
    stem = cin = make_divisible(32 * width, 8)
    blocks = []
    for t, c, n, s in _MBV2:
        out = make_divisible(c * width, 8)
        for i in range(n):
            stride = s if i == 0 else 1
            blocks.append(BlockSpec(out, 3, stride, t, shortcut=stride == 1 and cin == out))
            cin = out
    last = make_divisible(1280 * (width if scale_last_down else max(1.0, width)), 8)
    return NetSpec(name, resolution, stem, tuple(blocks), last)


def mobilenet_v1(width: float, resolution: int, name: str, *, num_classes: int = 1000, seed: int = 0,
                 explicit_pad: bool = False) -> Graph:
    """MobileNetV1: 3x3/2 stem, 13 depthwise-separable blocks, global average pool, FC, softmax."""
    def ch(c: int) -> int:
        return max(int(c * width), 8)

    def pad(k: int) -> int | str:
        return k // 2 if explicit_pad else "SAME"

    b = Builder(name, seed)
    x = b.input((1, resolution, resolution, 3))
    with b.block("stem"):
        x = b.conv(x, ch(32), 3, 2, padding=pad(3), name="stem", role="stem")
    for i, (c, s) in enumerate(_MBV1):
        with b.block(f"blocks.{i}"):
            x = b.depthwise(x, 3, s, padding=pad(3), name=f"blocks.{i}.dw")
            x = b.conv(x, ch(c), 1, name=f"blocks.{i}.pw", role="pw")
    with b.block("head"):
        x = b.global_pool(x, "avg", name="head.pool", role="head")
        x = b.reshape(x, (1, ch(1024)), name="head.reshape", role="head")
        x = b.fully_connected(x, num_classes, name="head.fc", role="head", out_std=4.0)
        x = b.softmax(x, name="head.softmax", role="head")
    g = b.finish([x])
    g.meta["resolution"] = resolution
    return g


def _mcunet_spec(name: str) -> NetSpec:
    _, res, stem, mix, rows = _MCUNET[name]
    blocks = tuple(None if r is None else BlockSpec(r[3], r[1], r[2], r[0], bool(r[4])) for r in rows)
    return NetSpec(name, res, stem, blocks, mix)


def _paper_specs() -> dict[str, Callable[[], NetSpec]]:
    return {"mnasnet-a1": mnasnet_a1, "fbnet-a": fbnet_a,
            "mbv2-rd": lambda: mbv2_rd(mobilenet_v2_spec(1.0, 224, "mbv2-w1.0-r224"))}


_PAPERS = _paper_specs()


def spec_of(name: str) -> NetSpec:
    """The architecture spec of zoo model ``name`` (ModelLoadError for msf chains and detectors)."""
    if name in _MCUNET:
        return _mcunet_spec(name)
    if name in _MCUNET_MBV2:
        _, w, res = _MCUNET_MBV2[name]
        return mobilenet_v2_spec(w, res, name, scale_last_down=True)
    if name in _PAPERS:
        return _PAPERS[name]()
    m = _PATTERN.match(name)
    if m is not None and m.group(1) == "mbv2" and float(m.group(2)) > 0 and int(m.group(3)) > 0:
        return mobilenet_v2_spec(float(m.group(2)), int(m.group(3)), name)
    raise ModelLoadError(f"{name!r} is not a zoo model built from an architecture spec (MobileNetV2, MCUNet, "
                         f"ProxylessNAS, MnasNet-A1, FBNet-A, MbV2-RD)")


def _msf_chains() -> dict[str, ChainSpec]:
    in3 = [r[:4] for r in _MCUNET["mcunet-in3"][4] if r is not None]
    w = 0.35
    mbv2 = [(t, 3, s if i == 0 else 1, int(c * w)) for t, c, n, s in _MBV2 for i in range(n)]
    return {
        "msf-mbv2-w0.35-r144": ChainSpec("msf-mbv2-w0.35-r144", (144, 144), 3, mbconv_layers(
            int(32 * w), mbv2, always_expand=True, tail=[int(1280 * w)])),
        "msf-mcunet-vww5-r80": ChainSpec("msf-mcunet-vww5-r80", (80, 80), 3, mbconv_layers(16, _MSF_VWW5)),
        "msf-mcunet-320kb-r176": ChainSpec("msf-mcunet-320kb-r176", (176, 176), 3, mbconv_layers(16, in3)),
    }


_MSF = _msf_chains()


def msf_chain_spec(name: str) -> ChainSpec:
    """The embedded msf-CNN chain ``name`` (for comparison with the JSON file)."""
    return _MSF[name]


def _describe() -> dict[str, str]:
    d = {
        "mbv2-w1.0-r224": "MobileNetV2 1.0, 224x224, torchvision layout (any mbv2-w{W}-r{R})",
        "mbv2-w0.35-r144": "MobileNetV2 0.35, 144x144, torchvision layout (last conv 1280)",
        "mbv1-w1.0-r224": "MobileNetV1 1.0, 224x224, softmax head (any mbv1-w{W}-r{R})",
        "mbv1-w0.25-r96": "MobileNetV1 0.25, 96x96, softmax head",
    }
    for name, (cfg, res, *_rest) in _MCUNET.items():
        d[name] = f"MCUNet zoo {cfg}, {res}x{res}"
    for name, make in _PAPERS.items():
        spec = make()
        d[name] = f"{spec.source}: {spec.resolution}x{spec.resolution}"
    for name, (cfg, w, res) in _MCUNET_MBV2.items():
        d[name] = f"MCUNet zoo {cfg}: MobileNetV2 {w}, last conv {make_divisible(1280 * w, 8)}, {res}x{res}"
    for name, spec in _MSF.items():
        h, w = spec.input_hw
        d[name] = f"msf-CNN plain chain, {len(spec.layers)} conv layers, no residuals or head, {h}x{w}"
    for name, det in DETECTORS.items():
        d[name] = (f"MCUNet-style person detector, {det.height}x{det.width} (HxW), width {det.channels}: FPN with "
                   f"nearest upsampling and a max-pool branch, 3 heads (2 outputs mid-graph)")
    return d


_DESCRIPTIONS = _describe()
ZOO_NAMES: tuple[str, ...] = tuple(_DESCRIPTIONS)
PATTERNS = ("mbv2-w{W}-r{R}", "mbv1-w{W}-r{R}")


def list_models() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every built-in model (the patterns take any W and R)."""
    return list(_DESCRIPTIONS.items())


def is_zoo_name(name: str) -> bool:
    return name in _DESCRIPTIONS or _PATTERN.match(name) is not None


def build(name: str, **overrides: Any) -> Graph:
    """Build zoo model ``name``; overrides: seed, resolution, num_classes, explicit_pad."""
    builder, allowed = _resolve(name)
    check_overrides(name, overrides, allowed)
    g = builder(**overrides)
    g.name = name
    g.meta["zoo"] = name
    return g


def check_overrides(what: str, overrides: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Raise ModelLoadError naming any override outside ``allowed``."""
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ModelLoadError(f"{what}: unknown override(s) {', '.join(unknown)}; accepted: {', '.join(allowed)}")


def _resolve(name: str) -> tuple[Callable[..., Graph], tuple[str, ...]]:
    if name in _MCUNET:
        return lambda **kw: build_net(_mcunet_spec(name), **kw), NET_OVERRIDES
    if name in _MCUNET_MBV2:
        _, w, res = _MCUNET_MBV2[name]
        return lambda **kw: build_net(mobilenet_v2_spec(w, res, name, scale_last_down=True), **kw), NET_OVERRIDES
    if name in _PAPERS:
        return lambda **kw: build_net(_PAPERS[name](), **kw), NET_OVERRIDES
    if name in _MSF:
        return lambda **kw: build_chain(_MSF[name], **kw), CHAIN_OVERRIDES
    if name in DETECTORS:
        return lambda **kw: build_detector(DETECTORS[name], **kw), DETECTOR_OVERRIDES
    m = _PATTERN.match(name)
    if m is None:
        raise ModelLoadError(f"unknown zoo model {name!r}")
    family, width, res = m.group(1), float(m.group(2)), int(m.group(3))
    if width <= 0 or res < 1:
        raise ModelLoadError(f"{name}: width and resolution must be positive")
    if family == "mbv2":
        return lambda **kw: build_net(mobilenet_v2_spec(width, res, name), **kw), NET_OVERRIDES

    def mbv1(resolution: int = res, **kw: Any) -> Graph:
        return mobilenet_v1(width, resolution, name, **kw)
    return mbv1, NET_OVERRIDES
