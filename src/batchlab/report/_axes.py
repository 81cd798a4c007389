"""Shared pieces of every report figure: sizes, colours, labels, log batch axes, regimes.

The figure modules (:mod:`._plots`, :mod:`._trial_plots`, :mod:`._cbs`) draw with these,
so every plot of a report has the same axes, colours and labels.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from ._summary import StudySummary

DPI = 110
#: One colour per study when several are overlaid.
STUDY_COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
)
REGIME_COLORS = {"perfect": "#2ca02c", "diminishing": "#ff9f1c", "maximal": "#d62728"}
REGIME_LABELS = {
    "perfect": "perfect scaling",
    "diminishing": "diminishing returns",
    "maximal": "maximal data parallelism",
}
#: How each trial outcome is drawn in the per-rung search plots.
#: The best trial of a rung, in every per-trial plot: a large gold star.
BEST_STYLE: dict[str, Any] = {
    "marker": "*",
    "s": 220,
    "c": "#ffbf00",
    "edgecolors": "black",
    "linewidths": 0.8,
    "zorder": 4,
}
STATUS_STYLE: dict[str, dict[str, Any]] = {
    "reached": {"marker": "o", "color": "#1f77b4", "label": "reached target"},
    "not_reached": {"marker": "x", "color": "#7f7f7f", "label": "not reached (budget)"},
    "beaten": {"marker": "s", "color": "#bcbd22", "label": "stopped: beaten"},
    "pruned": {"marker": "D", "color": "#9467bd", "label": "pruned (opt-in)"},
    "diverged": {"marker": "v", "color": "#d62728", "label": "diverged"},
    "error": {"marker": "X", "color": "#000000", "label": "error"},
}
PARAM_LABELS = {
    "lr": "learning rate",
    "one_minus_momentum": "1 − momentum",
    "one_minus_beta1": "1 − β₁",
    "one_minus_beta2": "1 − β₂",
    "warmup_fraction": "warmup fraction",
    "weight_decay": "weight decay",
}


def figure_uri(fig: Figure) -> str:
    """The figure as a PNG ``data:`` URI (no timestamp or software metadata)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def label_text(text: str) -> str:
    """A user string made safe for matplotlib: no mathtext, no hidden ``_`` labels."""
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def param_label(name: str) -> str:
    return PARAM_LABELS.get(name, label_text(name))


def batch_axis(ax: Axes, batch_sizes: Sequence[int]) -> None:
    """Log-2 x axis with one labelled tick per rung."""
    ax.set_xscale("log", base=2)
    ticks = sorted(set(batch_sizes))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in ticks], rotation=45 if len(ticks) > 7 else 0)
    ax.set_xlabel("batch size B")
    ax.grid(True, which="major", alpha=0.3)


def x_limits(batch_sizes: Sequence[int]) -> tuple[float, float]:
    return min(batch_sizes) / 1.5, max(batch_sizes) * 1.5


def log_grid(limits: tuple[float, float]) -> np.ndarray:
    return np.geomspace(limits[0], limits[1], 200)


def regime_spans(
    summary: StudySummary, limits: tuple[float, float]
) -> list[tuple[str, float, float]]:
    """(regime, from B, to B) intervals to shade, clipped to ``limits``."""
    if summary.regimes is None:
        return []
    bounds = summary.regimes.boundaries
    perfect_end, maximal_start = usable(bounds.perfect_end), usable(bounds.maximal_start)
    lo, hi = limits
    spans = []
    if perfect_end is not None and perfect_end > lo:
        spans.append(("perfect", lo, min(perfect_end, hi)))
    start = lo if perfect_end is None else max(perfect_end, lo)
    end = hi if maximal_start is None else min(maximal_start, hi)
    if end > start:
        spans.append(("diminishing", start, end))
    if maximal_start is not None and maximal_start < hi:
        spans.append(("maximal", max(maximal_start, lo), hi))
    return spans


def usable(value: float | None) -> float | None:
    """A regime boundary worth drawing: finite and positive (a fit at its bound is not)."""
    return value if value is not None and math.isfinite(value) and value > 0 else None


def shade_regimes(ax: Axes, spans: list[tuple[str, float, float]]) -> None:
    for regime, lo, hi in spans:
        ax.axvspan(lo, hi, color=REGIME_COLORS[regime], alpha=0.10, lw=0, zorder=0)


def regime_handles(spans: list[tuple[str, float, float]]) -> list[Any]:
    from matplotlib.patches import Patch

    return [
        Patch(color=REGIME_COLORS[regime], alpha=0.25, label=REGIME_LABELS[regime])
        for regime, _, _ in spans
    ]


def interval_of(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high
