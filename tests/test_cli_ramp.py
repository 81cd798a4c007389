"""``batchlab ramp``: one run under the closed-loop batch ramp, its tables, JSON and errors."""

import json

import pytest
from typer.testing import CliRunner

from batchlab.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "300"}
LINREG = ["ramp", "--workload", "linreg", "--micro-batch-size", "4", "--max-batch-size", "256"]
LINREG += ["--steps", "400", "--eval-every", "5", "--branch-improvement", "0.3"]


def test_a_calibrated_run_reports_its_cost_with_the_branches_and_how_to_carry_r():
    result = runner.invoke(app, LINREG, env=ENV)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "Reached excess_loss <= 0.05 at step" in output and "with the branches" in output
    assert "Calibrations (branches from the run)" in output
    assert "add --prior-ratio" in output and "--max-calibrations 0 to this command" in output


def test_json_counts_the_branches_in_the_totals():
    result = runner.invoke(app, [*LINREG, "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "reached" and data["calibrations"]
    branches = [b for c in data["calibrations"] for b in c["branches"]]
    assert data["branch_steps"] == sum(b["steps_run"] for b in branches) > 0
    assert data["total_steps_to_target"] == data["steps_to_target"] + data["branch_steps"]
    assert data["total_examples_to_target"] == (
        data["examples_to_target"] + data["branch_examples"]
    )


def test_a_carried_ratio_grows_the_batch_without_branching():
    # prior_ratio 2 with no calibration to come: the batch follows 0.5 · 2 · B_simple
    # from the first update (it used to wait for a calibration that never came).
    args = [*LINREG, "--prior-ratio", "2", "--max-calibrations", "0", "--json"]
    result = runner.invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["calibrations"] == [] and data["branch_steps"] == 0
    assert data["changes"] and data["changes"][-1]["batch_size"] > 8
    assert all(c["ratio"] == pytest.approx(2.0) for c in data["changes"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fraction", "-1"], "fraction"),
        (["--prior-ratio", "0"], "prior_ratio"),
        (["--optimizer", "nope"], "nope"),
    ],
)
def test_bad_input_is_a_one_line_error_naming_it(args, message):
    result = runner.invoke(app, [*LINREG, *args], env=ENV)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_saved_run_carries_its_points_and_their_interval_to_the_next(tmp_path):
    first = tmp_path / "ramp.json"
    result = runner.invoke(app, [*LINREG, "--out", str(first)], env=ENV)
    assert result.exit_code == 0, result.output
    assert f"--carry-from {first}" in " ".join(result.output.split())
    saved = json.loads(first.read_text())
    points = [c["point"] for c in saved["calibrations"] if c["point"]]
    args = [*LINREG, "--carry-from", str(first), "--max-calibrations", "0", "--seed", "1"]
    result = runner.invoke(app, [*args, "--json"], env=ENV)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["carried"] == points and data["calibrations"] == []
    assert data["ratio"] == saved["ratio"]  # the same points, the same r̂ and interval
    assert data["changes"] and data["changes"][0]["ratio"] == pytest.approx(saved["ratio"]["ratio"])


def test_carry_from_a_file_that_is_not_a_ramp_run_names_the_option(tmp_path):
    bad = tmp_path / "other.json"
    bad.write_text('{"kind": "batchlab-cbs"}')
    for path in (bad, tmp_path / "missing.json"):
        result = runner.invoke(app, [*LINREG, "--carry-from", str(path)], env=ENV)
        assert result.exit_code == 2, result.output
        assert "--carry-from" in result.output and "Traceback" not in result.output
