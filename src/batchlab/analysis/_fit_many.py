"""Many robust S(B) fits at once: the bootstrap's refits and their standard errors.

Each bootstrap replicate of :func:`batchlab.analysis.fit_scaling` is refitted here, all
replicates together, by a vectorised damped Gauss–Newton (Levenberg–Marquardt)
iteration on the same soft-L1 loss in log space, so 1000 replicates take milliseconds.

A column marked ``censored`` holds a lower bound, not a measurement (a rung that never
reached the target within its budget: S(B) > budget). Its residual is one-sided,
max(0, log bound − log S_fit): zero, with no pull on the fit, while the curve lies
above the bound (a Tobit-style hinge; Tobin 1958, in its least-squares limit).
"""

from __future__ import annotations

import numpy as np

from ._model import log_model, sigmoid, soft_l1

#: Iterations of the vectorised Levenberg–Marquardt refit of the bootstrap replicates.
BOOTSTRAP_ITERATIONS = 60


def fit_many(
    log_b: np.ndarray,
    log_s: np.ndarray,
    a0: np.ndarray,
    c0: np.ndarray,
    c_bounds: tuple[float, float],
    scale: float,
    iterations: int = BOOTSTRAP_ITERATIONS,
    censored: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust fits of many curves at once (rows of ``log_s``), by damped Gauss–Newton.

    Each iteration solves the 2×2 IRLS normal equations (weights ρ'(r²) of the soft-L1
    loss) with Levenberg–Marquardt damping for every row, and keeps a step only where
    it lowers that row's loss; c is clipped to ``c_bounds``. Columns where ``censored``
    is true are lower bounds (module docstring).
    """
    censored = _no_censoring(log_b, censored)
    a, c = a0.astype(float).copy(), c0.astype(float).copy()
    damping = np.full(a.shape, 1e-3)
    current = soft_l1(rows_residuals(log_b, log_s, a, c, censored), scale).sum(axis=1)
    for _ in range(iterations):
        r = rows_residuals(log_b, log_s, a, c, censored)
        s00, s01, s11, b0, b1 = _normal_equations(log_b, r, c, scale, censored)
        d00, d11 = s00 * (1.0 + damping), s11 * (1.0 + damping) + 1e-300
        det = d00 * d11 - s01**2
        new_a = a + (d11 * b0 - s01 * b1) / det
        new_c = np.clip(c + (d00 * b1 - s01 * b0) / det, *c_bounds)
        candidate = soft_l1(rows_residuals(log_b, log_s, new_a, new_c, censored), scale).sum(axis=1)
        better = candidate <= current
        a = np.where(better, new_a, a)
        c = np.where(better, new_c, c)
        current = np.where(better, candidate, current)
        damping = np.where(better, damping * 0.3, damping * 10.0).clip(1e-12, 1e12)
    return a, c


def standard_errors(
    log_b: np.ndarray,
    log_s: np.ndarray,
    a: np.ndarray,
    c: np.ndarray,
    scale: float,
    censored: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymptotic standard errors of a, c and a + c for each row, σ²(JᵀWJ)⁻¹.

    σ² = Σwr²/(n − 2) over the n measured columns (a bound is not a degree of freedom;
    an active bound's residual still counts in the sum and in JᵀWJ).
    """
    censored = _no_censoring(log_b, censored)
    r = rows_residuals(log_b, log_s, a, c, censored)
    s00, s01, s11, _, _ = _normal_equations(log_b, r, c, scale, censored)
    w = 1.0 / np.sqrt(1.0 + (r / scale) ** 2)
    sigma2 = (w * r * r).sum(axis=1) / (int((~censored).sum()) - 2)
    det = np.maximum(s00 * s11 - s01**2, 1e-300)
    var_a, var_c, cov_ac = sigma2 * s11 / det, sigma2 * s00 / det, -sigma2 * s01 / det
    return np.sqrt(var_a), np.sqrt(var_c), np.sqrt(np.maximum(var_a + var_c + 2 * cov_ac, 0.0))


def _no_censoring(log_b: np.ndarray, censored: np.ndarray | None) -> np.ndarray:
    return np.zeros(log_b.shape, dtype=bool) if censored is None else censored


def rows_residuals(
    log_b: np.ndarray, log_s: np.ndarray, a: np.ndarray, c: np.ndarray, censored: np.ndarray
) -> np.ndarray:
    """log S − log S_fit per row and column; max(0, ·) in the censored columns (bounds)."""
    r = log_s - log_model(log_b[None, :], a[:, None], c[:, None])
    return np.where(censored[None, :], np.maximum(r, 0.0), r)


def _normal_equations(
    log_b: np.ndarray, r: np.ndarray, c: np.ndarray, scale: float, censored: np.ndarray
) -> tuple[np.ndarray, ...]:
    """JᵀWJ entries (s00, s01, s11) and JᵀWr (b0, b1) per row, J = [1, σ(c − log B)].

    A censored column enters only where its bound is violated (r > 0); elsewhere its
    residual is flat in (a, c) and its row of J is zero.
    """
    active = ~censored[None, :] | (r > 0)
    w = np.where(active, 1.0 / np.sqrt(1.0 + (r / scale) ** 2), 0.0)
    g = sigmoid(c[:, None] - log_b[None, :])
    return w.sum(1), (w * g).sum(1), (w * g * g).sum(1), (w * r).sum(1), (w * g * r).sum(1)
