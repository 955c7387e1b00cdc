"""msf-CNN's plain layer chains (``msfcnn_chains.json``) -> int8 graphs with synthetic weights.

The file holds ``models``: ``{name: {input_hw, input_channels, layers}}`` where each layer is
``[type, out_channels, kernel, stride, padding]``, type ``conv`` (dense) or ``dw`` (depthwise),
with an explicit symmetric ``padding``. By default a layer padded by ``kernel // 2`` uses
TFLite SAME padding: same output size, MACs and memory, but for stride 2 on an even size the
window starts one pixel later (SAME pads 0 before, 1 after). With ``explicit_pad=True`` such
layers get PyTorch's geometry instead: a PAD op (role ``pad``) then a VALID conv, and SAME only
where it places the window identically. Other paddings always take the exact route.

Ops are named ``layers.{i}`` after the layer's index in the file. Chains carry no activation
information, so the MBConv pattern is read off the sequence: a 1x1 conv right before a ``dw``
is an ``expand``, one right after a ``dw`` a ``project`` (no activation), the first layer the
``stem``, anything else ``conv``; every other layer has RELU6. ``graph.meta["blocks"]`` groups
``[expand] dw project`` runs as ``blocks.{j}``; other layers form ``stem`` / ``layers.{i}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tinypatch.errors import ModelLoadError
from tinypatch.frontends.mcunet_config import read_json
from tinypatch.frontends.synth import Builder, Padding
from tinypatch.ir import Graph

Layer = tuple[str, int, int, int, int]  # (type, out_channels, kernel, stride, padding)


@dataclass(frozen=True)
class ChainSpec:
    name: str
    input_hw: tuple[int, int]
    input_channels: int
    layers: tuple[Layer, ...]


def load_msfcnn_chains(path: str | os.PathLike[str], seed: int = 0, explicit_pad: bool = False) -> dict[str, Graph]:
    """Build every chain of an msf-CNN chains file: ``{chain name: graph}``."""
    chains = parse_chains(read_json(os.fspath(path)))
    return {name: build_chain(spec, seed=seed, explicit_pad=explicit_pad) for name, spec in chains.items()}


def parse_chains(data: Any) -> dict[str, ChainSpec]:
    """Validate a parsed chains file and return its chains by name."""
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not models:
        raise ModelLoadError("not an msf-CNN chains file: no 'models' object")
    return {name: _parse_chain(name, m) for name, m in models.items()}


def mbconv_layers(stem_channels: int, blocks: Iterable[tuple[float, int, int, int]], *, in_channels: int = 3,
                  always_expand: bool = False, tail: Iterable[int] = ()) -> tuple[Layer, ...]:
    """The chain of an MBConv network: 3x3/2 stem, blocks ``(expand, kernel, stride, out)``, 1x1 tail convs.

    The expand conv (``round(in * expand)`` channels) is left out when the ratio is 1 unless
    ``always_expand``; padding is ``kernel // 2`` throughout.
    """
    layers: list[Layer] = [("conv", stem_channels, 3, 2, 1)]
    cin = stem_channels
    for expand, kernel, stride, out in blocks:
        mid = round(cin * expand)
        if expand != 1 or always_expand:
            layers.append(("conv", mid, 1, 1, 0))
        layers += [("dw", mid, kernel, stride, kernel // 2), ("conv", out, 1, 1, 0)]
        cin = out
    layers += [("conv", c, 1, 1, 0) for c in tail]
    return tuple(layers)


def build_chain(spec: ChainSpec, *, resolution: int | None = None, seed: int = 0,
                explicit_pad: bool = False) -> Graph:
    """Build a chain as an int8 graph (input ``[1, h, w, c]``, output the last layer's)."""
    h, w = spec.input_hw if resolution is None else (resolution, resolution)
    roles = _roles(spec.layers)
    b = Builder(spec.name, seed)
    x = b.input((1, h, w, spec.input_channels))
    for group, indices in _groups(roles):
        with b.block(group):
            for i in indices:
                kind, out, kernel, stride, pad = spec.layers[i]
                act = "NONE" if roles[i] == "project" else "RELU6"
                padding: Padding = "SAME" if not explicit_pad and kernel % 2 and pad == kernel // 2 else pad
                if kind == "dw":
                    if out != b.shape(x)[3]:
                        raise ModelLoadError(f"{spec.name}: layer {i} is a dw conv from {b.shape(x)[3]} "
                                             f"to {out} channels")
                    x = b.depthwise(x, kernel, stride, padding=padding, act=act, name=f"layers.{i}", role=roles[i])
                else:
                    x = b.conv(x, out, kernel, stride, padding=padding, act=act, name=f"layers.{i}", role=roles[i])
    g = b.finish([x])
    g.meta["resolution"] = (h, w)
    return g


def _parse_chain(name: str, m: Any) -> ChainSpec:
    where = f"msf-CNN chain {name!r}"
    if not isinstance(m, dict):
        raise ModelLoadError(f"{where}: expected an object")
    hw, cin, layers = m.get("input_hw"), m.get("input_channels"), m.get("layers")
    if not (isinstance(hw, list) and len(hw) == 2 and all(_pos_int(v) for v in hw)):
        raise ModelLoadError(f"{where}: input_hw must be [height, width], got {hw!r}")
    if not _pos_int(cin):
        raise ModelLoadError(f"{where}: input_channels must be a positive integer, got {cin!r}")
    if not isinstance(layers, list) or not layers:
        raise ModelLoadError(f"{where}: layers must be a non-empty list")
    parsed = []
    for i, layer in enumerate(layers):
        if not (isinstance(layer, list) and len(layer) == 5 and layer[0] in ("conv", "dw")
                and all(_pos_int(v) for v in layer[1:4]) and isinstance(layer[4], int) and layer[4] >= 0):
            raise ModelLoadError(f"{where}: layer {i} must be [conv|dw, out_channels, kernel, stride, padding], "
                                 f"got {layer!r}")
        parsed.append(tuple(layer))
    return ChainSpec(name, (hw[0], hw[1]), cin, tuple(parsed))


def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _roles(layers: tuple[Layer, ...]) -> list[str]:
    def is_pw(j: int) -> bool:
        return 0 <= j < len(layers) and layers[j][0] == "conv" and layers[j][2] == 1

    def is_dw(j: int) -> bool:
        return 0 <= j < len(layers) and layers[j][0] == "dw"

    roles = []
    for i, layer in enumerate(layers):
        if layer[0] == "dw":
            roles.append("dw")
        elif i == 0:
            roles.append("stem")
        elif is_pw(i) and is_dw(i + 1):
            roles.append("expand")
        elif is_pw(i) and is_dw(i - 1):
            roles.append("project")
        else:
            roles.append("conv")
    return roles


def _groups(roles: list[str]) -> list[tuple[str, list[int]]]:
    """Group ``[expand] dw project`` runs into blocks; other layers stand alone."""
    groups: list[tuple[str, list[int]]] = []
    current: list[int] | None = None
    for i, role in enumerate(roles):
        if role == "expand" or (role == "dw" and (i == 0 or roles[i - 1] != "expand")):
            current = []
            groups.append((f"blocks.{sum(g[0].startswith('blocks.') for g in groups)}", current))
        if current is not None and role in ("expand", "dw", "project"):
            current.append(i)
            if role == "project":
                current = None
        else:
            current = None
            groups.append(("stem" if role == "stem" else f"layers.{i}", [i]))
    return groups
