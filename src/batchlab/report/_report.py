"""``write_report``: one self-contained HTML file from one or more studies.

Data flows one way: results files → :func:`batchlab.results.load_study` →
:mod:`._summary` (analysis) → :mod:`._plots` (PNG data URIs) and :mod:`._view` (page
content) → :mod:`._html`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .._io import atomic_write_text
from .._secrets import redact_url
from .._version import __version__
from ..analysis import AnalysisError, PowerLawFit, ScalingFit, fit_power_law
from ..results import RESULTS_JSON, STATUSES, SearchRange, StudyData, load_study
from ..study import StudyConfig
from . import _cbs, _plots, _trial_plots, _view
from ._html import render_html
from ._summary import StudySummary, compare_to_reference, summarize

logger = logging.getLogger(__name__)

REPORT_HTML = "report.html"

Source = str | Path | Mapping[str, Any] | Any


@dataclass(frozen=True)
class ComparisonRow:
    """One study set against the reference (the first study)."""

    name: str
    reference: str
    b_crit: float | None
    s_min: float | None
    largest_efficient: int | float | None
    b_crit_ratio: float | None = None
    b_crit_ratio_ci: Any = None
    s_min_ratio: float | None = None
    s_min_ratio_ci: Any = None
    note: str = ""


@dataclass(frozen=True)
class ModelSizePowerLaw:
    """B_crit ∝ N^k across studies (N = trainable parameters): fit, sentence, figure.

    Attributes:
        fit: the law, one point per study in ``studies``.
        text: ``B_crit ∝ N^k, k = … [low, high] (95% interval)`` (the legend).
        sentence: the exponent and what it means, for the page.
        figure: the log-log figure (PNG data URI).
        studies: the studies fitted, in the report's order.
        left_out: studies with a B_crit fit but no recorded parameter count.
        unbounded: studies left out because their B_crit interval is unbounded.
    """

    fit: PowerLawFit
    text: str
    sentence: str
    figure: str
    studies: tuple[str, ...]
    left_out: tuple[str, ...] = ()
    unbounded: tuple[str, ...] = ()


#: Fewest studies (with a B_crit fit and a parameter count) the model-size law needs.
MIN_MODEL_SIZE_STUDIES = 3


@dataclass(frozen=True)
class Report:
    """A rendered report: its HTML, the studies it covers and where it goes by default.

    Attributes:
        html: the complete, self-contained page.
        title: the page title.
        studies: the studies' names, in order.
        warnings: caveats worth printing next to the file name (analysis impossible,
            best trials on the edge of the search space, studies in progress).
        default_path: ``DIR/report.html`` for one study directory, else ``./report.html``.
    """

    html: str
    title: str
    studies: tuple[str, ...]
    warnings: tuple[str, ...]
    default_path: Path

    def write(self, out: str | Path | None = None) -> Path:
        """Write the page (atomically) to ``out`` or :attr:`default_path`; return the path."""
        path = Path(out) if out is not None else self.default_path
        if path.is_dir():
            path = path / REPORT_HTML
        return atomic_write_text(path, self.html)


def _sources(dirs_or_results: Source | Iterable[Source]) -> list[Source]:
    if isinstance(dirs_or_results, str | Path | Mapping) or callable(
        getattr(dirs_or_results, "to_dict", None)
    ):
        return [dirs_or_results]
    sources = list(dirs_or_results)
    if not sources:
        raise ValueError("give at least one study directory or results")
    return sources


def _default_path(studies: Sequence[StudyData]) -> Path:
    if len(studies) == 1 and studies[0].source is not None:
        return studies[0].source / REPORT_HTML
    return Path(REPORT_HTML)


def build_report(
    dirs_or_results: Source | Iterable[Source],
    *,
    title: str | None = None,
    tol: float = 0.25,
) -> Report:
    """Read, analyse and render one or more studies into a :class:`Report`.

    Args:
        dirs_or_results: a study directory, a ``results.json`` path, a results dict,
            a ``StudyResult``, or a list of these (several studies: overlaid curves
            and a comparison table, the first study as reference).
        title: the page title (default: from the study names).
        tol: regime tolerance passed to :func:`batchlab.analysis.scaling_regimes`.

    Returns:
        The rendered report; call :meth:`Report.write` to save it.
    """
    sources = _sources(dirs_or_results)
    cbs = [data for data in (_cbs.find_cbs(source) for source in sources) if data is not None]
    # A `batchlab cbs` directory has cbs.json but no study results: it gets its own page.
    sources = [s for s in sources if not _cbs.is_cbs_only(s)]
    if not sources:
        return _cbs_report(cbs, title)
    studies = [_with_default_space(load_study(source)) for source in sources]
    summaries = [summarize(study, tol=tol) for study in studies]
    views = [_study_view(i, s, m) for i, (s, m) in enumerate(zip(studies, summaries, strict=True))]
    multi = len(studies) > 1
    if title is None:
        names = [s.name for s in studies]
        title = (
            f"Batch-size scaling: {names[0]}"
            if not multi
            else "Batch-size scaling: " + " vs ".join(names)
        )
    context = {
        "title": title,
        "version": __version__,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "studies": views,
        "multi": multi,
        "statuses": STATUSES,
        "comparison": _comparison(studies, summaries) if multi else None,
        "model_size": model_size_power_law(studies, summaries) if multi else None,
        "overlay_figure": _plots.overlay_figure(studies, summaries) if multi else None,
        "has_noise": any(v.noise_figure for v in views),
        "has_hparam_rules": any(v.hparam_rules for v in views),
        "has_rule_costs": any(v.rule_costs for v in views),
        "cbs": [_cbs.cbs_view(data) for data in cbs],
    }
    return Report(
        html=render_html(context),
        title=title,
        studies=tuple(s.name for s in studies),
        warnings=tuple(_warnings(studies, summaries)),
        default_path=_default_path(studies),
    )


def _cbs_report(cbs: Sequence[_cbs.CbsData], title: str | None) -> Report:
    """The page of ``batchlab cbs`` directories alone (no scaling study beside them)."""
    names = [data.workload for data in cbs]
    title = title or "Critical batch size over training: " + ", ".join(dict.fromkeys(names))
    context = {
        "title": title,
        "version": __version__,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cbs": [_cbs.cbs_view(data) for data in cbs],
    }
    source = cbs[0].source if len(cbs) == 1 else None
    return Report(
        html=render_html(context, "cbs_report.html"),
        title=title,
        studies=(),
        warnings=tuple(f"step {p.step}: {p.note}" for data in cbs for p in data.points if p.note),
        default_path=source / REPORT_HTML if source is not None else Path(REPORT_HTML),
    )


def write_report(
    dirs_or_results: Source | Iterable[Source],
    out: str | Path | None = None,
    *,
    title: str | None = None,
) -> Path:
    """Write a self-contained HTML report of one or more scaling studies.

    The page holds the headline (B_crit, S_min and E_min with intervals, the answer,
    regime boundaries, noise-scale prediction vs measurement), steps- and
    examples-to-target vs batch size with the fit and regimes, tuned hyperparameters
    vs the linear and square-root rules, every trial of every rung against the search
    space, the noise scale over training, several studies overlaid with their
    comparison, and what is needed to reproduce each study. Images are embedded as
    data URIs: the file opens anywhere, with no server and no network.

    Args:
        dirs_or_results: study directories, ``results.json`` files, results dicts or
            ``StudyResult`` objects (one, or a list).
        out: the HTML file to write (a directory gets ``report.html`` inside); default
            ``DIR/report.html`` for one study directory, else ``./report.html``.
        title: the page title.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: a study directory does not exist.
        ResultsError: a directory holds no results, or a results file is malformed.

    Example:
        >>> import batchlab as bl
        >>> bl.report.write_report("runs/nqm")  # doctest: +SKIP
        PosixPath('runs/nqm/report.html')
    """
    report = build_report(dirs_or_results, title=title)
    path = report.write(out)
    logger.info("report written to %s", path)
    return path


def _with_default_space(study: StudyData) -> StudyData:
    """A study from a file written before studies recorded their search space: the
    space its config implies (the optimizer's defaults when it names none)."""
    if study.search_space:
        return study
    try:
        space = StudyConfig.model_validate(study.config).search_space()
    except (ValidationError, ValueError):  # a hand-made or foreign config: no space
        return study
    return dataclasses.replace(
        study, search_space={k: SearchRange(v.low, v.high, v.scale) for k, v in space.items()}
    )


def _study_view(index: int, study: StudyData, summary: StudySummary) -> _view.StudyView:
    rung_figures = {
        r.batch_size: _trial_plots.trials_figure(r, study.search_space) for r in study.rungs
    }
    scaling = _plots.scaling_figure(study, summary)
    hyper = _plots.hyperparameter_figure(study, summary)
    noise = _plots.noise_figure(study, summary)
    rules = _plots.hparam_rules_figure(study, summary)
    figures = [scaling, hyper, rules, noise, *rung_figures.values()]
    return _view.StudyView(
        index=index,
        name=study.name,
        source=str(study.source / RESULTS_JSON) if study.source is not None else None,
        target_text=_view.target_text(study.target),
        workload_name=str(study.workload.get("name", "?")),
        workload_description=str(study.workload.get("description") or ""),
        facts=_view.headline_facts(study, summary),
        regime_text=_view.regime_text(study, summary),
        prediction_text=_view.prediction_text(study, summary),
        trend_text=_view.trend_text(summary),
        notes=list(summary.notes),
        analysis_note=summary.analysis_note,
        answer_text=summary.answer.headline if summary.answer else "",
        interval_text=(
            " ".join(
                text
                for text in (
                    summary.answer.interval_sources.sentence,
                    summary.answer.interval_sources.knee_sentence,
                )
                if text
            )
            if summary.answer and summary.answer.interval_sources
            else None
        ),
        edge_messages=[e.message for e in summary.edges],
        rungs=_view.rung_views(study, summary, rung_figures),
        best_names=_view.best_hparam_names(study),
        scaling_figure=scaling,
        hyperparameter_figure=hyper,
        noise_figure=noise,
        noise_rows=_view.noise_rows(study),
        # A storage password is never written to results.json now; older files may hold one.
        config_json=redact_url(_view.config_json(study)),
        workload_params=_view.workload_rows(study),
        environment=_view.environment_rows(study),
        wall_time_s=study.wall_time_s,
        trial_time_s=study.trial_time_s,
        created=study.created,
        status_counts=summary.status_counts,
        figures=[f for f in figures if f],
        hparam_rules=_view.hparam_rules(summary),
        hparam_rules_figure=rules,
        transfer_text=_view.transfer_text(summary),
        rule_costs=_view.rule_costs_view(summary),
    )


def _comparison(
    studies: Sequence[StudyData], summaries: Sequence[StudySummary]
) -> list[ComparisonRow]:
    reference = studies[0].name
    rows = []
    for study, summary, result in zip(
        studies, summaries, compare_to_reference(summaries), strict=True
    ):
        fit = summary.fit
        note = ""
        if fit is None:
            note = summary.analysis_note or "no fit"
        elif study is studies[0]:
            note = "reference"
        elif result is None:
            note = "the reference has no fit" if summaries[0].fit is None else "not comparable"
        rows.append(
            ComparisonRow(
                name=study.name,
                reference=reference,
                b_crit=fit.b_crit if fit else None,
                s_min=fit.s_min if fit else None,
                largest_efficient=summary.answer.largest_efficient if summary.answer else None,
                b_crit_ratio=result.b_crit_ratio if result else None,
                b_crit_ratio_ci=result.b_crit_ratio_ci if result else None,
                s_min_ratio=result.s_min_ratio if result else None,
                s_min_ratio_ci=result.s_min_ratio_ci if result else None,
                note=note,
            )
        )
    return rows


def model_size_sentence(fit: PowerLawFit, studies: int) -> str:
    """The exponent of B_crit ∝ N^k with its interval, and what it means.

    Zhang et al. 2024 ("How Does Critical Batch Size Scale in Pre-training?",
    arXiv:2410.21676, Sec. 4): at a fixed data budget D, B_crit grows with D, not with
    the model size N; so k's interval containing 0 is the expected outcome when the
    studies train to the same data budget.
    """
    law = _view.power_law_text(fit, "N")
    head = f"Over {studies} studies, {law}"
    ci = fit.exponent_ci
    if ci is None:
        return head + " (no interval: too few points)."
    if ci[0] <= 0 <= ci[1]:
        return (
            head + ": the interval contains 0, so B_crit does not measurably depend on model "
            "size here, the expected outcome when the studies train to the same data budget "
            "(Zhang et al. 2024: at fixed data, B_crit grows with the data seen, not with "
            "model size)."
        )
    trend = "grows" if ci[0] > 0 else "shrinks"
    return (
        head + f": the interval excludes 0, so B_crit {trend} with model size here; at a "
        "fixed data budget Zhang et al. 2024 find it does not depend on model size, so check "
        "whether these studies' targets or data budgets differ (B_crit grows with the data "
        "seen and as the target loss falls)."
    )


def model_size_power_law(
    studies: Sequence[StudyData],
    summaries: Sequence[StudySummary],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> ModelSizePowerLaw | None:
    """Fit B_crit = a · N^k across studies (N: trainable parameters) and draw it.

    References:
        Kaplan et al. 2020, arXiv:2001.08361, Sec. 5.1 (B_crit as a power law);
        Zhang et al. 2024, arXiv:2410.21676, Sec. 4 (B_crit against N at fixed D).

    Each study with a B_crit fit is one point, its B_crit interval the measurement
    interval of :func:`batchlab.analysis.fit_power_law`. Studies without a recorded
    parameter count are left out (and named); so are studies whose B_crit interval is
    unbounded (the ladder shows no bend), since the measurement interval needs finite
    bounds. ``None`` (no section) with fewer than :data:`MIN_MODEL_SIZE_STUDIES` usable
    studies or fewer than two distinct parameter counts.
    """
    usable: list[tuple[str, int, ScalingFit]] = []
    left_out, unbounded = [], []
    for study, summary in zip(studies, summaries, strict=True):
        fit = summary.fit
        if fit is None or not (math.isfinite(fit.b_crit) and fit.b_crit > 0):
            continue
        n = study.workload.get("parameters")  # checked by load_study: a positive int
        if n is None:
            left_out.append(study.name)
            continue
        low, high = fit.b_crit_ci
        if not 0 < low <= fit.b_crit <= high < math.inf:  # NaN fails too
            unbounded.append(study.name)
            continue
        usable.append((study.name, n, fit))
    if len(usable) < MIN_MODEL_SIZE_STUDIES or len({n for _, n, _ in usable}) < 2:
        return None
    cis = [(float(f.b_crit_ci[0]), float(f.b_crit_ci[1])) for _, _, f in usable]
    try:
        fit = fit_power_law(
            [float(n) for _, n, _ in usable],
            [float(f.b_crit) for _, _, f in usable],
            y_ci=cis,
            # Every study's fit comes from `summarize` at one level: the first one's.
            confidence=usable[0][2].confidence,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
    except AnalysisError as error:
        logger.warning("B_crit against model size not fitted: %s", error)
        return None
    names = [name for name, _, _ in usable]
    text = _view.power_law_text(fit, "N")
    figure = _plots.power_law_figure(
        fit,
        cis,
        text,
        xlabel="trainable parameters N",
        title="B_crit against model size, one point per study",
        points_label=f"B_crit per study ({fit.confidence:.0%} CI)",
        names=names,
    )
    return ModelSizePowerLaw(
        fit=fit,
        text=text,
        sentence=model_size_sentence(fit, len(usable)),
        figure=figure,
        studies=tuple(names),
        left_out=tuple(left_out),
        unbounded=tuple(unbounded),
    )


def _warnings(studies: Sequence[StudyData], summaries: Sequence[StudySummary]) -> list[str]:
    lines = []
    for study, summary in zip(studies, summaries, strict=True):
        prefix = f"{study.name}: " if len(studies) > 1 else ""
        if summary.analysis_note:
            lines.append(prefix + summary.analysis_note)
        lines.extend(prefix + note for note in summary.notes)
        lines.extend(prefix + edge.message for edge in summary.edges)
    return lines
