"""Pruning hopeless trials from partial curves (optional, off by default).

The median stopping rule of Google Vizier (Golovin et al. 2017, "Google Vizier: A
Service for Black-Box Optimization", KDD, Sec. 3.2.2), on the target metric: at an
evaluated step s, a trial whose best value so far is strictly worse than the
``quantile`` of its peers' best values by step s is stopped. Peers are the rung's
other trials with a value by step s: finished ones (read from the storage) and the
members of the same ensemble. Unlike stop-at-target and stop-once-beaten, this CAN
change what a study measures (a slow starter may have been the rung's best), which
is why it is off by default and every pruned trial says so in the results.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.trial import TrialState

from ..workloads import Target


def best_by_step(
    steps: Sequence[int], values: Sequence[float | None], step: int, direction: str
) -> float | None:
    """The best finite metric value among evaluations at or before ``step`` (``None``: none)."""
    seen = [
        v
        for s, v in zip(steps, values, strict=True)
        if s <= step and v is not None and math.isfinite(v)
    ]
    if not seen:
        return None
    return max(seen) if direction == "max" else min(seen)


def is_hopeless(
    own_best: float, peer_bests: Sequence[float], direction: str, quantile: float, min_peers: int
) -> bool:
    """Whether ``own_best`` is strictly worse than the ``quantile`` of ``peer_bests``.

    ``quantile`` counts from the best peer: 0.5 is the median, 0.25 lies between the
    best and the median (a stricter bar than the median, so more trials are pruned).
    With fewer than ``min_peers`` peers nothing is pruned.
    """
    if len(peer_bests) < min_peers or not math.isfinite(own_best):
        return False
    peers = np.asarray(peer_bests, dtype=float)
    if direction == "max":
        bar = float(np.quantile(peers, 1.0 - quantile))
        return own_best < bar
    bar = float(np.quantile(peers, quantile))
    return own_best > bar


class Pruner:
    """The median stopping rule for one rung, with finished peers re-read every few seconds.

    Call it at every evaluation with the trial's step, its best value so far and the
    best values so far of its ensemble co-members; it answers why to stop, or ``None``.
    """

    def __init__(
        self,
        study: optuna.Study,
        target: Target,
        *,
        quantile: float,
        first_step: int,
        min_peers: int,
        every_s: float = 2.0,
    ) -> None:
        self._study, self._target = study, target
        self.quantile, self.first_step, self.min_peers = quantile, first_step, min_peers
        self._every = every_s
        self._curves: list[tuple[list[int], list[float | None]]] = []
        self._read_at = -math.inf

    def _finished_curves(self) -> list[tuple[list[int], list[float | None]]]:
        if time.monotonic() - self._read_at > self._every:
            self._read_at = time.monotonic()
            curves = []
            for trial in self._study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                curve = trial.user_attrs.get("curve") or {}
                if self._target.metric not in curve:
                    continue
                curves.append((list(curve["steps"]), list(curve[self._target.metric])))
            self._curves = curves
        return self._curves

    def __call__(
        self, step: int, own_best: float, cohort_bests: Sequence[float] = ()
    ) -> str | None:
        """Why the trial should stop at ``step`` (``None``: it goes on)."""
        if step < self.first_step:
            return None
        direction = self._target.direction
        peers = [
            best
            for steps, values in self._finished_curves()
            if (best := best_by_step(steps, values, step, direction)) is not None
        ]
        peers += cohort_bests
        if not is_hopeless(own_best, peers, direction, self.quantile, self.min_peers):
            return None
        return (
            f"pruned at step {step}: best {self._target.metric} so far {own_best:.4g} is worse "
            f"than the {self.quantile:g} quantile of {len(peers)} other trials of this batch "
            "size by that step (median stopping rule)"
        )
