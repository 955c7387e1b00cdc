"""Inputs from a stranger: `run --input` never unpickles, refuses values the input dtype cannot
hold (unless --quantize-input says they are real values) and refuses huge images before decoding."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from test_security_codegen import small_net

from tinypatch.backends import save_tflite
from tinypatch.cli import main
from tinypatch.errors import InputError
from tinypatch.planning.plan import Plan
from tinypatch.runtime.inputs import load_input


class Evil:
    def __reduce__(self):
        import os

        return os.system, ("touch pwned_by_pickle",)


@pytest.fixture
def model(tmp_path):
    save_tflite(small_net(), tmp_path / "m.tflite")
    Plan.layer_by_layer(small_net()).save(str(tmp_path / "p.json"))
    return tmp_path


def run(model, *extra) -> int:
    return main(["run", str(model / "m.tflite"), "--plan", str(model / "p.json"), *extra])


@pytest.mark.parametrize("values,reason", [
    (np.full((1, 12, 12, 3), 1e9), r"outside the int8 range \[-128, 127\]"),
    (np.full((1, 12, 12, 3), 0.5), r"holds fractional values"),
    (np.full((1, 12, 12, 3), np.nan), r"holds NaN or infinite values"),
    (np.full((1, 12, 12, 3), 200, np.int64), r"values in \[200, 200\], outside the int8 range"),
    (np.zeros((1, 12, 12, 2), np.int8), r"holds 288 values"),
    (np.array(["a"] * 432), r"is not a numeric array"),
])
def test_npy_values_must_fit(model, capsys, values, reason):
    np.save(model / "x.npy", values)
    assert run(model, "--input", str(model / "x.npy")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(reason, err), err


def test_exact_values_pass_and_real_values_quantize_on_request(model, capsys):
    np.save(model / "ok.npy", np.arange(-128, 304).reshape(1, 12, 12, 3).clip(-128, 127).astype(np.int64))
    assert run(model, "--input", str(model / "ok.npy")) == 0
    t = small_net().tensors["input"]
    np.save(model / "real.npy", np.full((1, 12, 12, 3), 0.5))
    assert run(model, "--input", str(model / "real.npy"), "--quantize-input") == 0
    q = load_input(str(model / "real.npy"), t, quantize=True)
    assert q.dtype == np.int8 and np.all(q == 64)  # 0.5 / (1/128)
    np.save(model / "big.npy", np.full((1, 12, 12, 3), 1e9))
    assert np.all(load_input(str(model / "big.npy"), t, quantize=True) == 127)  # saturates, as asked


def test_npy_is_never_unpickled(model, capsys, monkeypatch):
    monkeypatch.chdir(model)
    np.save(model / "evil.npy", np.array([Evil()], dtype=object), allow_pickle=True)
    assert run(model, "--input", str(model / "evil.npy")) == 2
    assert "Python objects" in capsys.readouterr().err
    assert not (model / "pwned_by_pickle").exists()


def test_huge_image_is_refused_before_decoding(model, capsys):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(model / "bomb.bmp")
    data = bytearray((model / "bomb.bmp").read_bytes())
    struct.pack_into("<ii", data, 18, 10_000, 5_000)  # BITMAPINFOHEADER width, height: 50 Mpixel
    (model / "bomb.bmp").write_bytes(bytes(data))
    with pytest.raises(InputError, match="10000x5000 pixels, over the"):
        load_input(str(model / "bomb.bmp"), small_net().tensors["input"])
    assert run(model, "--input", str(model / "bomb.bmp")) == 2
    assert "pixel limit" in capsys.readouterr().err
