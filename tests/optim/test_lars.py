"""LARS against its update rule (DESIGN.md, "Exact update rules"), written out below."""

from __future__ import annotations

import io

import pytest
import torch

from batchlab.optim import LARS, _lars

STEPS = 12
RELOAD_AT = 5
LR, ETA, EPS = 0.3, 0.02, 1e-8


def reference_lars_step(ws, gs, bufs, *, momentum, weight_decay, nesterov, excluded):
    """One LARS step, straight from the equations, on float64 tensors (in place on ``ws``)."""
    for i, (w, g) in enumerate(zip(ws, gs, strict=True)):
        beta = 0.0 if excluded[i] else weight_decay
        d = g + beta * w
        w_norm, g_norm = w.norm().item(), g.norm().item()
        if excluded[i] or w_norm == 0 or g_norm == 0:
            lam = 1.0
        else:
            lam = ETA * w_norm / (g_norm + beta * w_norm + EPS)
        bufs[i] = lam * d if bufs[i] is None else momentum * bufs[i] + lam * d
        if nesterov:
            w -= LR * (lam * d + momentum * bufs[i])
        else:
            w -= LR * bufs[i]


def make_problem(seed=0):
    """Parameters covering every case, and a gradient sequence for them.

    ``weight``: ordinary; ``zeros``: all-zero start (λ = 1 at the first step);
    ``no_grad_signal``: gradient always 0 (λ = 1); ``bias``: in an excluded group.
    """
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    zeros = torch.zeros(4, 3, dtype=torch.float64)
    no_grad_signal = torch.randn(7, generator=gen, dtype=torch.float64)
    bias = torch.randn(6, generator=gen, dtype=torch.float64)
    initial = [weight, zeros, no_grad_signal, bias]
    grads = []
    for _ in range(STEPS):
        step = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in initial]
        step[2] = torch.zeros_like(no_grad_signal)
        grads.append(step)
    return initial, grads


def build(params, foreach, **hparams):
    groups = [{"params": params[:3]}, {"params": params[3:], "lars_exclude": True}]
    return LARS(groups, lr=LR, trust_coefficient=ETA, eps=EPS, foreach=foreach, **hparams)


CASES = [
    pytest.param({"momentum": 0.9, "weight_decay": 0.05, "nesterov": False}, id="momentum-wd"),
    pytest.param({"momentum": 0.9, "weight_decay": 0.05, "nesterov": True}, id="nesterov-wd"),
    pytest.param({"momentum": 0.9, "weight_decay": 0.0, "nesterov": False}, id="momentum"),
    pytest.param({"momentum": 0.0, "weight_decay": 0.05, "nesterov": False}, id="no-momentum"),
]


PATHS = ["per-tensor", "per-tensor-device-scalars", "foreach"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("hparams", CASES)
def test_lars_matches_reference_update_and_reloads_state_midway(hparams, path, monkeypatch):
    if path == "per-tensor-device-scalars":
        # On accelerators the per-tensor path keeps norms as 0-d device tensors (no
        # sync); on a CPU they are floats. Force the device branch here.
        monkeypatch.setattr(_lars, "tensor_norm", torch.linalg.vector_norm)
    foreach = path == "foreach"
    initial, grads = make_problem()
    params = [torch.nn.Parameter(t.clone()) for t in initial]
    expected = [t.clone() for t in initial]
    bufs = [None] * len(expected)
    excluded = [False, False, False, True]
    optimizer = build(params, foreach, **hparams)
    for step, step_grads in enumerate(grads, start=1):
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
        reference_lars_step(expected, step_grads, bufs, excluded=excluded, **hparams)
        for p, g in zip(params, step_grads, strict=True):
            assert torch.equal(p.grad, g), "step() modified p.grad"
        for p, w in zip(params, expected, strict=True):
            torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-14)
        if step == RELOAD_AT:
            # A fresh optimizer, from a serialised state dict, must continue identically.
            buffer = io.BytesIO()
            torch.save(optimizer.state_dict(), buffer)
            buffer.seek(0)
            optimizer = build(params, foreach, **{**hparams, "weight_decay": 0.0})
            optimizer.load_state_dict(torch.load(buffer))
            assert optimizer.param_groups[0]["weight_decay"] == hparams["weight_decay"]


@pytest.mark.parametrize("nesterov", [False, True])
def test_lars_with_every_group_excluded_is_torch_sgd(nesterov):
    torch.manual_seed(0)
    lars_model, sgd_model = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    sgd_model.load_state_dict(lars_model.state_dict())
    lars = LARS(
        [{"params": lars_model.parameters(), "lars_exclude": True}],
        lr=0.1,
        momentum=0.9,
        weight_decay=0.01,
        nesterov=nesterov,
    )
    sgd = torch.optim.SGD(sgd_model.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov)
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    for _ in range(5):
        for model, optimizer in ((lars_model, lars), (sgd_model, sgd)):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    for a, b in zip(lars_model.parameters(), sgd_model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_lars_skips_parameters_without_gradients():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = LARS([a, b], lr=0.1)
    a.grad = torch.ones(2)
    optimizer.step()
    assert torch.equal(b.detach(), torch.ones(2))
    assert b not in optimizer.state


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": -0.1}, "lr"),
        ({"momentum": -0.5}, "momentum"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"trust_coefficient": 0.0}, "trust_coefficient"),
        ({"trust_coefficient": -0.001}, "trust_coefficient"),
        ({"eps": -1e-8}, "eps"),
        ({"nesterov": True, "momentum": 0.0}, "nesterov"),
        ({"lr": float("nan")}, "lr"),
    ],
)
def test_lars_rejects_invalid_arguments_naming_them(kwargs, name):
    params = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError, match=name):
        LARS(params, **{"lr": 0.1, **kwargs})


def test_lars_validates_added_param_groups():
    optimizer = LARS([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="momentum"):
        optimizer.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "momentum": -1})
