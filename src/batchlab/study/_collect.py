"""A study's results collected from its Optuna storage into :mod:`batchlab.results` records.

Per rung every final trial and the best (:func:`collect_rung`), the analysis of the
whole ladder (:func:`analyse`), and the exactly-once check (:func:`slot_counts`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..results import RungResult, SearchRange, TrialRecord, summarize_rungs
from ._plan import SKIPPED, Rung, planned_count, planned_slots, stage

logger = logging.getLogger(__name__)


def _record(trial: FrozenTrial) -> TrialRecord:
    """The schema's record of one final trial, from what the worker stored on it."""
    attrs = trial.user_attrs
    status = attrs.get("status") or ("error" if trial.state == TrialState.FAIL else "unknown")
    return TrialRecord(
        number=trial.number,
        slot=int(attrs.get("slot", -1)),
        seed=int(attrs.get("seed", -1)),
        params=dict(attrs.get("params") or trial.params),
        hparams=dict(attrs.get("hparams", {})),
        status=status,
        steps_to_target=attrs.get("steps_to_target"),
        reason=attrs.get("reason"),
        wall_time_s=attrs.get("wall_time_s"),
        curve=attrs.get("curve"),
        traceback=attrs.get("traceback"),
        retry_of=trial.system_attrs.get("batchlab:retry_of"),
        warm_start=attrs.get("warm_start"),
        threads=attrs.get("threads"),
        confirm_of=attrs.get("confirm_of"),
        rule=attrs.get("rule"),
        device=attrs.get("device"),
        precision=attrs.get("precision"),
        compiled=attrs.get("compiled"),
        ensemble=attrs.get("ensemble"),
        extended=attrs.get("extended"),
        recheck_from=attrs.get("recheck_from"),
        spread=attrs.get("spread_reason"),
    )


def _is_final(trial: FrozenTrial) -> bool:
    """Finished for good: completed, failed by its own error (not by a dead worker), or
    a reserve trial skipped as not needed."""
    if trial.state == TrialState.COMPLETE:
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get("status") in ("error", SKIPPED)


def unfinished_slots(study: optuna.Study) -> list[int]:
    """Planned slots of a rung without a final trial (waiting, running or lost)."""
    final = {
        int(t.user_attrs.get("slot", -1)) for t in study.get_trials(deepcopy=False) if _is_final(t)
    }
    return [slot for slot in planned_slots(study) if slot not in final]


def unfinished_by_rung(rung_studies: list[tuple[Rung, optuna.Study]]) -> dict[int, list[int]]:
    """Batch size -> its planned slots without a final trial, for the rungs that have some."""
    found = {}
    for rung, study in rung_studies:
        slots = unfinished_slots(study)
        if slots:
            found[rung.batch_size] = slots
    return found


def missing_slots(study: optuna.Study) -> list[int]:
    """Planned slots of a rung that will never finish as things stand: lost.

    A slot is lost when no trial of it is final, waiting or running, e.g. a worker
    failed it as dead and died itself before re-enqueueing it, or its enqueue never
    reached the storage. :meth:`Study.prepare` (``study resume``) enqueues them again.
    """
    alive = (TrialState.WAITING, TrialState.RUNNING)
    covered = {
        int(t.user_attrs.get("slot", -1))
        for t in study.get_trials(deepcopy=False)
        if t.state in alive or _is_final(t)
    }
    return [slot for slot in planned_slots(study) if slot not in covered]


def elapsed_seconds(studies: list[optuna.Study]) -> float:
    """Wall time from the first trial's start to the last finished trial's end (0: none)."""
    starts, ends = [], []
    for study in studies:
        for trial in study.get_trials(deepcopy=False):
            if trial.datetime_start is not None and trial.datetime_complete is not None:
                starts.append(trial.datetime_start)
                ends.append(trial.datetime_complete)
    return (max(ends) - min(starts)).total_seconds() if starts else 0.0


def slot_counts(study: optuna.Study) -> dict[int, int]:
    """Slot -> how many final trials it has: 1 each once a rung is done, never 2.

    For checking exactly-once execution (tests, ``benchmarks/soak.py``); a slot with
    0 is lost or still to run, a slot with 2 ran twice.
    """
    counts: dict[int, int] = {}
    for trial in study.get_trials(deepcopy=False):
        if _is_final(trial):
            slot = int(trial.user_attrs.get("slot", -1))
            counts[slot] = counts.get(slot, 0) + 1
    return counts


def collect_rung(rung: Rung, study: optuna.Study, tuned_only: bool = False) -> RungResult:
    """A rung's result, read from its Optuna study: every final trial, and the best.

    A trial is final once completed, or failed by its own error (a trial failed because
    its worker died is re-run, not counted); a reserve trial skipped as not needed is
    final too, counted in ``trials_done`` but not listed. Each planned slot counts once; a slot
    finished twice is logged as an error and its later trial ignored. The rung's best
    search trial, and so its steps-to-target, is chosen by
    :func:`batchlab.analysis.best_run_per_batch_size` over the search trials in slot
    order: the fewest steps-to-target, the lowest slot of several with as few, ``None``
    when no trial reached the target. When the rung's best candidates were re-run on
    fresh seeds (confirmation trials), the rung's steps-to-target is instead the
    fewest *median* over seeds of a candidate
    (:func:`batchlab.analysis.confirmed_candidate`; reserve candidates, where they
    were confirmed, compete too), and its best trial is that candidate's search trial.

    Args:
        rung: the planned rung (batch size, budget, evaluation interval).
        study: its Optuna study.
        tuned_only: read the rung's own tuning alone, leaving out its recheck trials
            (``[search] recheck``): what decides whether it rises.

    Returns:
        The :class:`~batchlab.results.RungResult`, with trials ordered by slot; a
        trial still running is counted in ``trials_running``, not listed.
    """
    # analysis pulls in SciPy's fits, which worker processes never need: import on use.
    from ..analysis import (
        best_run_per_batch_size,
        confirmed_candidate,
        median_interval,
        median_steps,
    )

    trials = study.get_trials(deepcopy=False)
    if tuned_only:
        trials = [t for t in trials if stage(t) != "recheck"]
    final = sorted((t for t in trials if _is_final(t)), key=lambda t: t.number)
    by_slot: dict[int, FrozenTrial] = {}
    for trial in final:
        slot = int(trial.user_attrs.get("slot", -1))
        if slot in by_slot:
            logger.error(
                "%s: slot %d finished twice (trials %d and %d)",
                rung.study_name,
                slot,
                by_slot[slot].number,
                trial.number,
            )
            continue
        by_slot[slot] = trial
    # A skipped reserve trial is final (its slot is done) but was never trained.
    records = [
        _record(by_slot[slot])
        for slot in sorted(by_slot)
        if by_slot[slot].user_attrs.get("status") != SKIPPED
    ]
    search = [r for r in records if r.confirm_of is None and r.tuned]
    index = best_run_per_batch_size(
        {"batch_size": rung.batch_size, "steps_to_target": r.steps_to_target} for r in search
    ).get(rung.batch_size)
    best = None if index is None else search[index]
    search_steps = None if best is None else best.steps_to_target
    result = RungResult(
        batch_size=rung.batch_size,
        budget_steps=rung.budget_steps,
        eval_every=rung.eval_every,
        trials_planned=planned_count(study),
        trials_done=len(by_slot),
        trials_running=sum(1 for t in trials if t.state == TrialState.RUNNING),
        steps_to_target=search_steps,
        best_hparams=None if best is None else best.hparams,
        best_trial=None if best is None else best.number,
        trials=records,
        search_steps=search_steps,
    )
    candidates = result.candidates
    if not candidates:
        return result
    chosen = confirmed_candidate(candidates)
    if chosen is None:
        return replace(result, steps_to_target=None, best_hparams=None, best_trial=None)
    best = next(r for r in search if r.slot == result.candidate_slots[chosen])
    low, high, coverage = median_interval(candidates[chosen])
    return replace(
        result,
        steps_to_target=median_steps(candidates[chosen]),
        best_hparams=best.hparams,
        best_trial=best.number,
        seed_steps=candidates[chosen],
        seed_interval=[low, high],
        seed_coverage=coverage,
    )


def analyse(
    rungs: list[RungResult],
    train_size: int | None = None,
    search_space: Mapping[str, SearchRange] | None = None,
) -> dict[str, Any] | None:
    """The ``analysis`` block of ``results.json``: :func:`batchlab.results.summarize_rungs`
    (the report's own call), as a dict."""
    return summarize_rungs(rungs, search_space=search_space, train_size=train_size).to_dict()
