"""A study's results reduced to what the findings need: the steps-to-target curve.

:class:`Curve` is a small frozen record (rungs, steps-to-target, tuned hyperparameters,
budgets) read from a ``results.json`` or built by hand, so the evaluation functions
are pure functions of numbers and can be tested on closed-form curves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import BatchlabError

RESULTS_JSON = "results.json"


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


def _int_or_none(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FindingsError(f"{where}: expected an integer or null, got {value!r}")
    return int(value)


def curve_from_results(data: Mapping[str, Any], where: str = "results") -> Curve:
    """A :class:`Curve` from a ``results.json`` dict (``StudyResult.to_dict()``)."""
    try:
        rungs = sorted(data["rungs"], key=lambda r: r["batch_size"])
        config = data["config"]
        workload = data["workload"]
        batch_sizes, steps, hparams, seeds, budgets, evals = [], [], [], [], [], []
        for i, rung in enumerate(rungs):
            at = f"{where}: rungs[{i}]"
            batch_sizes.append(int(rung["batch_size"]))
            steps.append(_int_or_none(rung.get("steps_to_target"), f"{at}.steps_to_target"))
            best = rung.get("best_hparams")
            hparams.append(None if best is None else {k: float(v) for k, v in best.items()})
            best_trial = rung.get("best_trial")
            seed = next(
                (t.get("seed") for t in rung.get("trials", []) if t.get("number") == best_trial),
                None,
            )
            seeds.append(None if best_trial is None else _int_or_none(seed, f"{at}.seed"))
            budgets.append(int(rung["budget_steps"]))
            evals.append(int(rung["eval_every"]))
        space = (config.get("search") or {}).get("space") or {}
        return Curve(
            name=str(data["name"]),
            workload=str(workload["name"]),
            optimizer=str(config["optimizer"]),
            batch_sizes=tuple(batch_sizes),
            steps=tuple(steps),
            hparams=tuple(hparams),
            seeds=tuple(seeds),
            budget_steps=tuple(budgets),
            eval_every=tuple(evals),
            trials_per_rung=int((config.get("search") or {}).get("trials_per_rung", 0)),
            target=dict(data["target"]),
            workload_params=dict(workload.get("params") or {}),
            train_size=workload.get("train_size"),
            search_space={k: (float(v["low"]), float(v["high"])) for k, v in space.items()},
            wall_time_s=float(data.get("wall_time_s") or 0.0),
            environment=dict(data.get("environment") or {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        if isinstance(error, FindingsError):
            raise
        raise FindingsError(f"{where}: not a batchlab results file ({error!r})") from None


def load_curve(directory: str | Path) -> Curve:
    """The :class:`Curve` of the study in ``directory`` (its ``results.json``)."""
    path = Path(directory) / RESULTS_JSON
    if not path.is_file():
        raise FindingsError(f"{path} does not exist: run the study first")
    return curve_from_results(json.loads(path.read_text()), str(path))
