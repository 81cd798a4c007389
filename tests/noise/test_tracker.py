"""``NoiseScaleTracker``: hooks during ordinary training loops give the same numbers as
``measure_noise_scale``, with accumulation, clipping, loss scaling and frozen layers."""

import json
import logging
import math
import warnings

import pytest
import torch
from torch import nn

from batchlab.noise import (
    NoiseScaleStatistics,
    NoiseScaleTracker,
    measure_noise_scale,
)
from batchlab.results import parse_noise_scale
from batchlab.workloads import get_workload


def split(batch, micro_batch_size):
    if isinstance(batch, torch.Tensor):
        return list(batch.split(micro_batch_size))
    return list(zip(*(t.split(micro_batch_size) for t in batch), strict=True))


def accumulate(model, loss_fn, batch, micro_batch_size, *, scale=1.0, scaler=None):
    """The usual gradient-accumulation idiom: each micro-batch loss divided by k."""
    parts = split(batch, micro_batch_size)
    for part in parts:
        loss = loss_fn(model, part) / len(parts)
        if scaler is not None:
            loss = scaler.scale(loss)
        (loss * scale).backward()


def full_batch_sq_norm(model, loss_fn, batch) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model, batch), params)
    return float(sum(g.double().square().sum() for g in grads))


@pytest.fixture(scope="module")
def shakespeare():
    workload = get_workload(
        "shakespeare-char",
        {"context": 16, "width": 32, "layers": 2, "heads": 2, "num_val_windows": 8},
    )
    stream = workload.train_batches(32, torch.Generator().manual_seed(0))
    return workload, [next(stream) for _ in range(5)]


def run_tracker(model, loss_fn, batches, micro, **kwargs):
    """Measure with the tracker at fixed parameters (no optimizer step)."""
    with NoiseScaleTracker(model, **kwargs) as tracker:
        for batch in batches:
            accumulate(model, loss_fn, batch, micro)
            tracker.step()
            model.zero_grad()
    return tracker


def test_tracker_big_batch_norm_equals_one_full_batch_backward(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    tracker = run_tracker(model, workload.loss_fn, batches, 16)
    for record, batch in zip(tracker.history, batches, strict=True):
        assert record.sq_norm_big == pytest.approx(
            full_batch_sq_norm(model, workload.loss_fn, batch), rel=1e-5
        )
        assert (record.b_small, record.b_big) == (16, 64)


def test_tracker_agrees_with_measure_noise_scale_at_the_same_parameters(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    tracked = run_tracker(model, workload.loss_fn, batches, 16).result()
    measured = measure_noise_scale(model, workload.loss_fn, batches, micro_batch_size=16)
    for field in ("b_simple", "grad_sq_norm", "trace_cov"):
        assert getattr(tracked, field) == pytest.approx(getattr(measured, field), rel=1e-4)
    assert tracked.b_simple_ci == pytest.approx(measured.b_simple_ci, rel=1e-4)
    assert tracked.n == measured.n == len(batches)
    assert tracked.per_module.keys() == measured.per_module.keys()
    for name, module in tracked.per_module.items():
        assert module.trace_cov == pytest.approx(measured.per_module[name].trace_cov, rel=1e-4)


def test_tracker_on_layernorm_transformer_agrees_with_measure_noise_scale(shakespeare):
    workload, batches = shakespeare
    model = workload.build_model(0)
    tracker = run_tracker(model, workload.loss_fn, batches, 8)
    measured = measure_noise_scale(model, workload.loss_fn, batches, micro_batch_size=8)
    assert tracker.b_simple == pytest.approx(measured.b_simple, rel=1e-4)
    assert tracker.grad_sq_norm == pytest.approx(measured.grad_sq_norm, rel=1e-4)
    assert tracker.history[0].sq_norm_big == pytest.approx(
        full_batch_sq_norm(model, workload.loss_fn, batches[0]), rel=1e-5
    )
    assert "blocks.0.ln1" in tracker.per_module  # LayerNorm parameters are measured too


def test_tracker_measures_before_gradient_clipping(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    reference = run_tracker(model, workload.loss_fn, batches, 16)
    with NoiseScaleTracker(model) as tracker:
        for batch in batches:
            accumulate(model, workload.loss_fn, batch, 16)
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e-3)
            tracker.step()
            model.zero_grad()
    assert tracker.b_simple == pytest.approx(reference.b_simple, rel=1e-6)
    assert tracker.history[-1].sq_norm_big == pytest.approx(
        reference.history[-1].sq_norm_big, rel=1e-6
    )


def test_tracker_undoes_a_grad_scaler_whose_scale_changes_every_step(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    reference = run_tracker(model, workload.loss_fn, batches, 16)
    # growth_interval=1 doubles the scale after every step: the tracker must use the
    # scale of the step's backward passes, not the one after scaler.update().
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with NoiseScaleTracker(model, scaler=scaler) as tracker:
        for batch in batches:
            accumulate(model, workload.loss_fn, batch, 16, scaler=scaler)
            scaler.unscale_(optimizer)
            scaler.step(optimizer)
            scaler.update()
            tracker.step()
            optimizer.zero_grad()
    assert scaler.get_scale() == 2.0 ** (8 + len(batches))
    assert tracker.b_simple == pytest.approx(reference.b_simple, rel=1e-5)
    assert tracker.grad_sq_norm == pytest.approx(reference.grad_sq_norm, rel=1e-5)
    assert tracker.trace_cov == pytest.approx(reference.trace_cov, rel=1e-5)


def test_tracker_accepts_any_scaler_with_get_scale(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    reference = run_tracker(model, workload.loss_fn, batches, 16)

    class FixedScale:
        def get_scale(self) -> float:
            return 8.0

    with NoiseScaleTracker(model, scaler=FixedScale()) as tracker:
        for batch in batches:
            accumulate(model, workload.loss_fn, batch, 16, scale=8.0)
            tracker.step()
            model.zero_grad()
    assert tracker.grad_sq_norm == pytest.approx(reference.grad_sq_norm, rel=1e-6)
    assert tracker.trace_cov == pytest.approx(reference.trace_cov, rel=1e-6)


def test_tracker_skips_the_steps_a_grad_scaler_skips(mnist1d, caplog):
    workload, batches = mnist1d
    model = workload.build_model(0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="batchlab.noise"):
        warnings.simplefilter("error")  # expected with a scaler: logged, not a warning
        with NoiseScaleTracker(model, scaler=scaler) as tracker:
            for index, (x, y) in enumerate(batches):
                if index == 2:
                    x = x.clone()
                    x[0, 0] = math.inf
                accumulate(model, workload.loss_fn, (x, y), 16, scaler=scaler)
                scale = scaler.get_scale()
                scaler.step(optimizer)
                scaler.update()
                tracker.step()
                optimizer.zero_grad()
                if index == 2:
                    assert scaler.get_scale() < scale  # the scaler skipped this step too
    assert tracker.skipped == 1 and tracker.n == len(batches) - 1
    assert [r.step for r in tracker.history] == [0, 1, 3, 4, 5]
    assert math.isfinite(tracker.b_simple)
    assert "step 2 has a NaN/inf gradient" in caplog.text


def test_nan_gradient_is_skipped_with_a_warning_and_never_poisons_the_estimate(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    clean = run_tracker(model, workload.loss_fn, [batches[0], batches[2]], 16)
    # The warning comes when the norms reach the host: here, when the hooks are removed.
    with pytest.warns(RuntimeWarning, match="step 1 has a NaN/inf gradient; skipped"):
        with NoiseScaleTracker(model) as tracker:
            for index, batch in enumerate(batches[:3]):
                x, y = batch
                if index == 1:
                    x = x.clone()
                    x[3, 5] = math.nan
                accumulate(model, workload.loss_fn, (x, y), 16)
                tracker.step()
                model.zero_grad()
    assert tracker.n == 2 and tracker.skipped == 1
    assert tracker.b_simple == pytest.approx(clean.b_simple, rel=1e-6)


def test_tracker_ignores_frozen_parameters(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    model.features[0].requires_grad_(False)
    tracker = run_tracker(model, workload.loss_fn, batches, 16)
    measured = measure_noise_scale(model, workload.loss_fn, batches, micro_batch_size=16)
    assert "features.0" not in tracker.per_module
    assert tracker.per_module.keys() == measured.per_module.keys()
    assert tracker.b_simple == pytest.approx(measured.b_simple, rel=1e-4)
    assert all(p.grad is None for p in model.features[0].parameters())


def test_tracker_infers_micro_batch_size_from_forward_or_takes_it_as_argument(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    inferred = run_tracker(model, workload.loss_fn, batches[:2], 8)
    assert {(r.b_small, r.b_big) for r in inferred.history} == {(8, 64)}
    given = run_tracker(model, workload.loss_fn, batches[:2], 8, micro_batch_size=8)
    assert given.b_simple == pytest.approx(inferred.b_simple, rel=1e-9)


def test_unequal_micro_batches_weighted_by_size_give_the_full_batch_gradient(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    with NoiseScaleTracker(model) as tracker:
        for x, y in batches[:3]:
            for xs, ys in ((x[:16], y[:16]), (x[16:], y[16:])):  # 16 + 48 examples
                (workload.loss_fn(model, (xs, ys)) * len(xs) / len(x)).backward()
            tracker.step()
            model.zero_grad()
    record = tracker.history[0]
    assert record.b_big == 64 and record.b_small == pytest.approx(2 / (1 / 16 + 1 / 48))
    assert record.sq_norm_big == pytest.approx(
        full_batch_sq_norm(model, workload.loss_fn, batches[0]), rel=1e-5
    )


def test_step_with_fewer_than_two_micro_batches_is_a_value_error_naming_sizes(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    with NoiseScaleTracker(model) as tracker:
        workload.loss_fn(model, batches[0]).backward()
        with pytest.raises(ValueError, match=r"1 micro-batch\(es\) .* of \[64\] examples"):
            tracker.step()
        model.zero_grad()
        with pytest.raises(ValueError, match="0 micro-batch"):
            tracker.step()
        accumulate(model, workload.loss_fn, batches[0], 32)  # recovers afterwards
        tracker.step()
    assert tracker.n == 1


def test_model_without_trainable_parameters_is_a_value_error():
    with pytest.raises(ValueError, match="no trainable parameters"):
        NoiseScaleTracker(nn.Linear(3, 1).requires_grad_(False))
    with pytest.raises(ValueError, match="micro_batch_size must be a positive integer"):
        NoiseScaleTracker(nn.Linear(3, 1), micro_batch_size=0)
    with pytest.raises(TypeError, match="get_scale"):
        NoiseScaleTracker(nn.Linear(3, 1), scaler=object())


def test_remove_detaches_hooks_and_paused_ignores_backward(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    tracker = NoiseScaleTracker(model)
    with tracker.paused():
        accumulate(model, workload.loss_fn, batches[0], 16)
    with pytest.raises(ValueError, match="0 micro-batch"):
        tracker.step()
    model.zero_grad()
    tracker.remove()
    accumulate(model, workload.loss_fn, batches[0], 16)
    with pytest.raises(ValueError, match="0 micro-batch"):
        tracker.step()


def test_ema_tracker_equals_ema_statistics_over_its_history(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with NoiseScaleTracker(model, ema_decay=0.5) as tracker:
        for batch in batches:  # while training: the point moves every step
            accumulate(model, workload.loss_fn, batch, 16)
            optimizer.step()
            tracker.step()
            optimizer.zero_grad()
    stats = NoiseScaleStatistics(ema_decay=0.5)
    for r in tracker.history:
        stats.update(r.sq_norm_small, r.sq_norm_big, r.b_small, r.b_big)
    assert tracker.b_simple == pytest.approx(stats.b_simple, rel=1e-9)
    assert tracker.b_simple_ci == pytest.approx(stats.b_simple_ci, rel=1e-9)


def test_history_is_json_safe_and_readable_by_the_report(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    tracker = run_tracker(model, workload.loss_fn, batches, 16)
    data = json.loads(json.dumps(tracker.result().to_dict(), allow_nan=False))
    parsed = parse_noise_scale({"history": data["history"], "batch_size": 64})
    assert parsed.steps == tuple(range(len(batches)))
    assert parsed.b_simple[-1] == pytest.approx(tracker.b_simple)
    low, high = tracker.b_simple_ci  # the report drops intervals with an infinite bound
    expected = (low, high) if math.isfinite(low) and math.isfinite(high) else None
    assert parsed.final[1] == (pytest.approx(expected) if expected else None)


class SparseEmbeddingModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8, sparse=True)
        self.out = nn.Linear(8, 1)

    def forward(self, tokens):
        return self.out(self.embed(tokens)).squeeze(-1)


def _regression_loss(model, batch):
    x, y = batch
    return (model(x) - y).square().mean()


@pytest.mark.parametrize("kind", ["sparse", "bfloat16", "float64"])
def test_tracker_handles_sparse_and_non_float32_gradients(kind):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    if kind == "sparse":
        model = SparseEmbeddingModel()
        x = torch.randint(0, 50, (32, 4), generator=generator)
        y = torch.randn(32, 4, generator=generator)
    else:
        dtype = getattr(torch, kind)
        model = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0)).to(dtype)
        x = torch.randn(32, 4, generator=generator).to(dtype)
        y = torch.randn(32, generator=generator).to(dtype)
    batches = [(x, y)] * 3
    tracker = run_tracker(model, _regression_loss, batches, 8)
    measured = measure_noise_scale(model, _regression_loss, batches, micro_batch_size=8)
    assert tracker.n == 3
    assert tracker.b_simple == pytest.approx(measured.b_simple, rel=1e-4)


def test_measure_every_records_the_same_steps_and_calls_no_hook_in_between(mnist1d):
    # Two trackers on one model: one measures every step, the other one in three. The
    # sampled one's records are exactly the full one's at steps 0, 3, 6, and between
    # them its hooks are detached, so a left-out forward and backward call none.
    workload, batches = mnist1d
    model = workload.build_model(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    full = NoiseScaleTracker(model)
    sampled = NoiseScaleTracker(model, measure_every=3)
    hooks = [len(p._backward_hooks or {}) for p in model.parameters()]
    assert hooks == [2] * len(hooks)  # both trackers' hooks before step 0
    for step in range(8):
        accumulate(model, workload.loss_fn, batches[step % len(batches)], 16 * (1 + step % 2))
        optimizer.step()
        full.step()
        sampled.step()
        optimizer.zero_grad()
        attached = {len(p._backward_hooks or {}) for p in model.parameters()}
        attached.add(len(model._forward_pre_hooks))  # each tracker's micro-batch sizes
        assert attached == ({2} if (step + 1) % 3 == 0 else {1}), step
    kept = [r for r in full.history if r.step % 3 == 0]
    assert [r.step for r in sampled.history] == [0, 3, 6] == [r.step for r in kept]
    for mine, theirs in zip(sampled.history, kept, strict=True):
        assert mine.sq_norm_small == pytest.approx(theirs.sq_norm_small, rel=1e-12)
        assert mine.sq_norm_big == pytest.approx(theirs.sq_norm_big, rel=1e-12)
        assert (mine.b_small, mine.b_big) == (theirs.b_small, theirs.b_big)
    assert (sampled.n, full.n) == (3, 8)
    # A left-out step needs no backward: step() only counts it; a measured one does.
    lone = NoiseScaleTracker(model, measure_every=2)
    accumulate(model, workload.loss_fn, batches[0], 16)
    lone.step()
    lone.step()
    with pytest.raises(ValueError, match="0 micro-batch"):
        lone.step()
    lone.remove()  # detached for good: step 3 would attach them for step 4
    lone.step()
    assert {len(p._backward_hooks or {}) for p in model.parameters()} == {1}  # full's
    # Restored at step 8 (left out), a new tracker's hooks follow the restored count.
    restored = NoiseScaleTracker(model, measure_every=3)
    restored.load_state_dict(sampled.state_dict())
    assert not restored.measures_next_step and restored._handles == []
    assert [r.step for r in restored.history] == [0, 3, 6]
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="measure_every must be a positive integer, got "):
            NoiseScaleTracker(model, measure_every=bad)  # type: ignore[arg-type]
