"""The report's figures: matplotlib (Agg) figures rendered to PNG data URIs.

Each function draws one figure from loaded results and their summary and returns
a ``data:image/png;base64,...`` URI, so the HTML embeds every image and needs no
other file. Figures are built with :class:`matplotlib.figure.Figure` directly (no
pyplot): nothing touches matplotlib's global state or backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from ..analysis import PowerLawFit
from ..results import RungResult, StudyData
from ._axes import (
    STUDY_COLORS,
    batch_axis,
    figure_uri,
    interval_of,
    label_text,
    log_grid,
    new_figure,
    param_label,
    regime_handles,
    regime_spans,
    shade_regimes,
    x_limits,
)
from ._summary import StudySummary


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
    Where the rungs bend unlike that curve and the answer gives the free-sharpness fit
    (:func:`batchlab.analysis.fit_knee`), both panels draw it too.
    """
    fig, (ax_s, ax_e) = new_figure(11.0, 4.2, ncols=2)
    sizes = [r.batch_size for r in study.rungs]
    limits = x_limits(sizes)
    spans = regime_spans(summary, limits)
    reached = study.reached
    b = np.array([r.batch_size for r in reached], dtype=float)
    s = np.array([r.steps_to_target for r in reached], dtype=float)
    done_b, done_s, open_b, open_s = _unreached_marks(study)
    fit = summary.fit
    grid = log_grid(limits)
    for ax, examples in ((ax_s, False), (ax_e, True)):
        shade_regimes(ax, spans)
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
        sources = summary.answer.interval_sources if summary.answer else None
        knee = sources.knee if sources else None
        if knee is not None:  # the rungs bend unlike the hyperbola (explain_interval)
            steps = np.array([knee.predict_steps(x) for x in grid])
            ax.plot(
                grid,
                steps * (grid if examples else 1.0),
                "-.",
                color="#ff7f0e",
                lw=1.6,
                zorder=4,
                label=f"free bend α = {knee.sharpness:.2g}: B_crit = {knee.b_crit:.3g}",
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
        batch_axis(ax, sizes)
        ax.set_xlim(*limits)
        ax.set_ylabel("examples to target" if examples else "steps to target")
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=handles + regime_handles(spans), fontsize=7.5, loc="best")
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
    fig, (ax_s, ax_e) = new_figure(11.0, 4.4, ncols=2)
    sizes = sorted({r.batch_size for study in studies for r in study.rungs})
    limits = x_limits(sizes)
    grid = log_grid(limits)
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
        batch_axis(ax, sizes)
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
    fig, axes = new_figure(3.9 * len(panels), 3.8, ncols=len(panels))
    sizes = [r.batch_size for r in study.rungs]
    limits = x_limits(sizes)
    grid = log_grid(limits)
    spans = regime_spans(summary, limits)
    for ax, name in zip(axes, panels, strict=True):
        shade_regimes(ax, spans)
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
        batch_axis(ax, sizes)
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


#: Line style per transfer rule in :func:`hparam_rules_figure`.
_RULE_STYLE = {
    "linear": ("--", "#d62728"),
    "square-root": (":", "#2ca02c"),
    "half-life": ("--", "#9467bd"),
    "timescale": ("--", "#ff7f0e"),
    "unchanged": ("-.", "#7f7f7f"),
}
_RULE_PANELS = {"lr": "learning rate η", "beta2": "1 − β₂", "weight_decay": "weight decay λ"}


def hparam_rules_figure(study: StudyData, summary: StudySummary) -> str | None:
    """Each searched hyperparameter's tuned values vs B, with every rule's prediction.

    One log-log panel per hyperparameter of the summary's
    :class:`~batchlab.analysis.HparamTrends` (β2 drawn as 1 − β2): the tuned values as
    points, each rule's prediction from the smallest tuned rung as a line through the
    rungs. ``None`` when nothing searched varies across two tuned rungs.
    """
    trends = summary.hparam_trends
    if trends is None or not trends.trends:
        return None
    panels = list(trends.trends.values())
    fig, axes = new_figure(4.2 * len(panels), 3.8, ncols=len(panels))
    sizes = [r.batch_size for r in study.rungs]
    spans = regime_spans(summary, x_limits(sizes))
    for ax, trend in zip(axes, panels, strict=True):
        shade_regimes(ax, spans)

        def shown(values: Sequence[float], name: str = trend.name) -> list[float]:
            return [1.0 - v for v in values] if name == "beta2" else list(values)

        for rule in trend.rules:
            style, color = _RULE_STYLE.get(rule.rule, ("-", "#555555"))
            ax.plot(
                trend.batch_sizes,
                shown(rule.predicted),
                style,
                color=color,
                lw=1.4,
                label=f"{rule.rule} rule (off by ×{rule.error_factor:.3g})",
            )
        ax.plot(
            trend.batch_sizes,
            shown(trend.values),
            "o",
            color="#1f77b4",
            ms=7,
            zorder=5,
            label="tuned (best trial)",
        )
        ax.set_yscale("log")
        batch_axis(ax, sizes)
        ax.set_xlim(*x_limits(sizes))
        ax.set_ylabel(_RULE_PANELS[trend.name])
        ax.set_title(f"Tuned {_RULE_PANELS[trend.name]}", fontsize=10)
        ax.legend(fontsize=7, loc="best")
    return figure_uri(fig)


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
    fig, (ax,) = new_figure(8.0, 3.8)
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
        ci = interval_of(fit.b_crit_ci)
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


def power_law_figure(
    fit: PowerLawFit,
    cis: Sequence[tuple[float, float] | None],
    text: str,
    *,
    xlabel: str,
    title: str,
    points_label: str,
    names: Sequence[str] | None = None,
) -> str:
    """Log-log: B_crit (with its interval) against x, and the fitted power law.

    Shared by B_crit against the data seen D (``batchlab cbs`` checkpoints) and
    against the model size N (studies); see :func:`batchlab.analysis.fit_power_law`.

    Args:
        fit: the fitted law; its points are drawn.
        cis: each point's B_crit interval (``None``: exact, no bar).
        text: the law's legend entry.
        xlabel: the x axis' label.
        title: the figure's title (a user string: made safe for matplotlib here).
        points_label: the points' legend entry.
        names: optional labels written beside the points (e.g. the studies' names).
    """
    fig, (ax,) = new_figure(5.5, 4.0)
    low = [v - (ci[0] if ci else v) for v, ci in zip(fit.y, cis, strict=True)]
    high = [(ci[1] if ci else v) - v for v, ci in zip(fit.y, cis, strict=True)]
    ax.errorbar(fit.x, fit.y, yerr=[low, high], fmt="o", color="#d62728", capsize=3,
                label=points_label)  # fmt: skip
    grid = np.geomspace(min(fit.x), max(fit.x), 100)
    ax.plot(grid, fit.predict(grid), "-", color="#000000", lw=1.2, label=text)
    right = max(fit.x)
    for x, y, name in zip(fit.x, fit.y, names or (), strict=False):
        last = x == right  # written to the left, inside the axes
        ax.annotate(label_text(name), (x, y), xytext=(-4 if last else 4, 4),
                    textcoords="offset points", ha="right" if last else "left",
                    fontsize=7)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("critical batch size B_crit")
    ax.set_title(label_text(title), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return figure_uri(fig)
