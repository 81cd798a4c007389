"""Studies on a device: config, worker placement, GPU ensemble sizing, what is recorded."""

from __future__ import annotations

import copy

import pydantic
import pytest
import torch
from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.report._view import trained_on_rows
from batchlab.results import load_study
from batchlab.study import Study, StudyConfig
from batchlab.study._processes import default_workers, spread_devices
from batchlab.study._runner import GPU_MEMORY_FRACTION, members_that_fit

from .test_cli_study import write_config

DIGITS = {
    "name": "digits-device",
    "optimizer": "momentum",
    "workload": {"name": "digits-mlp"},
    "ladder": {"batch_sizes": [32, 128]},
    "search": {
        "trials_per_rung": 3,
        "refine": 0,
        "confirm_top": 0,
        "space": {"lr": {"low": 0.05, "high": 0.5}},
        "fixed": {"momentum": 0.9},
    },
    "target": {"metric": "accuracy", "value": 0.9, "direction": "max"},
    "budget": {"steps": 150},
    "evaluation": {"every": 25},
    "seed": 1,
}

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def digits(**performance) -> StudyConfig:
    data = copy.deepcopy(DIGITS)
    data["performance"] = performance
    return StudyConfig.model_validate(data)


def test_workers_spread_over_the_gpus_one_each_round_robin():
    assert spread_devices("auto", 3, gpu_count=2) == ["cuda:0", "cuda:1", "cuda:0"]
    assert spread_devices("cuda", 2, gpu_count=4) == ["cuda:0", "cuda:1"]
    assert spread_devices("cuda:1", 2, gpu_count=4) == ["cuda:1", "cuda:1"]
    assert spread_devices("auto", 2, gpu_count=0) == ["cpu", "cpu"]
    assert spread_devices("cpu", 2, gpu_count=4) == ["cpu", "cpu"]
    assert default_workers("auto", gpu_count=4) == 4
    assert default_workers("cuda", gpu_count=2) == 2
    assert default_workers("cuda:1", gpu_count=2) == 1
    assert default_workers("auto", gpu_count=0) == 1


def test_gpu_ensembles_take_what_fits_in_the_free_memory_within_the_caps():
    mib = 2**20
    # 10 MiB per member, 1 GiB free: GPU_MEMORY_FRACTION of it holds 51 members.
    fit = int(GPU_MEMORY_FRACTION * 1024 // 10)
    assert members_that_fit(10 * mib, 1024 * mib, trials=100, cap=64) == fit
    assert members_that_fit(10 * mib, 1024 * mib, trials=16, cap=64) == 16  # the rung's trials
    assert members_that_fit(10 * mib, 1024 * mib, trials=100, cap=8) == 8  # the cap
    assert members_that_fit(4096 * mib, 1024 * mib, trials=16, cap=64) == 1  # never below 1


def test_device_and_precision_are_validated_in_the_config():
    with pytest.raises(pydantic.ValidationError, match="performance.device"):
        digits(device="gpu")
    with pytest.raises(pydantic.ValidationError, match="performance.precision"):
        digits(precision="fp16")
    with pytest.raises(pydantic.ValidationError, match="processes_per_trial > 1 trains on the CPU"):
        digits(device="cuda", processes_per_trial=2)


def test_an_explicit_cpu_study_is_the_default_study_and_records_where_it_trained(tmp_path):
    default = Study(digits(), tmp_path / "default").run(workers=1)
    explicit = Study(digits(device="cpu"), tmp_path / "cpu").run(workers=1, device="cpu")
    assert explicit.steps_to_target == default.steps_to_target
    assert any(steps is not None for steps in explicit.steps_to_target.values())
    study = load_study(tmp_path / "cpu")
    trials = [t for rung in study.rungs for t in rung.trials]
    assert {(t.device, t.precision) for t in trials} == {("cpu", "fp32")}
    # 3 trials per rung, and 512 examples per ensemble step hold 3 at both batch sizes.
    assert {t.ensemble for t in trials} == {3}
    assert trained_on_rows(study) == [
        ("trained on", f"cpu at fp32 ({len(trials)} trials); ensembles of up to 3 trials")
    ]


def test_a_bf16_study_records_its_precision_and_still_reaches_the_target(tmp_path):
    result = Study(digits(precision="bf16"), tmp_path / "bf16").run(workers=1)
    assert any(steps is not None for steps in result.steps_to_target.values())
    study = load_study(tmp_path / "bf16")
    assert {t.precision for rung in study.rungs for t in rung.trials} == {"bf16"}


@no_cuda
@pytest.mark.parametrize("command", [["study", "run"], ["study", "resume"]])
def test_asking_for_cuda_without_it_is_a_clear_error_and_writes_nothing(tmp_path, command):
    out = tmp_path / "out"
    if command[1] == "run":
        args = [*command, str(write_config(tmp_path, DIGITS)), "--out", str(out)]
    else:
        Study(digits(), out).prepare()
        args = [*command, str(out)]
    before = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    result = CliRunner().invoke(app, [*args, "--device", "cuda"], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "CUDA" in result.output and "device='cuda'" in result.output
    after = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert after == before


@no_cuda
def test_python_run_on_a_missing_gpu_raises_before_planning(tmp_path):
    with pytest.raises(ValueError, match="asks for CUDA"):
        Study(digits(device="cuda:0"), tmp_path / "s").run()
    assert not (tmp_path / "s").exists()
