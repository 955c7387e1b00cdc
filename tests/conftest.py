"""Shared fixtures: the real-model assets and the references (skip with a clear reason when they
are absent; with CI=true such a skip fails the run instead, see pytest_runtest_makereport)."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest

from tinypatch.assets import assets_dir

ASSETS = assets_dir()


def _compiler_cache() -> None:
    """Compile the generated projects through ccache when it is installed (and CC / ARM_CC are not
    set): the C tests build the same kernel sources a few hundred times, and the Makefile compiles
    one object per source so that the cache can keep them. The objects are the compiler's own."""
    if shutil.which("ccache") is None:
        return
    os.environ.setdefault("CCACHE_NOHASHDIR", "1")  # -g builds in different project folders still hit
    if "CC" not in os.environ:
        os.environ["CC"] = "ccache cc"
    if "ARM_CC" not in os.environ and shutil.which("arm-none-eabi-gcc"):
        os.environ["ARM_CC"] = "ccache arm-none-eabi-gcc"


_compiler_cache()
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
