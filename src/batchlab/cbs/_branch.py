"""One branch: from a checkpoint, train at one batch size and LR until a target is met.

Branching after Merrill et al. 2025 ("Critical Batch Size Revisited"): the model and
optimizer state of one run at one step are copied, and training continues at a
different batch size (and learning rate). The branch's steps-to-target is the first
evaluated step at which its metric meets the target (Shallue et al. 2018, Sec. 3.3).

With ``repeats`` > 1 several copies train in lockstep on independent data streams
and the target is read off the *mean* of their metric curves: an estimate of the
expected curve, which is what S(B) models (one curve of a noisy run crosses the
target early or late by chance).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._checks import check_positive_int
from .._device import autocast, check_precision
from .._seeding import make_generator, seed_for
from ..optim import optimizer_for
from ..training import set_lr, train_step
from ..workloads import Target, Workload, check_batch_size, workload_device
from ._checkpoints import Checkpoint
from ._schedule import Cooldown

Status = Literal["reached", "not_reached", "diverged", "beaten"]
OptimizerState = Literal["resume", "reset"]
OPTIMIZER_STATES: tuple[str, ...] = ("resume", "reset")


@dataclass(frozen=True)
class BranchResult:
    """The outcome of one branch.

    Attributes:
        batch_size: examples per step of the branch.
        lr: its (constant) learning rate.
        status: ``reached``; ``not_reached`` within the budget; ``diverged`` (NaN/inf
            loss or metric); ``beaten`` (stopped once another LR at this batch size had
            reached the target in fewer steps).
        steps_to_target: first evaluated step meeting the target, else ``None``.
        steps: evaluated steps.
        values: the metric (mean over repeats) at those steps.
        repeats: copies averaged.
        reason: why the target was not reached, in words.
    """

    batch_size: int
    lr: float
    status: Status
    steps_to_target: int | None
    steps: tuple[int, ...] = ()
    values: tuple[float, ...] = ()
    repeats: int = 1
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "lr": self.lr,
            "status": self.status,
            "steps_to_target": self.steps_to_target,
            "steps": list(self.steps),
            "values": [v if math.isfinite(v) else None for v in self.values],
            "repeats": self.repeats,
            "reason": self.reason,
        }


def run_branch(
    workload: Workload,
    checkpoint: Checkpoint,
    *,
    batch_size: int,
    lr: float,
    target: Target,
    eval_steps: Sequence[int],
    optimizer: str | None = None,
    hparams: Mapping[str, float] | None = None,
    optimizer_state: OptimizerState = "resume",
    repeats: int = 1,
    seed: int = 0,
    stop_after: int | None = None,
    precision: str = "fp32",
    cooldown: Cooldown | None = None,
) -> BranchResult:
    """Train from ``checkpoint`` at ``batch_size`` and ``lr`` until ``target`` is met.

    The copies train where the workload's data are
    (:func:`batchlab.workloads.workload_device`; place it with
    :func:`batchlab.workloads.on_device` first): the checkpoint's CPU state is loaded
    into models there, and the optimizer state follows its parameters there.

    Args:
        workload: the model and data (the checkpoint's).
        checkpoint: the state to branch from.
        batch_size: examples per step.
        lr: constant learning rate of the branch.
        target: the metric goal (see :func:`improvement_target`).
        eval_steps: strictly increasing steps at which to evaluate (see
            :func:`eval_schedule`); the last one is the budget.
        optimizer: optimizer name (default: the checkpoint's).
        hparams: its other hyperparameters (default: the checkpoint's; ``lr`` is
            replaced by ``lr``).
        optimizer_state: ``"resume"`` loads the checkpoint's optimizer state (momentum
            buffers, Adam moments; Merrill et al. 2025 branch this way), ``"reset"``
            starts a fresh optimizer.
        repeats: copies on independent data, averaged (see the module docstring).
        seed: data-order seed; the streams depend on (seed, step, batch size, copy),
            not on ``lr``, so the LRs tried at one batch size see the same data.
        stop_after: stop (status ``beaten``) once this many steps pass without
            meeting the target.
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"``: the numerics of the forward
            passes (training loss and evaluation; :func:`batchlab._device.autocast`).
        cooldown: if given (WSD measurements, :mod:`._schedule`), at each evaluation
            after t steps at ``lr`` a copy cools down over k more steps
            (:meth:`Cooldown.lrs`, on its own data stream) and is evaluated instead;
            the step recorded is t + k, so steps-to-target counts the cooldown.

    Returns:
        A :class:`BranchResult`.
    """
    check_batch_size(batch_size, workload.train_size)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if optimizer_state not in OPTIMIZER_STATES:
        raise ValueError(
            f"optimizer_state must be one of {', '.join(OPTIMIZER_STATES)}, got {optimizer_state!r}"
        )
    check_positive_int(repeats, "repeats")
    check_precision(precision)
    if not eval_steps:
        raise ValueError("eval_steps must not be empty")
    name = optimizer or checkpoint.optimizer
    if name is None:
        raise ValueError(
            f"the checkpoint at step {checkpoint.step} does not name its optimizer; pass optimizer="
        )
    base = dict(checkpoint.hparams if hparams is None else hparams)
    base["lr"] = lr
    resume = optimizer_state == "resume" and checkpoint.optimizer_state is not None
    if resume and name != checkpoint.optimizer:
        raise ValueError(
            f"cannot resume the optimizer state of {checkpoint.optimizer!r} with {name!r}; "
            "use the same optimizer or optimizer_state='reset'"
        )

    device = workload_device(workload)
    copies = []
    for index in range(repeats):
        model = workload.build_model(0).to(device)
        model.load_state_dict(checkpoint.model_state)  # copies the CPU state onto the device
        model.train()
        opt = optimizer_for(model, name, base)
        if resume:
            assert checkpoint.optimizer_state is not None
            # A copy: load_state_dict keeps the given tensors (on the CPU; it moves them to
            # their parameters' device), and the optimizer would then update the
            # checkpoint's momentum buffers / Adam moments in place.
            opt.load_state_dict(copy.deepcopy(checkpoint.optimizer_state))
            set_lr(opt, lr)  # load_state_dict restores the base run's LR
        stream = workload.train_batches(
            batch_size, make_generator(seed_for(seed, checkpoint.step, batch_size, index))
        )
        copies.append((model, opt, stream))

    steps: list[int] = []
    values: list[float] = []
    done = 0
    for step in eval_steps:
        for _ in range(step - done):
            for model, opt, stream in copies:
                loss = train_step(workload, model, opt, stream, precision=precision)
                if not math.isfinite(loss):
                    return _stopped(
                        batch_size, lr, repeats, steps, values, "diverged",
                        f"training loss became {loss} at step {done + 1}",
                    )  # fmt: skip
            done += 1
        if cooldown is not None:
            cooled = _cooled_down(
                workload, copies, cooldown, lr, step, batch_size, precision,
                seed_for(seed, checkpoint.step, batch_size, step),
            )  # fmt: skip
            if isinstance(cooled, str):
                return _stopped(batch_size, lr, repeats, steps, values, "diverged", cooled)
            models, step = cooled
        else:
            models = [m for m, _, _ in copies]
        with autocast(precision, device):
            value = sum(workload.evaluate(m)[target.metric] for m in models) / repeats
        steps.append(step)
        values.append(value)
        if not math.isfinite(value):
            return _stopped(
                batch_size, lr, repeats, steps, values, "diverged",
                f"{target.metric} became {value} at step {step}",
            )  # fmt: skip
        if target.reached(value):
            return BranchResult(
                batch_size, lr, "reached", step, tuple(steps), tuple(values), repeats
            )
        if stop_after is not None and step >= stop_after:
            return _stopped(
                batch_size, lr, repeats, steps, values, "beaten",
                f"stopped at step {step}: another learning rate reached the target by step "
                f"{stop_after}",
            )  # fmt: skip
    return _stopped(
        batch_size, lr, repeats, steps, values, "not_reached",
        f"{target.describe()} not reached within {eval_steps[-1]} steps",
    )  # fmt: skip


def _cooled_down(
    workload: Workload,
    copies: list[tuple[Any, Any, Any]],
    cooldown: Cooldown,
    lr: float,
    stable_steps: int,
    batch_size: int,
    precision: str,
    seed: int,
) -> tuple[list[Any], int] | str:
    """Copies of the branch after its cooldown from ``stable_steps``, and the total steps.

    Returns a reason (str) instead if the cooldown diverged.
    """
    lrs = cooldown.lrs(lr, stable_steps, batch_size)
    models = []
    for index, (model, opt, _) in enumerate(copies):
        # One deepcopy of both keeps the optimizer pointing at the copy's parameters.
        model_copy, opt_copy = copy.deepcopy((model, opt))
        stream = workload.train_batches(batch_size, make_generator(seed_for(seed, index)))
        for j, step_lr in enumerate(lrs):
            set_lr(opt_copy, step_lr)
            loss = train_step(workload, model_copy, opt_copy, stream, precision=precision)
            if not math.isfinite(loss):
                return f"training loss became {loss} at cooldown step {j + 1} after {stable_steps}"
        models.append(model_copy)
    return models, stable_steps + len(lrs)


def _stopped(
    batch_size: int,
    lr: float,
    repeats: int,
    steps: list[int],
    values: list[float],
    status: Status,
    reason: str,
) -> BranchResult:
    return BranchResult(batch_size, lr, status, None, tuple(steps), tuple(values), repeats, reason)
