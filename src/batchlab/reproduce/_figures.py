"""Small PNG figures of the findings, written next to the document.

One figure per finding, drawn from the evaluated findings only (the same numbers the
document prints). Figures are built with :class:`matplotlib.figure.Figure` directly,
never pyplot, so nothing touches matplotlib's global state; they are saved at a low
DPI so the committed PNGs stay small.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..analysis import LR_RULES
from ._evaluate import Findings
from ._finding_dataset_size import DatasetSizeFinding
from ._finding_fixed_epochs import FixedEpochsFinding
from ._finding_large_batch import LargeBatchFinding
from ._finding_lr_rules import LRFinding
from ._finding_momentum import MomentumFinding
from ._finding_noise_scale import NoiseFinding
from ._finding_regimes import RegimesFinding
from ._fits import FitSummary

DPI = 80
SIZE = (5.6, 3.5)
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _finish(figure: Figure, axes: Axes, title: str, path: Path, legend_size: int = 7) -> Path:
    """Title and legend, then save to ``path`` (no software tag, so reruns are identical)."""
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=legend_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def _log_axes(axes: Axes, xlabel: str, ylabel: str) -> None:
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, which="major", alpha=0.3)


def _curve(axes: Axes, fit: FitSummary, color: str, label: str, scale: float = 1.0) -> None:
    """Measured steps-to-target (dots) and the curve B_crit is read off (line), both / ``scale``."""
    reached = [(b, s) for b, s in zip(fit.batch_sizes, fit.steps, strict=True) if s is not None]
    xs, ys = zip(*reached, strict=True)
    bend = ", free bend" if fit.b_crit_model == "free bend" else ""
    axes.plot(
        xs,
        np.array(ys) / scale,
        "o",
        color=color,
        label=f"{label} (B_crit {fit.b_crit:.3g}{bend})",
    )
    grid = np.geomspace(min(fit.batch_sizes), max(fit.batch_sizes), 100)
    curve = np.array([fit.predict_steps(b) for b in grid])
    axes.plot(grid, curve / scale, "-", color=color, alpha=0.7)


def _curves_figure(
    fits: Sequence[tuple[FitSummary | None, str]], title: str, path: Path
) -> Path | None:
    drawn = [(fit, label) for fit, label in fits if fit is not None]
    if not drawn:
        return None
    figure, axes = _figure()
    for i, (fit, label) in enumerate(drawn):
        color = COLORS[i % len(COLORS)]
        _curve(axes, fit, color, label)
        if min(fit.batch_sizes) <= fit.b_crit <= max(fit.batch_sizes):
            axes.axvline(fit.b_crit, color=color, linestyle=":", alpha=0.8)
    _log_axes(axes, "batch size B", "steps to target S(B)")
    return _finish(figure, axes, title, path)


def regimes_figure(finding: RegimesFinding, path: Path) -> Path | None:
    """Finding 1: S(B) of each model, scaled by its S_min, so the bends can be compared."""
    if not finding.fits:
        return None
    figure, axes = _figure()
    for i, fit in enumerate(finding.fits):
        color = COLORS[i % len(COLORS)]
        _curve(axes, fit, color, fit.study, scale=fit.s_min)
        axes.axvline(fit.b_crit, color=color, linestyle=":", alpha=0.8)
    _log_axes(axes, "batch size B", "S(B) / S_min")
    return _finish(figure, axes, "Steps to target, relative to each model's S_min", path)


def momentum_figure(finding: MomentumFinding, path: Path) -> Path | None:
    """Finding 2: S(B) with plain SGD and with momentum."""
    return _curves_figure(
        [(finding.sgd, finding.sgd_study), (finding.momentum, finding.momentum_study)],
        "Plain SGD against momentum",
        path,
    )


def lr_figure(finding: LRFinding, path: Path) -> Path | None:
    """Finding 3: tuned LR against B, both relative to each model's first rung, with the rules."""
    rows = [r for r in finding.rows if len(r.batch_sizes) >= 2]
    if not rows:
        return None
    figure, axes = _figure()
    span = max(r.batch_sizes[-1] / r.batch_sizes[0] for r in rows)
    for i, row in enumerate(rows):
        color = COLORS[i % len(COLORS)]
        sizes = np.array(row.batch_sizes, dtype=float) / row.batch_sizes[0]
        axes.plot(sizes, np.array(row.lrs) / row.lrs[0], "o-", color=color, label=row.study)
    grid = np.geomspace(1.0, span, 50)
    for name, style in (("linear", "--"), ("square-root", ":")):
        axes.plot(grid, grid ** LR_RULES[name], style, color="gray", label=f"{name} rule")
    _log_axes(axes, "B / first rung", "tuned LR / LR at first rung")
    return _finish(figure, axes, "Tuned learning rate against the scaling rules", path)


def dataset_figure(finding: DatasetSizeFinding, path: Path) -> Path | None:
    """Finding 4: S(B) on the small and the large training set."""
    return _curves_figure(
        [
            (finding.small, f"{finding.small_study} ({finding.small_size} examples)"),
            (finding.large, f"{finding.large_study} ({finding.large_size} examples)"),
        ],
        "Small against large training set",
        path,
    )


def fixed_epochs_figure(finding: FixedEpochsFinding, path: Path) -> Path | None:
    """Finding 5: final validation metric against B at both budgets."""
    if not finding.rows:
        return None
    figure, axes = _figure()
    for which, label, color in (
        ("fixed", f"{finding.epochs:g} epochs", COLORS[1]),
        ("tuned", "tuned step budget", COLORS[0]),
    ):
        points = [
            (r.batch_size, r.final(which)) for r in finding.rows if r.final(which) is not None
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(xs, ys, "o-", color=color, label=label)
    axes.axvline(
        finding.small_batch_max, color="gray", linestyle=":", label=f"B = {finding.small_batch_max}"
    )
    axes.set_xscale("log", base=2)
    axes.set_xlabel("batch size B")
    axes.set_ylabel(f"final validation {finding.metric}")
    axes.grid(True, alpha=0.3)
    return _finish(figure, axes, "Final validation metric at two budgets", path)


def noise_figure(finding: NoiseFinding, path: Path) -> Path | None:
    """Finding 6: B_simple over each run (fraction of the way to the target) against B_crit."""
    rows = [r for r in finding.rows if any(c.b_simple for c in r.checkpoints)]
    if not rows:
        return None
    figure, axes = _figure()
    for i, row in enumerate(rows):
        color = COLORS[i % len(COLORS)]
        points = [c for c in row.checkpoints if c.b_simple is not None and c.b_simple > 0]
        xs = [c.fraction for c in points]
        ys = np.array([c.b_simple for c in points])
        lows = np.array([c.b_simple_ci[0] if c.b_simple_ci[0] else np.nan for c in points])
        highs = np.array([c.b_simple_ci[1] if c.b_simple_ci[1] else np.nan for c in points])
        errors = np.vstack([np.clip(ys - lows, 0, None), np.clip(highs - ys, 0, None)])
        axes.errorbar(
            xs,
            ys,
            yerr=np.nan_to_num(errors),
            fmt="o-",
            color=color,
            capsize=2,
            label=f"{row.study}: B_simple",
        )
        if row.average is not None:
            axes.axhline(
                row.average, color=color, linestyle=":", alpha=0.8, label=f"{row.study}: average"
            )
        if row.b_crit is not None:
            axes.axhline(
                row.b_crit, color=color, linestyle="--", alpha=0.8, label=f"{row.study}: B_crit"
            )
    axes.set_yscale("log")
    axes.set_xlabel("fraction of the run to the target")
    axes.set_ylabel("batch size")
    axes.grid(True, alpha=0.3)
    title = "Noise scale during training against measured B_crit"
    return _finish(figure, axes, title, path, legend_size=6)


def large_batch_figure(finding: LargeBatchFinding, path: Path) -> Path | None:
    """Finding 7: steps-to-target per optimizer on the compared rungs."""
    if not finding.rows:
        return None
    figure, axes = _figure()
    names = list(finding.optimizers)
    for i, name in enumerate(names):
        points = [(r.batch_size, finding.steps(r, name)) for r in finding.rows]
        points = [(b, s) for b, s in points if s is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            axes.plot(
                xs,
                ys,
                "o-",
                color=COLORS[i % len(COLORS)],
                label=f"{finding.optimizers[name]} ({name})",
            )
    _log_axes(axes, "batch size B", "steps to target")
    return _finish(figure, axes, "Large-batch optimizers at the largest rungs", path)


def write_figures(findings: Findings, directory: Path) -> dict[int, Path]:
    """Every finding's figure into ``directory``; finding number -> PNG path (if drawn)."""
    makers = (
        (1, regimes_figure, findings.regimes, "1-regimes.png"),
        (2, momentum_figure, findings.momentum, "2-momentum.png"),
        (3, lr_figure, findings.lr_rules, "3-lr-rules.png"),
        (4, dataset_figure, findings.dataset_size, "4-dataset-size.png"),
        (5, fixed_epochs_figure, findings.fixed_epochs, "5-fixed-epochs.png"),
        (6, noise_figure, findings.noise_scale, "6-noise-scale.png"),
        (7, large_batch_figure, findings.large_batch, "7-large-batch.png"),
    )
    paths = {}
    for number, make, finding, name in makers:
        path = make(finding, directory / name)  # type: ignore[operator]
        if path is not None:
            paths[number] = path
    return paths
