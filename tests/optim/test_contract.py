"""What LARS and LAMB share with every torch optimizer: closures, and one update
whichever code path (per-tensor or multi-tensor) computes it."""

from __future__ import annotations

import pytest
import torch

from batchlab.optim import LAMB, LARS

OPTIMIZERS = [
    pytest.param(lambda params, **kw: LARS(params, lr=0.5, weight_decay=0.01, nesterov=True, **kw),
                 id="lars"),
    pytest.param(lambda params, **kw: LAMB(params, lr=0.01, weight_decay=0.01, **kw), id="lamb"),
]


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
