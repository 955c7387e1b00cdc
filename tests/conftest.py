"""Shared fixtures: the real-model assets (skip with a clear reason when they are absent)."""

from __future__ import annotations

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
