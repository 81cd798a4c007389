"""Which LR schedule a critical-batch measurement assumes, and the branches' cooldown.

Under a constant LR a branch's steps-to-target is read at the branch's LR. Under a
warmup-stable-decay (WSD) schedule (Hu et al. 2024; Hägele et al. 2024) the loss a run
reports is the loss *after* its cooldown, and the S(B) relation measured that way
differs from the constant-LR one (Zhou et al. 2026). So with ``schedule="wsd"`` the base
run warms up and stays at its peak LR, checkpoints must lie in that stable phase, and
each branch, at every evaluation after t stable steps, forks a copy that cools down
over k steps (:func:`batchlab.optim.wsd_multiplier` with W = 0, S = t, D = k) and is
evaluated after it; the branch's step count is t + k.

References:
    Hu et al. 2024, "MiniCPM", arXiv:2404.06395, Sec. 4; Hägele et al. 2024, "Scaling
    Laws and Compute-Optimal Training Beyond Fixed Training Durations",
    arXiv:2405.18392, Sec. 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..optim import WSD_DECAYS, wsd_multiplier

#: Names accepted by ``measure_critical_batch(schedule=...)``.
SCHEDULES: tuple[str, ...] = ("constant", "wsd")


@dataclass(frozen=True)
class Cooldown:
    """A short cooldown after a branch's stable steps, before the metric is read.

    Exactly one of ``fraction`` (k/(t + k), the share of the branch that cools down)
    and ``examples`` (k = ⌈examples / B⌉) is set.
    """

    fraction: float | None = None
    examples: int | None = None
    decay: str = "linear"

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.examples is None):
            raise ValueError("give exactly one of cooldown_fraction and cooldown_examples")
        if self.fraction is not None and not (
            isinstance(self.fraction, (int, float)) and 0 < self.fraction < 1
        ):
            raise ValueError(f"cooldown_fraction must be in (0, 1), got {self.fraction!r}")
        if self.examples is not None and (
            isinstance(self.examples, bool) or not isinstance(self.examples, int)
            or self.examples < 1
        ):  # fmt: skip
            raise ValueError(f"cooldown_examples must be a positive integer, got {self.examples!r}")
        if self.decay not in WSD_DECAYS:
            raise ValueError(
                f"cooldown_decay must be one of {', '.join(WSD_DECAYS)}, got {self.decay!r}"
            )

    def steps(self, stable_steps: int, batch_size: int) -> int:
        """k, the cooldown steps after ``stable_steps`` steps at ``batch_size``."""
        if self.examples is not None:
            return math.ceil(self.examples / batch_size)
        assert self.fraction is not None
        return round(self.fraction * stable_steps / (1 - self.fraction))

    def lrs(self, lr: float, stable_steps: int, batch_size: int) -> list[float]:
        """The LR of each cooldown step: ``lr`` × the WSD multiplier at t, ..., t + k − 1."""
        k = self.steps(stable_steps, batch_size)
        multiplier = wsd_multiplier(0, stable_steps, k, self.decay)
        return [lr * multiplier(stable_steps + j) for j in range(k)]

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "examples": self.examples, "decay": self.decay}


def describe_schedule(schedule: dict[str, Any] | None) -> str:
    """One line saying which schedule a measurement assumed (``settings["schedule"]``)."""
    if not schedule or schedule.get("name", "constant") == "constant":
        return "constant LR (branches read at the branch LR, no cooldown)"
    stable = schedule.get("stable_end")
    text = f"WSD (warmup {schedule.get('warmup_steps', 0)} steps, checkpoints in the stable phase"
    text += f" up to step {stable})" if stable is not None else ")"
    cooldown = schedule.get("cooldown")
    if not cooldown:
        return text + "; branches at the stable LR, no cooldown"
    size = (
        f"{cooldown['fraction']:.0%} of each branch"
        if cooldown.get("fraction") is not None
        else f"{cooldown['examples']} examples"
    )
    return text + f"; S(B) read after a {cooldown['decay']} cooldown over {size}"
