"""LARS and LAMB against their exact update rules (DESIGN.md, "Exact update rules"),
written out below, and against what every torch optimizer does: closures, param-group
checks, one update whichever code path (per-tensor or multi-tensor) computes it.

Each property is one test, parametrized over the two optimizers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
import torch

from batchlab.optim import LAMB, LARS, _lamb, _lars

STEPS = 12
RELOAD_AT = 5
#: The last tensor of make_problem() is in a group with ``lars_exclude=True``.
EXCLUDED = [False, False, False, True]
PATHS = ["per-tensor", "per-tensor-device-scalars", "foreach"]


class ReferenceLARS:
    """LARS straight from the equations, on float64 tensors (in place on ``ws``)."""

    def __init__(self, *, lr, trust_coefficient, eps, momentum, weight_decay, nesterov):
        self.lr, self.eta, self.eps = lr, trust_coefficient, eps
        self.momentum, self.weight_decay, self.nesterov = momentum, weight_decay, nesterov
        self.bufs: dict[int, torch.Tensor] = {}

    def step(self, ws, gs, excluded):
        for i, (w, g) in enumerate(zip(ws, gs, strict=True)):
            beta = 0.0 if excluded[i] else self.weight_decay
            d = g + beta * w
            w_norm, g_norm = w.norm().item(), g.norm().item()
            if excluded[i] or w_norm == 0 or g_norm == 0:
                lam = 1.0
            else:
                lam = self.eta * w_norm / (g_norm + beta * w_norm + self.eps)
            buf = self.bufs.get(i)
            buf = self.bufs[i] = lam * d if buf is None else self.momentum * buf + lam * d
            if self.nesterov:
                w -= self.lr * (lam * d + self.momentum * buf)
            else:
                w -= self.lr * buf


class ReferenceLAMB:
    """LAMB straight from the equations, on float64 tensors (in place on ``ws``)."""

    def __init__(self, *, lr, betas, eps, weight_decay):
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.weight_decay = weight_decay
        self.ms: dict[int, torch.Tensor] = {}
        self.vs: dict[int, torch.Tensor] = {}
        self.t = 0

    def step(self, ws, gs, excluded):
        self.t += 1
        b1, b2, t = self.beta1, self.beta2, self.t
        for i, (w, g) in enumerate(zip(ws, gs, strict=True)):
            lam_wd = 0.0 if excluded[i] else self.weight_decay
            m = self.ms[i] = b1 * self.ms.get(i, torch.zeros_like(g)) + (1 - b1) * g
            v = self.vs[i] = b2 * self.vs.get(i, torch.zeros_like(g)) + (1 - b2) * g**2
            m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
            r = m_hat / (v_hat.sqrt() + self.eps) + lam_wd * w
            w_norm, r_norm = w.norm().item(), r.norm().item()
            ratio = 1.0 if excluded[i] or w_norm == 0 or r_norm == 0 else w_norm / r_norm
            w -= self.lr * ratio * r


@dataclass(frozen=True)
class Spec:
    """An optimizer, the module of its update, its fixed settings and its reference."""

    optimizer: type[torch.optim.Optimizer]
    module: ModuleType
    fixed: dict[str, Any]
    reference: type
    #: The per-parameter state entry that counts steps, if it keeps one.
    step_key: str | None

    def build(self, params, foreach, **hparams):
        groups = [{"params": params[:3]}, {"params": params[3:], "lars_exclude": True}]
        return self.optimizer(groups, foreach=foreach, **self.fixed, **hparams)


LARS_SPEC = Spec(LARS, _lars, {"lr": 0.3, "trust_coefficient": 0.02, "eps": 1e-8},
                 ReferenceLARS, step_key=None)  # fmt: skip
LAMB_SPEC = Spec(LAMB, _lamb, {"lr": 0.01, "betas": (0.9, 0.99), "eps": 1e-6},
                 ReferenceLAMB, step_key="step")  # fmt: skip

REFERENCE_CASES = [
    pytest.param(LARS_SPEC, {"momentum": 0.9, "weight_decay": 0.05, "nesterov": False},
                 id="lars-momentum-wd"),
    pytest.param(LARS_SPEC, {"momentum": 0.9, "weight_decay": 0.05, "nesterov": True},
                 id="lars-nesterov-wd"),
    pytest.param(LARS_SPEC, {"momentum": 0.9, "weight_decay": 0.0, "nesterov": False},
                 id="lars-momentum"),
    pytest.param(LARS_SPEC, {"momentum": 0.0, "weight_decay": 0.05, "nesterov": False},
                 id="lars-no-momentum"),
    pytest.param(LAMB_SPEC, {"weight_decay": 0.0}, id="lamb"),
    pytest.param(LAMB_SPEC, {"weight_decay": 0.1}, id="lamb-wd"),
]  # fmt: skip


def make_problem(seed=0):
    """Parameters covering every case, and a gradient sequence for them.

    ``weight``: ordinary; ``zeros``: all-zero start (trust ratio 1 at the first step);
    ``no_grad_signal``: gradient always 0 (ratio 1 for LARS); ``bias``: excluded.
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


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("spec", "hparams"), REFERENCE_CASES)
def test_matches_reference_update_and_reloads_state_midway(spec, hparams, path, monkeypatch):
    if path == "per-tensor-device-scalars":
        # On accelerators the per-tensor path keeps norms as 0-d device tensors (no
        # sync); on a CPU they are floats. Force the device branch here.
        monkeypatch.setattr(spec.module, "tensor_norm", torch.linalg.vector_norm)
    foreach = path == "foreach"
    initial, grads = make_problem()
    params = [torch.nn.Parameter(t.clone()) for t in initial]
    expected = [t.clone() for t in initial]
    reference = spec.reference(**spec.fixed, **hparams)
    optimizer = spec.build(params, foreach, **hparams)
    for step, step_grads in enumerate(grads, start=1):
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
        reference.step(expected, step_grads, EXCLUDED)
        for p, g in zip(params, step_grads, strict=True):
            assert torch.equal(p.grad, g), "step() modified p.grad"
        for p, w in zip(params, expected, strict=True):
            torch.testing.assert_close(p.detach(), w, rtol=1e-12, atol=1e-14)
        if step == RELOAD_AT:
            # A fresh optimizer built with another weight decay, from a serialised state
            # dict, must continue identically (moments and step counts included).
            saved = optimizer.state_dict()
            buffer = io.BytesIO()
            torch.save(saved, buffer)
            buffer.seek(0)
            other = {**hparams, "weight_decay": hparams["weight_decay"] + 0.5}
            optimizer = spec.build(params, foreach, **other)
            optimizer.load_state_dict(torch.load(buffer))
            assert optimizer.param_groups[0]["weight_decay"] == hparams["weight_decay"]
            torch.testing.assert_close(optimizer.state_dict()["state"], saved["state"])
            if spec.step_key is not None:
                assert optimizer.state[params[0]][spec.step_key].item() == RELOAD_AT


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        pytest.param(
            lambda params: LARS([{"params": params, "lars_exclude": True}], lr=0.1,
                                momentum=0.9, weight_decay=0.01, nesterov=False),
            lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=False),
            id="lars-is-sgd",
        ),
        pytest.param(
            lambda params: LARS([{"params": params, "lars_exclude": True}], lr=0.1,
                                momentum=0.9, weight_decay=0.01, nesterov=True),
            lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True),
            id="lars-nesterov-is-sgd-nesterov",
        ),
        pytest.param(
            lambda params: LAMB([{"params": params, "lars_exclude": True}], lr=0.01, eps=1e-8),
            lambda params: torch.optim.Adam(params, lr=0.01, eps=1e-8),
            id="lamb-is-adam",
        ),
    ],
)  # fmt: skip
def test_with_every_group_excluded_is_its_torch_counterpart(ours, theirs):
    torch.manual_seed(0)
    our_model, their_model = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    their_model.load_state_dict(our_model.state_dict())
    optimizers = ours(our_model.parameters()), theirs(their_model.parameters())
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    for _ in range(5):
        for model, optimizer in zip((our_model, their_model), optimizers, strict=True):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    for a, b in zip(our_model.parameters(), their_model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("optimizer", [LARS, LAMB])
def test_parameters_without_gradients_are_skipped(optimizer):
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = optimizer([a, b], lr=0.1)
    a.grad = torch.ones(2)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(2))
    assert b not in opt.state


@pytest.mark.parametrize(
    ("optimizer", "kwargs", "name"),
    [
        (LARS, {"lr": -0.1}, "lr"),
        (LARS, {"momentum": -0.5}, "momentum"),
        (LARS, {"weight_decay": -1e-4}, "weight_decay"),
        (LARS, {"trust_coefficient": 0.0}, "trust_coefficient"),
        (LARS, {"trust_coefficient": -0.001}, "trust_coefficient"),
        (LARS, {"eps": -1e-8}, "eps"),
        (LARS, {"nesterov": True, "momentum": 0.0}, "nesterov"),
        (LARS, {"lr": float("nan")}, "lr"),
        (LAMB, {"lr": -1e-3}, "lr"),
        (LAMB, {"betas": (-0.1, 0.999)}, "betas"),
        (LAMB, {"betas": (1.0, 0.999)}, "betas"),
        (LAMB, {"betas": (0.9, 1.0)}, "betas"),
        (LAMB, {"betas": (0.9,)}, "betas"),
        (LAMB, {"eps": -1e-6}, "eps"),
        (LAMB, {"weight_decay": -0.01}, "weight_decay"),
    ],
)
def test_invalid_arguments_are_rejected_naming_them(optimizer, kwargs, name):
    params = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError, match=name):
        optimizer(params, **{"lr": 0.1, **kwargs})


@pytest.mark.parametrize(
    ("optimizer", "group", "name"),
    [(LARS, {"momentum": -1}, "momentum"), (LAMB, {"betas": (0.9, 1.5)}, "betas")],
)
def test_added_param_groups_are_validated(optimizer, group, name):
    opt = optimizer([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match=name):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], **group})


OPTIMIZERS = [
    pytest.param(lambda params, **kw: LARS(params, lr=0.5, weight_decay=0.01, nesterov=True, **kw),
                 id="lars"),
    pytest.param(lambda params, **kw: LAMB(params, lr=0.01, weight_decay=0.01, **kw), id="lamb"),
]  # fmt: skip


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_foreach_and_per_tensor_paths_agree_on_mixed_dtypes(make):
    gen = torch.Generator().manual_seed(1)
    shapes_dtypes = [((4, 3), torch.float32), ((5,), torch.float64), ((2, 2), torch.float32)]
    initial = [torch.randn(s, generator=gen, dtype=dt) for s, dt in shapes_dtypes]
    grads = [
        [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in initial] for _ in range(4)
    ]
    results = []
    for foreach in (False, True):
        params = [torch.nn.Parameter(t.clone()) for t in initial]
        optimizer = make(params, foreach=foreach)
        for step_grads in grads:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
        results.append(params)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_step_calls_closure_and_returns_its_loss(make):
    w = torch.nn.Parameter(torch.ones(3))
    optimizer = make([w])
    calls = []

    def closure():
        calls.append(1)
        loss = (w**2).sum()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert calls == [1]
    assert loss is not None and loss.item() == 3.0
    assert not torch.equal(w.detach(), torch.ones(3))
