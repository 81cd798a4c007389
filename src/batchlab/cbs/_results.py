"""Frozen, JSON-able results of a critical-batch-size measurement over training.

One :class:`CheckpointMeasurement` per checkpoint: the branches at every batch size,
steps-to-target per batch size (the best learning rate), the fit S(B) = S_min (1 +
B_crit/B) with its intervals, and the noise scale B_simple measured at the same
parameters. :class:`CriticalBatchResult` holds them all plus the settings; its
``to_dict()`` is what ``batchlab cbs`` writes to ``cbs.json`` and the report reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..analysis import PredictionComparison, ScalingFit
from ..noise import NoiseScaleResult
from ..workloads import ExactNoiseScale, Target
from ._branch import BranchResult
from ._schedule import describe_schedule

#: ``cbs.json``'s ``kind`` and layout version.
CBS_KIND = "batchlab-cbs"
CBS_SCHEMA = 1


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class RungMeasurement:
    """One batch size at one checkpoint: every learning rate tried and the best.

    Attributes:
        batch_size: examples per step of the branches.
        branches: one branch per learning rate tried.
        exact_steps: per branch (same order), the steps-to-target of the *expected*
            curve at that (B, lr), where the workload has exact curves; else ``None``.
    """

    batch_size: int
    branches: tuple[BranchResult, ...]
    exact_steps: tuple[int | None, ...] | None = None

    @property
    def steps_to_target(self) -> int | None:
        """Fewest steps to the target over the learning rates (Shallue et al. 2018)."""
        reached = [b.steps_to_target for b in self.branches if b.steps_to_target is not None]
        return min(reached) if reached else None

    @property
    def lr(self) -> float | None:
        """The learning rate that gave :attr:`steps_to_target` (``None`` if unreached)."""
        best = self.steps_to_target
        for branch in self.branches:
            if best is not None and branch.steps_to_target == best:
                return branch.lr
        return None

    @property
    def exact_steps_to_target(self) -> int | None:
        """Fewest expected-curve steps over the same learning rates, where known."""
        if self.exact_steps is None:
            return None
        reached = [s for s in self.exact_steps if s is not None]
        return min(reached) if reached else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "steps_to_target": self.steps_to_target,
            "lr": self.lr,
            "exact_steps_to_target": self.exact_steps_to_target,
            "branches": [
                {
                    **branch.to_dict(),
                    "exact_steps_to_target": None if self.exact_steps is None else exact,
                }
                for branch, exact in zip(
                    self.branches,
                    self.exact_steps or (None,) * len(self.branches),
                    strict=True,
                )
            ],
        }


@dataclass(frozen=True)
class CheckpointMeasurement:
    """The critical batch size and the noise scale at one checkpoint of a run.

    Attributes:
        step: the checkpoint's step in the base run.
        examples_seen: training examples the base run had used by then, if known.
        value: the target metric at the checkpoint.
        target: what every branch had to reach (``value`` improved by a fixed amount).
        rungs: one :class:`RungMeasurement` per batch size, increasing.
        fit: S(B) = S_min (1 + B_crit/B) fitted to the rungs' steps-to-target, or
            ``None`` (fewer than three rungs reached the target; see ``note``).
        exact_fit: the same fit to the expected-curve steps, where known.
        noise: B_simple measured at the checkpoint's parameters
            (:func:`batchlab.measure_noise_scale`), or ``None`` if not measured.
        exact_noise: the closed-form B_simple/B_noise there (nqm, linreg), else ``None``.
        prediction: B_simple / B_crit with its interval, where both exist.
        note: why a quantity is missing, in words.
    """

    step: int
    examples_seen: int | None
    value: float
    target: Target
    rungs: tuple[RungMeasurement, ...]
    fit: ScalingFit | None = None
    exact_fit: ScalingFit | None = None
    noise: NoiseScaleResult | None = None
    exact_noise: ExactNoiseScale | None = None
    prediction: PredictionComparison | None = None
    note: str | None = None

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return tuple(r.batch_size for r in self.rungs)

    @property
    def steps_to_target(self) -> tuple[int | None, ...]:
        return tuple(r.steps_to_target for r in self.rungs)

    @property
    def b_crit(self) -> float | None:
        """The measured critical batch size (``None`` without a fit)."""
        return None if self.fit is None else self.fit.b_crit

    @property
    def b_simple(self) -> float | None:
        """The noise scale at the checkpoint (``None`` if not measured)."""
        return None if self.noise is None else self.noise.b_simple

    def to_dict(self) -> dict[str, Any]:
        noise = None
        if self.noise is not None:
            noise = {
                "b_simple": _finite(self.noise.b_simple),
                "b_simple_ci": [_finite(v) for v in self.noise.b_simple_ci],
                "grad_sq_norm": _finite(self.noise.grad_sq_norm),
                "trace_cov": _finite(self.noise.trace_cov),
                "n": self.noise.n,
                "batch_size": self.noise.batch_size,
                "micro_batch_size": self.noise.micro_batch_size,
            }
        exact_noise = None
        if self.exact_noise is not None:
            exact_noise = {
                "b_simple": _finite(self.exact_noise.b_simple),
                "b_noise": _finite(self.exact_noise.b_noise),
            }
        return {
            "step": self.step,
            "examples_seen": self.examples_seen,
            "value": _finite(self.value),
            "target": {
                "metric": self.target.metric,
                "value": self.target.value,
                "direction": self.target.direction,
            },
            "rungs": [r.to_dict() for r in self.rungs],
            "fit": None if self.fit is None else self.fit.to_dict(),
            "exact_fit": None if self.exact_fit is None else self.exact_fit.to_dict(),
            "noise_scale": noise,
            "exact_noise_scale": exact_noise,
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
            "note": self.note,
        }


@dataclass(frozen=True)
class CriticalBatchResult:
    """Critical batch size over training, measured by branching, beside the noise scale.

    Attributes:
        workload: the workload's name.
        workload_params: its parameters.
        optimizer: the optimizer of the base run and the branches.
        hparams: the base run's hyperparameters (``lr`` is the base learning rate).
        base_batch_size: the base run's batch size (the LR rule's reference).
        settings: how the branches were run (LR rule, multipliers, improvement,
            budget, repeats, optimizer state, noise-scale batches, seed, and the
            ``device`` and ``precision`` it trained in).
        checkpoints: one :class:`CheckpointMeasurement` per checkpoint, by step.
        wall_time_s: seconds the whole measurement took.
        environment: versions and machine (and the ``gpu``'s name on CUDA).
    """

    workload: str
    workload_params: dict[str, Any]
    optimizer: str
    hparams: dict[str, float]
    base_batch_size: int | None
    settings: dict[str, Any]
    checkpoints: tuple[CheckpointMeasurement, ...]
    wall_time_s: float | None = None
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> tuple[int, ...]:
        return tuple(c.step for c in self.checkpoints)

    @property
    def b_crit(self) -> tuple[float | None, ...]:
        """Measured B_crit per checkpoint."""
        return tuple(c.b_crit for c in self.checkpoints)

    @property
    def b_simple(self) -> tuple[float | None, ...]:
        """B_simple per checkpoint."""
        return tuple(c.b_simple for c in self.checkpoints)

    @property
    def schedule(self) -> dict[str, Any]:
        """The LR schedule the measurement assumed (``settings["schedule"]``; results
        written before schedules were recorded assumed a constant LR)."""
        return dict(self.settings.get("schedule") or {"name": "constant"})

    def describe_schedule(self) -> str:
        """:attr:`schedule` in words (printed by ``batchlab cbs``)."""
        return describe_schedule(self.schedule)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``cbs.json``); non-finite numbers become ``None``."""
        return {
            "schedule": self.schedule,
            "kind": CBS_KIND,
            "schema_version": CBS_SCHEMA,
            "workload": {"name": self.workload, "params": dict(self.workload_params)},
            "optimizer": self.optimizer,
            "hparams": dict(self.hparams),
            "base_batch_size": self.base_batch_size,
            "settings": dict(self.settings),
            "checkpoints": [c.to_dict() for c in self.checkpoints],
            "wall_time_s": _finite(self.wall_time_s),
            "environment": dict(self.environment),
        }
