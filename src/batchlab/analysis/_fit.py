"""Fit of steps-to-target against batch size: S(B) = S_min (1 + B_crit / B).

McCandlish et al. 2018 derive the trade-off (S/S_min − 1)(E/E_min − 1) = 1 between
optimizer steps S and training examples E = B·S (their eq. 2.11), i.e.
S(B) = S_min (1 + B_crit / B) with B_crit = E_min / S_min. The fit works in log space,
where multiplicative scatter between seeds is additive and every rung weighs the same,
and uses a robust loss, so one rung with an unlucky tuning run does not drag the curve.

Parameters are θ = (a, c) = (log S_min, log B_crit), so that both stay positive and
log S(B) = a + log(1 + e^(c − log B)) is smooth in both. (About 450 lines: the point
fit, its censored bounds and its studentized bootstrap share one data layout and read
best together; the model and the vectorised refits live in ``_model`` and ``_fit_many``.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
from scipy.optimize import least_squares

from ._checks import (
    AnalysisError,
    Ladder,
    check_confidence,
    check_count,
    check_ladder,
    check_per_rung,
    check_positive,
    plain,
    plain_pair,
    rung,
)
from ._fit_many import fit_many, rows_residuals, standard_errors
from ._model import log_model, sigmoid, soft_l1

logger = logging.getLogger(__name__)

#: B_crit is searched within [B_first / _BCRIT_RANGE, B_last · _BCRIT_RANGE]: outside
#: that the data show no bend and B_crit is not identified (see ``ScalingFit.at_bound``).
_BCRIT_RANGE = 1e4

#: Bootstrap draws of log quantities are clipped to ±_MAX_LOG so that exp() stays finite.
_MAX_LOG = 700.0

#: Floor on 1 − h_ii when residuals are inflated by their leverage h_ii.
_MIN_ONE_MINUS_LEVERAGE = 1e-2


@dataclass(frozen=True)
class ScalingFit:
    """S(B) = S_min (1 + B_crit / B) fitted to a ladder of steps-to-target.

    Attributes:
        s_min: fewest steps to the target, as B → ∞.
        b_crit: critical batch size, E_min / S_min.
        e_min: fewest examples to the target, as B → 0 (= S_min · B_crit).
        s_min_ci, b_crit_ci, e_min_ci: studentized bootstrap intervals (low, high) at
            level ``confidence``.
        batch_sizes: the rungs used (those that reached the target).
        steps: their steps-to-target.
        residuals: log S_measured − log S_fitted per rung used (0.05 ≈ 5% above the fit).
        unreached: rungs that never reached the target.
        lower_bounds: per unreached rung, its step budget where one was given
            (``budgets``): the rung enters the fit as the bound S(B) > budget (censored);
            ``nan`` where none was given (the rung is left out).
        at_bound: True when B_crit ended at an edge of its search range
            [B_first / 10⁴, B_last · 10⁴]: the data show no bend, so B_crit is not
            identified. At the upper edge (S ∝ 1/B throughout: all perfect scaling)
            only E_min is, and the intervals are (low, inf) for B_crit and (0, high)
            for S_min; at the lower edge (S flat: all maximal parallelism) only S_min
            is, with (0, high) for B_crit and E_min. Those intervals are percentile
            intervals of the refits.
        confidence: level of the intervals.
        n_bootstrap: number of bootstrap replicates.
        robust_scale: residual scale (log units) of the soft-L1 loss.
        interval_sources: what the intervals account for: ``("residuals",)`` from
            :func:`fit_scaling`; ``("residuals", "seeds")`` once widened to contain
            the seed bootstrap's too (:func:`summarize_ladder`, :func:`seed_bootstrap`).
        bootstrap_s_min, bootstrap_b_crit: bootstrap-t draws (θ̂ − t*·se, back from
            log space), whose percentiles are the residual intervals; kept so that ratios
            with other fits and predictions get intervals (:func:`compare_fits`,
            :func:`compare_prediction`); left out of ``repr``, equality and
            :meth:`to_dict`.
    """

    s_min: float
    b_crit: float
    e_min: float
    s_min_ci: tuple[float, float]
    b_crit_ci: tuple[float, float]
    e_min_ci: tuple[float, float]
    batch_sizes: tuple[int | float, ...]
    steps: tuple[float, ...]
    residuals: tuple[float, ...]
    unreached: tuple[int | float, ...] = ()
    lower_bounds: tuple[float, ...] = ()
    at_bound: bool = False
    confidence: float = 0.95
    n_bootstrap: int = 0
    robust_scale: float = 0.1
    interval_sources: tuple[str, ...] = ("residuals",)
    bootstrap_s_min: tuple[float, ...] = field(default=(), repr=False, compare=False)
    bootstrap_b_crit: tuple[float, ...] = field(default=(), repr=False, compare=False)

    @overload
    def predict_steps(self, batch_size: float) -> float: ...

    @overload
    def predict_steps(self, batch_size: Sequence[float] | np.ndarray) -> np.ndarray: ...

    def predict_steps(self, batch_size: Any) -> Any:
        """Fitted steps-to-target S(B) = S_min (1 + B_crit / B) (McCandlish et al. 2018, eq. 2.11).

        Args:
            batch_size: B > 0, a number or an array of them.

        Returns:
            A float for a scalar B, else an array of the same shape.
        """
        b = _positive_batch(batch_size)
        out = self.s_min * (1.0 + self.b_crit / b)
        return float(out) if np.ndim(out) == 0 else out

    @overload
    def predict_examples(self, batch_size: float) -> float: ...

    @overload
    def predict_examples(self, batch_size: Sequence[float] | np.ndarray) -> np.ndarray: ...

    def predict_examples(self, batch_size: Any) -> Any:
        """Fitted examples-to-target E(B) = B·S(B) = E_min (1 + B / B_crit).

        Args:
            batch_size: B > 0, a number or an array of them.

        Returns:
            A float for a scalar B, else an array of the same shape.
        """
        b = _positive_batch(batch_size)
        out = self.e_min * (1.0 + b / self.b_crit)
        return float(out) if np.ndim(out) == 0 else out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (bootstrap replicates left out; non-finite values as None)."""
        return {
            "s_min": plain(self.s_min),
            "b_crit": plain(self.b_crit),
            "e_min": plain(self.e_min),
            "s_min_ci": plain_pair(self.s_min_ci),
            "b_crit_ci": plain_pair(self.b_crit_ci),
            "e_min_ci": plain_pair(self.e_min_ci),
            "batch_sizes": list(self.batch_sizes),
            "steps": [plain(s) for s in self.steps],
            "residuals": [plain(r) for r in self.residuals],
            "unreached": list(self.unreached),
            "lower_bounds": [plain(b) for b in self.lower_bounds],
            "at_bound": bool(self.at_bound),
            "confidence": float(self.confidence),
            "n_bootstrap": int(self.n_bootstrap),
            "robust_scale": float(self.robust_scale),
            "interval_sources": list(self.interval_sources),
        }


def _positive_batch(batch_size: Any) -> np.ndarray:
    b = np.asarray(batch_size, dtype=float)
    if not np.all(np.isfinite(b) & (b > 0)):
        raise AnalysisError(f"batch_size must be positive and finite, got {batch_size!r}")
    return b


def fit_scaling(
    batch_sizes: Sequence[float],
    steps: Sequence[float | None],
    *,
    budgets: Sequence[float | None] | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    robust_scale: float = 0.1,
    seed: int | np.random.Generator = 0,
) -> ScalingFit:
    """Fit S(B) = S_min (1 + B_crit / B) to steps-to-target, with bootstrap intervals.

    The fit minimises the soft-L1 loss ρ(r) = 2δ²(√(1 + (r/δ)²) − 1) of the log
    residuals r = log S − log S_fit (scipy's ``least_squares``, ``loss="soft_l1"``,
    ``f_scale=δ``): residuals well below δ count as in least squares, larger ones
    only linearly, so a single bad rung moves the fit little. Rungs with ``None``,
    ``nan`` or ``inf`` steps (target never reached) are left out, unless their step
    budget is given (``budgets``): then they enter *censored*, as the lower bound
    S(B) > budget, with the one-sided residual max(0, log budget − log S_fit) (Tobit
    regression's least-squares limit, Tobin 1958): no pull while the curve lies above
    the bound, the same loss as a measurement where it would pass below it. A rung
    that ran out of budget is evidence that S(B) is large there; dropping it biases
    S_min and B_crit towards the rungs that happened to make it. Bounds are fixed
    in every bootstrap replicate; they do not count as degrees of freedom.

    Intervals come from a *residual* bootstrap in log space (Davison & Hinkley 1997,
    Alg. 6.1): each replicate keeps the fitted curve and adds log residuals drawn
    with replacement, then is refitted. With the usual 5–10 rungs, resampling the
    (B, S) points themselves is unreliable: a resample often lacks the rungs that
    pin down the bend (or the asymptote) and the fit degenerates. Resampling
    residuals keeps the design (the ladder) fixed, as it is in the experiment. The
    residuals are first divided by √(1 − h_ii) (h_ii: leverage of rung i) and
    centred, which undoes the shrinkage of fitted residuals (their variance is
    (1 − h_ii)σ²). The intervals are *studentized* (bootstrap-t, Davison & Hinkley
    Sec. 5.2.1): t* = (θ* − θ̂)/se* with each replicate's own standard error, and
    θ ∈ [θ̂ − t*_(1−α/2)·se, θ̂ − t*_(α/2)·se]. Plain percentile intervals ignore that
    σ is estimated from n − 2 degrees of freedom and undercover with few rungs (in
    simulations with 3% noise: about 87% for 5 rungs, 90% for 7, at nominal 95%);
    the studentized ones stay within a couple of percent of nominal for 5–13 rungs.
    With 3 rungs (one degree of freedom) every interval is very wide, as it should be.
    The draws θ̂ − t*·se are kept on the result (their percentiles are exactly these
    intervals), so ratios with other fits get intervals the same way. Intervals
    are widened if needed to contain the point estimate (which matters only for
    residuals at round-off level). Replicates are refitted by a vectorised
    Levenberg–Marquardt iteration on the same loss, started from the point estimate,
    so 1000 replicates take milliseconds.

    References:
        McCandlish, Kaplan, Amodei and the OpenAI Dota Team 2018, "An Empirical Model
        of Large-Batch Training", arXiv:1812.06162, eq. 2.11 (S/S_min − 1 =
        (E/E_min − 1)⁻¹) and Sec. 2.2; Davison & Hinkley 1997, "Bootstrap Methods
        and their Application", Cambridge University Press, Alg. 6.1 (model-based
        resampling with modified residuals) and Sec. 5.2.1 (studentized intervals).

    Args:
        batch_sizes: batch size per rung, positive and strictly increasing.
        steps: steps-to-target per rung; ``None``/``nan``/``inf`` for a rung that
            never reached the target. At least 3 rungs must have reached it.
        budgets: step budget per rung (``None`` entries allowed); used only for the
            rungs that never reached the target, as censored lower bounds.
        n_bootstrap: number of bootstrap replicates (0 disables the intervals,
            which are then the point estimates).
        confidence: level of the intervals.
        robust_scale: δ of the soft-L1 loss, in log units (0.1 ≈ 10% scatter).
        seed: seed (or a ``numpy.random.Generator``) of the bootstrap.

    Returns:
        A :class:`ScalingFit`.

    Raises:
        AnalysisError (a ValueError): mismatched lengths, non-positive or
            non-increasing batch sizes, non-positive steps or budgets, fewer than 3
            rungs that reached the target, or bad keyword values.
    """
    ladder = check_ladder(batch_sizes, steps)
    bounds = check_budgets(budgets, ladder)
    n_bootstrap = check_count(n_bootstrap, "n_bootstrap", 0)
    confidence = check_confidence(confidence)
    robust_scale = check_positive(robust_scale, "robust_scale")
    rng = np.random.default_rng(seed)

    sizes = ladder.batch_sizes[ladder.reached]
    counts = ladder.steps[ladder.reached]
    log_b, log_s = np.log(sizes), np.log(counts)
    c_bounds = (log_b[0] - math.log(_BCRIT_RANGE), log_b[-1] + math.log(_BCRIT_RANGE))
    bounded = ~ladder.reached & np.isfinite(bounds)
    data = Data(
        log_b=np.concatenate([log_b, np.log(ladder.batch_sizes[bounded])]),
        log_s=np.concatenate([log_s, np.log(bounds[bounded])]),
        censored=np.arange(log_b.size + int(bounded.sum())) >= log_b.size,
    )

    a_hat, c_hat = _fit_point(data, c_bounds, robust_scale)
    fitted = log_model(log_b, a_hat, c_hat)
    residuals = log_s - fitted
    # B_crit on an edge of its range: the rungs show no bend (S ∝ 1/B throughout, or
    # flat), and only E_min (resp. S_min) is identified.
    edge = (
        "upper" if c_bounds[1] - c_hat < 1e-3 else "lower" if c_hat - c_bounds[0] < 1e-3 else None
    )
    if edge is not None:
        logger.warning(
            "fit_scaling: B_crit ran to the %s edge of its range (%.3g); the rungs show no "
            "bend, so B_crit is not identified",
            edge,
            math.exp(c_hat),
        )

    if n_bootstrap:
        boot_a, boot_c, boot_e = _bootstrap(
            data, a_hat, c_hat, c_bounds, robust_scale, n_bootstrap, rng, edge is None
        )
    else:
        boot_a, boot_c, boot_e = np.array([a_hat]), np.array([c_hat]), np.array([a_hat + c_hat])

    def interval(log_draws: np.ndarray, log_estimate: float) -> tuple[float, float]:
        low, high = percentile_interval(log_draws, log_estimate, confidence)
        # Draws clipped at ±_MAX_LOG stand for "unbounded" (e.g. one degree of freedom).
        return (
            0.0 if low <= -_MAX_LOG else math.exp(low),
            math.inf if high >= _MAX_LOG else math.exp(high),
        )

    s_min_ci = interval(boot_a, a_hat)
    b_crit_ci = interval(boot_c, c_hat)
    e_min_ci = interval(boot_e, a_hat + c_hat)
    if edge == "upper":
        b_crit_ci, s_min_ci = (b_crit_ci[0], math.inf), (0.0, s_min_ci[1])
    elif edge == "lower":
        b_crit_ci, e_min_ci = (0.0, b_crit_ci[1]), (0.0, e_min_ci[1])

    s_min, b_crit = math.exp(a_hat), math.exp(c_hat)
    return ScalingFit(
        s_min=s_min,
        b_crit=b_crit,
        e_min=s_min * b_crit,
        s_min_ci=s_min_ci,
        b_crit_ci=b_crit_ci,
        e_min_ci=e_min_ci,
        batch_sizes=tuple(rung(b) for b in sizes),
        steps=tuple(float(s) for s in counts),
        residuals=tuple(float(r) for r in residuals),
        unreached=tuple(rung(b) for b in ladder.batch_sizes[~ladder.reached]),
        lower_bounds=tuple(float(b) for b in bounds[~ladder.reached]),
        at_bound=edge is not None,
        confidence=confidence,
        n_bootstrap=n_bootstrap,
        robust_scale=robust_scale,
        bootstrap_s_min=tuple(np.exp(boot_a).tolist()) if n_bootstrap else (),
        bootstrap_b_crit=tuple(np.exp(boot_c).tolist()) if n_bootstrap else (),
    )


def percentile_interval(
    samples: np.ndarray, estimate: float, confidence: float
) -> tuple[float, float]:
    """Equal-tailed percentile interval of ``samples``, widened to contain ``estimate``."""
    alpha = 1.0 - confidence
    low, high = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(min(low, estimate)), float(max(high, estimate))


@dataclass(frozen=True)
class Data:
    """What the fit sees: log B, log S, and which entries are lower bounds (censored)."""

    log_b: np.ndarray
    log_s: np.ndarray
    censored: np.ndarray


def check_budgets(budgets: Sequence[float | None] | None, ladder: Ladder) -> np.ndarray:
    """Step budgets per rung as floats (``nan`` where none is given), checked."""
    n = ladder.batch_sizes.size
    if budgets is None:
        return np.full(n, np.nan)
    check_per_rung(budgets, "budgets", ladder.batch_sizes, "step counts or None")
    values = np.full(n, np.nan)
    for i, budget in enumerate(budgets):
        if budget is not None:
            values[i] = check_positive(budget, f"budgets[{i}]")
    return values


def _fit_point(data: Data, c_bounds: tuple[float, float], scale: float) -> tuple[float, float]:
    """Robust fit of (a, c): a profile grid over c for the start, then ``least_squares``."""
    # For fixed c the least-squares a is the mean offset of the measured rungs, so the
    # profile over a grid of c finds the basin of the global minimum; the robust fit
    # then starts there.
    log_b, log_s, censored = data.log_b, data.log_s, data.censored
    grid = np.linspace(c_bounds[0], c_bounds[1], 400)
    shape = np.logaddexp(0.0, grid[:, None] - log_b[None, :])
    offsets = (log_s[None, ~censored] - shape[:, ~censored]).mean(axis=1)
    cost = soft_l1(rows_residuals(log_b, log_s, offsets, grid, censored), scale).sum(axis=1)
    best = int(np.argmin(cost))
    margin = 1e-6 * (c_bounds[1] - c_bounds[0])
    c0 = float(np.clip(grid[best], c_bounds[0] + margin, c_bounds[1] - margin))

    def residuals(theta: np.ndarray) -> np.ndarray:
        r = log_model(log_b, theta[0], theta[1]) - log_s
        return np.where(censored, np.minimum(r, 0.0), r)

    def jacobian(theta: np.ndarray) -> np.ndarray:
        active = ~censored | (log_model(log_b, theta[0], theta[1]) < log_s)
        return np.column_stack([np.ones_like(log_b), sigmoid(theta[1] - log_b)]) * active[:, None]

    solution = least_squares(
        residuals,
        x0=np.array([offsets[best], c0]),
        jac=jacobian,
        bounds=([-np.inf, c_bounds[0]], [np.inf, c_bounds[1]]),
        loss="soft_l1",
        f_scale=scale,
        xtol=1e-14,
        ftol=1e-14,
        gtol=1e-14,
        max_nfev=1000,
    )
    return float(solution.x[0]), float(solution.x[1])


def _bootstrap(
    data: Data,
    a_hat: float,
    c_hat: float,
    c_bounds: tuple[float, float],
    scale: float,
    n_bootstrap: int,
    rng: np.random.Generator,
    studentize: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bootstrap draws of a, c and a + c from a residual bootstrap.

    Replicate data are the fitted curve plus leverage-adjusted, centred log residuals
    drawn with replacement; each is refitted. With ``studentize``, the draws are
    θ̂ − t*·se(θ̂) with t* = (θ* − θ̂)/se* (each replicate's own standard error):
    their percentile interval is the studentized interval, and they can be combined
    into ratios like ordinary draws. Without it (a fit on the edge of the B_crit
    range, where the standard errors are meaningless), the draws are the refits θ*.
    Censored entries (bounds) are the same in every replicate.
    """
    censored = data.censored
    log_b, log_s = data.log_b[~censored], data.log_s[~censored]
    n = log_b.size
    fitted = log_model(log_b, a_hat, c_hat)
    residuals = log_s - fitted
    # Leverage of the weighted (IRLS) fit at the solution: h = w_i J_i (JᵀWJ)⁻¹ J_iᵀ.
    weights = 1.0 / np.sqrt(1.0 + (residuals / scale) ** 2)
    jac = np.column_stack([np.ones(n), sigmoid(c_hat - log_b)])
    info = jac.T @ (weights[:, None] * jac)
    leverage = weights * np.einsum("ij,jk,ik->i", jac, np.linalg.pinv(info), jac)
    modified = residuals / np.sqrt(np.maximum(1.0 - leverage, _MIN_ONE_MINUS_LEVERAGE))
    modified -= modified.mean()
    replicates = np.concatenate(
        [
            fitted[None, :] + modified[rng.integers(0, n, size=(n_bootstrap, n))],
            np.broadcast_to(data.log_s[censored], (n_bootstrap, int(censored.sum()))),
        ],
        axis=1,
    )
    start_a, start_c = np.full(n_bootstrap, a_hat), np.full(n_bootstrap, c_hat)
    a, c = fit_many(data.log_b, replicates, start_a, start_c, c_bounds, scale, censored=censored)
    if not studentize:
        return a, c, a + c
    se_star = standard_errors(data.log_b, replicates, a, c, scale, censored)
    se_hat = standard_errors(
        data.log_b, data.log_s[None, :], np.array([a_hat]), np.array([c_hat]), scale, censored
    )
    draws = []
    for star, estimate, s_star, s_hat in zip(
        (a, c, a + c), (a_hat, c_hat, a_hat + c_hat), se_star, se_hat, strict=True
    ):
        # A replicate with no scatter at all (se* = 0) carries no t information.
        t = np.where(s_star > 0, (star - estimate) / np.where(s_star > 0, s_star, 1.0), 0.0)
        draws.append(np.clip(estimate - t * s_hat[0], -_MAX_LOG, _MAX_LOG))
    draws[1] = np.clip(draws[1], *c_bounds)
    return draws[0], draws[1], draws[2]
