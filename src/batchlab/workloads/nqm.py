"""``nqm``: the noisy quadratic model, with exact expected-loss recurrences.

Zhang, Li, Nado, Martens, Sachdeva, Dahl, Shallue, Grosse 2019, "Which Algorithmic
Choices Matter at Which Batch Sizes? Insights From a Noisy Quadratic Model" (NeurIPS):
loss L(w) = ½ Σᵢ hᵢ wᵢ² with diagonal curvature hᵢ (default hᵢ = 1/i, d = 10⁴) and
stochastic gradients whose noise covariance is proportional to H and shrinks as 1/B.

Here the noise comes from examples: example z ~ N(0, I) contributes the gradient
h ⊙ w + √(c h) ⊙ z, so the per-example gradient covariance is Σ = c·H and a batch of
B examples has covariance c·H/B, exactly the NQM. Training it with torch's SGD is a
simulation; :func:`nqm_expected_loss` gives the *expected* loss of the same
optimizer exactly, through the second moments of each coordinate (below), so
steps-to-target for any (lr, momentum, B) costs milliseconds.

Per coordinate, torch's SGD with momentum β keeps a buffer b and updates
b ← β b + g, w ← w − η b (heavy ball), or w ← w − η (g + β b) (Nesterov), with
g = h w + ε, Var ε = c h / B. The state s = (w, b_prev) evolves linearly,
s' = A s + a ε, so its second moment M = E[s sᵀ] (three numbers: E w², E w b, E b²)
follows M' = A M Aᵀ + (c h / B) a aᵀ — the 3×3 second-moment system.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._exact import ExactNoiseScale
from ._protocol import Batch, Target, check_batch_size

NQM_OPTIMIZERS = ("sgd", "momentum", "nesterov")


def _update_matrices(
    curvature: np.ndarray, lr: float, momentum: float, nesterov: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate A (d, 2, 2) and noise loading a (d, 2) of s' = A s + a ε, s = (w, b_prev)."""
    h, beta = curvature, momentum
    one = np.ones_like(h)
    if nesterov:
        # w' = w − η((1+β)(h w + ε) + β² b_prev);  b = β b_prev + h w + ε
        top = np.stack([1 - lr * (1 + beta) * h, -lr * beta**2 * one], axis=-1)
        loading = np.stack([-lr * (1 + beta) * one, one], axis=-1)
    else:
        # w' = w − η(β b_prev + h w + ε);          b = β b_prev + h w + ε
        top = np.stack([1 - lr * h, -lr * beta * one], axis=-1)
        loading = np.stack([-lr * one, one], axis=-1)
    bottom = np.stack([h, beta * one], axis=-1)
    return np.stack([top, bottom], axis=-2), loading


def _second_moment_operator(
    curvature: np.ndarray, noise: np.ndarray, lr: float, momentum: float, nesterov: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One step on m = (E w², E w b, E b²) per coordinate: m' = L m + u.

    Returns L with shape (3, 3, d) (output, input, coordinate) and u with shape (3, d).
    """
    a, load = _update_matrices(curvature, lr, momentum, nesterov)
    a11, a12, a21, a22 = a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1]
    l1, l2 = load[:, 0], load[:, 1]
    # M' = A M Aᵀ + noise · a aᵀ with M = [[p, q], [q, r]]
    linear = np.stack(
        [
            np.stack([a11**2, 2 * a11 * a12, a12**2]),
            np.stack([a11 * a21, a11 * a22 + a12 * a21, a12 * a22]),
            np.stack([a21**2, 2 * a21 * a22, a22**2]),
        ]
    )
    offset = noise * np.stack([l1**2, l1 * l2, l2**2])
    return linear, offset


def _power(linear: np.ndarray, offset: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine map m -> L m + u applied ``steps`` times, as (L^k, u_k), by squaring."""
    result_l = np.broadcast_to(np.eye(3)[:, :, None], linear.shape).copy()
    result_u = np.zeros_like(offset)
    base_l, base_u = linear, offset
    while steps:
        if steps & 1:
            # result ∘ base is applied after: x -> base(result(x))
            result_l, result_u = (
                np.einsum("ijd,jkd->ikd", base_l, result_l),
                np.einsum("ijd,jd->id", base_l, result_u) + base_u,
            )
        steps >>= 1
        if steps:
            base_l, base_u = (
                np.einsum("ijd,jkd->ikd", base_l, base_l),
                np.einsum("ijd,jd->id", base_l, base_u) + base_u,
            )
    return result_l, result_u


def iter_nqm_expected_loss(
    curvature: np.ndarray,
    noise: np.ndarray,
    w0: np.ndarray,
    *,
    lr: float,
    momentum: float = 0.0,
    nesterov: bool = False,
    batch_size: int,
    eval_steps: Sequence[int],
) -> Iterator[float]:
    """Exact expected loss E[½ Σ hᵢ wᵢ²] of SGD/momentum on the NQM, one eval step at a time.

    A generator, so a caller that stops at the target (as the study engine does)
    pays only for the evaluations it needs. Yields ``inf`` once the run diverges.

    References:
        Zhang et al. 2019, "Which Algorithmic Choices Matter at Which Batch Sizes?",
        Sec. 3 (the NQM) and its second-moment dynamics; the update is torch.optim.SGD's.

    Args:
        curvature: hᵢ, shape (d,).
        noise: per-example gradient noise variance per coordinate (c·hᵢ), shape (d,).
        w0: deterministic initial weights, shape (d,).
        lr, momentum, nesterov: torch.optim.SGD's settings (constant learning rate).
        batch_size: examples per step (noise variance divided by it).
        eval_steps: non-decreasing step counts at which to report the loss (0 = start).
    """
    steps = np.asarray(eval_steps, dtype=np.int64)
    if steps.ndim != 1 or (steps.size and (steps[0] < 0 or np.any(np.diff(steps) < 0))):
        raise ValueError("eval_steps must be a non-decreasing sequence of step counts >= 0")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    linear, offset = _second_moment_operator(curvature, noise / batch_size, lr, momentum, nesterov)
    state = np.stack([w0**2, np.zeros_like(w0), np.zeros_like(w0)])
    powers: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    done, diverged = 0, False
    with np.errstate(over="ignore", invalid="ignore"):
        for step in steps:
            gap = int(step) - done
            if gap and not diverged:
                if gap not in powers:
                    powers[gap] = _power(linear, offset, gap)
                gap_l, gap_u = powers[gap]
                state = (gap_l * state[None, :, :]).sum(axis=1) + gap_u
                done = int(step)
            loss = 0.5 * float(np.dot(curvature, state[0]))
            diverged = diverged or not np.isfinite(loss)
            yield np.inf if diverged else loss


def sgd_steps_to_target(
    curvature: np.ndarray,
    noise: np.ndarray,
    w0: np.ndarray,
    *,
    lrs: Sequence[float] | np.ndarray,
    batch_size: float,
    target: float,
) -> np.ndarray:
    """First step at which plain SGD's expected loss is <= ``target``, for many LRs at once.

    Plain SGD (no momentum) on the NQM has a closed form: per coordinate the second
    moment p = E w² obeys p' = (1 − ηh)² p + η² c h / B, so
    p_t = (1 − ηh)^(2t) (p₀ − p*) + p* with p* = η c / (B h (2 − ηh)) (Zhang et al.
    2019, Sec. 3; here with c h the per-coordinate noise). The loss starts above the
    target and, for a stable LR (ηh < 2 everywhere), crosses it once: bisection on t
    finds the first step. ``inf`` where the LR is unstable or the loss settles above
    the target.

    Args:
        curvature, noise, w0: the workload's hᵢ, noise variance per coordinate, w₀.
        lrs: constant learning rates to evaluate.
        batch_size: examples per step.
        target: the loss to reach.
    """
    h, p0 = curvature, w0**2
    rates = np.asarray(lrs, dtype=float)[:, None]
    stable = np.all(rates * h < 2.0, axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p_star = rates * noise / (batch_size * h * (2.0 - rates * h))
        log_q = 2.0 * np.log(np.abs(1.0 - rates * h))

        def loss(t: np.ndarray) -> np.ndarray:
            return 0.5 * (h * (np.exp(t[:, None] * log_q) * (p0 - p_star) + p_star)).sum(axis=1)

        lo, hi = np.zeros(rates.shape[0]), np.full(rates.shape[0], 1e12)
        reached = stable & (loss(hi) <= target)
        while np.any(hi - lo > 1):
            mid = np.floor((lo + hi) / 2)
            below = loss(mid) <= target
            hi, lo = np.where(below, mid, hi), np.where(below, lo, mid)
    return np.where(reached, hi, np.inf)


def nqm_expected_loss(*args: Any, **kwargs: Any) -> np.ndarray:
    """All of :func:`iter_nqm_expected_loss` as an array (one value per eval step).

    It takes the same arguments (passed on unchanged, so they are documented and
    checked in one place).
    """
    return np.fromiter(iter_nqm_expected_loss(*args, **kwargs), dtype=np.float64)


class NQMModel(nn.Module):
    """The NQM's only parameter: the weight vector w (d,)."""

    def __init__(self, w0: Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w0.clone())


class NQMWorkload:
    """Noisy quadratic model; trainable as a simulation and solvable exactly.

    The loss starts at ½ Σ hᵢ (about 4.9 for the defaults) and the default target is
    ``loss <= 0.5``; the metric reported by :meth:`evaluate` is the exact loss at the
    current weights. :meth:`exact_metrics` gives the expected loss curve of a whole
    training run for the study engine.

    Args:
        dim: number of coordinates d.
        noise_scale: c in Σ = c·H.
        init: initial value of every wᵢ.
    """

    name = "nqm"
    description = "noisy quadratic model (Zhang et al. 2019), exact expected loss"
    target = Target("loss", 0.5, "min")
    metrics = ("loss",)
    default_steps = 10_000
    default_hparams = {"optimizer": "sgd", "lr": 1.0}
    train_size = None

    def __init__(self, dim: int = 10_000, noise_scale: float = 1.0, init: float = 1.0) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"nqm: dim must be a positive integer, got {dim!r}")
        if not noise_scale >= 0:
            raise ValueError(f"nqm: noise_scale must be >= 0, got {noise_scale!r}")
        self.curvature = 1.0 / np.arange(1, dim + 1, dtype=np.float64)
        self.noise = noise_scale * self.curvature
        self.w0 = np.full(dim, float(init))
        self._h = torch.from_numpy(self.curvature).float()
        self._noise_std = torch.from_numpy(np.sqrt(self.noise)).float()
        self.dim = dim
        self.params: dict[str, Any] = {"dim": dim, "noise_scale": noise_scale, "init": init}

    def build_model(self, seed: int) -> nn.Module:
        """The model at w0 (deterministic: the NQM has no random initialisation)."""
        return NQMModel(torch.from_numpy(self.w0).float())

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        check_batch_size(batch_size, None)
        while True:
            yield torch.randn(batch_size, self.dim, generator=generator)

    def loss_fn(self, model: nn.Module, batch: Batch) -> Tensor:
        # Mean over examples of ½ Σ h w² + Σ √(c h) z w: gradient h w + √(c h) mean(z).
        w = model.w
        assert isinstance(batch, Tensor)
        return 0.5 * (self._h * w * w).sum() + (batch.mean(0) * self._noise_std * w).sum()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        w = model.w.detach().double().numpy()
        return {"loss": 0.5 * float(np.dot(self.curvature, w * w))}

    def noise_scale(self, model_or_weights: nn.Module | Tensor) -> ExactNoiseScale:
        """Exact |G|², tr Σ, B_simple and B_noise at the given weights.

        G = H w, Σ = c H, so |G|² = Σ hᵢ² wᵢ², tr Σ = c Σ hᵢ,
        tr(HΣ) = c Σ hᵢ², GᵀHG = Σ hᵢ³ wᵢ².
        """
        w = model_or_weights.w if isinstance(model_or_weights, nn.Module) else model_or_weights
        w2 = w.detach().double().numpy() ** 2
        h = self.curvature
        grad_sq_norm = float(np.dot(h**2, w2))
        trace_cov = float(self.noise.sum())
        return ExactNoiseScale(
            grad_sq_norm=grad_sq_norm,
            trace_cov=trace_cov,
            b_simple=trace_cov / grad_sq_norm,
            b_noise=float(np.dot(h, self.noise)) / float(np.dot(h**3, w2)),
        )

    def iter_exact_metrics(
        self, hparams: Mapping[str, Any], batch_size: int, eval_steps: Sequence[int]
    ) -> Iterator[dict[str, float]]:
        """Expected metrics at each of ``eval_steps`` of a run with ``hparams``, lazily.

        ``hparams`` holds ``optimizer`` (one of sgd, momentum, nesterov), ``lr`` and,
        for the momentum methods, ``momentum``.
        """
        optimizer = hparams.get("optimizer", "sgd")
        if optimizer not in NQM_OPTIMIZERS:
            raise ValueError(
                f"nqm: exact curves exist for optimizers {', '.join(NQM_OPTIMIZERS)}; "
                f"got {optimizer!r}"
            )
        unknown = set(hparams) - {"optimizer", "lr", "momentum"}
        if unknown:
            raise ValueError(
                f"nqm: exact curves take only lr and momentum; got {', '.join(sorted(unknown))}"
            )
        momentum = float(hparams.get("momentum", 0.0)) if optimizer != "sgd" else 0.0
        for loss in iter_nqm_expected_loss(
            self.curvature,
            self.noise,
            self.w0,
            lr=float(hparams["lr"]),
            momentum=momentum,
            nesterov=optimizer == "nesterov",
            batch_size=batch_size,
            eval_steps=eval_steps,
        ):
            yield {"loss": loss}
