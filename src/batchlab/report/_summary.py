"""What the report says about a study: fit, regimes, prediction check, warnings.

The numbers come from :mod:`batchlab.analysis`, recomputed from the rungs'
steps-to-target (not read from the ``analysis`` block of ``results.json``, which
may be missing, stale, or from an older version). Nothing here draws or renders.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from ..analysis import (
    BatchSizeAnswer,
    FitComparison,
    HparamTrends,
    LRTrend,
    PredictionComparison,
    RuleCost,
    ScalingFit,
    ScalingRegimes,
    compare_fits,
    compare_prediction,
)
from ..results import (
    STATUSES,
    EdgeWarning,
    StudyData,
    TrialRecord,
    edge_warnings,
    recheck_stalled,
    steps_text,
    summarize_rungs,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudySummary:
    """The analysis of one study as the report presents it.

    Attributes:
        fit: the fitted S(B) (``batchlab.analysis`` object), or ``None``.
        regimes: the scaling regimes, or ``None``.
        lr_trend: the tuned-LR trend, or ``None`` (fewer than two tuned LRs).
        hparam_trends: every searched hyperparameter (lr, β2, weight decay) against B
            with the transfer rules' predictions, or ``None`` (fewer than two tuned rungs).
        prediction: the noise-scale prediction checked against the fit, or ``None``.
        analysis_note: why there is no fit, when there is none.
        notes: other caveats (study in progress, rungs that never reached the target).
        status_counts: trials per outcome over all rungs.
        edges: best trials on the edge of the search space.
        answer: what to train with (B_crit, cost per rung, the two 20% rules), or
            ``None`` for a summary made without a ladder.
        rule_costs: per transfer rule (``[transfer]``), its steps-to-target against
            the tuned ones (``None``: no rule ran).
    """

    fit: ScalingFit | None = None
    regimes: ScalingRegimes | None = None
    lr_trend: LRTrend | None = None
    hparam_trends: HparamTrends | None = None
    prediction: PredictionComparison | None = None
    analysis_note: str | None = None
    notes: tuple[str, ...] = ()
    status_counts: dict[str, int] = field(default_factory=dict)
    edges: tuple[EdgeWarning, ...] = ()
    answer: BatchSizeAnswer | None = None
    rule_costs: dict[str, RuleCost] | None = None


def status_counts(study: StudyData) -> dict[str, int]:
    """Finished trials per outcome (known outcomes first, in a fixed order), plus running."""
    counts = Counter(t.status for r in study.rungs for t in r.trials)
    ordered = {s: counts.pop(s, 0) for s in STATUSES}
    ordered.update(sorted(counts.items()))
    ordered["running"] = sum(r.trials_running for r in study.rungs)
    return ordered


def _opt_in_notes(study: StudyData) -> list[str]:
    """Say when opt-in search shortcuts (warm start, pruning) shaped the measurement."""
    notes = []
    search = study.config.get("search") or {}
    if search.get("warm_start"):
        notes.append(
            "Warm-started search (opt-in): each batch size searched a window of width "
            f"{search.get('warm_start_width', 0.25):g} (fraction of each range) around the "
            "next smaller batch size's best point; the smallest searched the whole space."
        )
    if (study.config.get("pruning") or {}).get("enabled"):
        pruned = sum(1 for r in study.rungs for t in r.trials if t.status == "pruned")
        notes.append(
            f"Pruning (opt-in, median stopping rule): {pruned} trial(s) were stopped as "
            "hopeless from their partial curves; a pruned trial might have reached the "
            "target, so steps-to-target may be overestimated."
        )
    return notes


def _steps_of(runs: list[TrialRecord]) -> str:
    """Trials' steps-to-target for a note, in order ("never": not reached)."""
    return steps_text(t.steps_to_target for t in runs)


def recheck_notes(study: StudyData) -> list[str]:
    """Per rung that rose above a smaller one and ran its point (``[search] recheck``):
    what the recheck measured, and whether it became the rung's chosen candidate."""
    notes = []
    for rung in study.rungs:
        runs = rung.rechecks
        if not runs:
            continue
        steps = _steps_of(runs)
        best = rung.best
        outcome = (
            "that point is now its chosen candidate"
            if best is not None and best.recheck_from is not None
            else "its own candidate stayed the faster"
        )
        stalled = (
            " That point never reached the target here on most seeds: it counted no "
            "steps, so it measured no rise, and the rung stays in the fit at its own count."
            if recheck_stalled(rung)
            else ""
        )
        notes.append(
            f"Recheck: B = {rung.batch_size} needed more steps than a smaller batch size on "
            f"every seed, so it also ran B = {runs[0].recheck_from}'s chosen point "
            f"({len(runs)} seeds: {steps} steps); {outcome}.{stalled}"
        )
    return notes


def spread_notes(study: StudyData) -> list[str]:
    """Per rung whose chosen candidate's seeds disagreed and ran more seeds (``[search]
    spread_seeds``): why, what they measured, and the rung's median now; one sentence
    per round (``spread_rounds``: a round's trials share their reason)."""
    notes = []
    for rung in study.rungs:
        rounds: dict[str, list[TrialRecord]] = {}
        for trial in rung.trials:
            if trial.spread is not None:
                rounds.setdefault(trial.spread, []).append(trial)
        if not rounds:
            continue
        ran = "; then ".join(
            f"{reason}, so it ran {len(runs)} more ({_steps_of(runs)} steps)"
            for reason, runs in rounds.items()
        )
        median = "not reached" if rung.steps_to_target is None else f"{rung.steps_to_target}"
        notes.append(
            f"More seeds: at B = {rung.batch_size} {ran}; the rung's steps-to-result is now "
            f"{median}."
        )
    return notes


def summarize(study: StudyData, *, tol: float = 0.25) -> StudySummary:
    """Fit, regimes, LR trend, prediction check and warnings for one study.

    Args:
        study: the loaded study.
        tol: the regime tolerance (Shallue-style bends at ``tol``; see DESIGN.md).

    Returns:
        The summary; analysis that is impossible (too few reached rungs, a fit that
        fails) leaves the fields ``None`` and says why in ``analysis_note``.
    """
    notes = []
    unfinished = [r for r in study.rungs if not r.complete]
    if unfinished:
        sizes = ", ".join(str(r.batch_size) for r in unfinished)
        notes.append(
            f"The study is still in progress: trials are pending at batch size {sizes}; "
            "results may change."
        )
    notes += _opt_in_notes(study)
    notes += spread_notes(study)
    notes += recheck_notes(study)
    missed = [r for r in study.rungs if r.steps_to_target is None and r.complete]
    if missed:
        sizes = ", ".join(str(r.batch_size) for r in missed)
        notes.append(f"No trial reached the target at batch size {sizes}.")

    ladder = summarize_rungs(
        study.rungs,
        search_space=study.search_space,
        train_size=study.workload.get("train_size"),
        tol=tol,
    )
    fit, regimes, trend, note = ladder.fit, ladder.regimes, ladder.lr_trend, ladder.note
    prediction = None
    if fit is not None and study.noise_scale is not None:
        b_simple, ci = study.noise_scale.final
        try:
            prediction = compare_prediction(fit, b_simple, ci)
        except ValueError as error:
            logger.warning("%s: noise-scale comparison skipped: %s", study.name, error)
    return StudySummary(
        fit=fit,
        regimes=regimes,
        lr_trend=trend,
        hparam_trends=ladder.hparam_trends,
        prediction=prediction,
        analysis_note=note,
        notes=tuple(notes),
        status_counts=status_counts(study),
        edges=tuple(edge_warnings(study.rungs, study.search_space)),
        answer=ladder.answer,
        rule_costs=ladder.rule_costs,
    )


def compare_to_reference(
    summaries: list[StudySummary] | tuple[StudySummary, ...],
) -> list[FitComparison | None]:
    """Each study's fit compared with the first study's (``None`` where either has no fit).

    Uses the analysis' two-curve comparison: ratios of B_crit and S_min with intervals.
    """
    if not summaries:
        return []
    reference = summaries[0].fit
    results: list[FitComparison | None] = [None]
    for summary in summaries[1:]:
        if reference is None or summary.fit is None:
            results.append(None)
            continue
        try:
            results.append(compare_fits(reference, summary.fit))
        except ValueError as error:
            logger.warning("comparison skipped: %s", error)
            results.append(None)
    return results
