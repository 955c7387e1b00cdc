"""Where the shared test assets (real models, configs) live: ``$TINYPATCH_ASSETS`` or ``../shared``."""

from __future__ import annotations

import os
from pathlib import Path


def assets_dir() -> Path | None:
    """The assets folder, or None when it is absent (a user who cloned only the repo)."""
    env = os.environ.get("TINYPATCH_ASSETS")
    candidates = [Path(env)] if env else [Path.cwd() / ".." / "shared", Path(__file__).resolve().parents[3] / "shared"]
    for c in candidates:
        if (c / "models").is_dir():
            return c.resolve()
    return None


def shared_model(model: str) -> str:
    """``model`` itself, or for a bare shared model name (``mcunet_vww``) its file under the assets'
    ``models/`` where that exists (what the benchmarks accept beside paths)."""
    root = assets_dir()
    if root is not None and "/" not in model and "." not in model and (root / "models" / f"{model}.tflite").is_file():
        return str(root / "models" / f"{model}.tflite")
    return model
