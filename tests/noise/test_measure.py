"""``measure_noise_scale`` against closed forms (linreg, nqm), and the model left untouched.

Statistical tolerances come from the estimator's own standard error: the 95% interval
half-width divided by its t-quantile (~1.98 here) is one SE, and each test first checks
that 5% is at least 3 SE so the comparison is meaningful (a fixed seed makes it
deterministic; at 3 SE a fresh seed would fail ~0.3% of the time).
"""

import json
import math

import pytest
import torch
from torch import nn

from batchlab.noise import measure_noise_scale
from batchlab.workloads import get_workload


def standard_error(result) -> float:
    low, high = result.b_simple_ci
    return (high - low) / 2 / 1.98


def linreg_at_b_simple(target: float, **params):
    """linreg and a model on the segment from w* to 0 where B_simple is about ``target``.

    Near w*, tr Σ ≈ σ² tr C and |G|² = s²|C w*|² for w = (1 − s) w*.
    """
    workload = get_workload("linreg", params)
    model = workload.build_model(0)
    cw = workload.cov @ workload.w_star
    s = math.sqrt(workload.noise_std**2 * float(workload.cov.trace()) / (target * float(cw @ cw)))
    with torch.no_grad():
        model.weight.copy_(((1 - s) * workload.w_star).float()[None])
    return workload, model


def batches_from(workload, count: int, batch_size: int, seed: int):
    """``count`` batches drawn in one call (the sampler is much faster in bulk)."""
    x, y = workload.sample(count * batch_size, torch.Generator().manual_seed(seed))
    return list(zip(x.split(batch_size), y.split(batch_size), strict=True))


def test_b_simple_matches_linreg_closed_form_within_5_percent():
    workload, model = linreg_at_b_simple(150.0)
    exact = workload.noise_scale(model)
    assert 100 < exact.b_simple < 1000
    result = measure_noise_scale(
        model, workload.loss_fn, batches_from(workload, 160, 8192, seed=1), micro_batch_size=512
    )
    assert result.n == 160 and result.micro_batch_size == 512 and result.batch_size == 8192
    assert 0.05 * exact.b_simple >= 3 * standard_error(result)
    assert result.b_simple == pytest.approx(exact.b_simple, rel=0.05)
    low, high = result.b_simple_ci
    assert low < exact.b_simple < high
    # |G|² and tr Σ separately: within 4 of their own standard errors.
    assert abs(result.grad_sq_norm - exact.grad_sq_norm) < 4 * result.grad_sq_norm_se
    assert abs(result.trace_cov - exact.trace_cov) < 4 * result.trace_cov_se


@pytest.mark.slow
def test_linreg_interval_covers_closed_form_in_at_least_90_percent_of_repeats():
    workload, model = linreg_at_b_simple(150.0)
    exact = workload.noise_scale(model).b_simple
    repeats, covered = 60, 0
    for seed in range(repeats):
        batches = batches_from(workload, 40, 2048, seed=100 + seed)
        low, high = measure_noise_scale(model, workload.loss_fn, batches, 256).b_simple_ci
        covered += low <= exact <= high
    # Binomial(60, 0.95): P(fewer than 54 covered) ≈ 3% for a correct 95% interval.
    assert covered / repeats >= 0.9


def test_b_simple_matches_nqm_closed_form_within_5_percent():
    # NQM: an example's gradient is h⊙w + √(c h)⊙z, so Σ = c·H and |G|² = Σ h²w².
    workload = get_workload("nqm", {"dim": 1000, "init": 0.5})
    model = workload.build_model(0)
    exact = workload.noise_scale(model)
    generator = torch.Generator().manual_seed(0)
    stream = workload.train_batches(256, generator)
    batches = [next(stream) for _ in range(200)]
    result = measure_noise_scale(model, workload.loss_fn, batches, micro_batch_size=32)
    assert 0.05 * exact.b_simple >= 3 * standard_error(result)
    assert result.b_simple == pytest.approx(exact.b_simple, rel=0.05)
    assert result.b_simple_ci[0] < exact.b_simple < result.b_simple_ci[1]


def test_b_noise_matches_linreg_closed_form():
    workload, model = linreg_at_b_simple(30.0)
    # Derived here from C, w*, σ² (Isserlis: E[x xᵀ A x xᵀ] = 2 C A C + tr(A C) C):
    # g = x xᵀ r − σ ε x, G = C r, Σ = C r rᵀ C + (rᵀ C r + σ²) C, and H = C, so
    # tr(HΣ) = rᵀC³r + (rᵀCr + σ²) tr C², GᵀHG = rᵀC³r.
    cov = workload.cov
    r = workload.weights(model) - workload.w_star
    cr = cov @ r
    curvature = float(cr @ cov @ cr)
    trace_h_cov = curvature + (float(r @ cr) + workload.noise_std**2) * float((cov @ cov).trace())
    b_noise = trace_h_cov / curvature
    assert b_noise == pytest.approx(workload.noise_scale(model).b_noise, rel=1e-9)

    result = measure_noise_scale(
        model, workload.loss_fn, batches_from(workload, 200, 1024, seed=3), b_noise=True
    )
    low, high = result.b_noise_ci
    assert low < b_noise < high
    # 100 independent pairs; 3 SE of this estimate (half-width / t-quantile ≈ 1.98).
    assert abs(result.b_noise - b_noise) < 3 * (high - low) / 2 / 1.98
    assert abs(result.b_noise - b_noise) < 0.1 * b_noise


class SmallNet(nn.Module):
    """Conv + BatchNorm + a frozen-mode submodule: buffers and mixed train/eval flags."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm1d(4)
        self.head = nn.Linear(4 * 8, 3)

    def forward(self, x):
        return self.head(self.norm(self.conv(x.unsqueeze(1))).relu().flatten(1))


def _loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _classification_batches(count, size, seed):
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(size, 8, generator=generator),
            torch.randint(0, 3, (size,), generator=generator),
        )
        for _ in range(count)
    ]


def test_measure_leaves_parameters_grads_modes_buffers_and_rng_bit_identical():
    torch.manual_seed(0)
    model = SmallNet()
    model.train()
    model.norm.eval()  # a mixed-mode model must stay mixed
    model.norm.train()
    model.head.eval()
    _loss(model, _classification_batches(1, 16, 0)[0]).backward()
    model.conv.bias.grad = None  # some .grad present, some None
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    modes = {n: m.training for n, m in model.named_modules()}
    rng = torch.get_rng_state()

    result = measure_noise_scale(model, _loss, _classification_batches(5, 16, 1))

    assert result.n == 5 and result.micro_batch_size == 4
    for name, p in model.named_parameters():
        assert torch.equal(p, params[name])
        assert (p.grad is None) == (grads[name] is None)
        if p.grad is not None:
            assert torch.equal(p.grad, grads[name])
    for name, b in model.named_buffers():
        assert torch.equal(b, buffers[name]), name
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert torch.equal(torch.get_rng_state(), rng)


def test_per_module_estimates_add_up_to_the_model():
    torch.manual_seed(0)
    model = SmallNet()
    result = measure_noise_scale(model, _loss, _classification_batches(6, 32, 2), 8)
    assert set(result.per_module) == {"conv", "norm", "head"}
    assert sum(m.grad_sq_norm for m in result.per_module.values()) == pytest.approx(
        result.grad_sq_norm, rel=1e-6
    )
    assert sum(m.trace_cov for m in result.per_module.values()) == pytest.approx(
        result.trace_cov, rel=1e-6
    )
    assert all(m.n == 6 for m in result.per_module.values())


def test_result_is_frozen_and_its_dict_is_json_safe():
    torch.manual_seed(0)
    model = SmallNet()
    result = measure_noise_scale(model, _loss, _classification_batches(1, 8, 3))
    assert result.n == 1 and all(math.isnan(v) for v in result.b_simple_ci)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["b_simple_ci"] == [None, None]
    assert data["history"][0]["step"] == 0 and data["batch_size"] == 8
    assert set(data["per_module"]) == {"conv", "norm", "head"}
    with pytest.raises(AttributeError):
        result.b_simple = 1.0


def test_tensor_batches_are_split_along_the_first_dimension():
    workload = get_workload("nqm", {"dim": 50})
    model = workload.build_model(0)
    stream = workload.train_batches(12, torch.Generator().manual_seed(0))
    result = measure_noise_scale(model, workload.loss_fn, [next(stream) for _ in range(3)], 3)
    assert result.micro_batch_size == 3 and result.batch_size == 12 and result.n == 3


@pytest.mark.parametrize(
    ("size", "micro", "message"),
    [
        (10, 3, "micro_batch_size=3 does not divide the 10 examples of batch 0"),
        (8, 8, "micro_batch_size=8 leaves 1 micro-batch in batch 0 of 8 examples"),
        (8, 16, "micro_batch_size=16 does not divide the 8 examples"),
        (10, None, "batch 0 has 10 examples, which does not split into 4"),
        (8, 0, "micro_batch_size must be a positive integer"),
    ],
)
def test_bad_micro_batch_size_is_a_value_error_naming_the_sizes(size, micro, message):
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=message):
        measure_noise_scale(SmallNet(), _loss, _classification_batches(2, size, 0), micro)


def test_model_without_trainable_parameters_is_a_value_error():
    model = SmallNet().requires_grad_(False)
    with pytest.raises(ValueError, match=r"no trainable parameters \(0 of 6"):
        measure_noise_scale(model, _loss, _classification_batches(2, 8, 0))


def test_no_batches_and_non_scalar_losses_are_value_errors():
    with pytest.raises(ValueError, match="batches is empty"):
        measure_noise_scale(SmallNet(), _loss, [])
    with pytest.raises(ValueError, match="scalar"):
        measure_noise_scale(
            SmallNet(),
            lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1], reduction="none"),
            _classification_batches(1, 8, 0),
        )


def test_nan_gradient_batch_is_skipped_with_a_warning():
    torch.manual_seed(0)
    model = SmallNet()
    batches = _classification_batches(4, 8, 0)
    batches[1][0][0, 0] = math.nan
    with pytest.warns(RuntimeWarning, match="batch 1 has a NaN/inf gradient; skipped"):
        result = measure_noise_scale(model, _loss, batches)
    assert result.n == 3 and result.skipped == 1
    assert math.isfinite(result.b_simple)
    assert [r.step for r in result.history] == [0, 2, 3]
