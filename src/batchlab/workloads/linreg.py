"""``linreg``: Gaussian linear regression, where the noise scale has a closed form.

Data: x ~ N(0, C), y = xᵀw* + σε with ε ~ N(0, 1); loss ½(xᵀw − y)²; model
``nn.Linear(d, 1, bias=False)``. With r = w − w* the per-example gradient is
g = x xᵀr − σεx, so (Isserlis' theorem for the fourth moment of a Gaussian):

    G = E[g] = C r
    Σ = Cov[g] = C r rᵀC + (rᵀC r + σ²) C
    tr Σ = |C r|² + (rᵀC r + σ²) tr C
    H = C,  tr(HΣ) = rᵀC³r + (rᵀC r + σ²) tr C²,  GᵀHG = rᵀC³r

which give B_simple = tr Σ / |G|² and B_noise = tr(HΣ)/GᵀHG (McCandlish et al.
2018, eqs. 2.8 and 2.9) exactly, at any weight vector. Examples are drawn fresh
from the generator, so the data stream is unlimited.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._device import to_device
from .._seeding import make_generator, with_torch_seed
from ._exact import ExactNoiseScale
from ._protocol import Batch, Target, check_batch_size


def linreg_noise_scale(cov: Tensor, w: Tensor, w_star: Tensor, noise_std: float) -> ExactNoiseScale:
    """Exact |G|², tr Σ, B_simple and B_noise of linear regression at weights ``w``.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", eqs. 2.8-2.9; the moments follow from Isserlis' theorem.

    Args:
        cov: input covariance C, shape (d, d).
        w, w_star: current and optimal weights, shape (d,).
        noise_std: label noise σ.
    """
    cov, r = cov.double(), (w - w_star).double()
    cr = cov @ r
    excess = float(r @ cr) + noise_std**2
    grad_sq_norm = float(cr @ cr)
    trace_cov = grad_sq_norm + excess * float(cov.trace())
    curvature = float(cr @ cov @ cr)  # GᵀHG = rᵀC³r
    trace_h_cov = curvature + excess * float((cov * cov).sum())
    return ExactNoiseScale(
        grad_sq_norm=grad_sq_norm,
        trace_cov=trace_cov,
        b_simple=trace_cov / grad_sq_norm,
        b_noise=trace_h_cov / curvature,
    )


def iter_linreg_expected_loss(
    eigenvalues: np.ndarray,
    r0: np.ndarray,
    noise_std: float,
    *,
    lrs: Sequence[float] | np.ndarray,
    batch_size: int,
) -> Iterator[np.ndarray]:
    """Plain SGD's expected loss after steps 1, 2, ..., one value per learning rate.

    In C's eigenbasis (eigenvalues λ, r = w − w* with coordinates rᵢ) the diagonal
    mᵢ = E rᵢ² of the second moment evolves on its own: from r' = r − η ĝ with
    E[ĝ | r] = C r and Cov[ĝ | r] = Σ(r)/B, Σ = C r rᵀC + (rᵀC r + σ²) C (Isserlis'
    theorem, as in :func:`linreg_noise_scale`),

        m' = (1 − ηλ)² m + (η² / B) (λ² m + (λ·m + σ²) λ),

    and the expected loss is ½ (λ·m + σ²) (exact, step by step; ``inf``/nan once an
    unstable LR overflows).

    Args:
        eigenvalues: λ, C's eigenvalues, shape (d,).
        r0: the initial w₀ − w* in C's eigenbasis, shape (d,).
        noise_std: label noise σ.
        lrs: constant learning rates.
        batch_size: examples per step.
    """
    lam = np.asarray(eigenvalues, dtype=float)[None, :]
    rates = np.asarray(lrs, dtype=float)[:, None]
    m = np.broadcast_to(np.asarray(r0, dtype=float) ** 2, (rates.shape[0], lam.shape[1])).copy()
    shrink = (1.0 - rates * lam) ** 2 + rates**2 * lam**2 / batch_size
    with np.errstate(over="ignore", invalid="ignore"):
        while True:
            trace = (m * lam).sum(axis=1, keepdims=True)
            m = shrink * m + rates**2 / batch_size * (trace + noise_std**2) * lam
            yield 0.5 * ((m * lam).sum(axis=1) + noise_std**2)


def linreg_sgd_steps_to_target(
    eigenvalues: np.ndarray,
    r0: np.ndarray,
    noise_std: float,
    *,
    lrs: Sequence[float] | np.ndarray,
    batch_size: int,
    target: float,
    max_steps: int,
) -> np.ndarray:
    """First step at which plain SGD's expected loss (:func:`iter_linreg_expected_loss`)
    is <= ``target``, per learning rate; ``inf`` where not within ``max_steps``."""
    steps = np.full(len(lrs), np.inf)
    losses = iter_linreg_expected_loss(eigenvalues, r0, noise_std, lrs=lrs, batch_size=batch_size)
    for t, loss in zip(range(1, max_steps + 1), losses, strict=False):
        steps[np.isinf(steps) & (loss <= target)] = t
        if np.all(np.isfinite(steps) | ~np.isfinite(loss)):
            break
    return steps


class LinRegWorkload:
    """Linear regression with Gaussian inputs and a seeded, rotated covariance.

    C = Q diag(λ) Qᵀ with λ_i = i^(-decay) and Q a seeded random rotation; w* ~ N(0, I);
    the model starts at w = 0. Metrics are exact population losses, not estimates:
    ``loss`` = ½(rᵀC r + σ²) and ``excess_loss`` = ½ rᵀC r.

    Args:
        dim: input dimension d.
        noise_std: label noise σ.
        decay: eigenvalue decay exponent of C.
        data_seed: seed of C and w*.
    """

    name = "linreg"
    description = "Gaussian linear regression with closed-form noise scale"
    target = Target("excess_loss", 0.05, "min")
    metrics = ("loss", "excess_loss")
    default_steps = 1000
    default_hparams = {"optimizer": "sgd", "lr": 0.5}
    train_size = None
    #: Where batches are sent and models train (:meth:`to`).
    device = torch.device("cpu")

    def __init__(
        self, dim: int = 16, noise_std: float = 1.0, decay: float = 1.0, data_seed: int = 0
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"linreg: dim must be a positive integer, got {dim!r}")
        if not noise_std >= 0:
            raise ValueError(f"linreg: noise_std must be >= 0, got {noise_std!r}")
        generator = make_generator(data_seed)
        rotation, _ = torch.linalg.qr(
            torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        )
        eigenvalues = torch.arange(1, dim + 1, dtype=torch.float64) ** (-float(decay))
        #: C's eigenvalues and eigenvectors (columns): the closed form's coordinates.
        self.eigenvalues, self.rotation = eigenvalues, rotation
        self.cov = (rotation * eigenvalues) @ rotation.T
        self.sqrt_cov = (rotation * eigenvalues.sqrt()) @ rotation.T  # C = S Sᵀ, S symmetric
        self.w_star = torch.randn(dim, generator=generator, dtype=torch.float64)
        self.dim, self.noise_std = dim, float(noise_std)
        self.params: dict[str, Any] = {
            "dim": dim,
            "noise_std": noise_std,
            "decay": decay,
            "data_seed": data_seed,
        }

    def build_model(self, seed: int) -> nn.Module:
        """``nn.Linear(d, 1, bias=False)`` at w = 0 (the seed does not matter)."""

        def build() -> nn.Module:
            model = nn.Linear(self.dim, 1, bias=False)
            nn.init.zeros_(model.weight)
            return model

        return with_torch_seed(seed, build)

    def to(self, device: torch.device) -> LinRegWorkload:
        """This workload training on ``device``: batches are drawn on the CPU (the same
        examples on every device) and sent there; the exact statistics stay on the CPU."""
        moved = copy.copy(self)
        moved.device = torch.device(device)
        return moved

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``batch_size`` fresh examples (x, y) in float32, on :attr:`device`."""
        z = torch.randn(batch_size, self.dim, generator=generator, dtype=torch.float64)
        x = z @ self.sqrt_cov
        noise = torch.randn(batch_size, generator=generator, dtype=torch.float64)
        y = x @ self.w_star + self.noise_std * noise
        return to_device(x.float(), self.device), to_device(y.float(), self.device)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        check_batch_size(batch_size, None)
        while True:
            yield self.sample(batch_size, generator)

    def loss_fn(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        return 0.5 * (model(x).squeeze(-1) - y).square().mean()

    def weights(self, model: nn.Module) -> Tensor:
        """The model's weight vector w, shape (d,)."""
        return model.weight.detach().reshape(-1).double().cpu()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        r = self.weights(model) - self.w_star
        excess = 0.5 * float(r @ self.cov @ r)
        return {"loss": excess + 0.5 * self.noise_std**2, "excess_loss": excess}

    def noise_scale(self, model_or_weights: nn.Module | Tensor) -> ExactNoiseScale:
        """Exact gradient statistics at the model's (or the given) weights."""
        w = model_or_weights
        if isinstance(w, nn.Module):
            w = self.weights(w)
        return linreg_noise_scale(self.cov, w, self.w_star, self.noise_std)
