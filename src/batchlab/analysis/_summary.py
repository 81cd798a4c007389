"""A ladder's whole analysis in one call: fit, regimes, LR trend and the answer.

:func:`summarize_ladder` is the one place where a study's fit, regimes, LR trend,
hyperparameter trends and answer are computed: the study's ``results.json``, the HTML
report and the findings document all call it, so they cannot disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._answer import BatchSizeAnswer, batch_size_answer
from ._checks import MIN_FIT_POINTS, AnalysisError, check_ladder
from ._fit import ScalingFit, fit_scaling
from ._hparam_trends import HparamTrends, hparam_trends
from ._interval_sources import explain_interval
from ._knee import MIN_KNEE_POINTS, fit_knee
from ._lr_trend import LRTrend, lr_trend
from ._regimes import ScalingRegimes, check_tol, scaling_regimes
from ._rule_costs import RuleCost, rule_costs
from ._seed_bootstrap import Candidates, SeedBootstrap, seed_bootstrap, widen

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
        seeds: the seed bootstrap's intervals (rungs with confirmed candidates), whose
            union with the residual intervals is the fit's; ``None`` without one.
        hparam_trends: every searched hyperparameter (lr, β2, weight decay) against B
            with the transfer rules' errors (:func:`hparam_trends`), or ``None``
            (no per-rung hyperparameters given, or fewer than two tuned rungs).
        answer: what to train with; always present (its ``reason`` says why when the
            ladder cannot place the knee). Its B_crit is the hyperbola's (``fit``'s),
            or the free bend's (``answer.interval_sources.knee``) where the free
            bend's fit rejects the hyperbola's bend (α's interval excludes 1) and moves
            B_crit by 10% or more;
            ``answer.b_crit_model`` says which. ``fit``, ``regimes`` and the rungs'
            ratios to S_min and E_min stay the hyperbola's.
        note: why there is no fit, when there is none.
        error: the fit's error, when it failed on enough reached rungs.
    """

    fit: ScalingFit | None
    regimes: ScalingRegimes | None
    lr_trend: LRTrend | None
    answer: BatchSizeAnswer
    note: str | None = None
    error: str | None = None
    seeds: SeedBootstrap | None = None
    hparam_trends: HparamTrends | None = None
    rule_costs: dict[str, RuleCost] | None = None

    def to_dict(self) -> dict[str, Any] | None:
        """The ``analysis`` block of ``results.json``.

        ``None`` with too few reached rungs, ``{"error": ...}`` when the fit failed,
        else ``fit``, ``regimes``, ``answer`` and (two tuned rungs) ``lr_trend``;
        ``hparam_trends`` in either of the last two whenever there are some.
        """
        extras: dict[str, Any] = {}
        if self.hparam_trends is not None:
            extras["hparam_trends"] = self.hparam_trends.to_dict()
        if self.rule_costs:
            extras["rule_costs"] = [cost.to_dict() for cost in self.rule_costs.values()]
        if self.error is not None:
            return {"error": self.error, **extras}
        if self.fit is None or self.regimes is None:
            return None
        data: dict[str, Any] = {
            "fit": self.fit.to_dict(),
            "regimes": self.regimes.to_dict(),
            "answer": self.answer.to_dict(),
        }
        if self.lr_trend is not None:
            data["lr_trend"] = self.lr_trend.to_dict()
        if self.seeds is not None:
            data["seed_bootstrap"] = self.seeds.to_dict()
        return {**data, **extras}


def summarize_ladder(
    batch_sizes: Sequence[float],
    steps: Sequence[float | None],
    lrs: Sequence[float | None] | None = None,
    *,
    budgets: Sequence[float | None] | None = None,
    candidates: Sequence[Candidates | None] | None = None,
    hparams: Sequence[Mapping[str, float] | None] | None = None,
    train_size: int | None = None,
    rule_runs: Sequence[Mapping[str, Sequence[int | None]]] | None = None,
    resolutions: Sequence[float | None] | None = None,
    floors: Sequence[float | None] | None = None,
    left_out: Sequence[str | None] | None = None,
    tol: float = 0.25,
    seed: int = 0,
) -> LadderSummary:
    """Fit, regimes, LR trend and the answer of a ladder, each computed once.

    Args:
        batch_sizes: the rungs, strictly increasing.
        steps: steps-to-target per rung (``None``: never reached).
        lrs: the tuned learning rate per rung (``None`` where a rung has none);
            default: each rung's ``hparams["lr"]``.
        budgets: step budget per rung (``None`` where unknown, or where the rung is
            still running): a finished rung that never reached the target enters the
            fit as the lower bound S(B) > budget (:func:`fit_scaling`).
        candidates: per rung, its confirmed candidates' steps-to-target per seed
            (``RungResult.candidates``; ``None`` or empty without confirmation): the
            fit's intervals are widened to contain the seed bootstrap's
            (:func:`seed_bootstrap`), so they include how far each rung's count moves
            on fresh seeds, not only the scatter around the curve.
        hparams: the tuned hyperparameters per rung (``RungResult.best_hparams``;
            ``None`` where a rung has none): the searched ones (lr, beta2,
            weight_decay) against B and the transfer rules (:func:`hparam_trends`),
            over the rungs that reached the target.
        train_size: N, the training examples (the weight-decay timescale in epochs;
            ``None``: unknown, in examples).
        rule_runs: per rung, transfer rule -> its runs' steps-to-target
            (``RungResult.rule_steps``): what each rule costs against tuning
            (:func:`rule_costs`).
        resolutions: per rung, how finely its count is resolved in steps
            (``RungResult.resolution_steps``): each rung's interval in the answer's
            table reaches that far below its count (:func:`rung_steps_interval`).
        floors: per rung, a lower bound on the fewest steps any point of its searched
            range takes (:func:`batchlab.results.search_floor`, from
            :func:`search_gap`): the interval reaches down to it.
        left_out: per rung, why the fit leaves it out (``None``: it is in the fit;
            :func:`batchlab.results.rising_after_recheck`). The fits, their bootstraps
            and the check of the rungs against the curve use the other rungs; the
            answer's table lists every rung, and ``answer.interval_sources.left_out``
            says why each left-out one is.
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
    if hparams is not None and len(hparams) != len(ladder.batch_sizes):
        raise AnalysisError(
            f"hparams must have one entry per batch size ({len(ladder.batch_sizes)}), "
            f"got {len(hparams)}"
        )
    if lrs is None and hparams is not None:
        lrs = [None if h is None else h.get("lr") for h in hparams]
    if lrs is not None and len(lrs) != len(ladder.batch_sizes):
        raise AnalysisError(
            f"lrs must have one entry per batch size ({len(ladder.batch_sizes)}), got {len(lrs)}"
        )
    if left_out is not None and len(left_out) != len(ladder.batch_sizes):
        raise AnalysisError(
            f"left_out must have one entry per batch size ({len(ladder.batch_sizes)}), "
            f"got {len(left_out)}"
        )
    kept = [i for i in range(len(ladder.batch_sizes)) if not (left_out and left_out[i])]

    def fitted(values: Sequence[Any] | None) -> list[Any] | None:
        """The entries of the rungs in the fit."""
        return None if values is None else [values[i] for i in kept]

    reached = int(ladder.reached[kept].sum())
    fit = regimes = trend = seeds = residuals_ci = None
    note = error = None
    if reached < MIN_RUNGS_FOR_FIT:
        note = (
            f"Analysis impossible: {reached} rung(s) reached the target; the fit of "
            f"S(B) = S_min (1 + B_crit / B) needs at least {MIN_RUNGS_FOR_FIT}."
        )
    else:
        try:
            fit = fit_scaling(
                fitted(batch_sizes), fitted(steps), budgets=fitted(budgets), seed=seed
            )
            residuals_ci = fit.b_crit_ci
            if candidates is not None:
                seeds = seed_bootstrap(
                    fit, fitted(batch_sizes), fitted(candidates), fitted(budgets), seed=seed
                )
            if seeds is not None:
                fit = replace(
                    fit,
                    s_min_ci=widen(fit.s_min_ci, seeds.s_min_ci),
                    b_crit_ci=widen(fit.b_crit_ci, seeds.b_crit_ci),
                    e_min_ci=widen(fit.e_min_ci, seeds.e_min_ci),
                    interval_sources=(*fit.interval_sources, "seeds"),
                )
            regimes = scaling_regimes(fitted(batch_sizes), fitted(steps), tol=tol, fit=fit)
        except ValueError as failure:
            fit = regimes = seeds = None
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
    trends = None
    if hparams is not None:
        reached_hparams = [
            h if hit else None for h, hit in zip(hparams, ladder.reached, strict=True)
        ]
        if sum(1 for h in reached_hparams if h) >= 2:
            try:
                trends = hparam_trends(
                    batch_sizes, reached_hparams, regimes=regimes, train_size=train_size
                )
            except ValueError as failure:
                logger.warning("hyperparameter trends skipped: %s", failure)
    rung_seeds_ci: list[tuple[float, float] | None] | None = None
    if seeds is not None:  # the bootstrap resampled the rungs in the fit
        rung_seeds_ci = [None] * len(steps)
        for i, ci in zip(kept, seeds.rung_steps_ci, strict=True):
            rung_seeds_ci[i] = ci
    answer = batch_size_answer(
        batch_sizes,
        steps,
        fit,
        lrs=lrs,
        seeds_ci=rung_seeds_ci,
        resolutions=resolutions,
        floors=floors,
    )
    if fit is not None and residuals_ci is not None and not fit.at_bound:
        rungs = [answer.rungs[i] for i in kept]
        sources = explain_interval(
            fit,
            residuals_ci,
            None if seeds is None else seeds.b_crit_ci,
            [r.batch_size for r in rungs],
            [r.steps_ci if r.steps is not None else None for r in rungs],
            [floors is not None and floors[i] is not None for i in kept],
        )
        if left_out is not None:
            why = tuple((answer.rungs[i].batch_size, r) for i, r in enumerate(left_out) if r)
            sources = replace(sources, left_out=why)
        if reached >= MIN_KNEE_POINTS:
            knee = fit_knee(
                fitted(batch_sizes),
                fitted(steps),
                budgets=fitted(budgets),
                candidates=fitted(candidates),
                seed=seed,
            )
            if knee.unlike_hyperbola and knee.moves(fit.b_crit):
                sources = replace(sources, knee=knee)
        answer = replace(answer, interval_sources=sources)
        if sources.knee is not None:  # α's interval excludes 1: B_crit off the free bend
            answer = replace(
                answer,
                b_crit=sources.knee.b_crit,
                b_crit_ci=sources.knee.b_crit_ci,
                b_crit_model="free bend",
            )
    return LadderSummary(
        fit=fit,
        regimes=regimes,
        lr_trend=trend,
        answer=answer,
        note=note,
        error=error,
        seeds=seeds,
        hparam_trends=trends,
        rule_costs=(
            rule_costs([int(b) for b in batch_sizes], list(steps), rule_runs)
            if rule_runs is not None and any(rule_runs)
            else None
        ),
    )
