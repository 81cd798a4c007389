"""Finding 5's runs: each rung's tuned hyperparameters at a fixed epoch budget and at its step budget.

"Use batches of 32 or less" (LeCun; Masters & Luschi 2018) compares batch sizes at a
fixed number of epochs, where a large batch gets few steps. Shallue et al. 2018
argue the advantage goes away once every batch size gets a step budget of its own
and its own tuned hyperparameters. Both budgets are run here from the same tuned hyperparameters and seed, and
the final validation metric of each run is recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from ..training import RunSpec, run_training
from ..workloads import Target, get_workload
from ._curves import Curve
from ._retrace import best_trial_spec, finite, retraceable

Budget = Literal["fixed_epochs", "tuned_steps"]
BUDGETS: tuple[Budget, ...] = ("fixed_epochs", "tuned_steps")


@dataclass(frozen=True, kw_only=True)
class BudgetJob:
    """One run to make: a rung's tuned hyperparameters at one budget.

    Attributes:
        key: a file-name-safe identifier, e.g. ``bs000256-fixed_epochs``.
        budget: ``"fixed_epochs"`` (steps = epochs · N / B) or ``"tuned_steps"``
            (the rung's step budget from the study).
        epochs: examples seen / training-set size at the end of the run.
        workload, workload_params: the workload to build.
        target: the study's target (its metric is the one recorded).
        spec: the run itself.
    """

    key: str
    budget: Budget
    epochs: float
    workload: str
    workload_params: dict[str, Any]
    target: dict[str, Any]
    spec: RunSpec

    def describe(self) -> dict[str, Any]:
        """What determines the run (stored with its result, to detect a changed plan)."""
        return {
            "budget": self.budget,
            "workload": self.workload,
            "workload_params": dict(self.workload_params),
            "batch_size": self.spec.batch_size,
            "optimizer": self.spec.optimizer,
            "hparams": dict(self.spec.hparams),
            "max_steps": self.spec.max_steps,
            "eval_every": self.spec.eval_every,
            "seed": self.spec.seed,
            "decay": self.spec.decay,
        }


def fixed_epoch_steps(epochs: float, train_size: int, batch_size: int) -> int:
    """Steps that make ``epochs`` passes over ``train_size`` examples at ``batch_size`` (≥ 1)."""
    return max(1, round(epochs * train_size / batch_size))


def budget_jobs(curve: Curve, *, epochs: float, evaluations: int, decay: str) -> list[BudgetJob]:
    """Two runs per reached rung of ``curve``: at ``epochs`` epochs and at the rung's step budget.

    Both use the rung's best trial's hyperparameters and seed, so the tuned-steps run
    retraces that trial past its steps-to-target to the end of its budget.
    """
    if curve.train_size is None:
        raise ValueError(
            f"{curve.name}: a fixed epoch budget needs a finite training set "
            f"(workload {curve.workload!r} streams fresh examples)"
        )
    jobs = []
    for batch_size in retraceable(curve):
        for budget in BUDGETS:
            steps = (
                fixed_epoch_steps(epochs, curve.train_size, batch_size)
                if budget == "fixed_epochs"
                else curve.budget_steps[curve.batch_sizes.index(batch_size)]
            )
            spec = best_trial_spec(
                curve,
                batch_size,
                max_steps=steps,
                eval_every=max(1, steps // evaluations),
                decay=decay,
            )
            jobs.append(
                BudgetJob(
                    key=f"bs{batch_size:06d}-{budget}",
                    budget=budget,
                    epochs=steps * batch_size / curve.train_size,
                    workload=curve.workload,
                    workload_params=dict(curve.workload_params),
                    target=dict(curve.target),
                    spec=spec,
                )
            )
    return jobs


def run_budget_job(job: BudgetJob) -> dict[str, Any]:
    """Train the job's run to the end of its budget; its curve and final metric, as JSON."""
    workload = get_workload(job.workload, job.workload_params)
    target = Target(job.target["metric"], job.target["value"], job.target["direction"])
    result = run_training(workload, job.spec, target, stop_at_target=False)
    values = result.metrics.get(target.metric, [])
    usable = [v for v in values if math.isfinite(v)]
    pick = max if target.direction == "max" else min
    final = values[-1] if values and result.status != "diverged" else math.nan
    return {
        "key": job.key,
        "job": job.describe(),
        "batch_size": job.spec.batch_size,
        "budget": job.budget,
        "max_steps": job.spec.max_steps,
        "epochs": job.epochs,
        "status": result.status,
        "reason": result.reason,
        "metric": target.metric,
        "final": finite(final),
        "best": pick(usable) if usable else None,
        "steps": list(result.steps),
        "values": [finite(v) for v in values],
    }
