"""When a run is evaluated: a coarse grid always, densely where the target is about to be met.

Steps-to-target is the first *evaluated* step meeting the target (Shallue et al.
2018, Sec. 3.3), so it is quantized by the evaluation interval: the crossing lies
somewhere in (previous evaluation, steps-to-target], and with an interval of budget/60
that is 15-20% of the count on a study's fast rungs, always rounding up. Evaluating
every step would resolve it exactly but costs an evaluation per step. Instead:

* the coarse grid (every ``eval_every`` steps and the last step) is always evaluated,
  so curves, pruning and reports compare runs at the same steps;
* after an evaluation short of the target, the progress of the run's best value over
  the last coarse interval is extrapolated linearly; if it predicts the target within
  two coarse intervals (:func:`near_target`), the run is evaluated every
  ``max(1, floor(resolution * step))`` steps until the target is met or the prediction
  no longer holds;
* workloads with exact curves evaluate cheaply at any step and need no prediction: the
  coarse interval in which the target is first met is refined afterwards
  (:func:`refinement`).

A run records how finely its steps-to-target is resolved (:func:`resolution_steps`):
steps-to-target minus the previous evaluated step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .._checks import check_positive_int
from ..workloads import Target

#: The prediction looks this many coarse intervals ahead.
HORIZON_INTERVALS = 2


def dense_step(step: int, resolution: float) -> int:
    """Steps to the next dense evaluation after ``step``: ``max(1, floor(resolution * step))``."""
    return max(1, math.floor(resolution * step))


def near_target(steps: Sequence[int], values: Sequence[float], target: Target, every: int) -> bool:
    """Whether a run short of ``target`` is predicted to meet it within two coarse intervals.

    On the run's best value so far (a noisy metric's dips do not hide its progress):
    its improvement from the latest evaluation at least ``every`` steps back to the last
    one, over a whole coarse interval so that closely spaced dense points do not set it,
    extrapolated linearly. A run whose best did not improve over that interval, or with
    no evaluation a full interval back (the first interval), is not near.

    Args:
        steps: the run's evaluated steps so far, increasing.
        values: the target metric at those steps; none of them meets the target.
        target: the goal, with its direction.
        every: the coarse evaluation interval.
    """
    if not steps:
        return False
    sign = 1.0 if target.direction == "max" else -1.0
    step = steps[-1]
    best = reference = -math.inf  # best so far, towards the target (sign-adjusted)
    reference_step = None
    for s, v in zip(steps, values, strict=True):
        if math.isfinite(v):
            best = max(best, sign * v)
        if s <= step - every:
            reference, reference_step = best, s
    if reference_step is None:
        return False
    progress = best - reference
    gap = sign * target.value - best
    if not (progress > 0 and math.isfinite(progress)):
        return False
    return gap <= progress / (step - reference_step) * HORIZON_INTERVALS * every


class EvaluationSchedule:
    """The steps at which a training run (or a vmapped ensemble) is evaluated.

    Ask :meth:`due` every step; after each evaluation tell :meth:`advance` whether a
    run is near its target (:func:`near_target`). The next evaluation is the next
    coarse step, or sooner, ``dense_step`` away, while a run is near. A rule of the
    evaluated values alone: DDP ranks that evaluate the same values take the same steps.
    """

    def __init__(self, coarse: Sequence[int], resolution: float) -> None:
        self._coarse = list(coarse)
        self._resolution = resolution
        self._index = 0  # the next coarse step is self._coarse[self._index]
        self.next = self._coarse[0]

    def due(self, step: int) -> bool:
        """Whether to evaluate after training step ``step``."""
        return step == self.next

    def advance(self, step: int, near: bool) -> None:
        """Plan the evaluation after the one at ``step`` (dense if ``near``)."""
        while self._index < len(self._coarse) and self._coarse[self._index] <= step:
            self._index += 1
        if self._index == len(self._coarse):
            self.next = -1  # past the last step: nothing more to evaluate
            return
        coarse = self._coarse[self._index]
        if near and self._resolution > 0:
            self.next = min(coarse, step + dense_step(step, self._resolution))
        else:
            self.next = coarse


def refinement(previous: int, step: int, resolution: float) -> list[int]:
    """Dense steps strictly between two evaluations ``previous`` < ``step`` (may be none).

    Spaced ``dense_step`` apart from ``previous``: a crossing found at ``step`` is then
    resolved to ``resolution`` of its count. ``resolution = 0``: none.
    """
    if resolution <= 0:
        return []
    steps = []
    current = previous + dense_step(previous, resolution)
    while current < step:
        steps.append(current)
        current += dense_step(current, resolution)
    return steps


def resolution_steps(steps: Sequence[int], reached_at: int | None) -> int | None:
    """How finely ``reached_at`` is resolved: it minus the evaluated step before it.

    The target was crossed somewhere in (previous evaluated step, ``reached_at``]
    (from step 0 if it is the first evaluation). ``None`` when the target was not reached.
    """
    if reached_at is None:
        return None
    previous = max((s for s in steps if s < reached_at), default=0)
    return reached_at - previous


def eval_schedule(max_steps: int, resolution: float = 0.05) -> list[int]:
    """Steps 1, 2, 3, ... then spaced by ``resolution`` of the step, ending at ``max_steps``.

    The gap after step s is max(1, ⌊resolution · s⌋), so a steps-to-target read off
    this grid is at most ``resolution`` (relative) above the first step that met the
    target; ``resolution = 0`` evaluates every step. The grid has about
    1/resolution + ln(max_steps · resolution)/resolution points (a little more, as the
    gaps are rounded down).

    Args:
        max_steps: the last step, >= 1.
        resolution: relative spacing, in [0, 1).

    Returns:
        Strictly increasing steps, the last one ``max_steps``.
    """
    check_positive_int(max_steps, "max_steps")
    if not (0 <= resolution < 1):
        raise ValueError(f"eval_resolution must be in [0, 1), got {resolution!r}")
    steps, step = [], 1
    while step < max_steps:
        steps.append(step)
        step += max(1, math.floor(resolution * step))
    steps.append(max_steps)
    return steps
