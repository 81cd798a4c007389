"""The per-batch-size search plots: every trial of a rung over the searched space."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from ..results import EDGE_MARGIN, RungResult, SearchRange, searched_ranges
from ._axes import (
    BEST_STYLE,
    STATUS_STYLE,
    figure_uri,
    new_figure,
    param_label,
)


def _trial_y(rung: RungResult, trials_steps: list[int]) -> tuple[float, float]:
    """(budget line, row for trials that never reached the target) on the steps axis."""
    if rung.budget_steps is not None:
        budget = float(rung.budget_steps)
    else:
        budget = float(max(trials_steps)) * 1.2 if trials_steps else 1000.0
    return budget, budget * 1.6


def trials_figure(rung: RungResult, space: dict[str, SearchRange]) -> str | None:
    """Every trial of one rung: each searched value vs its steps-to-target.

    Trials that never reached the target (budget exhausted, beaten, diverged,
    failed) sit in a row above the budget line, each outcome with its own marker;
    the best trial is a star; the search range is marked with its 5% edge zones (the
    range the rung searched: extended where its refinement reached beyond the
    configured one, as the edge flags judge it). With two searched parameters a last
    panel shows them against each other.
    """
    if not rung.trials:
        return None
    space = searched_ranges(rung, space)
    names = [n for n in space if any(n in t.params for t in rung.trials)]
    if not names:
        names = sorted({k for t in rung.trials for k in t.params})
    if not names:
        return None
    pair = len(names) == 2
    # Extra width on the right for the legend, which must not cover the best trial.
    fig, axes = new_figure(3.7 * (len(names) + pair) + 1.4, 3.2, ncols=len(names) + pair)
    reached_steps = [t.steps_to_target for t in rung.trials if t.steps_to_target is not None]
    budget, top = _trial_y(rung, reached_steps)
    for ax, name in zip(axes, names, strict=False):
        rng = space.get(name)
        if rng is not None:
            _mark_range(ax, rng, vertical=True)
        for status, style in STATUS_STYLE.items():
            xs, ys = [], []
            for trial in rung.trials:
                if name not in trial.params or _status_key(trial.status) != status:
                    continue
                xs.append(trial.params[name])
                ys.append(trial.steps_to_target if trial.steps_to_target is not None else top)
            if xs:
                ax.scatter(
                    xs,
                    ys,
                    marker=style["marker"],
                    c=style["color"],
                    s=30,
                    label=style["label"],
                    zorder=3,
                    linewidths=1.2,
                )
        best = rung.best
        if best is not None and name in best.params:
            ax.scatter(
                [best.params[name]], [best.steps_to_target], label="best trial", **BEST_STYLE
            )
        ax.axhline(budget, color="#7f7f7f", lw=0.8, ls="--")
        ax.set_yscale("log")
        if rng is None or rng.scale == "log":
            ax.set_xscale("log")
        low = min(reached_steps) / 1.5 if reached_steps else budget / 10
        ax.set_ylim(low, top * 1.4)
        ax.set_xlabel(param_label(name))
        ax.set_ylabel("steps to target")
        ax.grid(True, alpha=0.3)
        ax.set_title(f"B = {rung.batch_size}: {param_label(name)}", fontsize=10)
    if pair:
        _pair_panel(axes[-1], rung, names, space)
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="#7f7f7f", ls="--", lw=0.8, label="step budget"))
    fig.legend(handles=handles, fontsize=6.5, loc="outside right upper")
    return figure_uri(fig)


def _status_key(status: str) -> str:
    return status if status in STATUS_STYLE else "error"


def _mark_range(ax: Axes, rng: SearchRange, *, vertical: bool) -> None:
    """Search bounds as lines, their 5% edge zones shaded (log units for log scales)."""

    if rng.scale == "log":
        span = math.log(rng.high / rng.low) * EDGE_MARGIN
        inner = (rng.low * math.exp(span), rng.high * math.exp(-span))
    else:
        span = (rng.high - rng.low) * EDGE_MARGIN
        inner = (rng.low + span, rng.high - span)
    line = ax.axvline if vertical else ax.axhline
    band = ax.axvspan if vertical else ax.axhspan
    for bound in (rng.low, rng.high):
        line(bound, color="#d62728", lw=0.9, alpha=0.6)
    band(rng.low, inner[0], color="#d62728", alpha=0.08, lw=0)
    band(inner[1], rng.high, color="#d62728", alpha=0.08, lw=0)


def _pair_panel(
    ax: Axes, rung: RungResult, names: list[str], space: dict[str, SearchRange]
) -> None:
    """The two searched parameters against each other, coloured by steps-to-target."""
    x_name, y_name = names
    ok = [
        t
        for t in rung.trials
        if t.steps_to_target is not None and x_name in t.params and y_name in t.params
    ]
    bad = [
        t
        for t in rung.trials
        if t.steps_to_target is None and x_name in t.params and y_name in t.params
    ]
    if bad:
        ax.scatter(
            [t.params[x_name] for t in bad],
            [t.params[y_name] for t in bad],
            marker="x",
            c="#7f7f7f",
            s=25,
            label="did not reach",
            zorder=2,
        )
    if ok:
        points = ax.scatter(
            [t.params[x_name] for t in ok],
            [t.params[y_name] for t in ok],
            c=np.log10([t.steps_to_target for t in ok]),
            cmap="viridis_r",
            s=40,
            edgecolors="black",
            linewidths=0.4,
            zorder=3,
        )
        colorbar = ax.figure.colorbar(points, ax=ax, pad=0.01)
        colorbar.set_label("log₁₀ steps to target", fontsize=8)
    best = rung.best
    if best is not None and x_name in best.params and y_name in best.params:
        ax.scatter([best.params[x_name]], [best.params[y_name]], **BEST_STYLE)
    for name, set_scale, vertical in (
        (x_name, ax.set_xscale, True),
        (y_name, ax.set_yscale, False),
    ):
        rng = space.get(name)
        if rng is not None:
            _mark_range(ax, rng, vertical=vertical)
        set_scale("log" if rng is None or rng.scale == "log" else "linear")
    ax.set_xlabel(param_label(x_name))
    ax.set_ylabel(param_label(y_name))
    ax.set_title(f"B = {rung.batch_size}: search space", fontsize=10)
    ax.grid(True, alpha=0.3)
