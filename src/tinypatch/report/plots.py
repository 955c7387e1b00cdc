"""Matplotlib figures: per-layer memory (MCUNetV2 Fig. 1 style) and Pareto fronts."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tinypatch.errors import TinypatchError  # noqa: E402
from tinypatch.safeio import write_bytes  # noqa: E402

KB = 1024


def plot_layer_memory(path: str, labels: Sequence[str], series: dict[str, Sequence[int]],
                      title: str, budget: int | None = None, ylabel: str = "peak memory (kB = 1024 B)") -> None:
    """Bars of bytes per layer, one colour per series (e.g. layer-by-layer vs patch-based)."""
    fig, ax = plt.subplots(figsize=(max(8, 0.22 * len(labels) + 2), 4.2), dpi=120)
    n = len(series)
    width = 0.8 / n
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (n - 1) / 2) * width for i in range(len(values))]
        ax.bar(xs, [v / KB for v in values], width=width, label=name)
    if budget is not None:
        ax.axhline(budget / KB, color="crimson", linestyle="--", linewidth=1.2, label=f"SRAM budget {budget / KB:g} kB")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=90, fontsize=6, parse_math=False)
    ax.set_ylabel(ylabel)
    ax.set_title(title, parse_math=False)  # model names are text, never mathtext
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def plot_pareto(path: str, title: str, fronts: dict[str, Sequence[tuple[int, float]]],
                points: dict[str, Sequence[tuple[int, float]]] | None = None,
                xlabel: str = "peak SRAM (kB = 1024 B)", ylabel: str = "MACs (M)",
                ymax: float | None = None, xlog: bool = False) -> None:
    """Step lines for each front of (bytes, MACs-or-factor) pairs and scatter marks for points.

    ``ymax`` clips the y axis (points above it are left out of view); ``xlog`` uses a log x axis.
    """
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, pts in fronts.items():
        pts = sorted(pts)
        ax.step([p[0] / KB for p in pts], [p[1] for p in pts], where="post", marker="o", markersize=3, label=name)
    for (name, pts), color in zip((points or {}).items(), ("crimson", "black", "darkgreen")):
        ax.scatter([p[0] / KB for p in pts], [p[1] for p in pts], marker="*", s=90, zorder=5, label=name,
                   color=color)
    if xlog:
        ax.set_xscale("log")
    if ymax is not None:
        ax.set_ylim(top=ymax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, parse_math=False)  # model names are text, never mathtext
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig: plt.Figure, path: str) -> None:
    """Render to memory, then write atomically (no half-written image on failure or SIGINT)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        if fmt not in fig.canvas.get_supported_filetypes():
            raise TinypatchError(f"cannot write plot {path}: unknown image format {fmt!r} "
                                 f"(use one of {', '.join(sorted(fig.canvas.get_supported_filetypes()))})")
        fig.savefig(buf, format=fmt)
    finally:
        plt.close(fig)
    write_bytes(path, buf.getvalue())
