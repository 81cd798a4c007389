"""Learning-rate schedules: linear warmup, then a decay to the end of training."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import torch

if TYPE_CHECKING:
    from typing_extensions import Unpack

from ._validation import check_choice, check_fraction, check_int, check_real

#: Names accepted by :func:`warmup_schedule`'s ``decay``.
DECAYS: tuple[str, ...] = ("cosine", "linear", "poly", "step", "constant")

# Goyal et al. 2017 divide the LR by 10 at epochs 30, 60 and 80 of 90: the default
# step milestones sit at these fractions of the decay phase.
_DEFAULT_STEP_FRACTIONS = (1 / 3, 2 / 3, 8 / 9)


@dataclass(frozen=True)
class _WarmupDecay:
    """The multiplier of the base LR after ``step`` optimizer steps (a LambdaLR lambda).

    A callable object rather than a closure, so that ``LambdaLR.state_dict`` saves its
    fields and the scheduler pickles.
    """

    warmup_steps: int
    total_steps: int
    decay: str
    power: float
    milestones: tuple[int, ...]
    gamma: float
    final_lr_fraction: float

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            # Matches the trainer's min(1, (t + 1) / warmup): the first step is not at 0.
            return (step + 1) / self.warmup_steps
        floor = self.final_lr_fraction
        if self.decay == "constant":
            return 1.0
        if self.decay == "step":
            passed = sum(1 for milestone in self.milestones if step >= milestone)
            return max(floor, self.gamma**passed)
        decay_steps = self.total_steps - self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / decay_steps) if decay_steps else 1.0
        if self.decay == "cosine":
            shape = 0.5 * (1 + math.cos(math.pi * progress))
        elif self.decay == "linear":
            shape = 1 - progress
        else:  # poly
            shape = (1 - progress) ** self.power
        return floor + (1 - floor) * shape


class DecayOptions(TypedDict, total=False):
    """The decay's own settings, keywords of :func:`warmup_schedule` (documented there).

    Named once here so that :func:`warmup_schedule`, which only wraps
    :func:`lr_multiplier` in a ``LambdaLR``, passes them on with their types intact.
    """

    power: float | None
    milestones: Sequence[int] | None
    gamma: float | None
    final_lr_fraction: float | None


def warmup_schedule(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    decay: str = "cosine",
    **options: Unpack[DecayOptions],
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to each group's LR, then a decay over the remaining steps.

    Large batches need large learning rates, which diverge in the first steps unless
    warmed up (Goyal et al. 2017); afterwards the LR decays to the end of training.
    With t the number of optimizer steps taken (call ``scheduler.step()`` after every
    ``optimizer.step()``), the multiplier of the base LR is (t + 1)/warmup_steps for
    t < warmup_steps, then, with progress p = (t − warmup_steps)/(total_steps −
    warmup_steps) capped at 1 and f the final fraction:

    * ``cosine``: f + (1 − f)·(1 + cos πp)/2 (Loshchilov & Hutter 2017);
    * ``linear``: f + (1 − f)·(1 − p);
    * ``poly``: f + (1 − f)·(1 − p)^power, power 2 by default (You et al. 2017, LARS);
    * ``step``: max(f, gamma^k), k the number of ``milestones`` ≤ t (absolute step
      counts; by default 1/3, 2/3 and 8/9 of the way through the decay phase, as
      Goyal et al.'s epochs 30, 60, 80 of 90), gamma 0.1 by default;
    * ``constant``: 1.

    References:
        Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
        https://arxiv.org/abs/1706.02677
        You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional Networks",
        https://arxiv.org/abs/1708.03888
        Loshchilov, Hutter 2017, "SGDR: Stochastic Gradient Descent with Warm Restarts",
        https://arxiv.org/abs/1608.03983

    Args:
        optimizer: any ``torch.optim.Optimizer``; its groups' LRs are the base LRs.
        warmup_steps: steps of linear warmup, 0 <= warmup_steps <= total_steps.
        total_steps: training length in optimizer steps, >= 1; the decay ends there
            and the multiplier stays at its final value afterwards.
        decay: ``"cosine"``, ``"linear"``, ``"poly"``, ``"step"`` or ``"constant"``.
        **options: the decay's own settings (:class:`DecayOptions`), each optional:
        power: exponent of ``poly`` (> 0, default 2); only for ``poly``.
        milestones: increasing step counts in [warmup_steps, total_steps]; only for ``step``.
        gamma: factor per milestone, in (0, 1] (default 0.1); only for ``step``.
        final_lr_fraction: f, the multiplier at the end (a floor for ``step``), in
            [0, 1], default 0; not for ``constant``.

    Returns:
        A ``torch.optim.lr_scheduler.LambdaLR`` (its ``state_dict`` round-trips).
    """
    multiplier = lr_multiplier(warmup_steps, total_steps, decay, **options)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def lr_multiplier(
    warmup_steps: int,
    total_steps: int,
    decay: str = "cosine",
    *,
    power: float | None = None,
    milestones: Sequence[int] | None = None,
    gamma: float | None = None,
    final_lr_fraction: float | None = None,
) -> Callable[[int], float]:
    """The multiplier of the base LR after t optimizer steps, as :func:`warmup_schedule`.

    For code that sets learning rates itself (e.g. a vmapped ensemble of trials, one
    LR per member) rather than through a ``LambdaLR``. Arguments and validation are
    those of :func:`warmup_schedule`.

    Returns:
        A picklable callable ``t -> multiplier``.
    """
    check_int("total_steps", total_steps, low=1)
    check_int("warmup_steps", warmup_steps, low=0)
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps must be <= total_steps ({total_steps}), got {warmup_steps}")
    check_choice("decay", decay, DECAYS)
    for name, value, users in (
        ("power", power, ("poly",)),
        ("milestones", milestones, ("step",)),
        ("gamma", gamma, ("step",)),
        ("final_lr_fraction", final_lr_fraction, ("cosine", "linear", "poly", "step")),
    ):
        if value is not None and decay not in users:
            raise ValueError(
                f"{name} applies to decay={' or '.join(repr(u) for u in users)}, "
                f"not decay={decay!r}"
            )
    power = 2.0 if power is None else check_real("power", power, low=0.0, low_inclusive=False)
    gamma = 0.1 if gamma is None else check_real("gamma", gamma, low=0.0, low_inclusive=False)
    if gamma > 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    final = 0.0 if final_lr_fraction is None else final_lr_fraction
    final = check_fraction("final_lr_fraction", final, high_inclusive=True)
    return _WarmupDecay(
        warmup_steps=warmup_steps,
        total_steps=total_steps,
        decay=decay,
        power=power,
        milestones=_check_milestones(milestones, warmup_steps, total_steps),
        gamma=gamma,
        final_lr_fraction=final,
    )


def _check_milestones(
    milestones: Sequence[int] | None, warmup_steps: int, total_steps: int
) -> tuple[int, ...]:
    if milestones is None:
        decay_steps = total_steps - warmup_steps
        return tuple(warmup_steps + round(f * decay_steps) for f in _DEFAULT_STEP_FRACTIONS)
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        raise ValueError(f"milestones must be a sequence of step counts, got {milestones!r}")
    for milestone in milestones:
        if isinstance(milestone, bool) or not isinstance(milestone, int):
            raise ValueError(f"milestones must be integers, got {milestones!r}")
        if not warmup_steps <= milestone <= total_steps:
            raise ValueError(
                f"milestones must lie in [warmup_steps, total_steps] = "
                f"[{warmup_steps}, {total_steps}], got {milestones!r}"
            )
    if any(b <= a for a, b in zip(milestones[:-1], milestones[1:], strict=True)):
        raise ValueError(f"milestones must be strictly increasing, got {milestones!r}")
    return tuple(milestones)


#: Cooldown shapes accepted by :func:`wsd_multiplier`'s ``decay``.
WSD_DECAYS: tuple[str, ...] = ("linear", "cosine", "sqrt")


@dataclass(frozen=True)
class _WarmupStableDecay:
    """The multiplier of a warmup-stable-decay schedule after ``step`` steps (picklable)."""

    warmup_steps: int
    stable_steps: int
    decay_steps: int
    decay: str
    final_lr_fraction: float

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.stable_steps + self.decay_steps

    def phase(self, step: int) -> str:
        """``"warmup"``, ``"stable"`` or ``"decay"``: the phase of optimizer step ``step``."""
        if step < self.warmup_steps:
            return "warmup"
        if step < self.warmup_steps + self.stable_steps:
            return "stable"
        return "decay"

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        into = step - self.warmup_steps - self.stable_steps
        if into < 0 or self.decay_steps == 0:
            return 1.0 if into < 0 else self.final_lr_fraction
        progress = min(1.0, into / self.decay_steps)
        if self.decay == "linear":
            shape = 1 - progress
        elif self.decay == "cosine":
            shape = 0.5 * (1 + math.cos(math.pi * progress))
        else:  # sqrt: Hägele et al. 2024's "1 - sqrt" cooldown
            shape = 1 - math.sqrt(progress)
        floor = self.final_lr_fraction
        return floor + (1 - floor) * shape


def wsd_multiplier(
    warmup_steps: int,
    stable_steps: int,
    decay_steps: int,
    decay: str = "linear",
    *,
    final_lr_fraction: float = 0.0,
) -> Callable[[int], float]:
    """Warmup-stable-decay (WSD): linear warmup, a constant LR, then a short cooldown.

    With t the optimizer steps taken, W = ``warmup_steps``, S = ``stable_steps``,
    D = ``decay_steps`` and f = ``final_lr_fraction``, the multiplier of the base LR is
    (t + 1)/W for t < W (as :func:`warmup_schedule`), 1 for W ≤ t < W + S, and then,
    with progress p = (t − W − S)/D capped at 1, f + (1 − f)·s(p) with

    * ``linear``: s(p) = 1 − p (Hu et al. 2024, MiniCPM; Hägele et al. 2024);
    * ``cosine``: s(p) = (1 + cos πp)/2;
    * ``sqrt``: s(p) = 1 − √p (Hägele et al. 2024, Sec. 3, "1 − sqrt").

    The last decay step (t = W + S + D − 1) runs at f + (1 − f)·s(1 − 1/D), close to f;
    the multiplier is f from t = W + S + D on. Because the stable phase does not
    depend on the run's length, a run can be branched anywhere in it and cooled down
    over a few steps, which is what :func:`batchlab.cbs.measure_critical_batch` does
    with ``schedule="wsd"``.

    References:
        Hu et al. 2024, "MiniCPM: Unveiling the Potential of Small Language Models
        with Scalable Training Strategies", arXiv:2404.06395, Sec. 4 (WSD scheduler).
        Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
        Training Durations", arXiv:2405.18392, Sec. 3 (cooldown shapes).

    Args:
        warmup_steps: W >= 0.
        stable_steps: S >= 0.
        decay_steps: D >= 0 (0: no cooldown; the multiplier drops to f after the
            stable phase).
        decay: ``"linear"``, ``"cosine"`` or ``"sqrt"``.
        final_lr_fraction: f in [0, 1].

    Returns:
        A picklable callable ``t -> multiplier`` with ``phase(t)`` and ``total_steps``.
    """
    check_int("warmup_steps", warmup_steps, low=0)
    check_int("stable_steps", stable_steps, low=0)
    check_int("decay_steps", decay_steps, low=0)
    check_choice("decay", decay, WSD_DECAYS)
    final = check_fraction("final_lr_fraction", final_lr_fraction, high_inclusive=True)
    return _WarmupStableDecay(warmup_steps, stable_steps, decay_steps, decay, final)
