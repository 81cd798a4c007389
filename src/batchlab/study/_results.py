"""A study's results, read back from its storage: per rung the best trial, every trial.

Steps-to-result at a batch size is the minimum steps-to-target over its trials
(Shallue et al. 2018, Sec. 3.3); a rung where no trial reached the target has
``None``. The analysis (fit of S(B), regimes, ideal batch size, LR trend) is added
when at least three rungs reached the target.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .._io import atomic_write_json, atomic_write_text
from ._plan import Rung, planned_count

logger = logging.getLogger(__name__)

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TrialRecord:
    """One finished (or failed) trial of a rung."""

    number: int
    slot: int
    seed: int
    params: dict[str, float]
    hparams: dict[str, float]
    status: str
    steps_to_target: int | None
    reason: str | None
    wall_time_s: float | None
    curve: dict[str, list[float | None]] | None
    traceback: str | None = None
    retry_of: int | None = None
    #: Under ``search.warm_start``: the neighbour rung and window this trial searched.
    warm_start: dict[str, Any] | None = None
    #: torch threads of the worker that trained it (a DDP trial's ranks share them):
    #: float rounding depends on them, and near the edge of stability that can move
    #: steps-to-target (benchmarks/study_speed.py).
    threads: int | None = None


@dataclass(frozen=True)
class RungResult:
    """A batch size, its budget and trials, and the best steps-to-target found."""

    batch_size: int
    budget_steps: int
    eval_every: int
    trials_planned: int
    trials_done: int
    trials_running: int
    steps_to_target: int | None
    best_hparams: dict[str, float] | None
    best_trial: int | None
    trials: list[TrialRecord] = field(default_factory=list)


@dataclass
class StudyResult:
    """Everything a report needs, JSON-serialisable via :meth:`to_dict`.

    Attributes:
        steps_to_target: batch size -> best steps-to-target (``None``: never reached).
        analysis: fit/regimes/LR trend (``None`` until three rungs reached the target).
    """

    name: str
    config: dict[str, Any]
    workload: dict[str, Any]
    target: dict[str, Any]
    rungs: list[RungResult]
    analysis: dict[str, Any] | None
    environment: dict[str, Any]
    wall_time_s: float
    created: str
    noise_scale: dict[str, Any] | None = None

    @property
    def steps_to_target(self) -> dict[int, int | None]:
        return {rung.batch_size: rung.steps_to_target for rung in self.rungs}

    @property
    def complete(self) -> bool:
        return all(r.trials_done >= r.trials_planned for r in self.rungs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema_version"] = SCHEMA_VERSION
        data["steps_to_target"] = {str(b): s for b, s in self.steps_to_target.items()}
        return _json_safe(data)

    def save(self, directory: str | Path) -> None:
        """Write ``results.json`` and ``results.csv`` atomically into ``directory``."""
        directory = Path(directory)
        atomic_write_json(directory / RESULTS_JSON, self.to_dict())
        atomic_write_text(directory / RESULTS_CSV, self.to_csv())

    def to_csv(self) -> str:
        """One row per trial: batch size, trial, status, steps-to-target, hyperparameters."""
        names = sorted({k for r in self.rungs for t in r.trials for k in t.hparams})
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(
            [
                "batch_size",
                "trial",
                "slot",
                "seed",
                "status",
                "steps_to_target",
                "best",
                "wall_time_s",
                *names,
            ]
        )
        for rung in self.rungs:
            for t in rung.trials:
                writer.writerow(
                    [
                        rung.batch_size,
                        t.number,
                        t.slot,
                        t.seed,
                        t.status,
                        "" if t.steps_to_target is None else t.steps_to_target,
                        int(t.number == rung.best_trial),
                        "" if t.wall_time_s is None else f"{t.wall_time_s:.3f}",
                        *(repr(t.hparams[n]) if n in t.hparams else "" for n in names),
                    ]
                )
        return buffer.getvalue()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


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


def environment() -> dict[str, Any]:
    """Versions and machine facts needed to reproduce a study."""
    import numpy
    import torch

    from .._version import __version__

    return {
        "batchlab": __version__,
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


def analyse(rungs: list[RungResult]) -> dict[str, Any] | None:
    """The ``analysis`` block: :func:`batchlab.analysis.summarize_ladder` of the rungs."""
    from ..analysis import summarize_ladder

    summary = summarize_ladder(
        [r.batch_size for r in rungs],
        [r.steps_to_target for r in rungs],
        [(r.best_hparams or {}).get("lr") for r in rungs],
    )
    return summary.to_dict()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
