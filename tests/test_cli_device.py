"""``--device`` and ``--precision`` of ``batchlab train``, ``noise-scale`` and ``cbs``:
recorded in the JSON, the CPU's numbers unchanged, bad values one line and exit code 2."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.cli._common import EXIT_BAD_INPUT, EXIT_OK

runner = CliRunner()
ENV = {"COLUMNS": "300"}
NOISE = ["noise-scale", "--workload", "linreg", "--batch-size", "64", "--steps", "10"]
CBS = ["cbs", "--workload", "linreg", "-p", "dim=16", "--optimizer", "sgd", "--lr", "0.1",
       "--base-batch-size", "8", "--batch-sizes", "4,16,64", "--lr-rule", "linear",
       "--improvement", "0.3", "--max-steps", "100", "--eval-resolution", "0",
       "--noise-batch-size", "64", "--checkpoints", "10"]  # fmt: skip
TRAIN = ["train", "--workload", "linreg", "--batch-size", "32", "--steps", "50",
         "--eval-every", "25"]  # fmt: skip
COMMANDS = {"train": TRAIN, "noise-scale": NOISE, "cbs": CBS}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: faster, and the same sums in every run
    yield
    torch.set_num_threads(threads)


def invoke(args: list[str], tmp_path=None):
    if args[0] == "cbs":
        args = [*args, "--out", str(tmp_path)]
    return runner.invoke(app, args, env=ENV)


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_and_exit_code_2(command, tmp_path):
    result = invoke([*COMMANDS[command], "--device", "cuda"], tmp_path)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "--device='cuda' asks for CUDA" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "cbs.json").exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--precision", "fp16"], "--precision must be one of fp32, tf32, bf16; got 'fp16'"),
        (["--device", "tpu"], "--device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    ],
)
def test_bad_device_or_precision_is_one_line_and_exit_code_2(command, option, message, tmp_path):
    result = invoke([*COMMANDS[command], *option], tmp_path)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def noise_json(*args: str) -> dict:
    result = invoke([*NOISE, *args, "--json"])
    assert result.exit_code == EXIT_OK, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("train", [False, True])
def test_noise_scale_records_device_and_precision_and_cpu_is_the_default_on_a_cpu(
    train, monkeypatch
):
    mode = ["--train"] if train else []
    explicit = noise_json(*mode, "--device", "cpu")
    assert explicit["device"] == "cpu" and explicit["precision"] == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # "auto" -> the CPU
    assert noise_json(*mode) == explicit


@pytest.mark.parametrize("train", [False, True])
def test_noise_scale_in_bf16_is_close_to_fp32(train):
    mode = ["--train"] if train else []
    fp32 = noise_json(*mode, "--device", "cpu")
    bf16 = noise_json(*mode, "--device", "cpu", "--precision", "bf16")
    assert bf16["precision"] == "bf16" and bf16["mode"] == fp32["mode"]
    b_simple, reference = bf16["result"]["b_simple"], fp32["result"]["b_simple"]
    assert b_simple is not None and math.isfinite(b_simple)
    # The same 10 batches: only bf16's rounding of the linear layer's products differs,
    # far below the sampling noise of 10 batches (seen: 1e-3 relative); 10% is loose.
    assert b_simple == pytest.approx(reference, rel=0.1)


def test_cbs_shows_and_records_device_and_precision(tmp_path):
    result = invoke([*CBS, "--device", "cpu", "--precision", "bf16"], tmp_path)
    assert result.exit_code == EXIT_OK, result.output
    assert "on cpu in bf16" in result.output
    settings = json.loads((tmp_path / "cbs.json").read_text())["settings"]
    assert settings["device"] == "cpu" and settings["precision"] == "bf16"


def test_train_runs_on_the_cpu_in_bf16():
    result = invoke([*TRAIN, "--device", "cpu", "--precision", "bf16"])
    assert result.exit_code == EXIT_OK, result.output
    assert "on cpu in bf16" in result.output and "Reached excess_loss" in result.output
