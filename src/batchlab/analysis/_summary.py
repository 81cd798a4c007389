"""A ladder's whole analysis in one call: fit, regimes, LR trend and the answer.

:func:`summarize_ladder` is the one place where a study's fit, regimes, LR trend and
answer are computed: the study's ``results.json``, the HTML report and the findings
document all call it, so they cannot disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._answer import BatchSizeAnswer, batch_size_answer
from ._checks import MIN_FIT_POINTS, AnalysisError, check_ladder
from ._fit import ScalingFit, fit_scaling
from ._lr_trend import LRTrend, lr_trend
from ._regimes import ScalingRegimes, check_tol, scaling_regimes

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
    budgets: Sequence[float | None] | None = None,
    tol: float = 0.25,
    seed: int = 0,
) -> LadderSummary:
    """Fit, regimes, LR trend and the answer of a ladder, each computed once.

    Args:
        batch_sizes: the rungs, strictly increasing.
        steps: steps-to-target per rung (``None``: never reached).
        lrs: the tuned learning rate per rung (``None`` where a rung has none).
        budgets: step budget per rung (``None`` where unknown, or where the rung is
            still running): a finished rung that never reached the target enters the
            fit as the lower bound S(B) > budget (:func:`fit_scaling`).
        tol: the regime tolerance (bends at tol·B_crit and B_crit/tol; DESIGN.md).
        seed: bootstrap seed of the fit (a fixed seed makes documents reproducible).

    Returns:
        A :class:`LadderSummary`. An analysis that is impossible (fewer than
        :data:`MIN_RUNGS_FOR_FIT` reached rungs, or a fit that fails) leaves the
        fields ``None`` and says why in ``note``; the answer is always there.

    Raises:
        AnalysisError: the ladder itself is malformed (batch sizes not strictly
            increasing, a non-positive step count, mismatched lengths, tol outside (0, 1)).
    """
    ladder = check_ladder(batch_sizes, steps, min_reached=0)
    tol = check_tol(tol)
    if lrs is not None and len(lrs) != len(ladder.batch_sizes):
        raise AnalysisError(
            f"lrs must have one entry per batch size ({len(ladder.batch_sizes)}), got {len(lrs)}"
        )
    reached = int(ladder.reached.sum())
    fit = regimes = trend = None
    note = error = None
    if reached < MIN_RUNGS_FOR_FIT:
        note = (
            f"Analysis impossible: {reached} rung(s) reached the target; the fit of "
            f"S(B) = S_min (1 + B_crit / B) needs at least {MIN_RUNGS_FOR_FIT}."
        )
    else:
        try:
            fit = fit_scaling(batch_sizes, steps, budgets=budgets, seed=seed)
            regimes = scaling_regimes(batch_sizes, steps, tol=tol, fit=fit)
        except ValueError as failure:
            fit = regimes = None
            error = str(failure)
            note = f"Analysis impossible: {error}"
            logger.warning("analysis skipped: %s", error)
    tuned = [
        (b, lr)
        for b, hit, lr in zip(batch_sizes, ladder.reached, lrs or [None] * len(steps), strict=True)
        if hit and lr is not None and lr > 0
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
