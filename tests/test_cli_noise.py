"""``batchlab noise-scale``: tables, progress, the saved history, and one-line errors."""

import json

import pytest
from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.results import parse_noise_scale

runner = CliRunner()
ENV = {"COLUMNS": "300"}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: faster, and immune to oversubscription
    yield
    torch.set_num_threads(threads)


def test_noise_scale_saves_a_history_the_report_can_read(tmp_path):
    out = tmp_path / "gns" / "noise_scale.json"
    result = runner.invoke(
        app,
        ["noise-scale", "--workload", "linreg", "--batch-size", "64", "--steps", "5"]
        + ["--out", str(out)],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    assert "B_simple" in result.output and "tr(Σ)" in result.output
    assert "Per module" in result.output
    data = json.loads(out.read_text())
    assert data["batch_size"] == 64 and data["micro_batch_size"] == 16
    assert data["mode"] == "measure" and data["workload"] == "linreg"
    assert [entry["step"] for entry in data["history"]] == [0, 1, 2, 3, 4]
    for entry in data["history"]:
        assert isinstance(entry["b_simple"], float)
        assert isinstance(entry["b_simple_ci"], list) and len(entry["b_simple_ci"]) == 2
    assert data["result"]["n"] == 5 and "per_module" in data["result"]
    parsed = parse_noise_scale(data)
    assert parsed.batch_size == 64 and len(parsed.steps) == 5
    assert not list(out.parent.glob(".*.tmp"))  # written atomically, nothing left over


def test_noise_scale_while_training_reports_every_few_steps(tmp_path):
    out = tmp_path / "train.json"
    result = runner.invoke(
        app,
        ["noise-scale", "--workload", "linreg", "--batch-size", "32", "--micro-batch-size", "8"]
        + ["--steps", "6", "--train", "--every", "3", "--lr", "0.1", "--out", str(out)],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    assert "step 3: B_simple" in result.output and "step 6: B_simple" in result.output
    data = json.loads(out.read_text())
    assert data["mode"] == "train" and data["hparams"] == {"optimizer": "sgd", "lr": 0.1}
    assert len(data["history"]) == 6 and data["micro_batch_size"] == 8


def test_noise_scale_can_estimate_b_noise():
    result = runner.invoke(
        app,
        ["noise-scale", "--workload", "linreg", "--batch-size", "64", "--steps", "4", "--b-noise"],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    assert "B_noise" in result.output


def test_help_shows_an_example():
    result = runner.invoke(app, ["noise-scale", "--help"], env=ENV)
    assert result.exit_code == 0
    assert "Example: batchlab noise-scale --workload mnist1d-cnn" in result.output
    assert "noise-scale" in runner.invoke(app, ["--help"], env=ENV).output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workload", "mnist-cnn"], "unknown workload 'mnist-cnn'"),
        (
            ["--workload", "linreg", "--batch-size", "128", "--micro-batch-size", "48"],
            "--micro-batch-size 48 does not divide --batch-size 128",
        ),
        (
            ["--workload", "linreg", "--batch-size", "128", "--micro-batch-size", "128"],
            "--micro-batch-size 128 leaves 1 micro-batch per batch of 128",
        ),
        (
            ["--workload", "linreg", "--batch-size", "10"],
            "--batch-size 10 does not split into 4 equal micro-batches",
        ),
        (
            ["--workload", "linreg", "--micro-batch-size", "0"],
            "--micro-batch-size must be a positive integer",
        ),
        (["--workload", "linreg", "--batch-size", "0"], "--batch-size must be positive"),
        (["--workload", "linreg", "--steps", "0"], "--steps must be positive"),
        (["--workload", "linreg", "--lr", "0.1"], "--lr only applies with --train"),
        (["--workload", "linreg", "--train", "--b-noise"], "does not apply with --train"),
        (["--workload", "linreg", "--param", "dim=-1"], "dim must be a positive integer"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    result = runner.invoke(app, ["noise-scale", *args], env=ENV)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
