"""Shared fixtures: the real-model assets (skip with a clear reason when they are absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tinypatch.assets import assets_dir

ASSETS = assets_dir()
MODELS = sorted((ASSETS / "models").glob("*.tflite")) if ASSETS else []
SKIP_NO_ASSETS = "shared assets not found: set TINYPATCH_ASSETS to the folder holding models/ and configs/"


@pytest.fixture
def assets() -> Path:
    if ASSETS is None:
        pytest.skip(SKIP_NO_ASSETS)
    return ASSETS


def model_path(name: str) -> Path:
    """Path of a shared model; skips the calling test when assets are absent."""
    if ASSETS is None:
        pytest.skip(SKIP_NO_ASSETS)
    return ASSETS / "models" / name


# --- TensorFlow-converter models (tools/make_tf_models.py) --------------------------------------
def _load_tf_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "make_tf_models.py"
    spec = importlib.util.spec_from_file_location("make_tf_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE_TF = _load_tf_script()
TF_SIZE = os.environ.get("TINYPATCH_TF_SIZE", "small")  # "full" adds the 128x128 minimalistic MobileNetV3s


@pytest.fixture(scope="session")
def tf_models() -> Path:
    """Folder of the converter-made models: generated once (under a file lock, so once for all
    xdist workers) when the cache lacks them; `.ci/run` generates them before pytest. Without
    TensorFlow the tests skip, except under CI=true where they fail."""
    import importlib.util

    folder = MAKE_TF.default_root() / MAKE_TF.cache_key(TF_SIZE)
    if not (folder / "manifest.json").exists() and importlib.util.find_spec("tensorflow") is None:
        reason = "TensorFlow is not installed: pip install -e '.[tf]' to build the converter-made test models"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return MAKE_TF.ensure_models(size=TF_SIZE, log=lambda message: None)
