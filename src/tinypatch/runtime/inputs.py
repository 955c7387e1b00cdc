"""Read model inputs from images (png/bmp/jpg) or .npy files, or make seeded random ones."""

from __future__ import annotations

import os

import numpy as np

from tinypatch.errors import InputError
from tinypatch.ir import Graph, Tensor

PREPROCESS = ("auto", "raw", "unit", "pm1")
PREPROCESS_HELP = (
    "how image pixels p (0..255) become the input: auto = real value p/255 quantized with the input's "
    "scale/zero point (float inputs get p/255); raw = the bytes reinterpreted as int8 (TFLM's "
    "person_detection convention); unit = p/255; pm1 = (p/255 - 0.5)/0.5, i.e. [-1, 1] (MCUNet)"
)


def random_input(tensor: Tensor, seed: int = 0) -> np.ndarray:
    """A seeded random input: full int8/uint8 range, or N(0, 1) for float tensors."""
    rng = np.random.default_rng(seed)
    if tensor.dtype in ("int8", "uint8", "int16"):
        info = np.iinfo(tensor.np_dtype)
        return rng.integers(info.min, info.max + 1, tensor.shape).astype(tensor.np_dtype)
    return rng.standard_normal(tensor.shape).astype(tensor.np_dtype)


def load_input(path: str, tensor: Tensor, preprocess: str = "auto") -> np.ndarray:
    """Read ``path`` (.npy or an image) as a value for ``tensor``."""
    if not os.path.exists(path):
        raise InputError(f"input file not found: {path}")
    if path.lower().endswith(".npy"):
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read {path} as .npy: {exc}") from None
        if x.size != tensor.size:
            raise InputError(f"{path} holds {x.size} values {x.shape}; input {tensor.name!r} needs "
                             f"{tensor.size} {tensor.shape}")
        return x.reshape(tensor.shape).astype(tensor.np_dtype, casting="unsafe")
    return _image(path, tensor, preprocess)


def _image(path: str, tensor: Tensor, preprocess: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if preprocess not in PREPROCESS:
        raise InputError(f"unknown preprocessing {preprocess!r}; choose one of {', '.join(PREPROCESS)}")
    if len(tensor.shape) != 4 or tensor.shape[3] not in (1, 3):
        raise InputError(f"input {tensor.name!r} {tensor.shape} is not an NHWC image with 1 or 3 channels")
    _, h, w, c = tensor.shape
    try:
        img = Image.open(path)
        img = img.convert("L" if c == 1 else "RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read {path} as an image: {exc}") from None
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    return pixels_to_input(np.asarray(img, np.uint8).reshape(1, h, w, c), tensor, preprocess)


def pixels_to_input(pixels: np.ndarray, tensor: Tensor, preprocess: str = "auto") -> np.ndarray:
    """uint8 pixels shaped like ``tensor`` as its value, by the ``preprocess`` rule."""
    if preprocess not in PREPROCESS:
        raise InputError(f"unknown preprocessing {preprocess!r}; choose one of {', '.join(PREPROCESS)}")
    if preprocess == "raw":
        return pixels.view(np.int8).astype(tensor.np_dtype) if tensor.dtype == "int8" else pixels.astype(tensor.np_dtype)
    real = pixels.astype(np.float32) / 255.0
    if preprocess == "pm1":
        real = (real - 0.5) / 0.5
    if tensor.dtype == "float32":
        return real
    if tensor.quant is None:
        raise InputError(f"input {tensor.name!r} is {tensor.dtype} without quantization; use --preprocess raw")
    info = np.iinfo(tensor.np_dtype)
    q = np.round(real / tensor.quant.scale[0]) + tensor.quant.zero_point[0]
    return np.clip(q, info.min, info.max).astype(tensor.np_dtype)


def model_inputs(graph: Graph, path: str | None, seed: int = 0, preprocess: str = "auto") -> list[np.ndarray]:
    """Inputs for every graph input: from ``path`` (single-input models) or seeded random."""
    tensors = [graph.tensors[n] for n in graph.inputs]
    if path is None:
        return [random_input(t, seed + i) for i, t in enumerate(tensors)]
    if len(tensors) != 1:
        raise InputError(f"the model has {len(tensors)} inputs; --input feeds single-input models only")
    return [load_input(path, tensors[0], preprocess)]
