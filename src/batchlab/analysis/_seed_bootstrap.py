"""Intervals of S_min and B_crit from the measurement itself: seeds and candidate choice.

The fit's own intervals (:func:`fit_scaling`) resample its residuals: they see how
far the rungs scatter around the curve, not how far each rung's count would move if
the study were run again. A rung's steps-to-result is the fewest median, over the
seeds each of its best candidates ran, of steps-to-target
(:func:`confirmed_candidate`); this module resamples that whole chain. Each replicate
draws every candidate's seeds with replacement, takes each candidate's median, lets
the fewest win, and refits the curve; the percentiles of the refits are the
intervals (Efron & Tibshirani 1993, "An Introduction to the Bootstrap", Ch. 13: the
percentile interval; the resampled unit is the seed, the independent draw of the
experiment). A candidate whose median does not reach the target in a replicate is
censored at the rung's budget, as in the fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import MIN_FIT_POINTS, AnalysisError, check_count, plain_pair
from ._fit import _BCRIT_RANGE, ScalingFit, percentile_interval
from ._fit_many import fit_many

#: A rung's candidates: per candidate, its steps-to-target on each seed (None: not reached).
Candidates = Sequence[Sequence[int | None]]

#: Replicates of :func:`seed_bootstrap` by default (milliseconds with vectorised refits).
SEED_BOOTSTRAP_REPLICATES = 1000


@dataclass(frozen=True)
class SeedBootstrap:
    """Percentile intervals of S_min, B_crit and E_min over resampled seeds.

    Attributes:
        s_min_ci, b_crit_ci, e_min_ci: intervals (low, high) at the fit's confidence,
            widened to contain the fit's point estimate.
        n_bootstrap: replicates drawn.
        n_fitted: replicates with enough reached rungs to fit (the others are left
            out; a low share means the rungs often miss the target on a fresh seed).
        rungs_resampled: how many rungs had candidates with several seeds.
        rung_steps_ci: per batch size given, the interval of that rung's
            steps-to-result over the replicates (the percentiles at the fit's
            confidence, widened to contain the measured count); ``None`` for a rung
            that was not resampled. ``high`` is ``inf`` when more replicates than the
            confidence allows did not reach the target.
    """

    s_min_ci: tuple[float, float]
    b_crit_ci: tuple[float, float]
    e_min_ci: tuple[float, float]
    n_bootstrap: int
    n_fitted: int
    rungs_resampled: int
    rung_steps_ci: tuple[tuple[float, float] | None, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (an ``inf`` bound is ``None``)."""
        return {
            "s_min_ci": plain_pair(self.s_min_ci),
            "b_crit_ci": plain_pair(self.b_crit_ci),
            "e_min_ci": plain_pair(self.e_min_ci),
            "n_bootstrap": self.n_bootstrap,
            "n_fitted": self.n_fitted,
            "rungs_resampled": self.rungs_resampled,
            "rung_steps_ci": [None if ci is None else plain_pair(ci) for ci in self.rung_steps_ci],
        }


def resample_rung_steps(
    candidates: Candidates, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """Per replicate, the rung's steps-to-result from resampled seeds (``inf``: not reached).

    Each candidate's seeds are drawn with replacement (as many as it ran), its lower
    median taken (:func:`median_steps`: a seed that never reached sorts last), and the
    fewest median over the candidates is the rung's count (:func:`confirmed_candidate`).
    """
    best = np.full(n_bootstrap, np.inf)
    for seeds in candidates:
        values = np.array([np.inf if s is None else float(s) for s in seeds])
        if values.size == 0:
            continue
        draws = np.sort(values[rng.integers(0, values.size, (n_bootstrap, values.size))], axis=1)
        best = np.minimum(best, draws[:, (values.size - 1) // 2])
    return best


def seed_bootstrap(
    fit: ScalingFit,
    batch_sizes: Sequence[float],
    candidates: Sequence[Candidates | None],
    budgets: Sequence[float | None] | None = None,
    *,
    n_bootstrap: int = SEED_BOOTSTRAP_REPLICATES,
    seed: int | np.random.Generator = 0,
) -> SeedBootstrap | None:
    """Resample every rung's seeds and candidate choice, refit, and read off intervals.

    Args:
        fit: the ladder's fit (its point estimate starts every refit; its confidence
            and robust scale are used).
        batch_sizes: the rungs, as given to the fit.
        candidates: per rung, its confirmed candidates' steps per seed (in rank
            order), or ``None``/empty for a rung without confirmation, whose count is
            then the fit's (not resampled).
        budgets: step budget per rung: where a replicate's count is not reached, the
            rung enters that refit censored at its budget (left out without one).
        n_bootstrap: replicates.
        seed: seed (or ``numpy.random.Generator``) of the resampling.

    Returns:
        The intervals, or ``None`` when no rung has a candidate with two or more
        seeds (nothing to resample) or fewer than half of the replicates can be fitted.
    """
    n = len(batch_sizes)
    if len(candidates) != n or (budgets is not None and len(budgets) != n):
        raise AnalysisError("candidates and budgets must have one entry per batch size")
    n_bootstrap = check_count(n_bootstrap, "n_bootstrap", 1)
    rng = np.random.default_rng(seed)
    measured = dict(zip(fit.batch_sizes, fit.steps, strict=True))
    columns, resampled = [], 0
    rung_cis: list[tuple[float, float] | None] = []
    for b, rung_candidates in zip(batch_sizes, candidates, strict=True):
        if rung_candidates and any(len(c) >= 2 for c in rung_candidates):
            resampled += 1
            columns.append(resample_rung_steps(rung_candidates, n_bootstrap, rng))
            rung_cis.append(rung_interval(columns[-1], measured.get(b), fit.confidence))
        else:
            columns.append(np.full(n_bootstrap, measured.get(b, np.inf)))
            rung_cis.append(None)
    if resampled == 0:
        return None
    steps = np.column_stack(columns)
    bounds = np.array([np.nan if x is None else float(x) for x in (budgets or [None] * n)])
    log_b_all = np.log(np.asarray(batch_sizes, dtype=float))
    reached = np.isfinite(steps)
    # Each replicate's columns: reached rungs, then unreached ones with a budget
    # (censored); replicates that share that pattern are refitted together.
    pattern = np.where(reached, 0, np.where(np.isfinite(bounds)[None, :], 1, 2))
    a = np.full(n_bootstrap, np.nan)
    c = np.full(n_bootstrap, np.nan)
    reached_sizes = np.asarray(fit.batch_sizes, dtype=float)
    # The fit's own range of B_crit (see fit_scaling).
    c_bounds = (
        math.log(reached_sizes[0]) - math.log(_BCRIT_RANGE),
        math.log(reached_sizes[-1]) + math.log(_BCRIT_RANGE),
    )
    for key in np.unique(pattern, axis=0):
        rows = np.all(pattern == key[None, :], axis=1)
        if int((key == 0).sum()) < MIN_FIT_POINTS:
            continue
        used = key < 2
        log_s = np.log(np.where(reached[rows][:, used], steps[rows][:, used], bounds[used]))
        count = int(rows.sum())
        a[rows], c[rows] = fit_many(
            log_b_all[used],
            log_s,
            np.full(count, math.log(fit.s_min)),
            np.full(count, math.log(fit.b_crit)),
            c_bounds,
            fit.robust_scale,
            censored=key[used] == 1,
        )
    fitted = np.isfinite(a) & np.isfinite(c)
    if fitted.sum() < n_bootstrap / 2:
        return None
    a, c = a[fitted], c[fitted]

    def interval(draws: np.ndarray, estimate: float) -> tuple[float, float]:
        low, high = percentile_interval(draws, math.log(estimate), fit.confidence)
        return math.exp(low), math.exp(high)

    return SeedBootstrap(
        s_min_ci=interval(a, fit.s_min),
        b_crit_ci=interval(c, fit.b_crit),
        e_min_ci=interval(a + c, fit.e_min),
        n_bootstrap=n_bootstrap,
        n_fitted=int(fitted.sum()),
        rungs_resampled=resampled,
        rung_steps_ci=tuple(rung_cis),
    )


def rung_interval(
    draws: np.ndarray, measured: float | None, confidence: float
) -> tuple[float, float] | None:
    """The percentile interval of one rung's resampled counts (``inf``: not reached).

    Order statistics, not interpolation (an unreached replicate is ``inf``): the
    ``(1 − confidence)/2`` quantile taken downwards and the ``(1 + confidence)/2``
    one upwards; widened to contain the measured count. ``None`` when even the
    lower bound is unreached.
    """
    tail = (1.0 - confidence) / 2.0
    low = float(np.quantile(draws, tail, method="lower"))
    high = float(np.quantile(draws, 1.0 - tail, method="higher"))
    if measured is not None and math.isfinite(measured):
        low, high = min(low, measured), max(high, measured)
    return None if not math.isfinite(low) else (low, high)


def widen(interval: tuple[float, float], other: tuple[float, float]) -> tuple[float, float]:
    """The smallest interval containing both."""
    return min(interval[0], other[0]), max(interval[1], other[1])
