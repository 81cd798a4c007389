"""A study's results collected from its Optuna storage into :mod:`batchlab.results` records.

Per rung every final trial and the best (:func:`collect_rung`), the analysis of the
whole ladder (:func:`analyse`), and the exactly-once check (:func:`slot_counts`).
"""

from __future__ import annotations

import logging
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..results import RungResult, TrialRecord
from ._plan import Rung, planned_count

logger = logging.getLogger(__name__)


def _record(trial: FrozenTrial) -> TrialRecord:
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
    )


def _is_final(trial: FrozenTrial) -> bool:
    """Finished for good: completed, or failed by its own error (not by a dead worker)."""
    if trial.state == TrialState.COMPLETE:
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get("status") == "error"


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


def collect_rung(rung: Rung, study: optuna.Study) -> RungResult:
    """A rung's result, read from its Optuna study: every final trial, and the best.

    A trial is final once completed, or failed by its own error (a trial failed because
    its worker died is re-run, not counted). Each planned slot counts once; a slot
    finished twice is logged as an error and its later trial ignored. The rung's
    steps-to-target is :func:`batchlab.analysis.best_steps_per_batch_size` over its
    trials; of several trials with those steps, the lowest slot is the best.

    Args:
        rung: the planned rung (batch size, budget, evaluation interval).
        study: its Optuna study.

    Returns:
        The :class:`RungResult`, with trials ordered by slot.
    """
    # analysis pulls in SciPy's fits, which worker processes never need: import on use.
    from ..analysis import best_steps_per_batch_size

    trials = study.get_trials(deepcopy=False)
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
    records = [
        _record(t) for t in sorted(by_slot.values(), key=lambda t: t.user_attrs.get("slot", -1))
    ]
    steps = best_steps_per_batch_size(
        {"batch_size": rung.batch_size, "steps_to_target": r.steps_to_target} for r in records
    ).get(rung.batch_size)
    best = (
        min((r for r in records if r.steps_to_target == steps), key=lambda r: r.slot)
        if steps is not None
        else None
    )
    return RungResult(
        batch_size=rung.batch_size,
        budget_steps=rung.budget_steps,
        eval_every=rung.eval_every,
        trials_planned=planned_count(study),
        trials_done=len(records),
        trials_running=sum(1 for t in trials if t.state == TrialState.RUNNING),
        steps_to_target=best.steps_to_target if best else None,
        best_hparams=best.hparams if best else None,
        best_trial=best.number if best else None,
        trials=records,
    )


def analyse(rungs: list[RungResult]) -> dict[str, Any] | None:
    """The ``analysis`` block: :func:`batchlab.analysis.summarize_ladder` of the rungs."""
    from ..analysis import summarize_ladder

    summary = summarize_ladder(
        [r.batch_size for r in rungs],
        [r.steps_to_target for r in rungs],
        [(r.best_hparams or {}).get("lr") for r in rungs],
    )
    return summary.to_dict()
