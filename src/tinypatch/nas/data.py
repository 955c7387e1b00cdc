"""Image data for supernet training: a ``.npz`` (``x``, ``y``), an image folder, or the bundled digits.

Images are uint8 NHWC with three channels (grey images are repeated into R, G and B: the
search space's networks take RGB); a model sees ``pixel / 255`` (the int8 model's input is ``pixel - 128``
with scale 1/255 and zero point -128, so quantizing the input is exact). :func:`split` makes a
seeded, per-class held-out split of the *training* data (MCUNetV2 measures accuracy there).
No torch here: the arrays are numpy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinypatch.errors import ModelLoadError

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".gif", ".ppm", ".pgm")
DIGITS = "digits"  # the name of the bundled data set (scikit-learn's 8x8 digits, upscaled)


@dataclass
class Dataset:
    """uint8 images ``x`` [N, H, W, C] with int64 labels ``y`` [N] and the class names."""

    x: np.ndarray
    y: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.x.dtype != np.uint8 or self.y.shape != (self.x.shape[0],):
            raise ModelLoadError(f"data must be uint8 images [N, H, W, C] with N labels, got x {self.x.shape} "
                                 f"{self.x.dtype}, y {self.y.shape}")
        if len(self.y) == 0:
            raise ModelLoadError("the data set is empty")
        if self.y.min() < 0 or self.y.max() >= len(self.classes):
            raise ModelLoadError(f"labels must lie in [0, {len(self.classes)})")

    @property
    def resolution(self) -> int:
        return int(self.x.shape[1])

    @property
    def channels(self) -> int:
        return int(self.x.shape[3])

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.classes)


def digits(resolution: int = 32) -> Dataset:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels) upscaled to ``resolution``
    (bilinear, PIL), grey in all three channels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ModelLoadError("the bundled digits need scikit-learn (pip install scikit-learn)") from None
    from PIL import Image

    d = load_digits()
    small = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(im).resize((resolution, resolution), Image.BILINEAR))
                    for im in small])
    return Dataset(np.repeat(big[..., None], 3, axis=3), d.target.astype(np.int64), [str(i) for i in range(10)])


def load_data(source: str | os.PathLike[str], resolution: int | None = None) -> Dataset:
    """``digits`` (optionally ``digits:64`` for the resolution), a ``.npz`` with ``x`` (uint8
    [N, H, W] or [N, H, W, C]) and ``y``, or a folder with one subfolder of images per class."""
    s = os.fspath(source)
    if s == DIGITS or s.startswith(DIGITS + ":"):
        r = int(s.split(":")[1]) if ":" in s else (resolution or 32)
        return digits(r)
    p = Path(s)
    if p.is_dir():
        return _folder(p, resolution)
    if not p.exists():
        raise ModelLoadError(f"data not found: {s} (a .npz file, an image folder, or 'digits')")
    try:
        with np.load(p, allow_pickle=False) as z:
            x, y = np.asarray(z["x"]), np.asarray(z["y"])
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{s}: not a .npz with arrays 'x' and 'y' ({exc})") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim == 4 and x.shape[3] == 1:
        x = np.repeat(x, 3, axis=3)
    if x.ndim != 4 or x.shape[3] != 3:
        raise ModelLoadError(f"{s}: x must be [N, H, W] or [N, H, W, 1 or 3] images, got shape {x.shape}")
    if x.dtype != np.uint8:
        raise ModelLoadError(f"{s}: x must hold uint8 pixels, got {x.dtype}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ModelLoadError(f"{s}: y must be a vector of integer labels")
    classes = [str(i) for i in range(int(y.max()) + 1)] if len(y) else []
    return Dataset(np.ascontiguousarray(x), y.astype(np.int64), classes)


def _folder(root: Path, resolution: int | None) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise ModelLoadError(f"{root}: an image folder needs one subfolder per class")
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB")
                    if resolution is not None:
                        im = im.resize((resolution, resolution), Image.BILINEAR)
                    xs.append(np.asarray(im))
            except (OSError, UnidentifiedImageError) as exc:
                raise ModelLoadError(f"{f}: not a readable image ({exc})") from None
            ys.append(label)
    if not xs:
        raise ModelLoadError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
    if len({a.shape for a in xs}) > 1:
        raise ModelLoadError(f"{root}: images differ in size; pass a resolution to resize them")
    return Dataset(np.stack(xs), np.array(ys, np.int64), classes)


def split(data: Dataset, holdout: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, held-out): a seeded ``holdout`` fraction of every class is held out."""
    if not 0 < holdout < 1:
        raise ModelLoadError(f"the held-out fraction must lie in (0, 1), got {holdout}")
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(data.y):
        idx = np.flatnonzero(data.y == c)
        rng.shuffle(idx)
        held.extend(idx[: max(1, round(len(idx) * holdout))].tolist())
    mask = np.zeros(len(data.y), bool)
    mask[held] = True
    return data.subset(np.flatnonzero(~mask)), data.subset(np.flatnonzero(mask))
