"""Shared fixtures: the real-model assets and the references (skip with a clear reason when they
are absent; with CI=true such a skip fails the run instead, see pytest_runtest_makereport)."""

from __future__ import annotations

import functools
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


SKIP_NO_TFLM = "tflite-micro is not installed (pip install tflite-micro): no TFLite Micro reference"


@functools.cache
def tflm_head_of(name: str) -> int:
    """TFLite Micro's arena head for a shared model, measured by its interpreter (print_allocations)."""
    try:
        from tinypatch.runtime.tflm import tflm_head
        return tflm_head(model_path(name))
    except ImportError:
        pytest.skip(SKIP_NO_TFLM)


# Skip reasons that mean a reference or tool is missing, not that a case does not apply: with
# CI=true they fail the test, so a broken install cannot pass CI by skipping its checks.
MISSING_REFERENCE = (SKIP_NO_ASSETS, SKIP_NO_TFLM, "ai-edge-litert is not installed", "host C compiler:",
                     "Cortex-M toolchain/emulator:", "could not import")


def _missing_reference(report) -> str | None:  # noqa: ANN001
    if os.environ.get("CI") != "true" or not report.skipped:
        return None
    text = str(report.longrepr)
    return text if any(m in text for m in MISSING_REFERENCE) else None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001, ANN201
    outcome = yield
    report = outcome.get_result()
    reason = _missing_reference(report)
    if reason:
        report.outcome = "failed"
        report.longrepr = f"CI=true: a reference is missing, so this check cannot be skipped: {reason}"


def pytest_collectreport(report):  # noqa: ANN001, ANN201
    reason = _missing_reference(report)
    if reason:
        report.outcome = "failed"
        report.longrepr = f"CI=true: a reference is missing, so these checks cannot be skipped: {reason}"
