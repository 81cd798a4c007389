"""The report's "Critical batch size over training" section, from ``cbs.json``.

``batchlab cbs`` writes ``DIR/cbs.json`` (:class:`batchlab.cbs.CriticalBatchResult`):
B_crit measured by branching at checkpoints of one run, with the noise scale B_simple
at the same parameters. This module reads that file (checking every field it uses),
draws B_crit and B_simple against the checkpoint step and each checkpoint's S(B), and
builds the rows the template lays out.
"""

from __future__ import annotations

import errno
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import AnalysisError, PowerLawFit, fit_power_law
from ..cbs import describe_schedule
from ..results import RESULTS_JSON, Fields, ResultsError, check_schema_version, read_json
from ._axes import figure_uri, label_text, new_figure
from ._plots import power_law_figure
from ._view import power_law_text

CBS_JSON = "cbs.json"
#: Newest cbs.json layout this reader understands.
SUPPORTED_CBS_SCHEMA = 1


@dataclass(frozen=True)
class CbsPoint:
    """One checkpoint: its target, S(B), fitted B_crit and the noise scale there."""

    step: int
    examples_seen: int | None
    value: float | None
    target_text: str
    batch_sizes: tuple[int, ...]
    steps: tuple[int | None, ...]
    exact_steps: tuple[int | None, ...]
    s_min: float | None
    b_crit: float | None
    b_crit_ci: tuple[float, float] | None
    exact_b_crit: float | None
    b_simple: float | None
    b_simple_ci: tuple[float, float] | None
    exact_b_simple: float | None
    ratio: float | None
    ratio_ci: tuple[float, float] | None
    note: str | None

    @property
    def rungs(self) -> tuple[tuple[int, int | None], ...]:
        """(batch size, steps to target) pairs."""
        return tuple(zip(self.batch_sizes, self.steps, strict=True))


@dataclass(frozen=True)
class CbsData:
    """A whole ``cbs.json``."""

    source: Path | None
    workload: str
    optimizer: str
    settings: dict[str, Any]
    points: tuple[CbsPoint, ...]
    schedule: dict[str, Any] | None = None


@dataclass(frozen=True)
class CbsView:
    """What the template shows for one ``cbs.json``."""

    name: str
    source: str | None
    figure: str
    summary: list[str]
    rows: list[CbsPoint]
    settings: list[tuple[str, str]]
    has_exact: bool
    schedule: str = ""
    power_law: CbsPowerLaw | None = None


def cbs_path(source: str | Path) -> Path | None:
    """``DIR/cbs.json`` (or ``source`` itself if it is such a file), if it exists."""
    path = Path(source)
    if path.is_file():
        return path if path.name == CBS_JSON else path.parent / CBS_JSON
    return path / CBS_JSON


def is_cbs_only(source: Any) -> bool:
    """Whether ``source`` is a ``cbs.json`` or a directory with one and no study results."""
    if not isinstance(source, str | Path):
        return False
    path = Path(source)
    if path.is_file():
        return path.name == CBS_JSON
    return (path / CBS_JSON).is_file() and not (path / RESULTS_JSON).is_file()


def find_cbs(source: Any) -> CbsData | None:
    """The ``cbs.json`` beside a study source (a directory or a file in it), if any."""
    if not isinstance(source, str | Path):
        return None
    path = cbs_path(source)
    if path is None or not path.is_file():
        return None
    return load_cbs(path)


def load_cbs(path: str | Path) -> CbsData:
    """Read and check one ``cbs.json`` (a file, or a directory holding one).

    Raises:
        FileNotFoundError: no such file.
        ResultsError: not valid JSON, not a cbs result, or a field is malformed.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CBS_JSON
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", str(path))
    return parse_cbs(read_json(path), str(path), path.parent)


def parse_cbs(data: Any, where: str = "cbs", source: Path | None = None) -> CbsData:
    """Check a ``CriticalBatchResult.to_dict()`` and keep what the report shows."""
    f = Fields(where)
    if not isinstance(data, dict) or data.get("kind") != "batchlab-cbs":
        raise ResultsError(f"{where}: not a `batchlab cbs` result (expected kind 'batchlab-cbs')")
    check_schema_version(data, where, SUPPORTED_CBS_SCHEMA)
    workload = f.get(data, "workload", "workload", "dict")
    raw_points = f.get(data, "checkpoints", "checkpoints", "list")
    points = tuple(_parse_point(f, raw, f"checkpoints[{i}]") for i, raw in enumerate(raw_points))
    if not points:
        raise ResultsError(f"{where}: field 'checkpoints' is empty")
    return CbsData(
        source=source,
        workload=str(f.get(workload, "name", "workload.name", "str")),
        optimizer=str(f.get(data, "optimizer", "optimizer", "str")),
        settings=f.get(data, "settings", "settings", "dict", optional=True) or {},
        points=tuple(sorted(points, key=lambda p: p.step)),
        schedule=f.get(data, "schedule", "schedule", "dict", optional=True)
        or f.get(
            data.get("settings") or {}, "schedule", "settings.schedule", "dict", optional=True
        ),
    )


def _pair(f: Fields, raw: Any, at: str) -> tuple[float, float] | None:
    """An interval [low, high]; ``None`` if absent; a ``None`` end means unbounded."""
    if raw is None:
        return None
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise f.fail(at, "a [low, high] pair", raw)
    low = 0.0 if raw[0] is None else f.check(raw[0], f"{at}[0]", "number")
    high = math.inf if raw[1] is None else f.check(raw[1], f"{at}[1]", "number")
    return float(low), float(high)


def _number(f: Fields, obj: Any, key: str, at: str) -> float | None:
    if not isinstance(obj, dict):
        return None
    return f.get(obj, key, f"{at}.{key}", "number", optional=True)


def _parse_point(f: Fields, raw: Any, at: str) -> CbsPoint:
    f.check(raw, at, "dict")
    target = f.get(raw, "target", f"{at}.target", "dict")
    metric = f.get(target, "metric", f"{at}.target.metric", "str")
    value = f.get(target, "value", f"{at}.target.value", "number")
    sign = "≥" if target.get("direction") == "max" else "≤"
    rungs = f.get(raw, "rungs", f"{at}.rungs", "list")
    sizes, steps, exact = [], [], []
    for i, rung in enumerate(rungs):
        where = f"{at}.rungs[{i}]"
        f.check(rung, where, "dict")
        sizes.append(f.get(rung, "batch_size", f"{where}.batch_size", "int"))
        steps.append(
            f.get(rung, "steps_to_target", f"{where}.steps_to_target", "int", optional=True)
        )
        exact.append(
            f.get(
                rung,
                "exact_steps_to_target",
                f"{where}.exact_steps_to_target",
                "int",
                optional=True,
            )
        )
    fit = raw.get("fit")
    exact_fit = raw.get("exact_fit")
    noise = raw.get("noise_scale")
    exact_noise = raw.get("exact_noise_scale")
    prediction = raw.get("prediction")
    for name, obj in (("fit", fit), ("exact_fit", exact_fit), ("noise_scale", noise),
                      ("exact_noise_scale", exact_noise), ("prediction", prediction)):  # fmt: skip
        if obj is not None:
            f.check(obj, f"{at}.{name}", "dict")
    return CbsPoint(
        step=f.get(raw, "step", f"{at}.step", "int"),
        examples_seen=f.get(raw, "examples_seen", f"{at}.examples_seen", "int", optional=True),
        value=f.get(raw, "value", f"{at}.value", "number", optional=True),
        target_text=f"{metric} {sign} {value:.4g}",
        batch_sizes=tuple(sizes),
        steps=tuple(steps),
        exact_steps=tuple(exact),
        s_min=_number(f, fit, "s_min", f"{at}.fit"),
        b_crit=_number(f, fit, "b_crit", f"{at}.fit"),
        b_crit_ci=_pair(f, fit.get("b_crit_ci"), f"{at}.fit.b_crit_ci") if fit else None,
        exact_b_crit=_number(f, exact_fit, "b_crit", f"{at}.exact_fit"),
        b_simple=_number(f, noise, "b_simple", f"{at}.noise_scale"),
        b_simple_ci=_pair(f, noise.get("b_simple_ci"), f"{at}.noise_scale.b_simple_ci")
        if noise
        else None,
        exact_b_simple=_number(f, exact_noise, "b_simple", f"{at}.exact_noise_scale"),
        ratio=_number(f, prediction, "ratio", f"{at}.prediction"),
        ratio_ci=_pair(f, prediction.get("ratio_ci"), f"{at}.prediction.ratio_ci")
        if prediction
        else None,
        note=None if raw.get("note") is None else str(raw.get("note")),
    )


# ----- figure -----------------------------------------------------------------------------

_CHECKPOINT_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
                      "#17becf", "#bcbd22")  # fmt: skip


def _errorbar(ax: Any, x: Sequence[float], values: Sequence[float | None],
              cis: Sequence[tuple[float, float] | None], limits: tuple[float, float],
              **style: Any) -> None:  # fmt: skip
    """Points with (possibly one-sided) interval bars, clipped to the y limits."""
    xs, ys, lows, highs = [], [], [], []
    for xi, value, ci in zip(x, values, cis, strict=True):
        if value is None or not (math.isfinite(value) and value > 0):
            continue
        low, high = ci if ci is not None else (value, value)
        low = min(max(low, limits[0]), value)
        high = max(min(high, limits[1]), value)
        xs.append(xi)
        ys.append(value)
        lows.append(value - low)
        highs.append(high - value)
    if xs:
        ax.errorbar(xs, ys, yerr=[lows, highs], capsize=3, **style)


def cbs_figure(data: CbsData) -> str:
    """B_crit (with its interval) and B_simple against the checkpoint step; S(B) per checkpoint."""
    fig, (ax, ax_s) = new_figure(10.0, 4.0, ncols=2)
    points = data.points
    steps = [float(p.step) for p in points]
    finite = [v for p in points
              for v in (p.b_crit, p.b_simple, p.exact_b_crit, p.exact_b_simple)
              if v is not None and math.isfinite(v) and v > 0]  # fmt: skip
    limits = (min(finite) / 5, max(finite) * 5) if finite else (0.1, 10.0)
    span = (max(steps) - min(steps)) or 1.0
    shift = 0.008 * span  # side by side, so the bars do not hide each other
    _errorbar(ax, [s - shift for s in steps], [p.b_crit for p in points],
              [p.b_crit_ci for p in points], limits, fmt="o-", color="#d62728", lw=1.6,
              label="B_crit, measured by branching (95% CI)")  # fmt: skip
    _errorbar(ax, [s + shift for s in steps], [p.b_simple for p in points],
              [p.b_simple_ci for p in points], limits, fmt="s--", color="#1f77b4", lw=1.2,
              label="B_simple, noise scale (95% CI)")  # fmt: skip
    if any(p.exact_b_crit is not None for p in points):
        xs = [s for s, p in zip(steps, points, strict=True) if p.exact_b_crit is not None]
        ys = [p.exact_b_crit for p in points if p.exact_b_crit is not None]
        ax.plot(xs, ys, "o", mfc="none", mec="#000000", ms=9, label="B_crit, exact expected curve")
    if any(p.exact_b_simple is not None for p in points):
        xs = [s for s, p in zip(steps, points, strict=True) if p.exact_b_simple is not None]
        ys = [p.exact_b_simple for p in points if p.exact_b_simple is not None]
        ax.plot(xs, ys, "x", color="#1f77b4", ms=8, label="B_simple, closed form")
    ax.set_yscale("log")
    ax.set_ylim(*limits)
    ax.set_xlabel("checkpoint (training step of the base run)")
    ax.set_ylabel("batch size")
    ax.set_title(label_text(f"{data.workload}, {data.optimizer}: critical batch size"), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")

    sizes = sorted({b for p in points for b in p.batch_sizes})
    for index, point in enumerate(points):
        color = _CHECKPOINT_COLORS[index % len(_CHECKPOINT_COLORS)]
        reached = [(b, s) for b, s in zip(point.batch_sizes, point.steps, strict=True) if s]
        if reached:
            b, s = zip(*reached, strict=True)
            ax_s.plot(b, s, "o", color=color, label=f"step {point.step}")
        if point.s_min is not None and point.b_crit is not None and sizes:
            grid = np.geomspace(sizes[0], sizes[-1], 100)
            ax_s.plot(grid, point.s_min * (1 + point.b_crit / grid), "-", color=color, lw=1)
    ax_s.set_xscale("log", base=2)
    ax_s.set_yscale("log")
    ax_s.set_xlabel("branch batch size B")
    ax_s.set_ylabel("steps to the target")
    ax_s.set_title("S(B) per checkpoint: points measured, lines fitted", fontsize=10)
    ax_s.grid(True, alpha=0.3)
    if any(any(p.steps) for p in points):
        ax_s.legend(fontsize=7, loc="best")
    return figure_uri(fig)


# ----- page content -----------------------------------------------------------------------


def _short(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def cbs_summary(data: CbsData) -> list[str]:
    """Sentences: how B_crit moved over training and how far B_simple is from it."""
    lines = []
    measured = [p for p in data.points if p.b_crit is not None]
    if len(measured) >= 2:
        first, last = measured[0], measured[-1]
        assert first.b_crit is not None and last.b_crit is not None
        lines.append(
            f"B_crit went from {_short(first.b_crit)} at step {first.step} to "
            f"{_short(last.b_crit)} at step {last.step} ({last.b_crit / first.b_crit:.2g}×)."
        )
    ratios = [p for p in data.points if p.ratio is not None]
    if ratios:
        parts = []
        for p in ratios:
            assert p.ratio is not None
            ci = p.ratio_ci
            interval = f" [{_short(ci[0])}–{_short(ci[1])}]" if ci and math.isfinite(ci[1]) else ""
            parts.append(f"step {p.step}: {p.ratio:.2g}×{interval}")
        lines.append(
            f"Noise scale over measured critical batch size, B_simple / B_crit, under "
            f"{data.optimizer}: " + "; ".join(parts) + ". 1 would be a perfect prediction."
        )
    if not measured:
        lines.append("No checkpoint has a fitted B_crit (fewer than three batch sizes reached "
                     "the target); see the notes in the table.")  # fmt: skip
    return lines


def _settings_rows(data: CbsData) -> list[tuple[str, str]]:
    return [(str(k), json.dumps(v)) for k, v in data.settings.items()]


# ----- B_crit as a power law in the data seen ------------------------------------------------


@dataclass(frozen=True)
class CbsPowerLaw:
    """B_crit ∝ D^k over the checkpoints (D = examples seen), its figure and legend text."""

    fit: PowerLawFit
    text: str
    figure: str
    left_out: list[int]


def cbs_power_law(data: CbsData, *, n_bootstrap: int = 2000, seed: int = 0) -> CbsPowerLaw | None:
    """Fit B_crit = a · D^k across checkpoints (Kaplan et al. 2020, Sec. 5.1; Zhang et al.
    2024, Sec. 4) with :func:`batchlab.analysis.fit_power_law`, and draw it.

    D is each checkpoint's ``examples_seen``. Points need D > 0 and a positive B_crit;
    a point whose B_crit interval is unbounded or not positive (the fit could not
    bound it) is left out, since the measurement interval needs finite bounds; points
    without an interval count as exact. ``None`` with fewer than two usable points at
    different D.
    """
    usable, left_out = [], []
    for p in data.points:
        if p.b_crit is None or not (math.isfinite(p.b_crit) and p.b_crit > 0):
            continue
        if p.examples_seen is None or p.examples_seen <= 0:
            continue
        ci = p.b_crit_ci
        if ci is not None and not (0 < ci[0] <= p.b_crit <= ci[1] < math.inf):
            left_out.append(p.step)
            continue
        usable.append(p)
    if len({p.examples_seen for p in usable}) < 2:
        return None
    x = [float(p.examples_seen) for p in usable]  # type: ignore[arg-type]
    y = [float(p.b_crit) for p in usable]  # type: ignore[arg-type]
    cis = [p.b_crit_ci for p in usable]
    try:
        fit = fit_power_law(
            x, y, y_ci=cis if any(ci is not None for ci in cis) else None,
            n_bootstrap=n_bootstrap, seed=seed,
        )  # fmt: skip
    except AnalysisError:
        return None
    text = power_law_text(fit)
    figure = power_law_figure(
        fit, cis, text,
        xlabel="examples seen by the base run, D",
        title=f"{data.workload}, {data.optimizer}: B_crit against D",
        points_label="B_crit per checkpoint (95% CI)",
    )  # fmt: skip
    return CbsPowerLaw(fit, text, figure, left_out)


def cbs_view(data: CbsData, name: str | None = None) -> CbsView:
    """Everything the template shows for one ``cbs.json``."""
    return CbsView(
        name=name or (data.source.name if data.source is not None else data.workload),
        source=str(data.source / CBS_JSON) if data.source is not None else None,
        figure=cbs_figure(data),
        summary=cbs_summary(data),
        rows=list(data.points),
        settings=_settings_rows(data),
        has_exact=any(p.exact_b_crit is not None for p in data.points),
        schedule=describe_schedule(data.schedule),
        power_law=cbs_power_law(data),
    )
