"""``measure_critical_batch``: the critical batch size over training, measured by branching.

For each checkpoint of one run: branch short runs at several batch sizes (each at a
learning rate from a rule, or the best of a small sweep around it), count the steps
each needs to improve the metric by a fixed amount, fit S(B) = S_min (1 + B_crit/B)
(McCandlish et al. 2018, eq. 2.11) to those counts, and measure the gradient noise
scale B_simple at the same parameters — the quantity that is meant to predict B_crit.

References:
    Merrill, Arora, Groeneveld, Hajishirzi 2025, "Critical Batch Size Revisited: A
    Simple Empirical Approach to Large-Batch Language Model Training",
    arXiv:2505.23971 (branching from checkpoints of one run; the noise scale does not
    track the critical batch size under Adam).
    Zhang, Chen, Li et al. 2024, "How Does Critical Batch Size Scale in Pre-training?",
    arXiv:2410.21676 (steps to a fixed loss at several batch sizes).
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
    Training", arXiv:1812.06162, eq. 2.11 and Appendix A.

The work itself is in :mod:`._branch` (one branch), :mod:`._checkpoints`,
:mod:`._target` and :mod:`._analysis` (the fit and the noise scale at a checkpoint);
this module checks the options and runs the branches.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .._checks import check_positive_int
from .._device import autocast, check_precision, matmul_precision, resolve_device
from ..noise import check_micro_batch_size
from ..optim import SCALING_RULES, scale_lr, wsd_multiplier
from ..training import split_optimizer
from ..workloads import Workload, check_batch_size, on_device, workload_device
from ._analysis import analyse_checkpoint
from ._branch import OPTIMIZER_STATES, BranchResult, OptimizerState, run_branch
from ._checkpoints import Checkpoint, train_base_run
from ._exact import exact_branch_curve, first_reached
from ._results import CriticalBatchResult, RungMeasurement
from ._schedule import SCHEDULES, Cooldown
from ._target import eval_schedule, improvement_target

logger = logging.getLogger(__name__)

#: ``on_progress(done, total, description)``: one call per finished branch.
ProgressFn = Callable[[int, int, str], None]


def _check_ladder(batch_sizes: Sequence[int], train_size: int | None) -> list[int]:
    sizes = [check_batch_size(b, train_size, name="batch_sizes[]") for b in batch_sizes]
    if len(sizes) < 3:
        raise ValueError(
            f"batch_sizes needs at least 3 batch sizes to fit S(B), got {list(batch_sizes)}"
        )
    if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
        raise ValueError(f"batch_sizes must be strictly increasing, got {sizes}")
    return sizes


def _lr_candidates(
    base_lr: float, base_batch_size: int, batch_size: int, rule: str, multipliers: Sequence[float]
) -> list[float]:
    """The rule's LR at ``batch_size`` times each multiplier, the rule's own LR first."""
    center = scale_lr(base_lr, base_batch_size, batch_size, rule)
    ordered = sorted(multipliers, key=lambda m: (abs(math.log(m)), m))
    return [center * m for m in ordered]


def _model_at(workload: Workload, checkpoint: Checkpoint) -> torch.nn.Module:
    """The checkpoint's model on the workload's device, in train mode."""
    model = workload.build_model(0).to(workload_device(workload))
    model.load_state_dict(checkpoint.model_state)  # copies the CPU state onto the device
    model.train()
    return model


def _environment(device: torch.device) -> dict[str, Any]:
    from .._version import __version__

    environment = {
        "batchlab": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        environment["gpu"] = torch.cuda.get_device_name(device)
        environment["cuda"] = torch.version.cuda
    return environment


def _check_schedule(
    schedule: str,
    warmup_steps: int,
    total_steps: int | None,
    decay_fraction: float,
    cooldown_fraction: float | None,
    cooldown_examples: int | None,
    cooldown_decay: str,
) -> tuple[dict[str, Any], Cooldown | None]:
    """``settings["schedule"]`` and the branches' cooldown, or an error naming the option."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "constant":
        for name, value, default in (
            ("warmup_steps", warmup_steps, 0),
            ("total_steps", total_steps, None),
            ("decay_fraction", decay_fraction, 0.2),
            ("cooldown_fraction", cooldown_fraction, None),
            ("cooldown_examples", cooldown_examples, None),
            ("cooldown_decay", cooldown_decay, "linear"),
        ):
            if value != default:
                raise ValueError(f"{name} applies to schedule='wsd', not schedule='constant'")
        return {"name": "constant"}, None
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    if not (isinstance(decay_fraction, (int, float)) and 0 <= decay_fraction < 1):
        raise ValueError(f"decay_fraction must be in [0, 1), got {decay_fraction!r}")
    stable_end = None
    if total_steps is not None:
        total_steps = check_positive_int(total_steps, "total_steps")
        stable_end = total_steps - round(decay_fraction * total_steps)
        if stable_end < warmup_steps:
            raise ValueError(
                f"total_steps={total_steps} with decay_fraction={decay_fraction} leaves no "
                f"stable phase after warmup_steps={warmup_steps}"
            )
    cooldown = None
    if cooldown_fraction is not None or cooldown_examples is not None:
        cooldown = Cooldown(cooldown_fraction, cooldown_examples, cooldown_decay)
    elif cooldown_decay != "linear":
        raise ValueError("cooldown_decay needs cooldown_fraction or cooldown_examples")
    info = {
        "name": "wsd",
        "warmup_steps": warmup_steps,
        "total_steps": total_steps,
        "decay_fraction": float(decay_fraction),
        "stable_end": stable_end,
        "cooldown": None if cooldown is None else cooldown.to_dict(),
    }
    return info, cooldown


def _check_stable(schedule: dict[str, Any], steps: Sequence[int]) -> None:
    """Refuse checkpoints outside the WSD stable phase (branching there assumes a peak LR)."""
    if schedule["name"] != "wsd":
        return
    low, high = schedule["warmup_steps"], schedule["stable_end"]
    for step in steps:
        if step < low:
            raise ValueError(
                f"checkpoints: step {step} is in the warmup phase (warmup_steps={low}); "
                "under schedule='wsd' branch from the stable phase only"
            )
        if high is not None and step > high:
            raise ValueError(
                f"checkpoints: step {step} is in the decay phase (the stable phase ends at step "
                f"{high} = total_steps - decay_fraction * total_steps); under schedule='wsd' "
                "branch from the stable phase only"
            )


def measure_critical_batch(
    workload: Workload,
    checkpoints: Sequence[int] | Sequence[Checkpoint],
    batch_sizes: Sequence[int],
    *,
    optimizer: str | None = None,
    hparams: Mapping[str, float] | None = None,
    base_batch_size: int = 32,
    lr_rule: str = "sqrt",
    lr_multipliers: Sequence[float] = (1.0,),
    metric: str | None = None,
    improvement_fraction: float | None = None,
    improvement_delta: float | None = None,
    max_steps: int = 1000,
    eval_resolution: float = 0.05,
    repeats: int = 1,
    optimizer_state: OptimizerState = "resume",
    noise_batch_size: int | None = None,
    noise_micro_batch_size: int | None = None,
    noise_batches: int = 20,
    exact: bool = True,
    n_bootstrap: int = 1000,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    on_progress: ProgressFn | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    schedule: str = "constant",
    warmup_steps: int = 0,
    total_steps: int | None = None,
    decay_fraction: float = 0.2,
    cooldown_fraction: float | None = None,
    cooldown_examples: int | None = None,
    cooldown_decay: str = "linear",
) -> CriticalBatchResult:
    """Measure the critical batch size at checkpoints of one run, next to the noise scale.

    At each checkpoint, every batch size B of ``batch_sizes`` gets a branch per
    learning rate in ``lr_rule``'s LR at B times each of ``lr_multipliers``; the
    branch continues from the checkpoint's model (and, by default, optimizer state)
    until the metric improves by ``improvement_fraction`` (or ``improvement_delta``)
    over its value at the checkpoint. The fewest steps over the learning rates is
    S(B) (steps-to-result, Shallue et al. 2018); S(B) = S_min (1 + B_crit/B) is fitted
    per checkpoint with bootstrap intervals (:func:`batchlab.analysis.fit_scaling`),
    and B_simple is measured at the checkpoint's parameters
    (:func:`batchlab.measure_noise_scale`) and compared with B_crit
    (:func:`batchlab.analysis.compare_prediction`: the ratio B_simple/B_crit with an
    interval). On ``nqm`` and ``linreg`` with SGD the expected-curve steps of every
    branch are computed exactly too (``exact_steps``, ``exact_fit``), as ground truth.

    Where Merrill et al. 2025 call a batch size critical when its branch still
    matches the small-batch loss after a fixed number of tokens, this reads B_crit
    off the fitted trade-off curve, as McCandlish et al. define it (E_min/S_min);
    the batch size of Zhang et al. 2024 (20% more examples than E_min) is 0.2·B_crit
    under that fit.

    Everything trains on ``device``: the workload's data are moved there once
    (:func:`batchlab.workloads.on_device`; a workload without ``to(device)`` stays on
    the CPU), every model is built there and loads the checkpoints' CPU state, and the
    forward passes run in ``precision``. The result records both (``settings``).

    References:
        Merrill et al. 2025, arXiv:2505.23971; Zhang et al. 2024, arXiv:2410.21676;
        McCandlish et al. 2018, arXiv:1812.06162, eq. 2.11; Shallue et al. 2018,
        JMLR 20(112), Sec. 3.3.

    Args:
        workload: the model and data.
        checkpoints: steps at which to checkpoint a base run trained here (at
            ``base_batch_size`` with ``optimizer``/``hparams``, constant LR or, with
            ``schedule="wsd"``, warmup then constant), or
            :class:`Checkpoint` objects of a run you trained (see
            :class:`CheckpointSaver`, :func:`load_checkpoints`).
        batch_sizes: the branch ladder, at least 3, strictly increasing.
        optimizer: optimizer name (default: the checkpoints', else the workload's).
        hparams: optimizer hyperparameters of the base run, ``lr`` included (default:
            the checkpoints', else the workload's ``default_hparams``).
        base_batch_size: batch size of the base run trained here; with given
            checkpoints their own batch size is used. The LR rule scales from it.
        lr_rule: ``"linear"``, ``"sqrt"`` or ``"none"`` (:func:`batchlab.optim.scale_lr`).
        lr_multipliers: the sweep around the rule's LR at every batch size; ``(1,)``
            uses the rule alone, e.g. ``(0.5, 1, 2)`` tunes it a little.
        metric: the metric to improve (default: the workload's target metric if it is
            minimised, e.g. ``excess_loss`` of ``linreg``, else ``"loss"`` if reported).
        improvement_fraction: relative improvement of a minimised metric, in (0, 1)
            (default 0.2 when neither this nor ``improvement_delta`` is given).
        improvement_delta: absolute improvement instead.
        max_steps: step budget of every branch.
        eval_resolution: relative spacing of the evaluations (0 = every step); see
            :func:`eval_schedule`.
        repeats: branches per (B, lr) on independent data, whose metric curves are
            averaged before the target is read off (fewer chance crossings).
        optimizer_state: ``"resume"`` the checkpoint's optimizer state or ``"reset"``.
        noise_batch_size: big batch of the noise-scale measurement (default: the
            largest of ``batch_sizes``); ``0`` skips it.
        noise_micro_batch_size: its micro-batch (default: a quarter of it).
        noise_batches: batches averaged for B_simple.
        exact: compute expected-curve steps where the workload allows it.
        n_bootstrap: bootstrap replicates of each fit's intervals.
        seed: seed of the base run, the branches' data and the noise measurement.
        checkpoint_dir: save the base run's checkpoints here (``step_*.pt``).
        on_progress: ``on_progress(done, total, description)`` after every branch.
        device: ``"auto"`` (CUDA if this process sees a GPU, else the CPU), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``.
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"`` (autocast around the forward
            passes; weights, gradients, optimizer state and the noise-scale statistics
            stay fp32 or wider).
        schedule: ``"constant"`` (the base run and every branch at a constant LR) or
            ``"wsd"``: the base run follows warmup-stable-decay
            (:func:`batchlab.optim.wsd_multiplier`), checkpoints must lie in its stable
            phase, and with a cooldown each branch's metric is read after it (see
            :mod:`batchlab.cbs._schedule`). Recorded in ``settings["schedule"]``.
        warmup_steps: WSD warmup of the base run (its LR rises linearly to ``lr``);
            checkpoints before its end are refused.
        total_steps: the WSD base run's planned length; with ``decay_fraction`` it
            ends the stable phase at ``total_steps − round(decay_fraction ·
            total_steps)``, after which checkpoints are refused (default: no end).
        decay_fraction: the share of ``total_steps`` that the base run's decay takes.
        cooldown_fraction: WSD only: each branch cools down over this share of its
            steps, in (0, 1) (k = round(f·t/(1 − f)) after t stable steps;
            ``max_steps`` bounds t, so a branch may run to ``max_steps``/(1 − f)).
        cooldown_examples: WSD only: or over this many examples (k = ⌈n/B⌉).
        cooldown_decay: the cooldown's shape: ``"linear"``, ``"cosine"`` or ``"sqrt"``.

    Returns:
        A :class:`CriticalBatchResult`, one :class:`CheckpointMeasurement` per checkpoint.

    Raises:
        ValueError: bad arguments (each message names the argument).
    """
    started = time.perf_counter()
    precision = check_precision(precision)
    resolve_device(device)  # a device this machine lacks fails here, before any work
    sizes = _check_ladder(batch_sizes, workload.train_size)
    max_steps = check_positive_int(max_steps, "max_steps")
    repeats = check_positive_int(repeats, "repeats")
    noise_batches = check_positive_int(noise_batches, "noise_batches")
    if lr_rule not in SCALING_RULES:
        raise ValueError(f"lr_rule must be one of {', '.join(SCALING_RULES)}, got {lr_rule!r}")
    multipliers = [float(m) for m in lr_multipliers]
    if not multipliers or not all(math.isfinite(m) and m > 0 for m in multipliers):
        raise ValueError(f"lr_multipliers must be positive numbers, got {list(lr_multipliers)}")
    if len(set(multipliers)) != len(multipliers):
        raise ValueError(f"lr_multipliers must be distinct, got {multipliers}")
    if optimizer_state not in OPTIMIZER_STATES:
        raise ValueError(
            f"optimizer_state must be one of {', '.join(OPTIMIZER_STATES)}, got {optimizer_state!r}"
        )
    if improvement_fraction is None and improvement_delta is None:
        improvement_fraction = 0.2
    if metric is None:
        metric = (
            workload.target.metric
            if workload.target.direction == "min" or "loss" not in workload.metrics
            else "loss"
        )
    if metric not in workload.metrics:
        raise ValueError(
            f"metric {metric!r} is not reported by workload {workload.name!r}; it reports: "
            f"{', '.join(workload.metrics)}"
        )
    direction = workload.target.direction if metric == workload.target.metric else "min"
    if noise_batch_size is None:
        noise_batch_size = sizes[-1]
    if noise_batch_size:
        check_batch_size(noise_batch_size, workload.train_size, name="noise_batch_size")
        noise_micro_batch_size = check_micro_batch_size(
            noise_micro_batch_size,
            noise_batch_size,
            name="noise_micro_batch_size",
            batch_name="noise_batch_size",
        )

    schedule_info, cooldown = _check_schedule(
        schedule, warmup_steps, total_steps, decay_fraction,
        cooldown_fraction, cooldown_examples, cooldown_decay,
    )  # fmt: skip
    workload = on_device(workload, device)  # the data move once; every model follows them
    where = workload_device(workload)
    # fp32 means fp32 (no TF32) for the whole measurement, backward passes too.
    with matmul_precision(precision):
        given = [c for c in checkpoints if isinstance(c, Checkpoint)]
        if given and len(given) != len(checkpoints):
            raise TypeError("checkpoints must be all steps (int) or all Checkpoint objects")
        if not checkpoints:
            raise ValueError("checkpoints must name at least one step or Checkpoint")
        if given:
            first = given[0]
            name, base = split_optimizer(
                {"optimizer": optimizer or first.optimizer or workload.default_hparams["optimizer"],
                 **(hparams if hparams is not None else first.hparams or {})}
            )  # fmt: skip
            run_batch_size = first.batch_size or base_batch_size
            points = sorted(given, key=lambda c: c.step)
            _check_stable(schedule_info, [c.step for c in points])
        else:
            defaults = dict(workload.default_hparams)
            name, base = split_optimizer(
                {"optimizer": optimizer or defaults.pop("optimizer"),
                 **(dict(hparams) if hparams is not None else defaults)}
            )  # fmt: skip
            run_batch_size = check_batch_size(
                base_batch_size, workload.train_size, name="base_batch_size"
            )
            steps = sorted({int(s) for s in checkpoints})  # type: ignore[arg-type]
            _check_stable(schedule_info, steps)
            logger.info("training the base run to step %d", steps[-1])
            points = train_base_run(
                workload,
                steps,
                batch_size=run_batch_size,
                optimizer=name,
                hparams=base,
                seed=seed,
                directory=checkpoint_dir,
                precision=precision,
                lr_schedule=(
                    wsd_multiplier(warmup_steps, steps[-1], 0) if schedule == "wsd" else None
                ),
            )
        if "lr" not in base:
            raise ValueError(f"hparams must hold the base learning rate 'lr', got {base}")
        base_lr = float(base["lr"])
        branch_hparams = {k: v for k, v in base.items() if k != "lr"}

        evals = eval_schedule(max_steps, eval_resolution)
        total = len(points) * len(sizes) * len(multipliers)
        done = 0
        measurements = []
        for point in points:
            model = _model_at(workload, point)
            with autocast(precision, where):
                value = float(workload.evaluate(model)[metric])
            target = improvement_target(
                value,
                direction,
                metric=metric,
                delta=improvement_delta,
                fraction=improvement_fraction,
            )
            rungs = []
            for batch_size in sizes:
                lrs = _lr_candidates(base_lr, run_batch_size, batch_size, lr_rule, multipliers)
                branches: list[BranchResult] = []
                exact_steps: list[int | None] | None = [] if exact else None
                best: int | None = None
                for lr in lrs:
                    branch = run_branch(
                        workload,
                        point,
                        batch_size=batch_size,
                        lr=lr,
                        target=target,
                        eval_steps=evals,
                        optimizer=name,
                        hparams=branch_hparams,
                        optimizer_state=optimizer_state,
                        repeats=repeats,
                        seed=seed,
                        stop_after=best,
                        precision=precision,
                        cooldown=cooldown,
                    )
                    branches.append(branch)
                    if branch.steps_to_target is not None:
                        best = min(best or branch.steps_to_target, branch.steps_to_target)
                    if exact_steps is not None:
                        curve = exact_branch_curve(
                            workload, point, metric=metric, optimizer=name, hparams=branch_hparams,
                            optimizer_state=optimizer_state, lr=lr, batch_size=batch_size,
                            eval_steps=evals, cooldown=cooldown,
                        )  # fmt: skip
                        if curve is None:
                            exact_steps = None
                        else:
                            read_at = evals if cooldown is None else [
                                t + cooldown.steps(t, batch_size) for t in evals
                            ]  # fmt: skip
                            exact_steps.append(first_reached(read_at, curve, target))
                    done += 1
                    if on_progress is not None:
                        on_progress(done, total, f"step {point.step}: B={batch_size} lr={lr:.3g}")
                rungs.append(
                    RungMeasurement(
                        batch_size,
                        tuple(branches),
                        None if exact_steps is None else tuple(exact_steps),
                    )
                )
            measurements.append(
                analyse_checkpoint(
                    workload,
                    point,
                    value,
                    target,
                    rungs,
                    model,
                    noise_batch_size=noise_batch_size,
                    noise_micro_batch_size=noise_micro_batch_size,
                    noise_batches=noise_batches,
                    n_bootstrap=n_bootstrap,
                    seed=seed,
                    precision=precision,
                )
            )

    settings = {
        "batch_sizes": sizes,
        "lr_rule": lr_rule,
        "base_lr": base_lr,
        "lr_multipliers": multipliers,
        "metric": metric,
        "improvement_fraction": improvement_fraction,
        "improvement_delta": improvement_delta,
        "max_steps": max_steps,
        "eval_resolution": eval_resolution,
        "repeats": repeats,
        "optimizer_state": optimizer_state,
        "noise_batch_size": noise_batch_size or None,
        "noise_micro_batch_size": noise_micro_batch_size if noise_batch_size else None,
        "noise_batches": noise_batches,
        "seed": seed,
        "device": str(where),
        "precision": precision,
        "schedule": schedule_info,
    }
    return CriticalBatchResult(
        workload=workload.name,
        workload_params=dict(workload.params),
        optimizer=name,
        hparams=dict(base),
        base_batch_size=run_batch_size,
        settings=settings,
        checkpoints=tuple(measurements),
        wall_time_s=time.perf_counter() - started,
        environment=_environment(where),
    )
