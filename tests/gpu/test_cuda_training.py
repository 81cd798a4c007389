"""Training, ensembles and studies on CUDA: the same code path as the CPU, the same answers.

Marked ``gpu``: skipped without CUDA. ``benchmarks/gpu_check.sh`` runs them on a GPU.
"""

from __future__ import annotations

import copy

import pytest
import torch

from batchlab import get_workload
from batchlab.study import Study, StudyConfig
from batchlab.training import (
    LOSS_READBACK_EVERY,
    RunSpec,
    member_memory,
    run_ensemble,
    run_training,
)
from batchlab.workloads import Target, on_device, workload_device

from ..study.conftest import LINREG_STUDY

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

NEVER = Target("loss", -1.0, "min")


def specs(optimizer: str, hparams: list[dict[str, float]], **overrides) -> list[RunSpec]:
    values = dict(batch_size=32, max_steps=120, eval_every=20, resolution=0.02)
    values.update(overrides)
    return [
        RunSpec(optimizer=optimizer, hparams=hp, seed=10 + i, **values)
        for i, hp in enumerate(hparams)
    ]


@pytest.mark.parametrize(
    ("optimizer", "hparams"),
    [
        (
            "nesterov",
            [{"lr": 0.05, "momentum": 0.9}, {"lr": 0.02, "momentum": 0.8, "warmup_steps": 30}],
        ),
        ("adamw", [{"lr": 1e-3, "weight_decay": 0.01}, {"lr": 3e-3, "beta1": 0.8}]),
    ],
)
def test_an_ensemble_member_on_cuda_equals_the_trial_alone_on_cuda(optimizer, hparams):
    workload = on_device(get_workload("mnist1d-cnn"), "cuda")
    assert workload_device(workload).type == "cuda"
    runs = specs(optimizer, hparams)
    together = run_ensemble(workload, runs, NEVER)
    for member, spec in zip(together, runs, strict=True):
        alone = run_training(workload, spec, NEVER)
        assert member.steps == alone.steps
        for metric in workload.metrics:
            # fp32 (no TF32: matmul_precision turns it off); vmap's batched kernels and
            # cuDNN's algorithm choice sum in other orders than the single model's.
            torch.testing.assert_close(
                member.metrics[metric], alone.metrics[metric], rtol=1e-4, atol=1e-5
            )


def test_a_run_on_cuda_follows_the_cpu_run():
    workload = get_workload("digits-mlp")
    [spec] = specs("momentum", [{"lr": 0.1, "momentum": 0.9}])
    cpu = run_training(workload, spec, NEVER)
    cuda = run_training(on_device(workload, "cuda"), spec, NEVER)
    assert cuda.steps == cpu.steps  # the same batches: indices drawn on the CPU
    torch.testing.assert_close(cuda.metrics["loss"], cpu.metrics["loss"], rtol=1e-3, atol=1e-4)


def test_bf16_training_of_mnist1d_cnn_reaches_the_target():
    workload = on_device(get_workload("mnist1d-cnn"), "cuda")
    hparams = dict(workload.default_hparams)
    optimizer = hparams.pop("optimizer")
    spec = RunSpec(
        batch_size=128,
        optimizer=optimizer,
        hparams=hparams,
        max_steps=workload.default_steps,
        eval_every=50,
        seed=0,
        precision="bf16",
    )
    result = run_training(workload, spec, workload.target)
    assert result.status == "reached", result.reason


@pytest.mark.parametrize("name", ["linreg", "nqm"])
def test_a_three_rung_study_on_cuda_gives_the_cpu_steps_within_the_resolution(tmp_path, name):
    data = copy.deepcopy(LINREG_STUDY)
    data["name"] = "linreg-cuda"
    data["evaluation"]["resolution"] = 0.02
    if name == "nqm":
        data.update(
            name="nqm-cuda",
            optimizer="momentum",
            workload={"name": "nqm", "params": {"dim": 1000}},
            budget={"steps": 6000},
        )
        data["search"]["space"]["one_minus_momentum"] = {"low": 0.01, "high": 1.0}
    config = StudyConfig.model_validate(data)
    cpu = Study(config, tmp_path / "cpu").run(workers=1, device="cpu")
    cuda = Study(config, tmp_path / "cuda").run(workers=1, device="cuda")
    for batch_size, steps in cpu.steps_to_target.items():
        other = cuda.steps_to_target[batch_size]
        assert (steps is None) == (other is None), batch_size
        if steps is not None:
            # float rounding on another device can move a crossing by one dense
            # evaluation: resolution * steps, at least one step, either way.
            assert abs(other - steps) <= max(1, 0.02 * steps) + 1, (batch_size, steps, other)


def test_gpu_ensembles_are_sized_from_a_memory_probe_and_record_their_device(tmp_path):
    workload = on_device(get_workload("mnist1d-cnn"), "cuda")
    [spec] = specs("momentum", [{"lr": 0.1, "momentum": 0.9}], batch_size=256)
    assert member_memory(workload, spec) > 0
    data = copy.deepcopy(LINREG_STUDY)
    data.update(workload={"name": "mnist1d-cnn"}, optimizer="momentum")
    data["ladder"] = {"batch_sizes": [64, 256]}
    data["search"] = {"trials_per_rung": 4, "refine": 0, "confirm_top": 0}
    data["budget"] = {"steps": 200}
    data["evaluation"] = {"every": 50}
    result = Study(StudyConfig.model_validate(data), tmp_path / "s").run(device="cuda")
    trials = [t for rung in result.rungs for t in rung.trials]
    assert {t.device for t in trials} == {f"cuda:{torch.cuda.current_device()}"}


def host_syncs(run) -> int:
    """How many synchronising CUDA calls ``run()`` makes (torch's sync debug mode)."""
    import warnings

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def test_training_loops_wait_for_the_gpu_only_at_evaluations_and_read_backs():
    workload = on_device(get_workload("digits-mlp"), "cuda")
    hparams = [{"lr": 0.05, "momentum": 0.9}, {"lr": 0.1, "momentum": 0.9}]

    def syncs(steps: int) -> tuple[int, int]:
        # 4 evaluations whatever the step count: only the read-backs between them grow.
        runs = specs("momentum", hparams, max_steps=steps, eval_every=steps // 4, resolution=0.0)
        alone = host_syncs(lambda: run_training(workload, runs[0], NEVER))
        together = host_syncs(lambda: run_ensemble(workload, runs, NEVER))
        return alone, together

    syncs(64)  # warm-up: lazy CUDA initialisation
    short, long = syncs(256), syncs(1024)
    # A read every step would add 768 syncs; read-backs every LOSS_READBACK_EVERY add
    # 768/64 = 12 (one each, and one for an ensemble's member index if one leaves).
    extra = (1024 - 256) // LOSS_READBACK_EVERY + 1
    assert long[0] - short[0] <= extra, (short, long)
    assert long[1] - short[1] <= extra, (short, long)
