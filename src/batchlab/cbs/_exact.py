"""Exact expected branch curves on the ground-truth workloads (nqm, linreg), for checking.

From a checkpoint's weights w_c (a fixed point, not a random one), the expected loss
of a branch of SGD at batch size B and learning rate η follows a closed recurrence:

* ``nqm`` (Zhang et al. 2019): per coordinate, the 3×3 second-moment system of
  :func:`batchlab.workloads.nqm.iter_nqm_expected_loss`, started at w = w_c with an
  empty momentum buffer (plain SGD, or momentum with a fresh optimizer).
* ``linreg``: with r = w − w*, the minibatch gradient has mean C r and covariance
  Σ(r)/B with Σ(r) = C r rᵀC + (rᵀC r + σ²) C (Isserlis; see
  :mod:`batchlab.workloads.linreg`). Σ(r) is quadratic in r, so M = E[r rᵀ] obeys
  the exact linear recurrence

      M' = (I − ηC) M (I − ηC) + (η²/B) (C M C + (tr(C M) + σ²) C),

  and the expected excess loss is ½ tr(C M) (computed in C's eigenbasis, where only
  M's diagonal matters).

Steps-to-target read off these curves is the *expected-curve* S(B) of the branch,
which a branching measurement with enough repeats must reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..workloads import Target, Workload
from ..workloads.linreg import LinRegWorkload
from ..workloads.nqm import NQMWorkload, iter_nqm_expected_loss
from ._checkpoints import Checkpoint
from ._schedule import Cooldown


def linreg_expected_excess_loss(
    cov: np.ndarray,
    r0: np.ndarray,
    noise_std: float,
    *,
    lr: float,
    batch_size: int,
    eval_steps: Sequence[int],
) -> np.ndarray:
    """Exact expected excess loss ½ E[rᵀC r] of minibatch SGD on Gaussian linear regression.

    In C's eigenbasis (C = Q Λ Qᵀ) only the diagonal m_i = E[(Qᵀr)_i²] enters the loss
    ½ Σ λ_i m_i, and the recurrence of the module docstring closes on it:

        m_i' = ((1 − ηλ_i)² + (η²/B) λ_i²) m_i + (η²/B) λ_i (Σ_j λ_j m_j + σ²),

    O(d) per step.

    References:
        McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", Sec. 2.1
        (the minibatch gradient's covariance is Σ/B); the fourth Gaussian moment by
        Isserlis' theorem gives Σ(r) exactly (see :mod:`batchlab.workloads.linreg`).

    Args:
        cov: input covariance C, shape (d, d), symmetric positive semi-definite.
        r0: w_c − w* at the start (deterministic), shape (d,).
        noise_std: label noise σ.
        lr: SGD learning rate η.
        batch_size: examples per step B.
        eval_steps: non-decreasing steps at which to report (0 = the start).

    Returns:
        One value per eval step; ``inf`` once the run diverges.
    """
    eigenvalues, basis = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    lam = np.clip(eigenvalues, 0.0, None)
    m = (basis.T @ np.asarray(r0, dtype=np.float64)) ** 2
    scale = lr * lr / batch_size
    decay = (1.0 - lr * lam) ** 2 + scale * lam**2
    loading = scale * lam
    floor = noise_std**2
    out, done, diverged = [], 0, False
    with np.errstate(over="ignore", invalid="ignore"):
        for step in eval_steps:
            while done < step and not diverged:
                m = decay * m + loading * (float(lam @ m) + floor)
                done += 1
                diverged = not np.isfinite(m).all()
            value = 0.5 * float(lam @ m)
            out.append(np.inf if diverged or not np.isfinite(value) else value)
    return np.array(out)


def linreg_cooldown_excess_loss(
    cov: np.ndarray,
    r0: np.ndarray,
    noise_std: float,
    *,
    lr: float,
    batch_size: int,
    eval_steps: Sequence[int],
    cooldown: Cooldown,
) -> np.ndarray:
    """Exact expected excess loss of a linreg branch read after a cooldown (WSD).

    At every t of ``eval_steps`` the recurrence of :func:`linreg_expected_excess_loss`
    runs t steps at ``lr`` and then k = ``cooldown.steps(t, batch_size)`` more at the
    cooldown's per-step LRs (:meth:`Cooldown.lrs`), and reports ½ Σ λ_i m_i there,
    i.e. at step t + k of the branch. The recurrence holds step by step for any LR
    sequence, since each step's mean and covariance depend only on that step's η.

    Returns:
        One value per eval step; ``inf`` once the run diverges.
    """
    eigenvalues, basis = np.linalg.eigh(np.asarray(cov, dtype=np.float64))
    lam = np.clip(eigenvalues, 0.0, None)
    m = (basis.T @ np.asarray(r0, dtype=np.float64)) ** 2
    floor = noise_std**2

    def step(m: np.ndarray, eta: float) -> np.ndarray:
        scale = eta * eta / batch_size
        return ((1.0 - eta * lam) ** 2 + scale * lam**2) * m + scale * lam * (
            float(lam @ m) + floor
        )

    out, done = [], 0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in eval_steps:
            while done < t and np.isfinite(m).all():
                m = step(m, lr)
                done += 1
            cooled = m
            for eta in cooldown.lrs(lr, t, batch_size):
                cooled = step(cooled, eta)
            value = 0.5 * float(lam @ cooled)
            out.append(value if np.isfinite(value) and np.isfinite(m).all() else np.inf)
    return np.array(out)


def exact_branch_curve(
    workload: Workload,
    checkpoint: Checkpoint,
    *,
    metric: str,
    optimizer: str,
    hparams: dict[str, Any],
    optimizer_state: str,
    lr: float,
    batch_size: int,
    eval_steps: Sequence[int],
    cooldown: Cooldown | None = None,
) -> np.ndarray | None:
    """The expected ``metric`` of a branch at ``eval_steps``, or ``None`` where not known.

    With a ``cooldown`` (WSD), the value at t is read after the cooldown from t (at
    step t + k; :func:`linreg_cooldown_excess_loss`); known on ``linreg`` only.

    Known for ``nqm`` (metric ``loss``; SGD, or momentum/Nesterov with a fresh
    optimizer or no momentum buffer yet) and ``linreg`` (``loss`` or ``excess_loss``;
    plain SGD without weight decay).
    """
    if hparams.get("weight_decay", 0.0):
        return None
    state = checkpoint.optimizer_state or {}
    has_buffers = optimizer_state == "resume" and any(
        isinstance(s, dict) and s.get("momentum_buffer") is not None
        for s in (state.get("state") or {}).values()
    )
    if isinstance(workload, NQMWorkload) and metric == "loss" and cooldown is None:
        if optimizer not in ("sgd", "momentum", "nesterov") or has_buffers:
            return None
        w0 = checkpoint.model_state["w"].double().numpy()
        momentum = float(hparams.get("momentum", 0.9)) if optimizer != "sgd" else 0.0
        return np.fromiter(
            iter_nqm_expected_loss(
                workload.curvature,
                workload.noise,
                w0,
                lr=lr,
                momentum=momentum,
                nesterov=optimizer == "nesterov",
                batch_size=batch_size,
                eval_steps=eval_steps,
            ),
            dtype=np.float64,
        )
    if isinstance(workload, LinRegWorkload) and metric in ("loss", "excess_loss"):
        if optimizer != "sgd":
            return None
        w = checkpoint.model_state["weight"].reshape(-1).double().numpy()
        args = (workload.cov.numpy(), w - workload.w_star.numpy(), workload.noise_std)
        if cooldown is None:
            excess = linreg_expected_excess_loss(
                *args, lr=lr, batch_size=batch_size, eval_steps=eval_steps
            )
        else:
            excess = linreg_cooldown_excess_loss(
                *args, lr=lr, batch_size=batch_size, eval_steps=eval_steps, cooldown=cooldown
            )
        return excess + (0.5 * workload.noise_std**2 if metric == "loss" else 0.0)
    return None


def first_reached(steps: Sequence[int], values: Sequence[float], target: Target) -> int | None:
    """First of ``steps`` whose value meets ``target`` (Shallue et al. 2018's steps-to-result)."""
    for step, value in zip(steps, values, strict=True):
        if target.reached(float(value)):
            return int(step)
    return None
