"""A ladder's whole analysis in one call, and steps-to-result from a table of runs.

:func:`summarize_ladder` is the one place where a study's fit, regimes, LR trend and
answer are computed: the study's ``results.json``, the HTML report and the findings
document all call it, so they cannot disagree. :func:`best_steps_per_batch_size` is
Shallue et al.'s steps-to-result over a table of runs, as in their data release.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._answer import BatchSizeAnswer, batch_size_answer
from ._checks import MIN_FIT_POINTS
from ._fit import ScalingFit, fit_scaling
from ._lr_trend import LRTrend, lr_trend
from ._regimes import ScalingRegimes, scaling_regimes

logger = logging.getLogger(__name__)

#: The fit of S(B) = S_min (1 + B_crit / B) needs at least this many reached rungs.
MIN_RUNGS_FOR_FIT = MIN_FIT_POINTS


@dataclass(frozen=True)
class LadderSummary:
    """Fit, regimes, LR trend and answer of one ladder of steps-to-target.

    Attributes:
        fit: S(B) = S_min (1 + B_crit / B) with intervals, or ``None``.
        regimes: the three scaling regimes, or ``None`` (no fit).
        lr_trend: the tuned LR against B, or ``None`` (fewer than two tuned rungs).
        answer: what to train with; always present (its ``reason`` says why when the
            ladder cannot place the knee).
        note: why there is no fit, when there is none.
        error: the fit's error, when it failed on enough reached rungs.
    """

    fit: ScalingFit | None
    regimes: ScalingRegimes | None
    lr_trend: LRTrend | None
    answer: BatchSizeAnswer
    note: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any] | None:
        """The ``analysis`` block of ``results.json``.

        ``None`` with too few reached rungs, ``{"error": ...}`` when the fit failed,
        else ``fit``, ``regimes``, ``answer`` and (two tuned rungs) ``lr_trend``.
        """
        if self.error is not None:
            return {"error": self.error}
        if self.fit is None or self.regimes is None:
            return None
        data: dict[str, Any] = {
            "fit": self.fit.to_dict(),
            "regimes": self.regimes.to_dict(),
            "answer": self.answer.to_dict(),
        }
        if self.lr_trend is not None:
            data["lr_trend"] = self.lr_trend.to_dict()
        return data


def summarize_ladder(
    batch_sizes: Sequence[float],
    steps: Sequence[float | None],
    lrs: Sequence[float | None] | None = None,
    *,
    tol: float = 0.25,
    seed: int = 0,
) -> LadderSummary:
    """Fit, regimes, LR trend and the answer of a ladder, each computed once.

    Args:
        batch_sizes: the rungs, strictly increasing.
        steps: steps-to-target per rung (``None``: never reached).
        lrs: the tuned learning rate per rung (``None`` where a rung has none).
        tol: the regime tolerance (bends at tol·B_crit and B_crit/tol; DESIGN.md).
        seed: bootstrap seed of the fit (a fixed seed makes documents reproducible).

    Returns:
        A :class:`LadderSummary`. An analysis that is impossible (fewer than
        :data:`MIN_RUNGS_FOR_FIT` reached rungs, or a fit that fails) leaves the
        fields ``None`` and says why in ``note``; the answer is always there.
    """
    reached = sum(1 for s in steps if s is not None and math.isfinite(s))
    fit = regimes = trend = None
    note = error = None
    if reached < MIN_RUNGS_FOR_FIT:
        note = (
            f"Analysis impossible: {reached} rung(s) reached the target; the fit of "
            f"S(B) = S_min (1 + B_crit / B) needs at least {MIN_RUNGS_FOR_FIT}."
        )
    else:
        try:
            fit = fit_scaling(batch_sizes, steps, seed=seed)
            regimes = scaling_regimes(batch_sizes, steps, tol=tol, fit=fit)
        except ValueError as failure:
            fit = regimes = None
            error = str(failure)
            note = f"Analysis impossible: {error}"
            logger.warning("analysis skipped: %s", error)
    tuned = [
        (b, lr)
        for b, s, lr in zip(batch_sizes, steps, lrs or [None] * len(steps), strict=True)
        if s is not None and lr is not None and lr > 0
    ]
    if regimes is not None and len(tuned) >= 2:
        try:
            trend = lr_trend([b for b, _ in tuned], [lr for _, lr in tuned], regimes=regimes)
        except ValueError as failure:
            logger.warning("LR trend skipped: %s", failure)
    answer = batch_size_answer(batch_sizes, steps, fit, lrs=lrs)
    return LadderSummary(
        fit=fit, regimes=regimes, lr_trend=trend, answer=answer, note=note, error=error
    )


def best_steps_per_batch_size(
    records: Iterable[Mapping[str, Any]],
) -> dict[int, int | None]:
    """Steps-to-result per batch size: the fewest steps-to-target over its runs.

    After Shallue et al. 2018 (Sec. 3.3) and their data release
    (``batch_science/measurement_utils.py``): a run's steps-to-target is the first
    evaluated step whose metric *reaches* the target — ``>=`` the value for a metric
    to maximise, ``<=`` for one to minimise (:meth:`batchlab.workloads.Target.reached`;
    a metric exactly on the target counts, as in their ``>=`` threshold on accuracy) —
    and a batch size's steps-to-result is the minimum over its runs. A batch size
    where no run reached the target maps to ``None`` (infeasible).

    Args:
        records: one mapping per run with ``batch_size`` and ``steps_to_target``
            (``None``: never reached).

    Returns:
        ``{batch_size: fewest steps or None}``, batch sizes ascending.
    """
    best: dict[int, int | None] = {}
    for record in records:
        size, steps = int(record["batch_size"]), record.get("steps_to_target")
        current = best.setdefault(size, None)
        if steps is not None and (current is None or steps < current):
            best[size] = int(steps)
    return dict(sorted(best.items()))
