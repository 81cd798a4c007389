"""LAMB against its update rule (DESIGN.md, "Exact update rules"), written out below."""

from __future__ import annotations

import io

import pytest
import torch

from batchlab.optim import LAMB, _lamb

STEPS = 12
RELOAD_AT = 5
LR, BETA1, BETA2, EPS = 0.01, 0.9, 0.99, 1e-6


def reference_lamb_step(ws, gs, ms, vs, t, *, weight_decay, excluded):
    """LAMB step ``t`` (>= 1), straight from the equations, on float64 tensors (in place)."""
    for i, (w, g) in enumerate(zip(ws, gs, strict=True)):
        lam_wd = 0.0 if excluded[i] else weight_decay
        ms[i] = BETA1 * ms[i] + (1 - BETA1) * g
        vs[i] = BETA2 * vs[i] + (1 - BETA2) * g**2
        m_hat = ms[i] / (1 - BETA1**t)
        v_hat = vs[i] / (1 - BETA2**t)
        r = m_hat / (v_hat.sqrt() + EPS) + lam_wd * w
        w_norm, r_norm = w.norm().item(), r.norm().item()
        ratio = 1.0 if excluded[i] or w_norm == 0 or r_norm == 0 else w_norm / r_norm
        w -= LR * ratio * r


def make_problem(seed=0):
    """``weight``: ordinary; ``zeros``: all-zero start (ratio 1 at the first step);
    ``no_grad_signal``: gradient always 0; ``bias``: in an excluded group."""
    gen = torch.Generator().manual_seed(seed)
    initial = [
        torch.randn(6, 5, generator=gen, dtype=torch.float64),
        torch.zeros(4, 3, dtype=torch.float64),
        torch.randn(7, generator=gen, dtype=torch.float64),
        torch.randn(6, generator=gen, dtype=torch.float64),
    ]
    grads = []
    for _ in range(STEPS):
        step = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in initial]
        step[2] = torch.zeros_like(initial[2])
        grads.append(step)
    return initial, grads


def build(params, foreach, weight_decay):
    groups = [{"params": params[:3]}, {"params": params[3:], "lars_exclude": True}]
    return LAMB(
        groups, lr=LR, betas=(BETA1, BETA2), eps=EPS, weight_decay=weight_decay, foreach=foreach
    )


PATHS = ["per-tensor", "per-tensor-device-scalars", "foreach"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_lamb_matches_reference_update_and_reloads_state_midway(weight_decay, path, monkeypatch):
    if path == "per-tensor-device-scalars":
        # On accelerators the per-tensor path keeps norms as 0-d device tensors (no
        # sync); on a CPU they are floats. Force the device branch here.
        monkeypatch.setattr(_lamb, "tensor_norm", torch.linalg.vector_norm)
    foreach = path == "foreach"
    initial, grads = make_problem()
    params = [torch.nn.Parameter(t.clone()) for t in initial]
    expected = [t.clone() for t in initial]
    ms = [torch.zeros_like(t) for t in initial]
    vs = [torch.zeros_like(t) for t in initial]
    excluded = [False, False, False, True]
    optimizer = build(params, foreach, weight_decay)
    for t, step_grads in enumerate(grads, start=1):
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
        reference_lamb_step(
            expected, step_grads, ms, vs, t, weight_decay=weight_decay, excluded=excluded
        )
        for p, g in zip(params, step_grads, strict=True):
            assert torch.equal(p.grad, g), "step() modified p.grad"
        for p, w in zip(params, expected, strict=True):
            torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-14)
        if t == RELOAD_AT:
            # A fresh optimizer, from a serialised state dict, must continue identically
            # (moments and step counts included).
            buffer = io.BytesIO()
            torch.save(optimizer.state_dict(), buffer)
            buffer.seek(0)
            optimizer = build(params, foreach, weight_decay=0.5)
            optimizer.load_state_dict(torch.load(buffer))
            assert optimizer.state[params[0]]["step"].item() == RELOAD_AT


def test_lamb_with_every_group_excluded_is_torch_adam():
    torch.manual_seed(0)
    lamb_model, adam_model = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    adam_model.load_state_dict(lamb_model.state_dict())
    lamb = LAMB([{"params": lamb_model.parameters(), "lars_exclude": True}], lr=0.01, eps=1e-8)
    adam = torch.optim.Adam(adam_model.parameters(), lr=0.01, eps=1e-8)
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    for _ in range(5):
        for model, optimizer in ((lamb_model, lamb), (adam_model, adam)):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    for a, b in zip(lamb_model.parameters(), adam_model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": -1e-3}, "lr"),
        ({"betas": (-0.1, 0.999)}, "betas"),
        ({"betas": (1.0, 0.999)}, "betas"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"betas": (0.9,)}, "betas"),
        ({"eps": -1e-6}, "eps"),
        ({"weight_decay": -0.01}, "weight_decay"),
    ],
)
def test_lamb_rejects_invalid_arguments_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LAMB([torch.nn.Parameter(torch.ones(2))], **kwargs)


def test_lamb_validates_added_param_groups():
    optimizer = LAMB([torch.nn.Parameter(torch.ones(2))])
    with pytest.raises(ValueError, match="betas"):
        optimizer.add_param_group(
            {"params": [torch.nn.Parameter(torch.ones(2))], "betas": (0.9, 1.5)}
        )
