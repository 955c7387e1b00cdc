"""Natural-image crops for calibration and evaluation, from photos that ship offline.

Sources: scikit-image's bundled photos, scikit-learn's two sample images and the shared
``person.bmp`` / ``no_person.bmp`` (under ``$TINYPATCH_ASSETS/models``, when present).
Calibration and evaluation crops come from disjoint photos. Each crop is a random square
(30-100 % of the shorter side) at a random place, randomly mirrored, resized to the model's
input with bilinear filtering and turned into the input tensor like an image file would be
(see :func:`_to_input` for inputs quantized at about one pixel level per step).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from tinypatch.errors import InputError
from tinypatch.ir import Tensor
from tinypatch.runtime.inputs import pixels_to_input

CALIBRATION = ("skimage:chelsea", "skimage:cat", "skimage:coffee", "skimage:rocket", "skimage:camera",
               "skimage:grass", "sklearn:china.jpg")
EVALUATION = ("skimage:astronaut", "skimage:hubble_deep_field", "skimage:immunohistochemistry",
              "skimage:coins", "skimage:moon", "skimage:clock", "skimage:brick", "skimage:gravel",
              "skimage:colorwheel", "skimage:retina", "sklearn:flower.jpg", "shared:person.bmp",
              "shared:no_person.bmp")


def _photo(source: str) -> np.ndarray | None:
    kind, name = source.split(":", 1)
    try:
        if kind == "skimage":
            import skimage.data

            return np.asarray(getattr(skimage.data, name)())
        if kind == "sklearn":
            from sklearn.datasets import load_sample_image

            return np.asarray(load_sample_image(name))
        from PIL import Image

        path = os.path.join(os.environ.get("TINYPATCH_ASSETS", ""), "models", name)
        return np.asarray(Image.open(path).convert("RGB")) if os.path.exists(path) else None
    except (ImportError, AttributeError, OSError):
        return None


def photos(split: str) -> list[tuple[str, np.ndarray]]:
    """The available photos of ``split`` ("calibration" or "evaluation"), uint8 HxWx3."""
    if split not in ("calibration", "evaluation"):
        raise InputError(f"split must be calibration or evaluation, got {split!r}")
    out = []
    for src in CALIBRATION if split == "calibration" else EVALUATION:
        img = _photo(src)
        if img is None:
            continue
        img = img.astype(np.uint8)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        out.append((src, img[:, :, :3]))
    if not out:
        raise InputError(f"no {split} photos available: install scikit-image or scikit-learn")
    return out


def crops(tensor: Tensor, split: str, n: int, seed: int = 0, preprocess: str = "auto") -> Iterator[np.ndarray]:
    """``n`` seeded crops of the ``split`` photos as values for the image input ``tensor``."""
    from PIL import Image

    if len(tensor.shape) != 4 or tensor.shape[3] not in (1, 3):
        raise InputError(f"input {tensor.name!r} {tensor.shape} is not an NHWC image with 1 or 3 channels")
    _, h, w, c = tensor.shape
    pics = photos(split)
    rng = np.random.default_rng(seed)
    for i in range(n):
        _, img = pics[i % len(pics)]
        side = int(min(img.shape[:2]) * rng.uniform(0.3, 1.0))
        y, x = (int(rng.integers(0, img.shape[a] - side + 1)) for a in (0, 1))
        piece = Image.fromarray(img[y: y + side, x: x + side])
        if rng.random() < 0.5:
            piece = piece.transpose(Image.FLIP_LEFT_RIGHT)
        piece = piece.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
        yield _to_input(np.asarray(piece, np.uint8).reshape(1, h, w, c), tensor, preprocess)


def _to_input(pixels: np.ndarray, tensor: Tensor, preprocess: str) -> np.ndarray:
    """As ``run`` reads images, except that ``auto`` gives a quantized input whose step is about
    one pixel level (scale >= 0.5, e.g. MLPerf Tiny's ResNet-8: scale 1, zero point -128) the
    pixel values themselves: scaled to 0..1 they would collapse to one or two codes."""
    q = tensor.quant
    if preprocess == "auto" and q is not None and tensor.np_dtype.kind in "iu" and float(q.scale[0]) >= 0.5:
        info = np.iinfo(tensor.np_dtype)
        return np.clip(np.round(pixels / float(q.scale[0])) + int(q.zero_point[0]), info.min, info.max
                       ).astype(tensor.np_dtype)
    return pixels_to_input(pixels, tensor, preprocess)


