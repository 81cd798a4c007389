"""A study's results reduced to what the findings need: the steps-to-target curve.

:class:`Curve` is a small frozen record (rungs, steps-to-target, tuned hyperparameters,
budgets) read from a ``results.json`` or built by hand, so the evaluation functions
are pure functions of numbers and can be tested on closed-form curves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import BatchlabError
from ..results import RESULTS_JSON, ResultsError, StudyData, edge_warnings, load_study


class FindingsError(BatchlabError, ValueError):
    """Results needed by a finding are missing or malformed."""


@dataclass(frozen=True)
class Curve:
    """Steps-to-target against batch size for one study, with each rung's tuned values.

    Attributes:
        name: study name.
        workload: workload name.
        optimizer: optimizer name.
        batch_sizes: the rungs, ascending.
        steps: best steps-to-target per rung (``None``: never reached).
        hparams: the best trial's hyperparameters per rung (``None``: never reached).
        seeds: the best trial's seed per rung (``None``: never reached).
        budget_steps: step budget per rung.
        eval_every: evaluation interval per rung (the resolution of ``steps``).
        lr_edges: the rungs whose tuned learning rate is on the edge of the searched
            range (:func:`batchlab.results.edge_warnings`): the optimum may lie outside.
        candidates: per rung, its confirmed candidates' steps per seed (empty
            without confirmation; :attr:`batchlab.results.RungResult.candidates`).
        trials_per_rung: trials planned per rung.
        target: the target, e.g. ``{"metric": "accuracy", "value": 0.85, "direction": "max"}``.
        workload_params: the workload's parameters (``num_train``, ...).
        train_size: training examples (``None``: an unlimited stream).
        search_space: searched hyperparameter -> (low, high).
        wall_time_s: summed trial time of the study.
        environment: versions and machine facts recorded by the study.
    """

    name: str
    workload: str
    optimizer: str
    batch_sizes: tuple[int, ...]
    steps: tuple[int | None, ...]
    hparams: tuple[dict[str, float] | None, ...] = ()
    seeds: tuple[int | None, ...] = ()
    budget_steps: tuple[int, ...] = ()
    eval_every: tuple[int, ...] = ()
    candidates: tuple[list[list[int | None]], ...] = ()
    lr_edges: tuple[int, ...] = ()
    trials_per_rung: int = 0
    target: dict[str, Any] = field(default_factory=dict)
    workload_params: dict[str, Any] = field(default_factory=dict)
    train_size: int | None = None
    search_space: dict[str, tuple[float, float]] = field(default_factory=dict)
    wall_time_s: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.steps) != len(self.batch_sizes):
            raise FindingsError(
                f"{self.name}: {len(self.batch_sizes)} batch sizes but {len(self.steps)} steps"
            )
        for name in ("hparams", "seeds", "budget_steps", "eval_every"):
            value = getattr(self, name)
            if value and len(value) != len(self.batch_sizes):
                raise FindingsError(
                    f"{self.name}: {name} has {len(value)} entries, expected "
                    f"{len(self.batch_sizes)}"
                )

    @property
    def reached(self) -> tuple[int, ...]:
        """The rungs that reached the target."""
        return tuple(b for b, s in zip(self.batch_sizes, self.steps, strict=True) if s is not None)

    def lr(self, batch_size: int) -> float | None:
        """The tuned learning rate at ``batch_size`` (``None`` if unreached or unknown)."""
        if not self.hparams:
            return None
        entry = self.hparams[self.batch_sizes.index(batch_size)]
        return None if entry is None or "lr" not in entry else float(entry["lr"])

    def steps_at(self, batch_size: int) -> int | None:
        return self.steps[self.batch_sizes.index(batch_size)]

    def eval_every_at(self, batch_size: int) -> int:
        return self.eval_every[self.batch_sizes.index(batch_size)] if self.eval_every else 1

    def describe_target(self) -> str:
        if not self.target:
            return "the target"
        sign = ">=" if self.target.get("direction") == "max" else "<="
        return f"{self.target['metric']} {sign} {self.target['value']:g}"


def curve_from_results(data: Mapping[str, Any] | StudyData, where: str = "results") -> Curve:
    """A :class:`Curve` from a study's results: a ``results.json`` dict or what
    :func:`batchlab.results.load_study` read (the one reader of results files)."""
    try:
        study = data if isinstance(data, StudyData) else load_study(data)
    except ResultsError as error:
        raise FindingsError(f"{where}: not a batchlab results file ({error})") from None
    try:
        return _curve(study)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, FindingsError):
            raise
        raise FindingsError(f"{where}: not a batchlab results file ({error!r})") from None


def _curve(study: StudyData) -> Curve:
    seeds = [None if rung.best is None else rung.best.seed for rung in study.rungs]
    for rung, seed in zip(study.rungs, seeds, strict=True):
        if rung.best_trial is not None and (seed is None or seed < 0):
            raise FindingsError(f"rung {rung.batch_size}: the best trial has no seed")
    search = study.config.get("search") or {}
    return Curve(
        name=study.name,
        workload=str(study.workload["name"]),
        optimizer=str(study.config["optimizer"]),
        batch_sizes=tuple(r.batch_size for r in study.rungs),
        steps=tuple(r.steps_to_target for r in study.rungs),
        hparams=tuple(
            None if r.best_hparams is None else dict(r.best_hparams) for r in study.rungs
        ),
        seeds=tuple(seeds),
        budget_steps=tuple(int(r.budget_steps) for r in study.rungs),
        eval_every=tuple(int(r.eval_every) for r in study.rungs),
        candidates=tuple(r.candidates for r in study.rungs),
        lr_edges=tuple(
            e.batch_size for e in edge_warnings(study.rungs, study.search_space) if e.param == "lr"
        ),
        trials_per_rung=int(search.get("trials_per_rung", 0)),
        target=dict(study.target),
        workload_params=dict(study.workload.get("params") or {}),
        train_size=study.workload.get("train_size"),
        search_space={k: (v.low, v.high) for k, v in study.search_space.items()},
        wall_time_s=float(study.trial_time_s or 0.0),
        environment=dict(study.environment),
    )


def load_curve(directory: str | Path) -> Curve:
    """The :class:`Curve` of the study in ``directory`` (its ``results.json``)."""
    path = Path(directory) / RESULTS_JSON
    if not path.is_file():
        raise FindingsError(f"{path} does not exist: run the study first")
    return curve_from_results(load_study(path), str(path))
