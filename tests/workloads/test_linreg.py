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
