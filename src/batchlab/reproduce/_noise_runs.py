"""Finding 6's runs: B_simple measured at several points of a run to the target.

McCandlish et al. 2018 predict B_crit ≈ B_noise ≈ B_simple = tr(Σ)/|G|², and note that
the noise scale grows as training proceeds. Here one rung's best trial is retraced
(same hyperparameters, seed and batches) up to its steps-to-target, and at evenly
spaced checkpoints B_simple is measured at the current parameters with
:func:`~batchlab.noise.measure_noise_scale` on batches from a separate stream (no
optimizer step, the model left as it was), so the training trajectory is exactly
the study's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from itertools import islice
from typing import Any

from .._seeding import make_generator, seed_for
from ..analysis import fit_scaling
from ..noise import measure_noise_scale
from ..training import RunSpec, optimizer_and_schedule, train_step
from ..workloads import check_batch_size, get_workload
from ._curves import Curve
from ._retrace import best_trial_spec, finite, retraceable

#: Seed key of the measurement batches, apart from every trial's training batches.
_MEASURE_STREAM = 0x6E6F697365


@dataclass(frozen=True, kw_only=True)
class NoiseJob:
    """One run to retrace, with where and how B_simple is measured.

    Attributes:
        key: file-name-safe identifier (the study name).
        study: the study whose rung is retraced.
        workload, workload_params: the workload to build.
        spec: the best trial's run, with ``max_steps`` = its steps-to-target.
        budget_steps: the rung's step budget (the horizon of an LR schedule).
        checkpoints: steps at which B_simple is measured (0 = initialisation).
        batch_size, micro_batch_size, batches: the measurement (big batch, small batch,
            number of big batches averaged).
    """

    key: str
    study: str
    workload: str
    workload_params: dict[str, Any]
    spec: RunSpec
    budget_steps: int
    checkpoints: tuple[int, ...]
    batch_size: int
    micro_batch_size: int
    batches: int

    def describe(self) -> dict[str, Any]:
        """What determines the measurement (stored with its result)."""
        return {
            "study": self.study,
            "workload": self.workload,
            "workload_params": dict(self.workload_params),
            "train_batch_size": self.spec.batch_size,
            "optimizer": self.spec.optimizer,
            "hparams": dict(self.spec.hparams),
            "seed": self.spec.seed,
            "steps": self.spec.max_steps,
            "decay": self.spec.decay,
            "budget_steps": self.budget_steps,
            "checkpoints": list(self.checkpoints),
            "batch_size": self.batch_size,
            "micro_batch_size": self.micro_batch_size,
            "batches": self.batches,
        }


def checkpoint_steps(steps_to_target: int, count: int) -> tuple[int, ...]:
    """``count`` evenly spaced steps from 0 to ``steps_to_target`` (duplicates dropped)."""
    if count < 2:
        raise ValueError(f"count must be at least 2, got {count}")
    return tuple(sorted({round(k * steps_to_target / (count - 1)) for k in range(count)}))


def training_rung(curve: Curve) -> int | None:
    """The reached rung closest (in log B) to the fitted B_crit; the middle one without a fit."""
    reached = curve.reached
    if not reached:
        return None
    try:
        b_crit = fit_scaling(curve.batch_sizes, curve.steps, n_bootstrap=0).b_crit
    except ValueError:
        return reached[len(reached) // 2]
    return min(reached, key=lambda b: (abs(math.log(b / b_crit)), b))


def noise_job(
    curve: Curve,
    *,
    checkpoints: int,
    batch_size: int,
    micro_batch_size: int,
    batches: int,
    decay: str,
) -> NoiseJob | None:
    """The job for ``curve`` (``None`` when no rung reached the target)."""
    rung = training_rung(curve)
    steps = None if rung is None else curve.steps_at(rung)
    if rung is None or steps is None or rung not in retraceable(curve):
        return None
    check_batch_size(batch_size, curve.train_size, name=f"noise_scale batch_size of {curve.name}")
    spec = best_trial_spec(curve, rung, max_steps=steps, eval_every=steps, decay=decay)
    return NoiseJob(
        key=curve.name,
        study=curve.name,
        workload=curve.workload,
        workload_params=dict(curve.workload_params),
        spec=spec,
        budget_steps=curve.budget_steps[curve.batch_sizes.index(rung)],
        checkpoints=checkpoint_steps(steps, checkpoints),
        batch_size=batch_size,
        micro_batch_size=micro_batch_size,
        batches=batches,
    )


def run_noise_job(job: NoiseJob) -> dict[str, Any]:
    """Retrace the run and measure B_simple at every checkpoint; the records, as JSON."""
    workload = get_workload(job.workload, job.workload_params)
    spec = job.spec
    model = workload.build_model(spec.seed)
    model.train()
    # The trial's optimizer and schedule over the study's budget (its schedule's length).
    optimizer, schedule = optimizer_and_schedule(
        model, dataclasses.replace(spec, max_steps=job.budget_steps)
    )
    # The same batches as the study's trial (its seed), and a separate stream to measure on.
    train = workload.train_batches(spec.batch_size, make_generator(spec.seed))
    measure = workload.train_batches(
        job.batch_size, make_generator(seed_for(_MEASURE_STREAM, spec.seed))
    )
    records = []
    wanted = set(job.checkpoints)
    for step in range(0, spec.max_steps + 1):
        if step > 0:
            # The study's trial reached the target, so its loss stayed finite: every step steps.
            train_step(workload, model, optimizer, train)
            if schedule is not None:
                schedule.step()
        if step not in wanted:
            continue
        result = measure_noise_scale(
            model, workload.loss_fn, islice(measure, job.batches), job.micro_batch_size
        )
        metrics = workload.evaluate(model)
        records.append(
            {
                "step": step,
                "fraction": step / spec.max_steps if spec.max_steps else 1.0,
                "metrics": {k: finite(v) for k, v in metrics.items()},
                "b_simple": finite(result.b_simple),
                "b_simple_ci": [finite(result.b_simple_ci[0]), finite(result.b_simple_ci[1])],
                "grad_sq_norm": finite(result.grad_sq_norm),
                "trace_cov": finite(result.trace_cov),
                "n": result.n,
            }
        )
    return {"key": job.key, "job": job.describe(), "checkpoints": records}
