"""Training on a device: losses read back in batches (no per-step host sync), one code path.

On a CPU a host sync is free, but the same loop runs on CUDA, where reading a loss
every step stalls the GPU: these tests count the reads the loops make.
"""

from __future__ import annotations

import math

import pytest
import torch

from batchlab import get_workload
from batchlab._seeding import make_generator
from batchlab.training import (
    LOSS_READBACK_EVERY,
    PendingLosses,
    RunSpec,
    run_ensemble,
    run_training,
)
from batchlab.training._run import optimizer_and_schedule
from batchlab.workloads import Target, on_device, workload_device

NEVER = Target("loss", -1.0, "min")


@pytest.fixture
def host_reads(monkeypatch):
    """Counts reads of tensor values by the host: float(), .item() and .tolist()."""
    counts = {"n": 0}
    for name in ("__float__", "item", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            counts["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def spec(**overrides) -> RunSpec:
    values = dict(
        batch_size=16,
        optimizer="momentum",
        hparams={"lr": 0.05, "momentum": 0.9},
        max_steps=200,
        eval_every=50,
        seed=0,
    )
    return RunSpec(**{**values, **overrides})


def test_a_run_reads_its_losses_back_only_at_evaluations(host_reads):
    workload = get_workload("linreg", {"dim": 8})
    result = run_training(workload, spec(), NEVER)
    assert result.steps == [50, 100, 150, 200]
    # One read of the pending losses and one per metric value at each of the 4
    # evaluations (linreg's evaluate reads 1 value); reading every step would be 200+.
    assert host_reads["n"] <= 4 * 2


def test_an_ensemble_reads_its_losses_back_only_at_evaluations(host_reads):
    workload = get_workload("digits-mlp")
    specs = [
        spec(seed=seed, hparams={"lr": lr, "momentum": 0.9}) for seed, lr in ((0, 0.05), (1, 0.1))
    ]
    results = run_ensemble(workload, specs, NEVER)
    assert all(r.steps == [50, 100, 150, 200] for r in results)
    # Per evaluation: the pending losses, and one read per metric (accuracy, loss).
    assert host_reads["n"] <= 4 * 3


def test_without_evaluations_losses_are_still_read_every_readback_interval():
    losses = PendingLosses()
    for step in range(1, LOSS_READBACK_EVERY + 1):
        losses.add(step, torch.tensor(float(step)))
    assert len(losses) == LOSS_READBACK_EVERY
    read = losses.read()
    assert read[0] == (1, 1.0) and read[-1] == (LOSS_READBACK_EVERY, float(LOSS_READBACK_EVERY))
    assert len(losses) == 0 and losses.read() == []


def first_non_finite_step(workload, run: RunSpec) -> tuple[int, float]:
    """The reference: the same training, reading the loss at every step."""
    model = workload.build_model(run.seed)
    optimizer, _ = optimizer_and_schedule(model, run)
    batches = workload.train_batches(run.batch_size, make_generator(run.seed))
    for step in range(1, run.max_steps + 1):
        loss = workload.loss_fn(model, next(batches))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if not math.isfinite(value := float(loss.detach())):
            return step, value
    raise AssertionError("the reference run did not diverge")


def test_divergence_is_dated_to_the_step_it_happened_not_to_the_readback():
    workload = get_workload("linreg", {"dim": 8})
    run = spec(optimizer="sgd", hparams={"lr": 40.0}, eval_every=100)
    step, value = first_non_finite_step(workload, run)
    assert step % 100 != 0  # between two evaluations: the read-back finds it later
    result = run_training(workload, run, NEVER)
    assert result.status == "diverged"
    assert result.reason == f"training loss became {value} at step {step}"
    [member, _] = run_ensemble(
        workload, [run, spec(optimizer="sgd", hparams={"lr": 0.1}, seed=1, eval_every=100)], NEVER
    )
    assert member.status == "diverged" and member.reason == result.reason


def test_cpu_placement_is_the_same_workload_and_the_same_run():
    workload = get_workload("digits-mlp")
    assert on_device(workload, "cpu") is workload
    assert workload_device(workload) == torch.device("cpu")
    a = run_training(workload, spec(), NEVER)
    b = run_training(on_device(workload, "cpu"), spec(), NEVER)
    assert a.metrics == b.metrics and a.train_loss == b.train_loss


def test_bf16_autocast_trains_close_to_fp32_on_the_cpu():
    workload = get_workload("digits-mlp")
    fp32 = run_training(workload, spec(), NEVER)
    bf16 = run_training(workload, spec(precision="bf16"), NEVER)
    assert bf16.metrics["loss"] != fp32.metrics["loss"]  # autocast did change the numerics
    # bfloat16 keeps 8 bits of mantissa (relative rounding 2^-8 ~ 0.4% per product); over
    # 200 steps the curves drift apart but stay within a few percent of each other.
    torch.testing.assert_close(bf16.metrics["loss"], fp32.metrics["loss"], rtol=0.05, atol=0.01)


def test_unknown_precision_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="spec.precision must be one of fp32, tf32, bf16"):
        run_training(get_workload("linreg", {"dim": 4}), spec(precision="fp16"), NEVER)


@pytest.mark.slow
def test_a_compiled_run_and_ensemble_follow_the_eager_ones():
    workload = get_workload("digits-mlp")
    eager = [spec(seed=0), spec(seed=1, hparams={"lr": 0.1, "momentum": 0.9})]
    compiled = [RunSpec(**{**vars(s), "compile": True}) for s in eager]
    alone = run_training(workload, compiled[0], NEVER)
    together = run_ensemble(workload, compiled, NEVER)
    reference = [run_training(workload, s, NEVER) for s in eager]
    for result in (alone, together[0]):
        # Inductor fuses and reorders float32 sums: rounding, compounded over 200 steps.
        torch.testing.assert_close(
            result.metrics["loss"], reference[0].metrics["loss"], rtol=1e-3, atol=1e-4
        )
    torch.testing.assert_close(
        together[1].metrics["loss"], reference[1].metrics["loss"], rtol=1e-3, atol=1e-4
    )
