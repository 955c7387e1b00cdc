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
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"the seed of a random input must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(seed)
    if tensor.dtype in ("int8", "uint8", "int16"):
        info = np.iinfo(tensor.np_dtype)
        return rng.integers(info.min, info.max + 1, tensor.shape).astype(tensor.np_dtype)
    return rng.standard_normal(tensor.shape).astype(tensor.np_dtype)


MAX_IMAGE_PIXELS = 2**25  # 33.5 Mpixel (8192 x 4096): bigger images are refused before decoding
MAX_NPY_BYTES = 2**30  # 1 GiB


def load_input(path: str, tensor: Tensor, preprocess: str = "auto", quantize: bool = False) -> np.ndarray:
    """Read ``path`` (.npy or an image) as a value for ``tensor``.

    A ``.npy`` is never unpickled and must hold values the input's dtype represents exactly
    (integers in range for an integer input, finite numbers for a float one); with
    ``quantize`` real values are quantized with the input's scale and zero point instead.
    """
    if not os.path.exists(path):
        raise InputError(f"input file not found: {path}")
    if path.lower().endswith(".npy"):
        return _npy(path, tensor, quantize)
    return _image(path, tensor, preprocess)


def _npy(path: str, tensor: Tensor, quantize: bool) -> np.ndarray:
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)  # the header first: no huge read, no pickle
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"cannot read {path} as .npy: {exc}") from None
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        raise InputError(f"{path} is not a numeric array (dtype {getattr(x, 'dtype', type(x).__name__)})")
    if x.size != tensor.size:
        raise InputError(f"{path} holds {x.size} values {x.shape}; input {tensor.name!r} needs "
                         f"{tensor.size} {tensor.shape}")
    if x.nbytes > MAX_NPY_BYTES:
        raise InputError(f"{path} holds {x.nbytes:,} B, over the {MAX_NPY_BYTES:,} B limit")
    x = np.array(x).reshape(tensor.shape)
    if quantize:
        return quantize_values(x, tensor, path)
    return exact_cast(x, tensor, path)


def exact_cast(x: np.ndarray, tensor: Tensor, what: str) -> np.ndarray:
    """``x`` as the input's dtype, refusing any value that would change (or wrap) on the way."""
    target = tensor.np_dtype
    if target.kind == "f":
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise InputError(f"{what} holds NaN or infinite values")
        y = x.astype(target)
        if not np.all(np.isfinite(y)) or (x.dtype.kind in "iu" and not np.array_equal(y.astype(x.dtype), x)):
            raise InputError(f"{what}: values do not fit {target} exactly")
        return y
    info = np.iinfo(target)
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise InputError(f"{what} holds NaN or infinite values")
    if x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
        raise InputError(f"{what} holds fractional values but input {tensor.name!r} is {target}: pass quantized "
                         f"{target} values, or real values with --quantize-input")
    if x.min() < info.min or x.max() > info.max:
        raise InputError(f"{what} holds values in [{x.min():g}, {x.max():g}], outside the {target} range [{info.min}, {info.max}] "
                         f"of input {tensor.name!r} (real values? use --quantize-input)")
    return x.astype(target)


def quantize_values(x: np.ndarray, tensor: Tensor, what: str) -> np.ndarray:
    """Real values quantized with the input's scale and zero point (saturating)."""
    if tensor.np_dtype.kind == "f":
        return exact_cast(x.astype(np.float64), tensor, what)
    if tensor.quant is None:
        raise InputError(f"input {tensor.name!r} has no quantization parameters to quantize {what} with")
    real = x.astype(np.float64)
    if not np.all(np.isfinite(real)):
        raise InputError(f"{what} holds NaN or infinite values")
    info = np.iinfo(tensor.np_dtype)
    q = np.round(real / float(tensor.quant.scale[0])) + int(tensor.quant.zero_point[0])
    return np.clip(q, info.min, info.max).astype(tensor.np_dtype)


def _image(path: str, tensor: Tensor, preprocess: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if preprocess not in PREPROCESS:
        raise InputError(f"unknown preprocessing {preprocess!r}; choose one of {', '.join(PREPROCESS)}")
    if len(tensor.shape) != 4 or tensor.shape[3] not in (1, 3):
        raise InputError(f"input {tensor.name!r} {tensor.shape} is not an NHWC image with 1 or 3 channels")
    _, h, w, c = tensor.shape
    try:
        img = Image.open(path)  # reads the header only
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise InputError(f"{path} is {img.width}x{img.height} pixels, over the {MAX_IMAGE_PIXELS:,}-pixel limit")
        img = img.convert("L" if c == 1 else "RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
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


def model_inputs(graph: Graph, path: str | None, seed: int = 0, preprocess: str = "auto",
                 quantize: bool = False) -> list[np.ndarray]:
    """Inputs for every graph input: from ``path`` (single-input models) or seeded random."""
    tensors = [graph.tensors[n] for n in graph.inputs]
    if path is None:
        return [random_input(t, seed + i) for i, t in enumerate(tensors)]
    if len(tensors) != 1:
        raise InputError(f"the model has {len(tensors)} inputs; --input feeds single-input models only")
    return [load_input(path, tensors[0], preprocess, quantize)]
