"""``ramp_training``: one run of a workload under :class:`BatchRamp`, branches included.

The driver trains from scratch with gradient accumulation and a
:class:`~batchlab.noise.NoiseScaleTracker`; whenever the ramp says a calibration is
due, it copies the model and optimizer state (a branch point, as in Merrill et al.
2025), trains short branches at a few batch sizes around the current B_crit estimate
until the loss improves by a fixed fraction, fits S(B) = S_min(1 + B_crit/B)
(McCandlish et al. 2018, eq. 2.11; :func:`batchlab.analysis.fit_scaling`) to their
steps, and hands B_crit with its interval to the ramp. Every branch's steps and
examples are counted: a ramp that needs expensive calibration must pay for it.

The branches here are deliberately plain (one copy, constant LR moved by the ramp's
own rules, resume the optimizer state): :mod:`batchlab.cbs` sits above this package
and offers the full measurement (LR sweeps, repeats, exact curves) for offline use.

References:
    Merrill, Arora, Groeneveld, Hajishirzi 2025, arXiv:2505.23971.
    McCandlish, Kaplan, Amodei et al. 2018, arXiv:1812.06162, eq. 2.11.
    Shallue et al. 2018, JMLR 20(112), Sec. 3.3 (steps-to-result).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from .._checks import check_positive_int
from .._seeding import make_generator, seed_for
from ..noise import NoiseScaleTracker
from ..optim import optimizer_for
from ..workloads import Target, Workload, workload_device
from ._evaluation import eval_schedule
from ._ramp import BatchRamp, RampChange
from ._ramp_calibration import CalibrationPoint, RatioEstimate
from ._step import split_optimizer, train_step

logger = logging.getLogger(__name__)

RampStatus = Literal["reached", "not_reached", "diverged"]

#: A calibration is fitted only if its slowest branch that reached the target needed
#: at least this many steps (else the improvement asked for is too easy to resolve S(B)).
MIN_BRANCH_STEPS = 4


@dataclass(frozen=True)
class RampBranch:
    """One calibration branch.

    Attributes:
        batch_size: its batch size.
        lr: its learning rate.
        steps_to_target: first evaluated step meeting the improvement target, or ``None``.
        steps_run: optimizer steps it took (its cost).
        finite: False when its loss became NaN/inf (diverged).
    """

    batch_size: int
    lr: float
    steps_to_target: int | None
    steps_run: int
    finite: bool = True

    @property
    def examples(self) -> int:
        return self.steps_run * self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "examples": self.examples}


@dataclass(frozen=True)
class RampCalibration:
    """One calibration: the branches run at a step of the main run and what they gave.

    Attributes:
        step: steps of the main run when branched.
        b_simple: the tracked noise scale then.
        metric_value: the branched metric at the branch point.
        target_value: the value every branch had to reach.
        branches: the branches, by batch size.
        point: the calibration point handed to the ramp, or ``None`` (too few branches
            reached the target for a fit).
    """

    step: int
    b_simple: float
    metric_value: float
    target_value: float
    branches: tuple[RampBranch, ...]
    point: CalibrationPoint | None

    @property
    def steps(self) -> int:
        return sum(b.steps_run for b in self.branches)

    @property
    def examples(self) -> int:
        return sum(b.examples for b in self.branches)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "b_simple": self.b_simple,
            "metric_value": self.metric_value,
            "target_value": self.target_value,
            "branches": [b.to_dict() for b in self.branches],
            "point": None if self.point is None else self.point.to_dict(),
            "steps": self.steps,
            "examples": self.examples,
        }


@dataclass(frozen=True)
class RampResult:
    """The outcome of :func:`ramp_training`.

    Attributes:
        status: ``reached``, ``not_reached`` (within ``max_steps``) or ``diverged``.
        steps_to_target: training steps to the target (branches not included), or ``None``.
        examples_to_target: training examples by then (branches not included).
        branch_steps: steps of every calibration branch, summed.
        branch_examples: their examples, summed.
        steps: training steps run.
        examples: training examples used.
        changes: every batch-size change.
        calibrations: every calibration, with its branches.
        ratio: the final estimate of B_crit/B_simple (carried points included).
        eval_steps, eval_values: the target metric along the run.
        wall_time_s: seconds, branches included.
        carried: the calibration points carried in from earlier runs.
    """

    status: RampStatus
    steps_to_target: int | None
    examples_to_target: int | None
    branch_steps: int
    branch_examples: int
    steps: int
    examples: int
    changes: tuple[RampChange, ...]
    calibrations: tuple[RampCalibration, ...]
    ratio: RatioEstimate
    eval_steps: tuple[int, ...] = field(default=(), repr=False)
    eval_values: tuple[float, ...] = field(default=(), repr=False)
    wall_time_s: float = 0.0
    carried: tuple[CalibrationPoint, ...] = ()

    @property
    def points(self) -> tuple[CalibrationPoint, ...]:
        """Every calibration point behind :attr:`ratio`, carried ones first: what a later
        run of the same model and optimizer passes as ``carried``."""
        return self.carried + tuple(c.point for c in self.calibrations if c.point is not None)

    @property
    def total_steps_to_target(self) -> int | None:
        """Steps to the target with every branch step counted (run one after the other)."""
        return None if self.steps_to_target is None else self.steps_to_target + self.branch_steps

    @property
    def total_examples_to_target(self) -> int | None:
        """Examples to the target with every branch's examples counted."""
        if self.examples_to_target is None:
            return None
        return self.examples_to_target + self.branch_examples

    @property
    def batch_sizes(self) -> list[int]:
        """The batch sizes the run used, in order."""
        return [c.batch_size for c in self.changes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "steps_to_target": self.steps_to_target,
            "examples_to_target": self.examples_to_target,
            "branch_steps": self.branch_steps,
            "branch_examples": self.branch_examples,
            "total_steps_to_target": self.total_steps_to_target,
            "total_examples_to_target": self.total_examples_to_target,
            "steps": self.steps,
            "examples": self.examples,
            "changes": [c.to_dict() for c in self.changes],
            "calibrations": [c.to_dict() for c in self.calibrations],
            "ratio": self.ratio.to_dict(),
            "eval_steps": list(self.eval_steps),
            "eval_values": list(self.eval_values),
            "wall_time_s": self.wall_time_s,
            "carried": [p.to_dict() for p in self.carried],
        }


def _ladder(center: float, factors: Sequence[float], micro: int, cap: int | None) -> list[int]:
    """Powers-of-two multiples of ``micro`` nearest ``center · f``, capped, at least 3 distinct.

    Rounding and the cap can merge rungs (a small B_crit estimate puts several at
    ``micro``): the ladder is then extended by doubling its top (or halving its
    bottom, at the cap), so that S(B) can still be fitted.
    """
    sizes = set()
    for factor in factors:
        k = max(1.0, center * factor / micro)
        size = micro * 2 ** round(math.log2(k))
        sizes.add(size if cap is None else min(size, cap))
    while len(sizes) < min(3, len(factors)):
        top, bottom = max(sizes), min(sizes)
        if cap is None or 2 * top <= cap:
            sizes.add(2 * top)
        elif bottom // 2 >= micro and bottom % 2 == 0:
            sizes.add(bottom // 2)
        else:
            break
    return sorted(sizes)


def _centre(b_crit: float, batch_size: int) -> float:
    """The ladder's centre: the B_crit estimate, within [B/4, 4B] of the batch size B now.

    A spurious jump of the tracked B_simple would otherwise send every branch to huge
    batch sizes, at a huge cost in examples, to measure what the next step cannot use.
    """
    return min(max(b_crit, batch_size / 4), 4 * batch_size)


def _branch_metric(workload: Workload) -> tuple[str, str]:
    """The metric the branches improve: the target's if minimised, else ``loss``."""
    target = workload.target
    if target.direction == "min" or "loss" not in workload.metrics:
        return target.metric, target.direction
    return "loss", "min"


def ramp_training(
    workload: Workload,
    *,
    optimizer: str | None = None,
    hparams: Mapping[str, float] | None = None,
    target: Target | None = None,
    micro_batch_size: int,
    base_accumulation: int = 2,
    max_batch_size: int | None = None,
    fraction: float = 0.5,
    max_growth: float | None = 2.0,
    lr_rule: str | None = None,
    seesaw: bool = False,
    max_lr_factor: float | None = None,
    max_steps: int | None = None,
    eval_every: int = 10,
    update_every: int = 10,
    min_steps: int = 20,
    ema_decay: float | None = 0.9,
    max_calibrations: int = 3,
    calibration_gap: int = 100,
    recalibrate_growth: float = 2.0,
    prior_ratio: float = 1.0,
    carried: Sequence[CalibrationPoint] = (),
    branch_factors: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
    branch_improvement: float = 0.1,
    branch_max_steps: int = 200,
    branch_eval_resolution: float = 0.1,
    n_bootstrap: int = 200,
    seed: int = 0,
    on_eval: Callable[[int, int, float], None] | None = None,
) -> RampResult:
    """Train ``workload`` from scratch under a :class:`BatchRamp`, calibrating by branches.

    Branch ladder: at a calibration, powers of two of ``micro_batch_size`` nearest
    ``branch_factors`` × the current B_crit estimate (r̂ · B_simple; the prior before
    the first point; kept within [B/4, 4B] of the batch size B now), capped at
    ``max_batch_size`` · 4. Each branch starts from a copy
    of the model and optimizer state, its hyperparameters moved from the current batch
    size by the ramp's rules, and trains until the metric improves by
    ``branch_improvement`` (relative, for a positive minimised metric; absolute
    otherwise) or ``branch_max_steps``; the S(B) fit needs three branches that
    reached it, the slowest in at least :data:`MIN_BRANCH_STEPS` steps (else the
    calibration is counted, its cost too, and skipped).

    Args:
        workload: the model and data.
        optimizer: optimizer name (default: the workload's).
        hparams: its hyperparameters at the starting batch size, ``lr`` included
            (default: the workload's ``default_hparams``).
        target: the goal of the run (default: the workload's).
        micro_batch_size: examples per micro-batch.
        base_accumulation: micro-batches per step at the start, >= 2.
        max_batch_size: cap of the ramp (``None``: none).
        fraction, max_growth, lr_rule, seesaw, max_lr_factor, update_every, min_steps,
        max_calibrations, calibration_gap, recalibrate_growth, prior_ratio, carried: see
            :class:`BatchRamp` (``carried``: e.g. an earlier run's :attr:`RampResult.points`).
        max_steps: training step budget (default: the workload's ``default_steps``).
        eval_every: steps between evaluations of the target.
        ema_decay: the tracker's EMA (``None``: plain average).
        branch_factors: the ladder around the B_crit estimate, >= 3 values.
        branch_improvement: the improvement every branch must reach.
        branch_max_steps: budget of every branch.
        branch_eval_resolution: relative spacing of a branch's evaluations.
        n_bootstrap: bootstrap replicates of each fit.
        seed: model, data and branch seeds.
        on_eval: called after every evaluation with (step, batch size, the target
            metric's value), e.g. to show progress.

    Returns:
        A :class:`RampResult`; its ``total_*`` counts include every branch.
    """
    started = time.perf_counter()
    defaults = dict(workload.default_hparams)
    name, base = split_optimizer(
        {"optimizer": optimizer or defaults.pop("optimizer"),
         **(dict(hparams) if hparams is not None else {k: v for k, v in defaults.items()
                                                         if k != "optimizer"})}
    )  # fmt: skip
    if "lr" not in base:
        raise ValueError(f"hparams must hold the learning rate 'lr', got {base}")
    target = workload.target if target is None else target
    if not isinstance(target, Target):
        raise TypeError(f"target must be a batchlab.workloads.Target, got {type(target).__name__}")
    max_steps = check_positive_int(
        workload.default_steps if max_steps is None else max_steps, "max_steps"
    )
    eval_every = check_positive_int(eval_every, "eval_every")
    branch_max_steps = check_positive_int(branch_max_steps, "branch_max_steps")
    factors = [float(f) for f in branch_factors]
    if len(factors) < 3 or not all(math.isfinite(f) and f > 0 for f in factors):
        raise ValueError(
            f"branch_factors must be >= 3 positive numbers, got {list(branch_factors)}"
        )
    if not (isinstance(branch_improvement, int | float) and branch_improvement > 0):
        raise ValueError(
            f"branch_improvement must be a positive number, got {branch_improvement!r}"
        )
    if not (0 <= branch_eval_resolution < 1):
        raise ValueError(
            f"branch_eval_resolution must be in [0, 1), got {branch_eval_resolution!r}"
        )

    device = workload_device(workload)
    model = workload.build_model(seed).to(device)
    model.train()
    opt = optimizer_for(model, name, base)
    tracker = NoiseScaleTracker(model, micro_batch_size=micro_batch_size, ema_decay=ema_decay)
    ramp = BatchRamp(
        tracker, micro_batch_size=micro_batch_size, base_accumulation=base_accumulation,
        max_batch_size=max_batch_size, fraction=fraction, max_growth=max_growth, optimizer=opt, optimizer_name=name,
        lr_rule=lr_rule, seesaw=seesaw, max_lr_factor=max_lr_factor, update_every=update_every,
        min_steps=min_steps, recalibrate_growth=recalibrate_growth,
        max_calibrations=max_calibrations, calibration_gap=calibration_gap,
        prior_ratio=prior_ratio, carried=carried,
    )  # fmt: skip
    stream = workload.train_batches(micro_batch_size, make_generator(seed))
    metric, direction = _branch_metric(workload)
    grid = eval_schedule(branch_max_steps, branch_eval_resolution)
    branch_cap = None if max_batch_size is None else 4 * max_batch_size
    if workload.train_size is not None:
        branch_cap = min(branch_cap or workload.train_size, workload.train_size)

    calibrations: list[RampCalibration] = []
    eval_steps: list[int] = []
    eval_values: list[float] = []
    status: RampStatus = "not_reached"
    reached: tuple[int, int] | None = None
    try:
        for step in range(1, max_steps + 1):
            k = ramp.accumulation_steps
            loss_sum = 0.0
            for _ in range(k):
                loss = workload.loss_fn(model, next(stream)) / k
                loss.backward()
                loss_sum += float(loss.detach())
            if not math.isfinite(loss_sum):
                status = "diverged"
                break
            opt.step()
            tracker.step()
            opt.zero_grad(set_to_none=True)
            ramp.step()
            if ramp.calibration_due:
                with tracker.paused():
                    calibration = _calibrate(
                        workload, model, opt, ramp, name=name, metric=metric,
                        direction=direction, improvement=float(branch_improvement), grid=grid,
                        factors=factors, cap=branch_cap, n_bootstrap=n_bootstrap,
                        seed=seed_for(seed, step),
                    )  # fmt: skip
                calibrations.append(calibration)
            if step % eval_every:
                continue
            value = float(workload.evaluate(model)[target.metric])
            model.train()
            eval_steps.append(step)
            eval_values.append(value)
            if on_eval is not None:
                on_eval(step, ramp.batch_size, value)
            if not math.isfinite(value):
                status = "diverged"
                break
            if target.reached(value):
                status = "reached"
                reached = (step, ramp.examples_seen)
                break
    finally:
        tracker.remove()
    return RampResult(
        status=status,
        steps_to_target=None if reached is None else reached[0],
        examples_to_target=None if reached is None else reached[1],
        branch_steps=sum(c.steps for c in calibrations),
        branch_examples=sum(c.examples for c in calibrations),
        steps=ramp.steps,
        examples=ramp.examples_seen,
        changes=tuple(ramp.history),
        calibrations=tuple(calibrations),
        ratio=ramp.ratio,
        eval_steps=tuple(eval_steps),
        eval_values=tuple(eval_values),
        wall_time_s=time.perf_counter() - started,
        carried=tuple(carried),
    )


def _calibrate(
    workload: Workload,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    ramp: BatchRamp,
    *,
    name: str,
    metric: str,
    direction: str,
    improvement: float,
    grid: list[int],
    factors: list[float],
    cap: int | None,
    n_bootstrap: int,
    seed: int,
) -> RampCalibration:
    """Branch at a few batch sizes from the current state; fit S(B); tell the ramp."""
    from ..analysis import fit_scaling  # SciPy: imported on first use, as the root does

    b_simple = ramp.calibrated()
    assert b_simple is not None  # calibration_due implies a finite B_simple
    value = float(workload.evaluate(model)[metric])
    model.train()
    if direction == "min" and value > 0 and improvement < 1:
        goal = Target(metric, value * (1 - improvement), "min")
    else:
        goal = Target(metric, value - improvement if direction == "min" else value + improvement,
                      direction)  # fmt: skip
    state = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(opt.state_dict())
    current = {"lr": float(opt.param_groups[0]["lr"])}
    group = opt.param_groups[0]
    if "betas" in group:
        current["beta2"] = float(group["betas"][1])
    if "weight_decay" in group:
        current["weight_decay"] = float(group["weight_decay"])
    branches = []
    for index, batch_size in enumerate(
        _ladder(_centre(b_simple.b_crit, ramp.batch_size), factors, ramp.micro_batch_size, cap)
    ):
        moved = ramp.hparams_at(current, ramp.batch_size, batch_size)
        branch = workload.build_model(0).to(workload_device(workload))
        branch.load_state_dict(state)
        branch.train()
        branch_opt = optimizer_for(branch, name, {"lr": moved["lr"]})
        branch_opt.load_state_dict(copy.deepcopy(opt_state))
        for g in branch_opt.param_groups:
            g["lr"] = moved["lr"]
            if "beta2" in moved and "betas" in g:
                g["betas"] = (g["betas"][0], moved["beta2"])
            if "weight_decay" in moved and "weight_decay" in g:
                g["weight_decay"] = moved["weight_decay"]
        data = workload.train_batches(batch_size, make_generator(seed_for(seed, index)))
        done, hit, loss = 0, None, 0.0
        for step in grid:
            while done < step:
                loss = train_step(workload, branch, branch_opt, data)
                done += 1
                if not math.isfinite(loss):
                    break
            if not math.isfinite(loss):
                break
            reached_value = float(workload.evaluate(branch)[metric])
            branch.train()
            if goal.reached(reached_value):
                hit = step
                break
        branches.append(RampBranch(batch_size, moved["lr"], hit, done, math.isfinite(loss)))
    sizes = [b.batch_size for b in branches]
    steps = [b.steps_to_target for b in branches]
    point = None
    reached = [s for s in steps if s is not None]
    # A target every branch meets within a few steps shows no bend at all (the
    # evaluation grid cannot resolve one): such a fit says nothing about B_crit.
    if len(reached) >= 3 and max(reached) >= MIN_BRANCH_STEPS:
        # An unreached branch is the bound S(B) > its budget (a censored rung); a
        # diverged one says nothing about S(B).
        budgets = [b.steps_run if b.finite else None for b in branches]
        fit = fit_scaling(sizes, steps, budgets=budgets, n_bootstrap=n_bootstrap, seed=seed)
        low, high = fit.b_crit_ci
        if not (0 <= low <= high):  # nan bounds: no interval, so no weight
            low, high = 0.0, math.inf
        if math.isfinite(fit.b_crit) and fit.b_crit > 0:
            point = ramp.add_calibration(fit.b_crit, (low, high), b_simple=b_simple.b_simple)
    if point is None:
        logger.info("calibration at step %d: too few branches reached the target", ramp.steps)
        ramp.skip_calibration()
    return RampCalibration(ramp.steps, b_simple.b_simple, value, goal.value, tuple(branches), point)
