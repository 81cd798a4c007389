"""One training run at one batch size: its evaluation curve and steps-to-target.

Steps-to-result after Shallue et al. 2018 (Sec. 3.3) and their data release
(``measurement_utils.py``): the first evaluated step at which the validation metric
reaches the target. Evaluations follow a coarse grid and turn dense near the target
(:mod:`._evaluation`), so the count is resolved to ``spec.resolution`` of itself. A run
may stop right there (later steps cannot change it), or once it passes a step count
that another run already beat (it can no longer win). Workloads with exact expected
curves (``iter_exact_metrics``, e.g. ``nqm``) go through the same loop without training.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from .._device import autocast, check_precision, matmul_precision
from .._seeding import make_generator
from ..optim import optimizer_for, warmup_schedule
from ..workloads import Target, Workload, check_batch_size, workload_device
from ._evaluation import EvaluationSchedule, near_target, refinement, resolution_steps

if TYPE_CHECKING:
    from ._parallel import DataParallel

#: A run's outcome; results add "error" (the run raised) to these.
Status = Literal["reached", "not_reached", "beaten", "pruned", "diverged"]

#: ``prune(step, best value so far, co-members' best values so far)`` -> why to stop, or None.
PruneRule = Callable[[int, float, Sequence[float]], "str | None"]

#: Hyperparameters that shape the schedule rather than the optimizer.
SCHEDULE_HPARAMS = ("warmup_steps",)

#: Training losses stay on the device and are read back at evaluations and at least this
#: often: a non-finite loss is found within this many steps, without a per-step host sync.
LOSS_READBACK_EVERY = 64


class PendingLosses:
    """Per-step training losses kept on the device, read back to the host in one copy.

    ``float(loss)`` every step would make the host wait for the GPU every step; these
    are 0-d (or, for an ensemble, per-member 1-d) tensors, stacked and copied at once.
    """

    def __init__(self) -> None:
        self._steps: list[int] = []
        self._losses: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, step: int, loss: torch.Tensor) -> None:
        self._steps.append(step)
        self._losses.append(loss.detach())

    def read(self) -> list[tuple[int, Any]]:
        """(step, loss as a float or a list of floats) for the steps since the last read."""
        values = torch.stack(self._losses).tolist() if self._losses else []
        pending = list(zip(self._steps, values, strict=True))
        self._steps, self._losses = [], []
        return pending


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything that determines one training run.

    Attributes:
        batch_size: examples per optimizer step.
        optimizer: optimizer name (see :data:`batchlab.optim.OPTIMIZERS`).
        hparams: optimizer hyperparameters (``lr``, ``momentum``, ...), plus the
            schedule's ``warmup_steps`` (linear warmup, then ``decay``) if tuned.
        max_steps: step budget.
        eval_every: evaluate every this many steps (and at ``max_steps``): the coarse
            grid, always evaluated.
        seed: model-initialisation and data-order seed.
        decay: the LR decay after warmup, over the budget (``"constant"``: none; see
            :func:`batchlab.optim.warmup_schedule`).
        resolution: near the target, evaluate every ``max(1, floor(resolution * step))``
            steps, resolving steps-to-target to this fraction of itself
            (:mod:`batchlab.training._evaluation`); 0: the coarse grid only.
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"`` (autocast around the loss and
            the evaluation; see :mod:`batchlab._device`). The device is not part of a
            run: it trains where its workload's data are (:func:`batchlab.workloads.on_device`).
        compile: train through ``torch.compile`` (the model's forward and loss alone;
            a vmapped ensemble's batched loss): faster steps after a compile of
            seconds to a minute, with rounding that differs from eager mode.
    """

    batch_size: int
    optimizer: str
    hparams: Mapping[str, float]
    max_steps: int
    eval_every: int
    seed: int
    decay: str = "constant"
    resolution: float = 0.0
    precision: str = "fp32"
    compile: bool = False

    def eval_steps(self) -> list[int]:
        """The coarse grid: every ``eval_every`` steps, and the last step."""
        steps = list(range(self.eval_every, self.max_steps + 1, self.eval_every))
        if not steps or steps[-1] != self.max_steps:
            steps.append(self.max_steps)
        return steps


@dataclass
class RunResult:
    """The outcome of one run.

    Attributes:
        status: ``reached`` the target, ``not_reached`` within the budget,
            ``diverged`` (NaN/inf loss), ``beaten`` (stopped once it could no
            longer beat the best steps-to-target known at its batch size), or
            ``pruned`` (stopped as hopeless from its partial curve; opt-in).
        steps_to_target: first evaluated step meeting the target, else ``None``.
        resolution_steps: steps-to-target minus the evaluated step before it: the
            target was crossed within that many steps (``None``: not reached).
        steps: evaluated steps, in order (the coarse grid, denser near the target).
        metrics: metric name -> one value per evaluated step.
        train_loss: training loss at the evaluated steps (NaN for exact workloads).
        reason: why a run did not reach the target, in words.
    """

    status: Status
    steps_to_target: int | None
    resolution_steps: int | None = None
    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    train_loss: list[float] = field(default_factory=list)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "steps_to_target": self.steps_to_target,
            "resolution_steps": self.resolution_steps,
            "steps": self.steps,
            "metrics": {k: [_finite_or_none(v) for v in vs] for k, vs in self.metrics.items()},
            "train_loss": [_finite_or_none(v) for v in self.train_loss],
            "reason": self.reason,
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def steps_to_target(steps: list[int], values: list[float], target: Target) -> int | None:
    """First of ``steps`` whose metric value meets ``target`` (Shallue et al. 2018)."""
    for step, value in zip(steps, values, strict=True):
        if target.reached(value):
            return step
    return None


def best_so_far(result: RunResult, target: Target) -> float | None:
    """The best finite value of the target metric a run has had so far (``None``: none)."""
    values = [v for v in result.metrics.get(target.metric, []) if math.isfinite(v)]
    if not values:
        return None
    return max(values) if target.direction == "max" else min(values)


def split_hparams(spec: RunSpec) -> tuple[dict[str, float], int]:
    """``spec.hparams`` as (the optimizer's hyperparameters, warmup steps)."""
    optimizer_hparams = {k: v for k, v in spec.hparams.items() if k not in SCHEDULE_HPARAMS}
    warmup = int(round(spec.hparams.get("warmup_steps", 0)))
    return optimizer_hparams, warmup


def optimizer_and_schedule(
    model: nn.Module, spec: RunSpec
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The run's optimizer over ``model`` and its LR schedule (``None``: constant LR).

    The schedule is linear warmup over ``warmup_steps`` then ``spec.decay`` over the
    budget (:func:`batchlab.optim.warmup_schedule`); step it once per optimizer step.
    """
    optimizer_hparams, warmup = split_hparams(spec)
    optimizer = optimizer_for(model, spec.optimizer, optimizer_hparams)
    schedule = None
    if warmup > 0 or spec.decay != "constant":
        schedule = warmup_schedule(optimizer, warmup, spec.max_steps, decay=spec.decay)
    return optimizer, schedule


def _training_curve(
    workload: Workload,
    spec: RunSpec,
    schedule: EvaluationSchedule,
    parallel: DataParallel | None = None,
) -> Iterator[tuple[int, dict[str, float], float]]:
    """Train and yield (step, metrics, train loss) at every step ``schedule`` makes due.

    The consumer advances ``schedule`` after each evaluation, before the next step.
    A non-finite training loss ends the run with empty metrics at that step (found at
    the next read-back, :data:`LOSS_READBACK_EVERY`). The model trains on the
    workload's device; the host waits for it only at read-backs and evaluations. With
    ``parallel``, this process is one rank of a DDP trial: it trains its slice of
    every global batch and reports the global batch's mean loss (every step).
    """
    device = workload_device(workload)
    model = workload.build_model(spec.seed).to(device)
    model.train()
    train_model = model if parallel is None else parallel.wrap(model)
    if spec.compile:
        train_model = torch.compile(train_model)
    optimizer, schedule_lr = optimizer_and_schedule(model, spec)
    batches = workload.train_batches(spec.batch_size, make_generator(spec.seed))
    if parallel is not None:
        batches = parallel.shard(batches)
    pending = PendingLosses()
    for step in range(1, spec.max_steps + 1):
        with autocast(spec.precision, device):
            loss = workload.loss_fn(train_model, next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule_lr is not None:
            schedule_lr.step()
        due = schedule.due(step)
        if parallel is not None:
            pending.add(step, torch.tensor(parallel.mean(loss)))
        else:
            pending.add(step, loss)
        if not (due or len(pending) >= LOSS_READBACK_EVERY or step == spec.max_steps):
            continue
        losses = pending.read()
        diverged = next(((s, v) for s, v in losses if not math.isfinite(v)), None)
        if diverged is not None:
            yield diverged[0], {}, diverged[1]
            return
        if due:
            with autocast(spec.precision, device):
                metrics = workload.evaluate(model)
            if parallel is not None:
                metrics = parallel.from_rank0(metrics, loss.device)
            yield step, metrics, losses[-1][1]


def _exact_curve(
    workload: Any, spec: RunSpec, target: Target
) -> Iterator[tuple[int, dict[str, float], float]]:
    """The expected curve on the coarse grid; the interval where ``target`` is first met, dense.

    Exact metrics at any steps are one more call away, so no prediction is needed: the
    refined interval's steps (:func:`._evaluation.refinement`) are computed by a second
    pass that jumps straight to the interval's start, and yielded before its end.
    """
    optimizer_hparams, _ = split_hparams(spec)
    hparams = {"optimizer": spec.optimizer, **optimizer_hparams}
    coarse = spec.eval_steps()
    previous, refined = 0, False
    for step, metrics in zip(
        coarse, workload.iter_exact_metrics(hparams, spec.batch_size, coarse), strict=True
    ):
        if not refined and target.reached(metrics.get(target.metric, math.nan)):
            refined = True
            fine = refinement(previous, step, spec.resolution)
            if fine:
                exact = workload.iter_exact_metrics(hparams, spec.batch_size, [previous, *fine])
                next(exact)  # the start of the interval, evaluated already
                for fine_step, fine_metrics in zip(fine, exact, strict=True):
                    yield fine_step, fine_metrics, math.nan
                    if target.reached(fine_metrics.get(target.metric, math.nan)):
                        break
        yield step, metrics, math.nan
        previous = step


def has_exact_curves(workload: Workload) -> bool:
    """Whether the workload computes expected curves exactly (no training needed)."""
    return callable(getattr(workload, "iter_exact_metrics", None))


def _check_run(
    workload: Workload, spec: RunSpec, target: Target, parallel: DataParallel | None
) -> None:
    """The checks of :func:`run_training`'s arguments, once, at its entry.

    A study makes the same checks on its config, against the workload, before any
    trial runs; nothing below this entry checks them again.
    """
    check_batch_size(spec.batch_size, workload.train_size)
    check_precision(spec.precision, name="spec.precision")
    if target.metric not in workload.metrics:
        raise ValueError(
            f"target metric {target.metric!r} is not reported by workload "
            f"{workload.name!r}; it reports: {', '.join(workload.metrics)}"
        )
    if has_exact_curves(workload):
        if parallel is not None:
            raise ValueError(f"workload {workload.name!r} computes exact curves; nothing to train")
        if split_hparams(spec)[1] or spec.decay != "constant":
            raise ValueError(
                f"workload {workload.name!r} has exact curves only for a constant learning rate "
                "(no warmup, decay 'constant')"
            )


def run_training(
    workload: Workload,
    spec: RunSpec,
    target: Target,
    *,
    stop_at_target: bool = True,
    stop_after: int | Callable[[], int | None] | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    parallel: DataParallel | None = None,
    prune: PruneRule | None = None,
) -> RunResult:
    """Train one run and measure its steps-to-target.

    Args:
        workload: the model and data.
        spec: batch size, optimizer, hyperparameters, budget, evaluation interval and
            resolution, seed.
        target: the metric goal that defines steps-to-target.
        stop_at_target: stop at the first evaluation that meets the target.
        stop_after: stop (status ``beaten``) once the step count reaches this value
            without meeting the target, because a run at this batch size already
            reached it in fewer steps. A callable is asked at every evaluation (so
            a best found meanwhile by another worker counts too).
        on_eval: called with (step, metrics) at every evaluation, coarse or dense
            (progress display).
        parallel: this process's rank in a DDP trial (set by
            :func:`~batchlab.training.run_ddp_trial`'s ranks, not by callers).
        prune: asked at every evaluation before the target is met, with the step
            and the best target-metric value so far; a reason stops the run
            (status ``pruned``; see :mod:`batchlab.study._pruning`).

    Raises:
        ValueError: a batch size the workload cannot serve, a target metric it does
            not report, or a schedule (or DDP) its exact curves cannot follow.
    """
    _check_run(workload, spec, target, parallel)
    exact = has_exact_curves(workload)
    schedule = EvaluationSchedule(spec.eval_steps(), spec.resolution)
    curve = (
        _exact_curve(workload, spec, target)
        if exact
        else _training_curve(workload, spec, schedule, parallel)
    )
    result = RunResult(status="not_reached", steps_to_target=None)
    # Precision flags hold for the whole run (backward passes too); the curve is closed
    # when the loop stops early, so a training generator never outlives them.
    with matmul_precision(spec.precision), contextlib.closing(curve):
        for step, metrics, train_loss in curve:
            if not metrics:  # the training loss became NaN/inf
                result.status = "diverged"
                result.reason = f"training loss became {train_loss} at step {step}"
                break
            value = metrics.get(target.metric, math.nan)
            result.steps.append(step)
            result.train_loss.append(train_loss)
            for name, metric in metrics.items():
                result.metrics.setdefault(name, []).append(metric)
            if on_eval is not None:
                on_eval(step, metrics)
            if not math.isfinite(value):
                result.status, result.reason = (
                    "diverged",
                    f"{target.metric} became {value} at step {step}",
                )
                break
            if target.reached(value):
                if result.steps_to_target is None:
                    result.status, result.steps_to_target = "reached", step
                if stop_at_target:
                    break
            elif result.steps_to_target is None:
                known = stop_after() if callable(stop_after) else stop_after
                if known is not None and step >= known:
                    result.status = "beaten"
                    result.reason = (
                        f"stopped at step {step}: another run reached the target by step {known}"
                    )
                    break
                if prune is not None:
                    best = best_so_far(result, target)
                    why = prune(step, best, ()) if best is not None else None
                    if why is not None:
                        result.status, result.reason = "pruned", why
                        break
            if not exact:  # exact curves refine their crossing themselves
                near = result.steps_to_target is None and near_target(
                    result.steps, result.metrics[target.metric], target, spec.eval_every
                )
                schedule.advance(step, near)
    result.resolution_steps = resolution_steps(result.steps, result.steps_to_target)
    if result.status == "not_reached":
        result.reason = f"{target.describe()} not reached within {spec.max_steps} steps"
    return result
