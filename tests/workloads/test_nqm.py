"""The NQM's exact expected-loss recurrences against simulated stochastic runs."""

import numpy as np
import pytest
import torch

from batchlab import get_workload
from batchlab.workloads.nqm import NQMWorkload, nqm_expected_loss


def test_loss_fn_gradient_is_curvature_times_w_plus_scaled_mean_noise():
    workload = NQMWorkload(dim=20, noise_scale=3.0)
    model = workload.build_model(seed=0)
    batch = torch.randn(8, 20, generator=torch.Generator().manual_seed(1))
    workload.loss_fn(model, batch).backward()
    h = torch.from_numpy(workload.curvature).float()
    expected = h * model.w.detach() + (3.0 * h).sqrt() * batch.mean(0)
    torch.testing.assert_close(model.w.grad, expected)


def test_evaluate_is_the_exact_quadratic_loss_at_start():
    workload = NQMWorkload(dim=100)
    assert workload.evaluate(workload.build_model(0))["loss"] == pytest.approx(
        0.5 * workload.curvature.sum()
    )


@pytest.mark.parametrize(
    ("optimizer", "momentum"), [("sgd", 0.0), ("momentum", 0.8), ("nesterov", 0.8)]
)
def test_expected_loss_matches_average_of_simulated_torch_sgd_runs(optimizer, momentum):
    workload = NQMWorkload(dim=64, noise_scale=2.0)
    runs, batch_size, lr, eval_steps = 2000, 2, 0.4, [1, 5, 20, 60]
    generator = torch.Generator().manual_seed(0)
    h = torch.from_numpy(workload.curvature)
    noise_std = torch.from_numpy(workload.noise).sqrt()
    # Many independent runs as rows of one parameter: torch.optim.SGD acts elementwise,
    # so each row is exactly one run of SGD on the NQM.
    w = torch.nn.Parameter(torch.from_numpy(workload.w0).repeat(runs, 1))
    sgd = torch.optim.SGD([w], lr=lr, momentum=momentum, nesterov=optimizer == "nesterov")
    simulated = {}
    for step in range(1, eval_steps[-1] + 1):
        z = torch.randn(runs, batch_size, h.numel(), generator=generator, dtype=torch.float64)
        w.grad = h * w.detach() + noise_std * z.mean(1)
        sgd.step()
        if step in eval_steps:
            simulated[step] = (0.5 * (h * w.detach() ** 2).sum(1)).numpy()
    exact = workload.iter_exact_metrics(
        {"optimizer": optimizer, "lr": lr, "momentum": momentum}, batch_size, eval_steps
    )
    for step, metrics in zip(eval_steps, exact, strict=True):
        losses = simulated[step]
        standard_error = losses.std(ddof=1) / np.sqrt(runs)
        # 4 standard errors: a false alarm has probability ~6e-5 per comparison.
        assert abs(losses.mean() - metrics["loss"]) < 4 * standard_error, (step, optimizer)


def test_exact_loss_converges_to_the_sgd_steady_state():
    # Plain SGD, one coordinate: p' = (1 - lr h)^2 p + lr^2 c h / B, fixed point
    # p* = lr c / (B (2 - lr h)).
    h, c, lr, batch = np.array([0.5]), np.array([0.5 * 3.0]), 0.2, 8
    loss = nqm_expected_loss(h, c, np.array([1.0]), lr=lr, batch_size=batch, eval_steps=[5000])
    p_star = lr * 3.0 / (batch * (2 - lr * 0.5))
    assert loss[0] == pytest.approx(0.5 * 0.5 * p_star, rel=1e-9)


def test_divergent_learning_rate_gives_inf_and_stays_inf():
    workload = get_workload("nqm", {"dim": 10})
    losses = [m["loss"] for m in workload.iter_exact_metrics({"lr": 2.5}, 1, range(0, 2000, 100))]
    assert losses[0] < np.inf and losses[-1] == np.inf
    first_inf = losses.index(np.inf)
    assert all(value == np.inf for value in losses[first_inf:])


def test_exact_metrics_reject_unknown_hyperparameters_and_optimizers():
    workload = NQMWorkload(dim=10)
    with pytest.raises(ValueError, match="only lr and momentum"):
        next(workload.iter_exact_metrics({"lr": 0.1, "beta2": 0.9}, 1, [1]))
    with pytest.raises(ValueError, match="sgd, momentum, nesterov"):
        next(workload.iter_exact_metrics({"optimizer": "adam", "lr": 0.1}, 1, [1]))


def test_exact_noise_scale_at_start_matches_formula():
    workload = NQMWorkload(dim=1000, noise_scale=2.0)
    stats = workload.noise_scale(workload.build_model(0))
    h = workload.curvature
    assert stats.trace_cov == pytest.approx(2.0 * h.sum())
    assert stats.grad_sq_norm == pytest.approx((h**2).sum())
    assert stats.b_simple == pytest.approx(2.0 * h.sum() / (h**2).sum())
