"""linreg's closed-form gradient statistics against Monte-Carlo per-example gradients."""

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call, grad, vmap

from batchlab.workloads.linreg import LinRegWorkload, linreg_noise_scale


def per_example_gradients(workload, model, x, y):
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, xi, yi):
        out = functional_call(model, p, (xi[None],))
        return 0.5 * (out.squeeze() - yi) ** 2

    grads = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
    return grads["weight"].reshape(x.shape[0], -1).double()


def test_closed_form_matches_monte_carlo_per_example_gradients():
    workload = LinRegWorkload(dim=8, noise_std=0.5, data_seed=1)
    model = workload.build_model(0)
    with torch.no_grad():
        model.weight.copy_(0.3 * torch.ones_like(model.weight))
    exact = workload.noise_scale(model)
    n = 200_000
    x, y = workload.sample(n, torch.Generator().manual_seed(2))
    g = per_example_gradients(workload, model, x, y)
    # Also confirms the workload's loss: its gradient is x (x·w − y) per example.
    mean = g.mean(0)
    exact_g = workload.cov @ (workload.weights(model) - workload.w_star)
    standard_errors = g.std(0) / math.sqrt(n)
    assert torch.all((mean - exact_g).abs() < 5 * standard_errors)
    deviations = ((g - exact_g) ** 2).sum(1)  # |g_i - G|^2, mean tr(Sigma)
    trace_se = float(deviations.std() / math.sqrt(n))
    assert abs(float(deviations.mean()) - exact.trace_cov) < 5 * trace_se


def test_closed_form_identities_on_a_diagonal_covariance():
    cov = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))
    w, w_star = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    stats = linreg_noise_scale(cov, w, w_star, noise_std=1.0)
    # G = C r = (2, 0); r'Cr = 2; tr C = 3; tr C^2 = 5; r'C^3 r = 8
    assert stats.grad_sq_norm == pytest.approx(4.0)
    assert stats.trace_cov == pytest.approx(4.0 + (2.0 + 1.0) * 3.0)
    assert stats.b_simple == pytest.approx(13.0 / 4.0)
    assert stats.b_noise == pytest.approx((8.0 + 3.0 * 5.0) / 8.0)


def test_evaluate_reports_exact_population_losses():
    workload = LinRegWorkload(dim=4, noise_std=2.0)
    model = workload.build_model(0)  # w = 0, r = -w*
    metrics = workload.evaluate(model)
    excess = 0.5 * float(workload.w_star @ workload.cov @ workload.w_star)
    assert metrics["excess_loss"] == pytest.approx(excess)
    assert metrics["loss"] == pytest.approx(excess + 2.0)


def test_covariance_is_what_the_sampler_draws():
    workload = LinRegWorkload(dim=5, data_seed=3)
    x, _ = workload.sample(100_000, torch.Generator().manual_seed(0))
    empirical = np.cov(x.double().numpy().T)
    assert np.allclose(empirical, workload.cov.numpy(), atol=0.02)


def test_expected_loss_recursion_matches_monte_carlo_sgd():
    """iter_linreg_expected_loss against the mean loss of many simulated SGD runs.

    8,000 independent trajectories (w₀ = 0) train with fresh Gaussian batches; their
    mean loss at each of 30 steps must lie within 4 standard errors (estimated from
    the same runs) of the recursion: a wrong term (a missing 1/B, the Isserlis term)
    moves the mean by far more at this size.
    """
    from batchlab.workloads.linreg import iter_linreg_expected_loss

    workload = LinRegWorkload(dim=6, noise_std=0.7, decay=1.0, data_seed=3)
    lr, batch, runs, steps = 0.6, 4, 8000, 30
    cov, w_star = workload.cov, workload.w_star
    sqrt_cov = workload.sqrt_cov
    gen = torch.Generator().manual_seed(0)
    w = torch.zeros(runs, 6, dtype=torch.float64)
    mean, se = [], []
    for _ in range(steps):
        x = torch.randn(runs, batch, 6, generator=gen, dtype=torch.float64) @ sqrt_cov
        y = x @ w_star + 0.7 * torch.randn(runs, batch, generator=gen, dtype=torch.float64)
        residual = torch.einsum("rbd,rd->rb", x, w) - y
        w = w - lr * torch.einsum("rb,rbd->rd", residual, x) / batch
        r = w - w_star
        loss = 0.5 * torch.einsum("rd,de,re->r", r, cov, r) + 0.5 * 0.7**2
        mean.append(float(loss.mean()))
        se.append(float(loss.std() / math.sqrt(runs)))
    eigenvalues = workload.eigenvalues.numpy()
    r0 = (workload.rotation.T @ -w_star).numpy()
    exact = iter_linreg_expected_loss(eigenvalues, r0, 0.7, lrs=[lr], batch_size=batch)
    expected = [float(next(exact)[0]) for _ in range(steps)]
    z = np.abs(np.subtract(mean, expected)) / np.asarray(se)
    assert z.max() < 4.0, z


def test_steps_to_target_is_the_first_step_of_the_expected_loss_below_it():
    from batchlab.workloads.linreg import iter_linreg_expected_loss, linreg_sgd_steps_to_target

    workload = LinRegWorkload(dim=16)
    eigenvalues = workload.eigenvalues.numpy()
    r0 = (workload.rotation.T @ -workload.w_star).numpy()
    lrs = [0.01, 0.3, 1.0, 2.5]  # 2.5 diverges (ηλ_max > 2)
    steps = linreg_sgd_steps_to_target(
        eigenvalues, r0, 1.0, lrs=lrs, batch_size=8, target=0.8, max_steps=2000
    )
    curve = iter_linreg_expected_loss(eigenvalues, r0, 1.0, lrs=lrs, batch_size=8)
    losses = np.array([next(curve) for _ in range(2000)])
    for i, s in enumerate(steps):
        below = np.flatnonzero(losses[:, i] <= 0.8)
        assert s == (below[0] + 1 if below.size else np.inf)
    assert np.isinf(steps[3]) and np.isfinite(steps[1])
