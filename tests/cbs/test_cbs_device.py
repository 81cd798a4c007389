"""``measure_critical_batch`` on a device and in a precision: the same numbers on the CPU,
bf16 close to fp32, both recorded, bad values refused; CUDA against the CPU (``gpu``).

The setup is ``linreg`` at an early checkpoint, where the branching measurement matches
the exact S(B) (tests/cbs/test_measure.py): every rung reaches its target, so B_crit is
fitted and comparable across devices and precisions.
"""

from __future__ import annotations

import json

import pytest
import torch

from batchlab.cbs import measure_critical_batch, run_branch, train_base_run
from batchlab.cbs._target import improvement_target
from batchlab.workloads import get_workload, on_device

LINREG = {"dim": 64, "decay": 0.5}
SETTINGS = {
    "batch_sizes": [4, 16, 64, 256, 1024],
    "optimizer": "sgd",
    "hparams": {"lr": 0.05},
    "base_batch_size": 16,
    "lr_rule": "sqrt",
    "improvement_fraction": 0.8,
    "max_steps": 2000,
    "eval_resolution": 0.0,
    "noise_batch_size": 256,
    "n_bootstrap": 0,
}

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def measure(**kwargs):
    return measure_critical_batch(
        get_workload("linreg", LINREG), [30], **SETTINGS, repeats=2, **kwargs
    )


def comparable(result) -> dict:
    """The result's JSON without what differs between equal runs (time, machine)."""
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    data.pop("wall_time_s")
    data.pop("environment")
    return data


@pytest.fixture(scope="module")
def fp32_on_cpu():
    # One thread, as the tests' own runs (conftest): the CPU's sums depend on the count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure(device="cpu")
    finally:
        torch.set_num_threads(threads)


def test_explicit_cpu_gives_the_defaults_numbers_on_a_cpu_machine(fp32_on_cpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # "auto" -> the CPU
    default = measure()
    assert default.settings["device"] == "cpu" and default.settings["precision"] == "fp32"
    assert comparable(default) == comparable(fp32_on_cpu)


def test_device_and_precision_are_recorded_in_the_json(fp32_on_cpu):
    data = json.loads(json.dumps(fp32_on_cpu.to_dict(), allow_nan=False))
    assert data["settings"]["device"] == "cpu" and data["settings"]["precision"] == "fp32"
    assert "gpu" not in data["environment"]


def test_bf16_on_the_cpu_is_close_to_fp32(fp32_on_cpu):
    bf16 = measure(device="cpu", precision="bf16")
    assert bf16.settings["precision"] == "bf16"
    (c,), (ref,) = bf16.checkpoints, fp32_on_cpu.checkpoints
    assert c.fit is not None and c.noise is not None, c.note
    # bf16 rounds the matrix products of the forward pass (and their gradients) to 8
    # mantissa bits, a ~0.4% perturbation of each step's gradient: far below the
    # minibatch noise that decides when a branch crosses its target. Steps may move by
    # an evaluation or so (seen: not at all), B_crit by a few percent.
    for steps, ref_steps in zip(c.steps_to_target, ref.steps_to_target, strict=True):
        assert steps is not None and abs(steps - ref_steps) <= max(1, 0.05 * ref_steps)
    assert c.fit.b_crit == pytest.approx(ref.fit.b_crit, rel=0.05)
    # B_simple on the same batches: its statistics are fp32/fp64 either way; only the
    # gradients carry bf16's rounding (seen: 1e-5 relative here).
    assert c.noise.b_simple == pytest.approx(ref.noise.b_simple, rel=0.02)
    low, high = c.noise.b_simple_ci
    assert low <= c.exact_noise.b_simple <= high


def test_base_run_and_branch_take_a_precision():
    linreg = get_workload("linreg", {"dim": 8})
    (point,) = train_base_run(
        linreg, [5], batch_size=8, optimizer="momentum", hparams={"lr": 0.1, "momentum": 0.9},
        precision="bf16",
    )  # fmt: skip
    assert all(t.device.type == "cpu" for t in point.model_state.values())
    target = improvement_target(point.metrics["excess_loss"], "min", metric="excess_loss",
                                delta=None, fraction=0.1)  # fmt: skip
    branch = run_branch(
        linreg, point, batch_size=16, lr=0.05, target=target, eval_steps=[10, 20],
        precision="bf16",
    )  # fmt: skip
    assert branch.status in ("reached", "not_reached") and branch.values
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, bf16"):
        run_branch(linreg, point, batch_size=16, lr=0.05, target=target, eval_steps=[10],
                   precision="fp16")  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp16"}, "precision must be one of fp32, tf32, bf16; got 'fp16'"),
        ({"device": "tpu"}, "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    ],
)
def test_bad_device_or_precision_names_the_argument(kwargs, message):
    linreg = get_workload("linreg", {"dim": 4})
    with pytest.raises(ValueError, match=message):
        measure_critical_batch(linreg, [0], [8, 16, 32], max_steps=5, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    linreg = get_workload("linreg", {"dim": 4})
    with pytest.raises(ValueError, match="device='cuda' asks for CUDA"):
        measure_critical_batch(linreg, [0], [8, 16, 32], max_steps=5, device="cuda")


@pytest.mark.gpu
@needs_cuda
def test_cuda_gives_the_cpus_b_crit(fp32_on_cpu):
    cuda = measure(device="cuda")
    assert cuda.settings["device"].startswith("cuda:") and "gpu" in cuda.environment
    (c,), (ref,) = cuda.checkpoints, fp32_on_cpu.checkpoints
    assert c.fit is not None and c.noise is not None, c.note
    # The same examples on both devices (drawn on the CPU, then sent): only the fp32
    # rounding of the GPU's kernels differs, and SGD on linreg contracts such
    # differences. Steps may move by an evaluation, B_crit by a few percent.
    for steps, ref_steps in zip(c.steps_to_target, ref.steps_to_target, strict=True):
        assert steps is not None and abs(steps - ref_steps) <= max(1, 0.05 * ref_steps)
    assert c.fit.b_crit == pytest.approx(ref.fit.b_crit, rel=0.05)
    low, high = ref.noise.b_simple_ci
    assert low <= c.noise.b_simple <= high
    assert c.noise.b_simple == pytest.approx(ref.noise.b_simple, rel=0.01)
    # bf16 on the GPU: finite and close as well.
    (half,) = measure(device="cuda", precision="bf16").checkpoints
    assert half.fit is not None and half.fit.b_crit == pytest.approx(ref.fit.b_crit, rel=0.1)


@pytest.mark.gpu
@needs_cuda
def test_adam_branches_resume_their_state_on_cuda():
    # Optimizer state saved on the CPU is loaded onto the GPU with the model.
    workload = on_device(get_workload("digits-mlp"), "cuda")
    (point,) = train_base_run(workload, [20], batch_size=32, optimizer="adam", hparams={"lr": 1e-3})
    assert all(t.device.type == "cpu" for t in point.model_state.values())
    target = improvement_target(point.metrics["loss"], "min", metric="loss", delta=None,
                                fraction=0.1)  # fmt: skip
    branch = run_branch(workload, point, batch_size=64, lr=1e-3, target=target,
                        eval_steps=[25, 50, 100, 200], precision="bf16")  # fmt: skip
    assert branch.status == "reached", branch.reason
