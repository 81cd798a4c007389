"""The ``results.json`` schema and its one writer: a study's rungs, trials and analysis.

Steps-to-result at a batch size is the minimum steps-to-target over its trials
(Shallue et al. 2018, Sec. 3.3); a rung where no trial reached the target has
``None``. The study fills these records (:mod:`batchlab.study`), every reader
(report, findings) gets them back through :func:`batchlab.results.load_study`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, get_args

from .._io import atomic_write_json, atomic_write_text
from .._secrets import redact_url
from ..training import Status
from ._space import EdgeWarning, edge_warnings, parse_ranges

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
SCHEMA_VERSION = 1

#: Trial outcomes, in the order reports list them: a run's (:data:`batchlab.training.Status`)
#: and ``error`` (the trial raised; its traceback is kept).
STATUSES: tuple[str, ...] = (*get_args(Status), "error")


@dataclass(frozen=True)
class TrialRecord:
    """One finished (or failed) trial of a rung: a point of the search, trained once.

    Attributes:
        number: the trial's number in its rung's Optuna study (unique in the rung).
        slot: its place in the rung's quasi-random sequence (a re-run keeps the slot).
        seed: the seed the run was trained with (a finding can retrace it).
        params: the sampled search point, e.g. ``{"lr": 0.1}``.
        hparams: every hyperparameter of the run (searched and fixed).
        status: one of :data:`STATUSES` (``"unknown"`` in files that do not say).
        steps_to_target: first evaluated step at which the metric reached the target
            (``None``: never within the budget).
        reason: why the run stopped, in words.
        wall_time_s: the run's wall time.
        curve: the evaluation curve, ``{"step": [...], metric: [...]}`` (``None``: not kept).
        traceback: the error of a trial with status ``"error"``.
        retry_of: the number of the trial this one re-ran (its worker had died).
    """

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
    #: Under ``search.warm_start``, or for a refinement trial (``search.refine``): the
    #: rung whose best point centred the window this trial searched, and the window.
    #: For a neighbour trial (``search.neighbours``): the neighbouring rung, its best
    #: point with the learning rate moved to this batch size, and width 0 where the
    #: trial ran at that point exactly.
    warm_start: dict[str, Any] | None = None
    #: torch threads of the worker that trained it (a DDP trial's ranks share them):
    #: float rounding depends on them, and near the edge of stability that can move
    #: steps-to-target (benchmarks/study_speed.py).
    threads: int | None = None
    #: A confirmation trial: the slot of the search trial whose point it re-ran on a
    #: fresh seed (``[search] confirm_top``); ``None`` for a search trial.
    confirm_of: int | None = None
    #: A trial run by a transfer rule (``[transfer]``) instead of tuned: the rule that
    #: moved the base rung's tuned hyperparameters to this batch size.
    rule: str | None = None
    #: Where it trained (``"cpu"``, ``"cuda:0"``) and in what precision (``"fp32"``,
    #: ``"tf32"``, ``"bf16"``); ``None`` in files from before they were recorded.
    device: str | None = None
    precision: str | None = None
    #: Trained through ``torch.compile`` (``[performance] compile``).
    compiled: bool | None = None
    #: How many trials trained together with it as one vmapped ensemble (itself
    #: included; 1: alone). On a GPU, sized by a memory probe.
    ensemble: int | None = None
    #: A refinement trial whose window reached beyond the configured range, where the
    #: rung's best search point was on its edge (``[search] edge_extension``): per such
    #: parameter, the window ``[low, high]`` it searched; ``None`` when it stayed inside.
    extended: dict[str, list[float]] | None = None
    #: A rising rung's recheck (``[search] recheck``): the smaller rung whose chosen point
    #: it ran here (the first is a candidate of its own, the others confirm it).
    recheck_from: int | None = None
    #: A further seed of the rung's chosen candidate (its ``confirm_of``), run because
    #: that candidate's seeds disagreed (``[search] spread_seeds``): why, in a sentence.
    spread: str | None = None

    @property
    def resolution_steps(self) -> int | None:
        """How finely its steps-to-target is resolved: the target was crossed after the
        evaluated step before it, so the count is exact to within this many steps
        (read off the curve; ``None``: not reached, or no curve kept)."""
        steps = (self.curve or {}).get("steps")
        if self.steps_to_target is None or not steps or self.steps_to_target not in steps:
            return None
        at = steps.index(self.steps_to_target)
        return int(self.steps_to_target - (steps[at - 1] if at > 0 else 0))

    @property
    def tuned(self) -> bool:
        """Part of the rung's tuning (search, refinement, confirmation), not a rule's run."""
        return self.rule is None

    @property
    def stage(self) -> str:
        """``search`` (refinement included), ``confirm``, ``spread`` (a further seed of
        the chosen candidate, ``[search] spread_seeds``), ``recheck`` (a smaller rung's
        point run here, ``[search] recheck``), or ``rule:<name>`` (a transfer rule's
        run, not part of the rung's tuning)."""
        if self.rule is not None:
            return f"rule:{self.rule}"
        if self.recheck_from is not None:
            return "recheck"
        if self.spread is not None:
            return "spread"
        return "confirm" if self.confirm_of is not None else "search"


@dataclass(frozen=True)
class RungResult:
    """One rung of the ladder: a batch size, its budget, its trials and their best.

    Attributes:
        batch_size: the rung's batch size.
        budget_steps: the step budget of each of its trials.
        eval_every: steps between evaluations (the resolution of steps-to-target).
        trials_planned, trials_done, trials_running: how far its search has got.
        steps_to_target: steps-to-result. Without confirmation trials: the fewest
            steps-to-target over its trials (Shallue et al. 2018). With them: the
            fewest median steps over seeds of a confirmed candidate
            (:func:`batchlab.analysis.confirmed_candidate`). ``None``: not reached.
        best_hparams, best_trial: the hyperparameters and number of the (search) trial
            that set it (of several with as few steps, the lowest slot).
        trials: its final trials, in slot order (confirmation trials last).
        search_steps: the fewest steps-to-target of a single search trial (the
            unconfirmed steps-to-result); ``None`` when none reached the target.
        seed_steps: the chosen candidate's steps-to-target on each seed it ran (search
            trial first; ``None``: that seed never reached the target); empty without
            confirmation.
        seed_interval: a distribution-free interval ``[low, high]`` for that
            candidate's median over seeds (``high`` ``None``: a seed that never
            reached), and ``seed_coverage`` its coverage
            (:func:`batchlab.analysis.median_interval`: 75% with 3 seeds).
    """

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
    search_steps: int | None = None
    seed_steps: list[int | None] = field(default_factory=list)
    seed_interval: list[int | None] | None = None
    seed_coverage: float | None = None

    @property
    def best(self) -> TrialRecord | None:
        """The trial that set the rung's steps-to-target, if any."""
        return next((t for t in self.trials if t.number == self.best_trial), None)

    @property
    def resolution_steps(self) -> int | None:
        """How finely the rung's steps-to-target is resolved: the coarsest resolution
        (:attr:`TrialRecord.resolution_steps`) of the runs it was read from (the best
        trial, and the confirmation runs of its point); ``None``: not reached."""
        best = self.best
        if best is None or self.steps_to_target is None:
            return None
        runs = [best, *(t for t in self.trials if t.confirm_of == best.slot and t.tuned)]
        found = [r for t in runs if (r := t.resolution_steps) is not None]
        return max(found) if found else None

    @property
    def candidate_slots(self) -> list[int]:
        """The search slots whose points were confirmed on fresh seeds, in rank order.

        The order they were confirmed in: the search's best first; ``[]`` without
        confirmation trials.
        """
        search = {t.slot for t in self.trials if t.confirm_of is None and t.tuned}
        return list(
            dict.fromkeys(
                t.confirm_of
                for t in self.trials
                if t.confirm_of is not None and t.confirm_of in search
            )
        )

    @property
    def candidates(self) -> list[list[int | None]]:
        """Per :attr:`candidate_slots`, its steps-to-target per seed, search trial first.

        What :func:`batchlab.analysis.confirmed_candidate` chooses from and
        :func:`batchlab.analysis.seed_bootstrap` resamples.
        """
        search = {t.slot: t for t in self.trials if t.confirm_of is None and t.tuned}
        return [
            [search[slot].steps_to_target]
            + [t.steps_to_target for t in self.trials if t.confirm_of == slot]
            for slot in self.candidate_slots
        ]

    @property
    def rechecks(self) -> list[TrialRecord]:
        """Its recheck trials (``[search] recheck``: a smaller rung's chosen point run
        here), in slot order; ``[]`` where it did not rise or never rechecked."""
        return [t for t in self.trials if t.recheck_from is not None]

    @property
    def rule_steps(self) -> dict[str, list[int | None]]:
        """Per transfer rule, its trials' steps-to-target (``None``: not reached), by seed.

        Compare with :attr:`steps_to_target` (tuned) for what following the rule costs
        (:func:`batchlab.analysis.rule_costs`); ``{}`` without ``[transfer]`` rules.
        """
        runs: dict[str, list[int | None]] = {}
        for t in self.trials:
            if t.rule is not None:
                runs.setdefault(t.rule, []).append(t.steps_to_target)
        return runs

    @property
    def rule_hparams(self) -> dict[str, dict[str, float]]:
        """Per transfer rule, the hyperparameters it gave this rung."""
        return {t.rule: t.hparams for t in self.trials if t.rule is not None}

    @property
    def complete(self) -> bool:
        """Every planned trial finished, none running."""
        return self.trials_done >= self.trials_planned and self.trials_running == 0


@dataclass
class StudyResult:
    """A whole study as ``results.json`` holds it; :meth:`save` is the one writer.

    Attributes:
        name: the study's name.
        config: the validated study config, as a dict.
        workload: the workload's ``name``, ``description``, ``params`` (the arguments
            that built it), ``train_size`` and ``parameters`` (the trainable
            parameters of its model at the study's seed; absent from files written
            before it was recorded, which still load).
        target: ``{"metric", "value", "direction"}``.
        rungs: one :class:`RungResult` per batch size, ascending.
        analysis: :meth:`batchlab.analysis.LadderSummary.to_dict` of the rungs: fit,
            regimes, answer, LR trend (``None`` until three rungs reached the target,
            ``{"error": ...}`` when the fit failed).
        environment: :func:`environment` of the machine that wrote it.
        wall_time_s: elapsed wall time, from the first trial's start to the last one's
            end (a study resumed later counts the pause in between).
        trial_time_s: the trials' wall times summed (larger than ``wall_time_s`` when
            workers run trials in parallel).
        created: when it was written (ISO 8601, UTC).
        noise_scale: a noise scale tracked alongside the study, if any.
        search_space: the searched hyperparameters, resolved (the optimizer's defaults
            included): name -> ``{"low", "high", "scale"}``.
        steps_to_target: (property) batch size -> steps-to-result (``None``: never reached).
        edges: (property) the rungs whose best trial sits on the edge of a searched
            range (:func:`~batchlab.results.edge_warnings`); written to ``results.json``
            as ``edges``, each with its message.
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
    search_space: dict[str, Any] | None = None
    trial_time_s: float | None = None

    @property
    def steps_to_target(self) -> dict[int, int | None]:
        return {rung.batch_size: rung.steps_to_target for rung in self.rungs}

    @property
    def complete(self) -> bool:
        return all(r.trials_done >= r.trials_planned for r in self.rungs)

    @property
    def edges(self) -> list[EdgeWarning]:
        return edge_warnings(self.rungs, parse_ranges(self.search_space or {}))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        storage = data["config"].get("storage")
        if isinstance(storage, str):  # results files never hold the storage's password
            data["config"]["storage"] = redact_url(storage, mask=None)
        data["schema_version"] = SCHEMA_VERSION
        data["steps_to_target"] = {str(b): s for b, s in self.steps_to_target.items()}
        data["edges"] = [edge.to_dict() for edge in self.edges]
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
                "stage",
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
                        t.stage,
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


def environment() -> dict[str, Any]:
    """Versions and machine facts needed to reproduce a study."""
    import numpy
    import optuna
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
        **_gpus(),
    }


def _gpus() -> dict[str, Any]:
    """The CUDA build and the GPUs this process sees (nothing on a machine without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"cuda": torch.version.cuda, "gpus": ", ".join(names)}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
