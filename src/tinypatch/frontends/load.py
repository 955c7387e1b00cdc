"""One entry point for every model source: ``.tflite`` file, JSON config, or zoo name."""

from __future__ import annotations

import difflib
import os
from typing import Any

from tinypatch.errors import GraphError, ModelLoadError
from tinypatch.frontends import zoo
from tinypatch.frontends.mcunet_config import build_net, parse_config, read_json
from tinypatch.frontends.msfcnn import build_chain, parse_chains
from tinypatch.frontends.onnx import load_onnx
from tinypatch.frontends.spec import is_spec_dict, spec_from_dict
from tinypatch.frontends.tflite import load_tflite
from tinypatch.ir import Graph
from tinypatch.ir.validate import validate
from tinypatch.kernels.limits import check_limits

LIST_HINT = "`tinypatch zoo` lists the built-in models"


def load_model(spec: str, max_tensor_bytes: int | None = None, **overrides: Any) -> Graph:
    """Load ``spec``: a ``.tflite`` or int8 ``.onnx`` file, an MCUNet ``.json`` config, ``chains.json#CHAIN``
    (one msf-CNN chain), or a zoo name (``overrides`` go to the config / zoo builder).
    Every model passes :func:`tinypatch.ir.validate.validate` (``max_tensor_bytes``: its limit);
    quantization parameters that TFLite's reference kernels refuse raise QuantizationError.
    """
    graph = _load(spec, max_tensor_bytes, overrides)
    check_limits(graph)
    return graph


def _load(spec: str, max_tensor_bytes: int | None, overrides: dict[str, Any]) -> Graph:
    path, chain = _split_chain(spec)
    if path.lower().endswith(".tflite"):
        if overrides:
            raise ModelLoadError(f"{spec}: a .tflite model takes no overrides ({', '.join(overrides)})")
        return load_tflite(path, max_tensor_bytes)
    if path.lower().endswith(".onnx"):
        if overrides:
            raise ModelLoadError(f"{spec}: an .onnx model takes no overrides ({', '.join(overrides)})")
        return _valid(load_onnx(path), spec, max_tensor_bytes)
    if path.lower().endswith(".json"):
        return _valid(_load_json(path, chain, overrides), spec, max_tensor_bytes)
    if zoo.is_zoo_name(spec):
        return _valid(zoo.build(spec, **overrides), spec, max_tensor_bytes)
    if os.path.exists(spec):
        raise ModelLoadError(f"{spec}: unknown model file type (expected .tflite, .onnx or .json)")
    close = difflib.get_close_matches(spec, [*zoo.ZOO_NAMES, *zoo.PATTERNS], n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelLoadError(f"unknown model {spec!r}: not a .tflite/.onnx/.json file nor a zoo name{hint} ({LIST_HINT})")


def _valid(graph: Graph, spec: str, max_tensor_bytes: int | None) -> Graph:
    try:
        return validate(graph, max_tensor_bytes)
    except GraphError as exc:
        raise ModelLoadError(f"{spec} is not a valid model: {exc}") from None


def _split_chain(spec: str) -> tuple[str, str]:
    """(file, chain) of ``file#chain``; a file whose own name holds '#' wins over a chain."""
    cuts = [i for i, c in enumerate(spec) if c == "#"]
    for i in [len(spec), *cuts]:
        if os.path.isfile(spec[:i]):
            return spec[:i], spec[i + 1:]
    path, _, chain = spec.partition("#")
    return path, chain


def _load_json(path: str, chain: str, overrides: dict[str, Any]) -> Graph:
    data = read_json(path)
    name = os.path.splitext(os.path.basename(path))[0]
    if is_spec_dict(data):
        zoo.check_overrides(path, overrides, zoo.NET_OVERRIDES)
        return build_net(spec_from_dict(data, path), **overrides)
    if not (isinstance(data, dict) and "models" in data and "blocks" not in data):
        if chain:
            raise ModelLoadError(f"{path} is an MCUNet config, not an msf-CNN chains file: drop '#{chain}'")
        zoo.check_overrides(path, overrides, zoo.NET_OVERRIDES)
        return build_net(parse_config(data, name, overrides.get("resolution")), **overrides)
    chains = parse_chains(data)
    if chain not in chains:
        what = f"has no chain {chain!r}" if chain else "holds several msf-CNN chains"
        raise ModelLoadError(f"{path} {what}; name one as {path}#CHAIN with CHAIN in: {', '.join(chains)}")
    zoo.check_overrides(f"{path}#{chain}", overrides, zoo.CHAIN_OVERRIDES)
    return build_chain(chains[chain], **overrides)
