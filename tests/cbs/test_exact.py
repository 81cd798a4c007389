"""Expected branch curves on linreg and nqm: the recurrences against simulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from batchlab.cbs import exact_branch_curve, linreg_expected_excess_loss, snapshot, train_base_run
from batchlab.workloads import get_workload
from batchlab.workloads.nqm import nqm_expected_loss


def simulate_linreg(workload, r0, *, lr, batch_size, steps, runs, seed):
    """Mean and standard error of the excess loss of ``runs`` independent SGD runs (float64)."""
    g = torch.Generator().manual_seed(seed)
    w_star, cov, sqrt_cov = workload.w_star, workload.cov, workload.sqrt_cov
    w = (w_star + torch.as_tensor(r0)).expand(runs, -1).clone()
    out = {}
    for t in range(1, max(steps) + 1):
        x = torch.randn(runs, batch_size, workload.dim, generator=g, dtype=torch.float64) @ sqrt_cov
        y = x @ w_star + workload.noise_std * torch.randn(
            runs, batch_size, generator=g, dtype=torch.float64
        )
        residual = (x @ w.unsqueeze(-1)).squeeze(-1) - y
        w = w - lr * (residual.unsqueeze(-1) * x).mean(1)
        if t in steps:
            r = w - w_star
            excess = 0.5 * ((r @ cov) * r).sum(1)
            out[t] = (float(excess.mean()), float(excess.std() / runs**0.5))
    return out


@pytest.mark.parametrize(("lr", "batch_size"), [(0.3, 4), (0.1, 1), (0.6, 32)])
def test_linreg_recurrence_matches_simulation(lr, batch_size):
    workload = get_workload("linreg", {"dim": 8})
    r0 = -workload.w_star.numpy()  # w = 0
    steps = [1, 3, 10, 40]
    exact = linreg_expected_excess_loss(
        workload.cov.numpy(), r0, workload.noise_std, lr=lr, batch_size=batch_size, eval_steps=steps
    )
    simulated = simulate_linreg(workload, r0, lr=lr, batch_size=batch_size, steps=steps,
                                runs=4000, seed=0)  # fmt: skip
    for step, value in zip(steps, exact, strict=True):
        mean, se = simulated[step]
        # 4 standard errors: a 6e-5 chance per comparison under the null.
        assert abs(value - mean) < 4 * se, (step, value, mean, se)


def test_linreg_recurrence_reports_divergence_as_inf():
    workload = get_workload("linreg", {"dim": 8})
    values = linreg_expected_excess_loss(
        workload.cov.numpy(), -workload.w_star.numpy(), 1.0, lr=5.0, batch_size=2,
        eval_steps=[1, 2000],
    )  # fmt: skip
    assert np.isfinite(values[0]) and values[1] == np.inf


def test_nqm_branch_curve_starts_from_the_checkpoint_weights():
    nqm = get_workload("nqm", {"dim": 50})
    (checkpoint,) = train_base_run(nqm, [20], batch_size=4, optimizer="sgd", hparams={"lr": 0.5})
    steps = [0, 1, 5, 50]
    curve = exact_branch_curve(
        nqm, checkpoint, metric="loss", optimizer="sgd", hparams={}, optimizer_state="resume",
        lr=0.3, batch_size=8, eval_steps=steps,
    )  # fmt: skip
    expected = nqm_expected_loss(nqm.curvature, nqm.noise, checkpoint.model_state["w"].double().numpy(),
                                 lr=0.3, batch_size=8, eval_steps=steps)  # fmt: skip
    np.testing.assert_allclose(curve, expected)
    assert curve[0] == pytest.approx(checkpoint.metrics["loss"], rel=1e-6)


def test_unknown_dynamics_have_no_exact_curve():
    nqm = get_workload("nqm", {"dim": 50})
    ck = train_base_run(nqm, [5], batch_size=4, optimizer="momentum",
                        hparams={"lr": 0.1, "momentum": 0.9})[0]  # fmt: skip
    common = {"metric": "loss", "lr": 0.1, "batch_size": 4, "eval_steps": [1]}
    # Momentum buffers carried over: the 3x3 system would need their cross moments.
    assert exact_branch_curve(nqm, ck, optimizer="momentum", hparams={"momentum": 0.9},
                              optimizer_state="resume", **common) is None  # fmt: skip
    assert exact_branch_curve(nqm, ck, optimizer="momentum", hparams={"momentum": 0.9},
                              optimizer_state="reset", **common) is not None  # fmt: skip
    assert exact_branch_curve(nqm, ck, optimizer="adam", hparams={},
                              optimizer_state="reset", **common) is None  # fmt: skip
    linreg = get_workload("linreg", {})
    plain = snapshot(0, linreg.build_model(0))
    assert exact_branch_curve(linreg, plain, optimizer="sgd", hparams={}, optimizer_state="reset",
                              **{**common, "metric": "excess_loss"}) is not None  # fmt: skip
    assert exact_branch_curve(linreg, plain, optimizer="sgd", hparams={"weight_decay": 0.1},
                              optimizer_state="reset", **{**common, "metric": "loss"}) is None  # fmt: skip
