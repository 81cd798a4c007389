"""S(B) with a bend of free sharpness: S_min (1 + (B_crit / B)^α)^(1/α).

McCandlish et al. 2018 derive S(B) = S_min (1 + B_crit / B) (eq. 2.11) for SGD at its
best learning rate on a quadratic model, where the noise of a batch falls as 1/B.
Both of its asymptotes are model-free: S → S_min as B → ∞ (maximal data parallelism)
and S → E_min / B as B → 0 (perfect scaling), and B_crit = E_min / S_min is where they
cross. How sharply the measured curve turns from one to the other is not: trained
networks often bend more sharply than the hyperbola (Shallue et al. 2018, Fig. 1), and
then no (S_min, B_crit) fits the rungs, and B_crit's interval measures that misfit
(``batchlab.analysis.explain_interval``), not the data's noise.

This module fits the one-parameter family that keeps both asymptotes and lets the
bend's sharpness α free::

    S(B) = S_min (1 + (B_crit / B)^α)^(1/α)

α = 1 is McCandlish et al.'s curve; α → ∞ the broken line max(S_min, E_min / B). For
every α, S → S_min as B → ∞ and S · B → S_min · B_crit = E_min as B → 0, so B_crit keeps
its definition E_min / S_min (at B = B_crit, S = 2^(1/α) S_min). On the NQM's and
linreg's exact curves (``benchmarks/knee_shape.py``) the fit returns α ≈ 1.1 and the
hyperbola's B_crit within 1%; on the default study's mnist1d-cnn, α ≈ 4.

The fit works in log space with the soft-L1 loss and censored budgets as
:func:`fit_scaling`; its intervals come from the same residual bootstrap
(leverage-adjusted, centred log residuals; studentized for B_crit, Davison & Hinkley
1997 Alg. 6.1 and Sec. 5.2.1) and, with confirmation seeds, from resampling each rung's
seeds and candidate choice (:func:`resample_rung_steps`), all replicates refitted at
once by a vectorised Levenberg–Marquardt iteration; the reported interval is their
union.

References:
    McCandlish, Kaplan, Amodei et al. 2018, arXiv:1812.06162, eq. 2.11.
    Shallue, Lee, Antognini et al. 2018, JMLR 20(112), Fig. 1 and Sec. 4.
    Davison & Hinkley 1997, "Bootstrap Methods and their Application", Alg. 6.1,
    Sec. 5.2.1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from ._checks import (
    AnalysisError,
    check_confidence,
    check_count,
    check_ladder,
    check_positive,
    plain_pair,
)
from ._fit import _BCRIT_RANGE, Data, check_budgets, percentile_interval
from ._model import sigmoid, soft_l1
from ._seed_bootstrap import Candidates, resample_rung_steps, widen

#: Reached rungs the fit needs: three parameters and two degrees of freedom.
MIN_KNEE_POINTS = 5

#: The range of α searched: from a bend four times softer than the hyperbola's to one
#: 16 times sharper (at α = 16, S(B_crit) = 1.04 S_min: a broken line to the eye).
SHARPNESS_RANGE = (0.25, 16.0)

#: Bootstrap replicates by default (refitted together: tens of milliseconds).
KNEE_REPLICATES = 1000

#: The free bend changes the answer when its B_crit differs from the hyperbola's by at
#: least this factor. On the NQM's exact curve (α ≈ 1.1) the two differ by 1%, and
#: studies there often reject the hyperbola all the same (their rungs' intervals are
#: a few percent wide): a second B_crit within 10% of the first adds nothing to read.
MATERIAL_FACTOR = 1.1


@dataclass(frozen=True)
class KneeFit:
    """S(B) = S_min (1 + (B_crit / B)^α)^(1/α) fitted to a ladder (module docstring).

    Attributes:
        s_min: fewest steps, as B → ∞.
        b_crit: E_min / S_min, where the asymptotes cross.
        e_min: fewest examples, as B → 0.
        sharpness: α (1: McCandlish et al.'s hyperbola; larger: a sharper bend).
        b_crit_ci: B_crit's interval: the union of ``residuals_ci`` and ``seeds_ci``.
        sharpness_ci: α's percentile interval over the residual bootstrap.
        residuals_ci: B_crit's studentized interval from the rungs' scatter about the curve.
        seeds_ci: B_crit's interval from resampled confirmation seeds (``None``: none).
        residuals: log S_measured − log S_fitted per reached rung.
        rms: root mean square of ``residuals``.
        confidence: level of the intervals.
        n_bootstrap: replicates of each bootstrap.
    """

    s_min: float
    b_crit: float
    e_min: float
    sharpness: float
    b_crit_ci: tuple[float, float]
    sharpness_ci: tuple[float, float]
    residuals_ci: tuple[float, float]
    seeds_ci: tuple[float, float] | None
    residuals: tuple[float, ...]
    rms: float
    confidence: float = 0.95
    n_bootstrap: int = KNEE_REPLICATES

    @property
    def unlike_hyperbola(self) -> bool:
        """α's interval excludes 1 (beyond round-off): the rungs bend unlike S_min (1 + B_crit / B)."""
        low, high = self.sharpness_ci
        return not low - 1e-6 <= 1.0 <= high + 1e-6

    def moves(self, b_crit: float) -> bool:
        """Its B_crit differs from ``b_crit`` (the hyperbola's) by :data:`MATERIAL_FACTOR` or more."""
        return abs(math.log(self.b_crit / b_crit)) >= math.log(MATERIAL_FACTOR)

    def predict_steps(self, batch_size: float) -> float:
        """S(B) on the fitted curve."""
        b = check_positive(batch_size, "batch_size")
        return float(np.exp(knee_log_model(np.log(b), *self._theta)))

    @property
    def _theta(self) -> tuple[float, float, float]:
        return math.log(self.s_min), math.log(self.b_crit), math.log(self.sharpness)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (an ``inf`` bound is ``None``)."""
        return {
            "s_min": self.s_min,
            "b_crit": self.b_crit,
            "e_min": self.e_min,
            "sharpness": self.sharpness,
            "b_crit_ci": plain_pair(self.b_crit_ci),
            "sharpness_ci": plain_pair(self.sharpness_ci),
            "residuals_ci": plain_pair(self.residuals_ci),
            "seeds_ci": plain_pair(self.seeds_ci),
            "residuals": list(self.residuals),
            "rms": self.rms,
            "confidence": self.confidence,
            "n_bootstrap": self.n_bootstrap,
        }


def knee_log_model(log_b: np.ndarray, a: float, c: float, k: float) -> np.ndarray:
    """log S(B) = a + log(1 + e^(α(c − log B))) / α, α = e^k; θ = (log S_min, log B_crit, log α)."""
    alpha = math.exp(k)
    return a + np.logaddexp(0.0, alpha * (c - log_b)) / alpha


def fit_knee(
    batch_sizes: Sequence[float],
    steps: Sequence[float | None],
    *,
    budgets: Sequence[float | None] | None = None,
    candidates: Sequence[Candidates | None] | None = None,
    n_bootstrap: int = KNEE_REPLICATES,
    confidence: float = 0.95,
    robust_scale: float = 0.1,
    seed: int | np.random.Generator = 0,
) -> KneeFit:
    """Fit S(B) = S_min (1 + (B_crit / B)^α)^(1/α), with bootstrap intervals.

    Args:
        batch_sizes: batch size per rung, positive and strictly increasing.
        steps: steps-to-target per rung (``None``/``nan``/``inf``: not reached); at
            least :data:`MIN_KNEE_POINTS` reached.
        budgets: step budget per rung: an unreached rung with one enters censored, as
            the bound S(B) > budget (as in :func:`fit_scaling`).
        candidates: per rung, its confirmed candidates' steps per seed
            (``RungResult.candidates``; ``None`` or empty: not resampled): adds the seed
            bootstrap's interval of B_crit.
        n_bootstrap: replicates of each bootstrap (0: intervals are the point estimate).
        confidence: level of the intervals.
        robust_scale: δ of the soft-L1 loss, in log units.
        seed: seed (or ``numpy.random.Generator``) of the bootstraps.

    Returns:
        A :class:`KneeFit`.

    Raises:
        AnalysisError (a ValueError): a malformed ladder (as :func:`fit_scaling`),
            fewer than :data:`MIN_KNEE_POINTS` reached rungs, or bad keyword values.
    """
    ladder = check_ladder(batch_sizes, steps, min_reached=MIN_KNEE_POINTS)
    bounds = check_budgets(budgets, ladder)
    if candidates is not None and len(candidates) != ladder.batch_sizes.size:
        raise AnalysisError(
            f"candidates must have one entry per batch size ({ladder.batch_sizes.size}), "
            f"got {len(candidates)}"
        )
    n_bootstrap = check_count(n_bootstrap, "n_bootstrap", 0)
    confidence = check_confidence(confidence)
    scale = check_positive(robust_scale, "robust_scale")
    rng = np.random.default_rng(seed)

    reached = ladder.reached
    log_b = np.log(ladder.batch_sizes[reached])
    bounded = ~reached & np.isfinite(bounds)
    data = Data(
        log_b=np.concatenate([log_b, np.log(ladder.batch_sizes[bounded])]),
        log_s=np.concatenate([np.log(ladder.steps[reached]), np.log(bounds[bounded])]),
        censored=np.arange(log_b.size + int(bounded.sum())) >= log_b.size,
    )
    limits = (
        np.array([-np.inf, log_b[0] - math.log(_BCRIT_RANGE), math.log(SHARPNESS_RANGE[0])]),
        np.array([np.inf, log_b[-1] + math.log(_BCRIT_RANGE), math.log(SHARPNESS_RANGE[1])]),
    )
    theta = _fit_point(data, limits, scale)
    measured = ~data.censored
    residuals = data.log_s[measured] - knee_log_model(data.log_b[measured], *theta)

    residuals_ci = (math.exp(theta[1]),) * 2
    sharpness_ci = (math.exp(theta[2]),) * 2
    seeds_ci = None
    if n_bootstrap:
        draws_c, draws_k = _residual_bootstrap(data, theta, residuals, limits, scale,
                                               n_bootstrap, rng)  # fmt: skip
        residuals_ci = _exp_interval(draws_c, theta[1], confidence)
        sharpness_ci = _exp_interval(draws_k, theta[2], confidence)
        if candidates is not None:
            seeds_ci = _seed_interval(ladder.batch_sizes, ladder.steps, bounds, candidates,
                                      theta, limits, scale, n_bootstrap, confidence, rng)  # fmt: skip
    s_min, b_crit = math.exp(theta[0]), math.exp(theta[1])
    return KneeFit(
        s_min=s_min,
        b_crit=b_crit,
        e_min=s_min * b_crit,
        sharpness=math.exp(theta[2]),
        b_crit_ci=residuals_ci if seeds_ci is None else widen(residuals_ci, seeds_ci),
        sharpness_ci=sharpness_ci,
        residuals_ci=residuals_ci,
        seeds_ci=seeds_ci,
        residuals=tuple(float(r) for r in residuals),
        rms=float(np.sqrt(np.mean(residuals**2))),
        confidence=confidence,
        n_bootstrap=n_bootstrap,
    )


def _residuals(theta: np.ndarray, data: Data) -> np.ndarray:
    """Fitted − measured log S; a censored bound counts only where the curve passes below it."""
    r = knee_log_model(data.log_b, *theta) - data.log_s
    return np.where(data.censored, np.minimum(r, 0.0), r)


def _fit_point(data: Data, limits: tuple[np.ndarray, np.ndarray], scale: float) -> np.ndarray:
    """Vectorised fits from a grid of starts (B_crit over the ladder × α from 1/2 to 8),
    the best one polished by ``least_squares``."""
    measured = ~data.censored
    grid_c = np.linspace(data.log_b[measured].min(), data.log_b[measured].max(), 12)
    grid_k = np.log([0.5, 1.0, 2.0, 4.0, 8.0])
    c, k = (v.ravel() for v in np.meshgrid(grid_c, grid_k))
    shape = np.stack(
        [knee_log_model(data.log_b[measured], 0.0, ci, ki) for ci, ki in zip(c, k, strict=True)]
    )
    a = (data.log_s[measured][None, :] - shape).mean(axis=1)
    rows = a.size
    starts = _fit_rows(
        data.log_b,
        np.broadcast_to(data.log_s, (rows, data.log_s.size)),
        np.column_stack([a, c, k]),
        limits,
        scale,
        np.broadcast_to(data.censored, (rows, data.log_s.size)),
    )
    r = _rows(data.log_b, np.broadcast_to(data.log_s, (rows, data.log_s.size)), starts[0],
              np.broadcast_to(data.censored, (rows, data.log_s.size)))[0]  # fmt: skip
    best = starts[0][int(np.argmin(soft_l1(r, scale).sum(axis=1)))]
    best = np.clip(best, limits[0] + 1e-9, limits[1] - 1e-9)
    solution = least_squares(_residuals, best, args=(data,), bounds=limits, loss="soft_l1",
                             f_scale=scale, xtol=1e-14, ftol=1e-14, gtol=1e-14)  # fmt: skip
    return solution.x


def _rows(
    log_b: np.ndarray,
    log_s: np.ndarray,
    theta: np.ndarray,
    censored: np.ndarray,
    used: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``theta``: residuals log S − log S_fit, the model's Jacobian, active columns.

    A censored column's residual is max(0, ·) and active only where positive; a column
    not ``used`` by a row has residual 0 and is never active.
    """
    a, c, k = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
    alpha = np.exp(k)
    u = alpha * (c - log_b[None, :])
    softplus = np.logaddexp(0.0, u)
    slope = sigmoid(u)
    fitted = a + softplus / alpha
    jac = np.stack(
        [np.ones_like(u), slope, slope * (c - log_b[None, :]) - softplus / alpha], axis=-1
    )
    r = log_s - fitted
    r = np.where(censored, np.maximum(r, 0.0), r)
    used = np.ones_like(censored) if used is None else used
    active = used & (~censored | (r > 0))
    return np.where(used, r, 0.0), jac, active


def _fit_rows(
    log_b: np.ndarray,
    log_s: np.ndarray,
    theta: np.ndarray,
    limits: tuple[np.ndarray, np.ndarray],
    scale: float,
    censored: np.ndarray,
    used: np.ndarray | None = None,
    iterations: int = 80,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust fits of many rows at once by damped Gauss–Newton (Levenberg–Marquardt) on the
    soft-L1 loss (IRLS weights), as ``_fit_many.fit_many`` for the hyperbola; a step is
    kept only where it lowers that row's loss. Returns θ per row and se(c) per row,
    σ²(JᵀWJ)⁻¹ with σ² = Σwr²/(n − 3) over the row's measured columns."""
    theta = theta.astype(float).copy()
    damping = np.full(theta.shape[0], 1e-3)
    r, jac, active = _rows(log_b, log_s, theta, censored, used)
    current = soft_l1(r, scale).sum(axis=1)
    eye = np.eye(3)
    for _ in range(iterations):
        w = np.where(active, 1.0 / np.sqrt(1.0 + (r / scale) ** 2), 0.0)
        weighted = jac * w[..., None]
        hessian = np.einsum("rni,rnj->rij", weighted, jac)
        gradient = np.einsum("rni,rn->ri", weighted, r)
        damped = hessian + damping[:, None, None] * hessian * eye + 1e-12 * eye
        step = np.linalg.solve(damped, gradient[..., None])[..., 0]
        new = np.clip(theta + step, limits[0], limits[1])
        r_new, jac_new, active_new = _rows(log_b, log_s, new, censored, used)
        candidate = soft_l1(r_new, scale).sum(axis=1)
        better = candidate <= current
        theta = np.where(better[:, None], new, theta)
        r = np.where(better[:, None], r_new, r)
        jac = np.where(better[:, None, None], jac_new, jac)
        active = np.where(better[:, None], active_new, active)
        current = np.where(better, candidate, current)
        damping = np.where(better, damping * 0.3, damping * 10.0).clip(1e-12, 1e12)
    w = np.where(active, 1.0 / np.sqrt(1.0 + (r / scale) ** 2), 0.0)
    weighted = jac * w[..., None]
    hessian = np.einsum("rni,rnj->rij", weighted, jac)
    measured = (~censored if used is None else used & ~censored).sum(axis=-1)
    sigma2 = (w * r * r).sum(axis=1) / np.maximum(measured - 3, 1)
    var_c = sigma2 * np.linalg.pinv(hessian)[:, 1, 1]
    return theta, np.sqrt(np.maximum(var_c, 0.0))


def _residual_bootstrap(
    data: Data,
    theta: np.ndarray,
    residuals: np.ndarray,
    limits: tuple[np.ndarray, np.ndarray],
    scale: float,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws of c (studentized: ĉ − t*·se) and of k (the refits) from resampled residuals."""
    measured = ~data.censored
    one = theta[None, :]
    _, jac, _ = _rows(data.log_b[measured], data.log_s[None, measured], one,
                      np.zeros((1, int(measured.sum())), dtype=bool))  # fmt: skip
    jac = jac[0]
    # Leverage of the weighted fit: h = w J (JᵀWJ)⁻¹ Jᵀ over the measured rungs.
    weights = 1.0 / np.sqrt(1.0 + (residuals / scale) ** 2)
    info = jac.T @ (weights[:, None] * jac)
    leverage = weights * np.einsum("ij,jk,ik->i", jac, np.linalg.pinv(info), jac)
    modified = residuals / np.sqrt(np.maximum(1.0 - leverage, 1e-2))
    modified -= modified.mean()
    fitted = data.log_s[measured] - residuals
    replicates = np.broadcast_to(data.log_s, (n_bootstrap, data.log_s.size)).copy()
    replicates[:, measured] = (
        fitted[None, :]
        + modified[rng.integers(0, modified.size, size=(n_bootstrap, modified.size))]
    )
    censored = np.broadcast_to(data.censored, replicates.shape)
    _, se = _fit_rows(data.log_b, data.log_s[None, :], one, limits, scale, censored[:1])
    star, se_star = _fit_rows(data.log_b, replicates, np.repeat(one, n_bootstrap, axis=0),
                              limits, scale, censored)  # fmt: skip
    t = np.where(se_star > 0, (star[:, 1] - theta[1]) / np.where(se_star > 0, se_star, 1.0), 0.0)
    draws_c = np.clip(theta[1] - t * se[0], limits[0][1], limits[1][1])
    return draws_c, star[:, 2]


def _seed_interval(
    batch_sizes: np.ndarray,
    steps: np.ndarray,
    bounds: np.ndarray,
    candidates: Sequence[Candidates | None],
    theta: np.ndarray,
    limits: tuple[np.ndarray, np.ndarray],
    scale: float,
    n_bootstrap: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[float, float] | None:
    """B_crit's percentile interval over resampled seeds and candidate choice (as
    :func:`seed_bootstrap`); ``None`` when no rung has a candidate with two seeds."""
    columns, resampled = [], False
    for count, rung_candidates in zip(steps, candidates, strict=True):
        if rung_candidates and any(len(c) >= 2 for c in rung_candidates):
            resampled = True
            columns.append(resample_rung_steps(rung_candidates, n_bootstrap, rng))
        else:
            columns.append(np.full(n_bootstrap, count))
    if not resampled:
        return None
    table = np.column_stack(columns)
    hit = np.isfinite(table)
    censored = ~hit & np.isfinite(bounds)[None, :]
    keep = hit.sum(axis=1) >= MIN_KNEE_POINTS  # too few reached rungs on these seeds: no fit
    if int(keep.sum()) < n_bootstrap / 2:
        return None
    log_s = np.log(np.where(hit, table, np.where(censored, bounds[None, :], 1.0)))[keep]
    fitted, _ = _fit_rows(
        np.log(batch_sizes),
        log_s,
        np.repeat(theta[None, :], int(keep.sum()), axis=0),
        limits,
        scale,
        censored[keep],
        used=(hit | censored)[keep],
    )
    return _exp_interval(fitted[:, 1], theta[1], confidence)


def _exp_interval(log_draws: np.ndarray, estimate: float, confidence: float) -> tuple[float, float]:
    low, high = percentile_interval(log_draws, estimate, confidence)
    return math.exp(low), math.exp(high)
