"""The report's figures: matplotlib (Agg) figures rendered to PNG data URIs.

Each function draws one figure from loaded results and their summary and returns
a ``data:image/png;base64,...`` URI, so the HTML embeds every image and needs no
other file. Figures are built with :class:`matplotlib.figure.Figure` directly (no
pyplot): nothing touches matplotlib's global state or backend.
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
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

from ..results import RungResult, SearchRange, StudyData
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


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
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


def _batch_axis(ax: Axes, batch_sizes: Sequence[int]) -> None:
    """Log-2 x axis with one labelled tick per rung."""
    ax.set_xscale("log", base=2)
    ticks = sorted(set(batch_sizes))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in ticks], rotation=45 if len(ticks) > 7 else 0)
    ax.set_xlabel("batch size B")
    ax.grid(True, which="major", alpha=0.3)


def _x_limits(batch_sizes: Sequence[int]) -> tuple[float, float]:
    return min(batch_sizes) / 1.5, max(batch_sizes) * 1.5


def _grid(limits: tuple[float, float]) -> np.ndarray:
    return np.geomspace(limits[0], limits[1], 200)


def regime_spans(
    summary: StudySummary, limits: tuple[float, float]
) -> list[tuple[str, float, float]]:
    """(regime, from B, to B) intervals to shade, clipped to ``limits``."""
    if summary.regimes is None:
        return []
    bounds = summary.regimes.boundaries
    perfect_end, maximal_start = _usable(bounds.perfect_end), _usable(bounds.maximal_start)
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


def _usable(value: float | None) -> float | None:
    """A regime boundary worth drawing: finite and positive (a fit at its bound is not)."""
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _shade_regimes(ax: Axes, spans: list[tuple[str, float, float]]) -> None:
    for regime, lo, hi in spans:
        ax.axvspan(lo, hi, color=REGIME_COLORS[regime], alpha=0.10, lw=0, zorder=0)


def _regime_handles(spans: list[tuple[str, float, float]]) -> list[Any]:
    from matplotlib.patches import Patch

    return [
        Patch(color=REGIME_COLORS[regime], alpha=0.25, label=REGIME_LABELS[regime])
        for regime, _, _ in spans
    ]


def _unreached_marks(study: StudyData) -> tuple[list[int], list[float], list[int], list[float]]:
    """Rungs without a result: (finished B, budget) and (in-progress B, budget)."""
    done_b, done_s, open_b, open_s = [], [], [], []
    for rung in study.rungs:
        if rung.steps_to_target is not None or rung.budget_steps is None:
            continue
        if rung.complete:
            done_b.append(rung.batch_size)
            done_s.append(float(rung.budget_steps))
        else:
            open_b.append(rung.batch_size)
            open_s.append(float(rung.budget_steps))
    return done_b, done_s, open_b, open_s


def scaling_figure(study: StudyData, summary: StudySummary) -> str:
    """Steps-to-target and examples-to-target vs batch size (log-log), fit and regimes.

    Left: measured steps, the fitted S(B) = S_min (1 + B_crit/B), the perfect-scaling
    line (slope −1 through the smallest reached rung) and the S_min asymptote.
    Right: examples B·S(B) with the fitted E(B) and E_min. Both shade the regimes.
    """
    fig, (ax_s, ax_e) = _figure(11.0, 4.2, ncols=2)
    sizes = [r.batch_size for r in study.rungs]
    limits = _x_limits(sizes)
    spans = regime_spans(summary, limits)
    reached = study.reached
    b = np.array([r.batch_size for r in reached], dtype=float)
    s = np.array([r.steps_to_target for r in reached], dtype=float)
    done_b, done_s, open_b, open_s = _unreached_marks(study)
    fit = summary.fit
    grid = _grid(limits)
    for ax, examples in ((ax_s, False), (ax_e, True)):
        _shade_regimes(ax, spans)
        scale = b if examples else 1.0
        ax.plot(b, s * scale, "o", color="#1f77b4", ms=7, zorder=5, label="measured (best trial)")
        if done_b:
            y = np.array(done_s) * (np.array(done_b) if examples else 1.0)
            ax.plot(
                done_b,
                y,
                "^",
                mfc="none",
                color="#d62728",
                ms=8,
                zorder=5,
                label="not reached within budget",
            )
        if open_b:
            y = np.array(open_s) * (np.array(open_b) if examples else 1.0)
            ax.plot(
                open_b,
                y,
                "s",
                mfc="none",
                color="#7f7f7f",
                ms=7,
                zorder=5,
                label="in progress (budget)",
            )
        if fit is not None:
            model = [fit.predict_examples(x) if examples else fit.predict_steps(x) for x in grid]
            label = (
                "fit E(B) = E_min (1 + B/B_crit)" if examples else "fit S(B) = S_min (1 + B_crit/B)"
            )
            ax.plot(grid, model, "-", color="#1f77b4", lw=1.8, zorder=4, label=label)
            asymptote = fit.e_min if examples else fit.s_min
            ax.axhline(
                asymptote,
                color="#555555",
                ls=":",
                lw=1.2,
                label=f"{'E_min' if examples else 'S_min'} = {asymptote:,.0f}",
            )
        if len(b) and not examples:
            ax.plot(
                grid,
                s[0] * b[0] / grid,
                "--",
                color="#7f7f7f",
                lw=1.2,
                label="perfect scaling (slope −1)",
            )
        ax.set_yscale("log")
        _batch_axis(ax, sizes)
        ax.set_xlim(*limits)
        ax.set_ylabel("examples to target" if examples else "steps to target")
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=handles + _regime_handles(spans), fontsize=7.5, loc="best")
    ax_s.set_title("Steps to target")
    ax_e.set_title("Examples to target")
    _fit_limits(ax_s, ax_e, s, b, done_s + open_s, done_b + open_b)
    return figure_uri(fig)


def _fit_limits(
    ax_s: Axes, ax_e: Axes, s: np.ndarray, b: np.ndarray, extra_s: list[float], extra_b: list[int]
) -> None:
    """Keep the measured points in view when a model line runs far off."""
    steps = list(s) + list(extra_s)
    examples = list(s * b) + [x * y for x, y in zip(extra_s, extra_b, strict=True)]
    if steps:
        ax_s.set_ylim(min(steps) / 2.5, max(steps) * 2.5)
        ax_e.set_ylim(min(examples) / 2.5, max(examples) * 2.5)


def overlay_figure(studies: Sequence[StudyData], summaries: Sequence[StudySummary]) -> str:
    """Several studies on one log-log plot: steps and examples to target, with fits."""
    fig, (ax_s, ax_e) = _figure(11.0, 4.4, ncols=2)
    sizes = sorted({r.batch_size for study in studies for r in study.rungs})
    limits = _x_limits(sizes)
    grid = _grid(limits)
    for index, (study, summary) in enumerate(zip(studies, summaries, strict=True)):
        color = STUDY_COLORS[index % len(STUDY_COLORS)]
        b = np.array([r.batch_size for r in study.reached], dtype=float)
        s = np.array([r.steps_to_target for r in study.reached], dtype=float)
        name = label_text(study.name)
        for ax, examples in ((ax_s, False), (ax_e, True)):
            ax.plot(b, s * (b if examples else 1.0), "o", color=color, ms=6, label=name)
            if summary.fit is not None:
                fit = summary.fit
                ax.plot(
                    grid,
                    [fit.predict_examples(x) if examples else fit.predict_steps(x) for x in grid],
                    "-",
                    color=color,
                    lw=1.5,
                    alpha=0.8,
                )
    for ax, examples in ((ax_s, False), (ax_e, True)):
        ax.set_yscale("log")
        _batch_axis(ax, sizes)
        ax.set_xlim(*limits)
        ax.set_ylabel("examples to target" if examples else "steps to target")
        handles, _ = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], color="#555555", lw=1.5, label="fit S(B) / E(B)"))
        ax.legend(handles=handles, fontsize=7.5, loc="best")
    ax_s.set_title("Steps to target (points: measured, lines: fits)")
    ax_e.set_title("Examples to target")
    values = [r.steps_to_target for st in studies for r in st.reached]
    examples_ = [r.steps_to_target * r.batch_size for st in studies for r in st.reached]
    if values:
        ax_s.set_ylim(min(values) / 2.5, max(values) * 2.5)
        ax_e.set_ylim(min(examples_) / 2.5, max(examples_) * 2.5)
    return figure_uri(fig)


def _best_value(rung: RungResult, name: str) -> float | None:
    """The best trial's value of a searched parameter (or resulting hyperparameter)."""
    best = rung.best
    if name == "lr" and rung.best_hparams and "lr" in rung.best_hparams:
        return rung.best_hparams["lr"]
    if best is None:
        return None
    return best.params.get(name, best.hparams.get(name))


def _momentum(rung: RungResult) -> float | None:
    best = rung.best
    hparams = rung.best_hparams or (best.hparams if best else {})
    if "momentum" in hparams:
        return hparams["momentum"]
    if best is not None and "one_minus_momentum" in best.params:
        return 1.0 - best.params["one_minus_momentum"]
    return None


def hyperparameter_figure(study: StudyData, summary: StudySummary) -> str | None:
    """Tuned hyperparameters vs batch size; LR with the linear and square-root rules.

    The rules are drawn from the smallest reached rung: η(B) = η₀ (B/B₀) and
    η₀ (B/B₀)^½ (Goyal et al. 2017; Krizhevsky 2014). With tuned momentum, a panel
    shows the effective learning rate η/(1 − μ) (Shallue et al. 2018, Sec. 4.5).
    Returns ``None`` when no rung reached the target.
    """
    reached = [r for r in study.reached if r.best is not None or r.best_hparams]
    if not reached:
        return None
    space = study.search_space
    names = ["lr"] + [n for n in space if n != "lr"]
    momentum_tuned = any(n in space for n in ("one_minus_momentum", "momentum"))
    panels = names + (["effective_lr"] if momentum_tuned else [])
    fig, axes = _figure(3.9 * len(panels), 3.8, ncols=len(panels))
    sizes = [r.batch_size for r in study.rungs]
    limits = _x_limits(sizes)
    grid = _grid(limits)
    spans = regime_spans(summary, limits)
    for ax, name in zip(axes, panels, strict=True):
        _shade_regimes(ax, spans)
        points = []
        for rung in reached:
            if name == "effective_lr":
                lr, mu = _best_value(rung, "lr"), _momentum(rung)
                value = lr / (1 - mu) if lr is not None and mu is not None and mu < 1 else None
            else:
                value = _best_value(rung, name)
            if value is not None:
                points.append((rung.batch_size, value))
        rng = space.get(name)
        if rng is not None:
            ax.axhspan(rng.low, rng.high, color="#1f77b4", alpha=0.06, lw=0, zorder=0)
            for bound in (rng.low, rng.high):
                ax.axhline(bound, color="#1f77b4", ls="-", lw=0.8, alpha=0.5)
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, "o-", color="#1f77b4", ms=6, lw=1.2, label="tuned (best trial)")
            if name in ("lr", "effective_lr"):
                b0, v0 = xs[0], ys[0]
                ax.plot(
                    grid,
                    v0 * grid / b0,
                    "--",
                    color="#d62728",
                    lw=1.1,
                    label=f"linear rule from B={b0}",
                )
                ax.plot(
                    grid,
                    v0 * np.sqrt(grid / b0),
                    ":",
                    color="#2ca02c",
                    lw=1.5,
                    label=f"square-root rule from B={b0}",
                )
                ys_all = list(ys) + ([rng.low, rng.high] if rng else [])
                ax.set_ylim(min(ys_all) / 3, max(ys_all) * 3)
        log_scale = name in ("lr", "effective_lr") or (rng is not None and rng.scale == "log")
        if log_scale:
            ax.set_yscale("log")
        _batch_axis(ax, sizes)
        ax.set_xlim(*limits)
        title = "effective LR η / (1 − μ)" if name == "effective_lr" else param_label(name)
        ax.set_title(f"Tuned {title}")
        ax.set_ylabel(title)
        handles, _ = ax.get_legend_handles_labels()
        if rng is not None:
            from matplotlib.patches import Patch

            handles.append(Patch(color="#1f77b4", alpha=0.15, label="search space"))
        ax.legend(handles=handles, fontsize=7, loc="best")
    return figure_uri(fig)


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
    the best trial is a star; the search range is marked with its 5% edge zones.
    With two searched parameters a last panel shows them against each other.
    """
    if not rung.trials:
        return None
    names = [n for n in space if any(n in t.params for t in rung.trials)]
    if not names:
        names = sorted({k for t in rung.trials for k in t.params})
    if not names:
        return None
    pair = len(names) == 2
    # Extra width on the right for the legend, which must not cover the best trial.
    fig, axes = _figure(3.7 * (len(names) + pair) + 1.4, 3.2, ncols=len(names) + pair)
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
                [best.params[name]],
                [best.steps_to_target],
                marker="*",
                s=220,
                c="#ffbf00",
                edgecolors="black",
                linewidths=0.8,
                zorder=4,
                label="best trial",
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
    from ._edges import EDGE_MARGIN

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
        ax.scatter(
            [best.params[x_name]],
            [best.params[y_name]],
            marker="*",
            s=220,
            c="#ffbf00",
            edgecolors="black",
            linewidths=0.8,
            zorder=4,
        )
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


def noise_figure(study: StudyData, summary: StudySummary) -> str | None:
    """B_simple over training with its 95% interval, beside the measured B_crit.

    Log scale, as B_simple spans decades over training. The first steps' estimates
    can be non-positive (|G|² is noisy before many steps are averaged; see
    :mod:`batchlab.noise`): they are not drawn, and the title says how many there
    were. The y range follows the bulk of the estimates (5th to 95th percentile) and
    B_crit, so the first steps' very wide intervals don't flatten the rest.
    """
    noise = study.noise_scale
    if noise is None:
        return None
    fig, (ax,) = _figure(8.0, 3.8)
    steps = np.array(noise.steps, dtype=float)
    values = np.array(noise.b_simple, dtype=float)
    low, high = np.array(noise.ci_low), np.array(noise.ci_high)
    shown = values > 0
    band = shown & np.isfinite(high) & (high > 0)
    if band.any():
        floor = values[shown].min() / 1e3
        ax.fill_between(
            steps,
            np.where(band, np.maximum(low, floor), np.nan),
            np.where(band, high, np.nan),
            color="#1f77b4",
            alpha=0.2,
            lw=0,
            label="95% interval",
        )
    ax.plot(
        steps,
        np.where(shown, values, np.nan),
        "-",
        color="#1f77b4",
        lw=1.6,
        marker="." if len(steps) < 60 else None,
        label="B_simple (noise scale)",
    )
    fit = summary.fit
    anchors = [float(v) for v in np.percentile(values[shown], [5, 95])] if shown.any() else []
    if fit is not None:
        ax.axhline(
            fit.b_crit,
            color="#d62728",
            ls="--",
            lw=1.3,
            label=f"B_crit from the study = {fit.b_crit:,.4g}",
        )
        ci = _interval(fit.b_crit_ci)
        if ci is not None:
            ax.axhspan(ci[0], ci[1], color="#d62728", alpha=0.08, lw=0)
        if math.isfinite(fit.b_crit) and fit.b_crit > 0:
            anchors.append(fit.b_crit)
    if anchors:
        ax.set_yscale("log")
        ax.set_ylim(min(anchors) / 3, max(anchors) * 3)
    ax.set_xlabel("training step")
    ax.set_ylabel("B_simple = tr(Σ) / |G|²")
    title = "Gradient noise scale over training"
    if noise.batch_size is not None:
        title += f" (measured at batch size {noise.batch_size})"
    hidden = int((~shown).sum())
    if hidden:
        title += f"; {hidden} non-positive early estimate{'s' if hidden > 1 else ''} not drawn"
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return figure_uri(fig)


def _interval(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high
