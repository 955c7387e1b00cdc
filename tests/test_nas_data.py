"""The supernet's data sources (no torch needed): .npz, image folders, the held-out split, and the
errors hostile inputs get."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tinypatch.errors import ModelLoadError
from tinypatch.nas.data import load_data, split


def test_npz_grey_becomes_rgb(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (12, 8, 8), dtype=np.uint8)
    y = np.arange(12) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_data(tmp_path / "d.npz")
    assert d.x.shape == (12, 8, 8, 3) and np.array_equal(d.x[..., 2], x) and d.classes == ["0", "1", "2"]


def test_image_folder_resized(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (20 + i, 10), (i * 40, 0, 0)).save(tmp_path / c / f"{i}.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    d = load_data(tmp_path, resolution=16)
    assert d.x.shape == (6, 16, 16, 3) and d.classes == ["cat", "dog"] and d.y.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ModelLoadError, match="differ in size"):
        load_data(tmp_path)


def test_split_holds_out_every_class():
    pytest.importorskip("sklearn")
    d = load_data("digits:16")
    tr, held = split(d, 0.2, seed=1)
    assert len(tr.y) + len(held.y) == len(d.y) == 1797 and set(np.unique(held.y)) == set(range(10))
    assert 0.18 < len(held.y) / len(d.y) < 0.22
    tr2, held2 = split(d, 0.2, seed=1)
    assert np.array_equal(held.y, held2.y) and np.array_equal(held.x, held2.x)


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b"junk"), "not a .npz"),
    (lambda p: np.savez(p, x=np.zeros((2, 4, 4), np.float32), y=np.zeros(2, int)), "uint8"),
    (lambda p: np.savez(p, x=np.zeros((2, 4, 4, 2), np.uint8), y=np.zeros(2, int)), "1 or 3"),
    (lambda p: np.savez(p, x=np.zeros((2, 4, 4), np.uint8), y=np.zeros(3, int)), "N labels"),
    (lambda p: np.savez(p, x=np.zeros((2, 4, 4), np.uint8), y=np.array([0.5, 1.0])), "integer labels"),
])
def test_bad_npz_is_refused(tmp_path, make, message):
    p = tmp_path / "bad.npz"
    make(p)
    with pytest.raises(ModelLoadError, match=message):
        load_data(p)


def test_missing_and_empty(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_data(tmp_path / "nothing.npz")
    with pytest.raises(ModelLoadError, match="one subfolder per class"):
        load_data(tmp_path)
    with pytest.raises(ModelLoadError, match="held-out fraction"):
        split(None, 1.5)  # type: ignore[arg-type]
