"""PNG figures for reports, drawn with matplotlib's object API (no pyplot global state).

matplotlib is optional (``pip install 'edge-sdk[report]'``): it is imported only when a
figure is drawn, and its absence is a :class:`~edge_sdk.reports.ReportError` that says what
to install. Call :func:`require_matplotlib` before long work so a missing library fails
early rather than after the measurements.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.reports import ReportError

DPI = 100
INSTALL_HINT = "pip install 'edge-sdk[report]'"


def require_matplotlib() -> None:
    """Raise ReportError (with the install command) when matplotlib cannot be imported."""
    _figure_class()


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ReportError(f"PNG reports need matplotlib: {INSTALL_HINT} ({exc})") from exc
    return Figure


def _new_figure(width: float, height: float) -> Any:
    return _figure_class()(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(figure: Any, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(target, format="png", dpi=DPI)
    except OSError as exc:
        raise ReportError(f"cannot write {target}: {exc}") from exc
    return target


def _grid(count: int, columns: int = 2) -> tuple[int, int]:
    cols = max(1, min(columns, count))
    return math.ceil(count / cols), cols


def confusion_matrix_png(
    path: str | os.PathLike[str],
    matrix: Sequence[Sequence[float]] | np.ndarray,
    labels: Sequence[str],
    title: str = "confusion matrix",
) -> Path:
    """Counts (annotated) over row-normalised colour: rows true, columns predicted."""
    counts = np.asarray(matrix, dtype=np.float64)
    k = len(labels)
    if counts.shape != (k, k):
        raise ReportError(f"confusion matrix shape {counts.shape} does not fit {k} labels")
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    side = max(4.0, 0.6 * k + 2.0)
    figure = _new_figure(side + 1.0, side)
    axes = figure.subplots()
    image = axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(k), labels=list(labels), rotation=45, ha="right")
    axes.set_yticks(range(k), labels=list(labels))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for i in range(k):
        for j in range(k):
            colour = "white" if share[i, j] > 0.5 else "black"
            axes.text(j, i, f"{counts[i, j]:g}", ha="center", va="center", color=colour)
    figure.colorbar(image, ax=axes, label="share of the true class")
    return _save(figure, path)


def latency_histogram_png(
    path: str | os.PathLike[str],
    series: Mapping[str, Sequence[float]],
    title: str = "latency",
) -> Path:
    """One histogram per series (ms), with p50 and p99 marked."""
    items = [(name, np.asarray(values, dtype=np.float64)) for name, values in series.items()]
    items = [(n, v) for n, v in items if v.size]
    if not items:
        raise ReportError("no latency samples to plot")
    rows, cols = _grid(len(items))
    figure = _new_figure(5.0 * cols, 2.8 * rows)
    figure.suptitle(title)
    grid = figure.subplots(rows, cols, squeeze=False)
    for axes, (name, values) in zip(grid.flat, items, strict=False):
        bins = min(30, max(5, values.size // 2))
        axes.hist(values, bins=bins, color="#4c72b0", alpha=0.85)
        for q, style in ((50, "-"), (99, "--")):
            mark = float(np.percentile(values, q))
            axes.axvline(mark, color="black", linestyle=style, label=f"p{q} {mark:.2f} ms")
        axes.set_title(name, fontsize=9)
        axes.set_xlabel("ms")
        axes.set_ylabel("runs")
        axes.legend(fontsize=7)
    for axes in list(grid.flat)[len(items) :]:
        axes.set_visible(False)
    return _save(figure, path)


@dataclass(frozen=True)
class ParityBar:
    """One bar of the parity plot: an output of a candidate, its error and its limit."""

    label: str
    value: float
    limit: float | None
    passed: bool


def parity_errors_png(
    path: str | os.PathLike[str],
    bars: Sequence[ParityBar],
    title: str = "parity error per output",
    xlabel: str = "max |candidate - reference|",
) -> Path:
    """Horizontal log-scale bars (green pass, red fail) with each limit marked."""
    if not bars:
        raise ReportError("no parity figures to plot")
    floor = 1e-12
    values = [max(b.value, floor) if math.isfinite(b.value) else 1e6 for b in bars]
    figure = _new_figure(8.0, max(2.5, 0.32 * len(bars) + 1.2))
    axes = figure.subplots()
    positions = np.arange(len(bars))
    colours = ["#55a868" if b.passed else "#c44e52" for b in bars]
    axes.barh(positions, values, color=colours)
    limits = [(i, b.limit) for i, b in enumerate(bars) if b.limit is not None and b.limit > 0]
    if limits:
        axes.scatter(
            [v for _, v in limits],
            [i for i, _ in limits],
            marker="|",
            s=200,
            color="black",
            label="allowed (atol)",
            zorder=3,
        )
        axes.legend(fontsize=8, loc="lower right")
    axes.set_xscale("log")
    axes.set_yticks(positions, labels=[b.label for b in bars], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel(xlabel)
    axes.set_title(title)
    return _save(figure, path)


def line_panels_png(
    path: str | os.PathLike[str],
    panels: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = True,
) -> Path:
    """One panel per key (e.g. a graph), one line per inner key (e.g. a dim or backend)."""
    items = [(name, lines) for name, lines in panels.items() if any(lines.values())]
    if not items:
        raise ReportError("nothing to plot")
    rows, cols = _grid(len(items))
    figure = _new_figure(5.0 * cols, 3.0 * rows)
    figure.suptitle(title)
    grid = figure.subplots(rows, cols, squeeze=False)
    for axes, (name, lines) in zip(grid.flat, items, strict=False):
        for label, points in lines.items():
            if not points:
                continue
            xs, ys = zip(*sorted(points), strict=True)
            axes.plot(xs, ys, marker="o", label=label)
        if logx:
            axes.set_xscale("log")
        axes.set_title(name, fontsize=9)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    for axes in list(grid.flat)[len(items) :]:
        axes.set_visible(False)
    return _save(figure, path)


def cost_vs_size_png(
    path: str | os.PathLike[str],
    panels: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]],
    title: str = "cost vs size (p50)",
) -> Path:
    """Median latency against each swept dim's size, one panel per graph."""
    return line_panels_png(path, panels, title=title, xlabel="size of the dim", ylabel="p50 ms")
