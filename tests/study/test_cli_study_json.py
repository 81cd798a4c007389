"""``batchlab study run|resume --json``: one JSON document on stdout, progress on stderr,
and the documented exit codes when a study stops."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.cli._common import EXIT_INTERRUPTED, EXIT_OK, EXIT_STOPPED
from batchlab.study import Study

from .conftest import LINREG_STUDY
from .test_cli_study import write_config
from .test_failures import failing_study

runner = CliRunner()
ENV = {"COLUMNS": "2000"}  # wide enough that no human line is wrapped


def test_run_and_resume_json_is_the_summary_and_results_json(tmp_path):
    config = write_config(tmp_path, LINREG_STUDY)
    out = tmp_path / "runs" / "linreg"
    run = runner.invoke(app, ["study", "run", str(config), "--out", str(out), "--json"], env=ENV)
    assert run.exit_code == EXIT_OK, run.output
    doc = json.loads(run.stdout)  # stdout holds the JSON document and nothing else
    assert set(doc) == {"study", "directory", "results", "answer", "result"}
    assert doc["study"] == LINREG_STUDY["name"] and doc["directory"] == str(out)
    assert Path(doc["results"]) == out / "results.json"
    assert json.loads(Path(doc["results"]).read_text()) == doc["result"]
    result = doc["result"]
    assert [r["batch_size"] for r in result["rungs"]] == LINREG_STUDY["ladder"]["batch_sizes"]
    assert all(r["trials_done"] == 6 for r in result["rungs"])
    assert isinstance(result["edges"], list) and doc["answer"]["headline"]
    assert doc["answer"] == result["analysis"]["answer"]  # three reached rungs: a fit
    assert "batch size" in run.stderr  # the progress display moved to stderr

    resumed = runner.invoke(app, ["study", "resume", str(out), "--json"], env=ENV)
    assert resumed.exit_code == EXIT_OK, resumed.output
    again = json.loads(resumed.stdout)
    assert again["answer"] == doc["answer"]
    assert again["result"]["rungs"] == result["rungs"]  # nothing re-ran

    # The table shows the same answer as the JSON.
    human = runner.invoke(app, ["study", "resume", str(out)], env=ENV)
    assert human.exit_code == EXIT_OK, human.output
    assert f"Answer: {doc['answer']['headline']}" in human.stdout
    sources = doc["answer"]["interval_sources"]  # what sets B_crit's interval
    assert sources is not None and sources["sentence"] in human.stdout
    assert f"Results: {out / 'results.json'}" in human.stdout


def test_json_has_an_answer_without_a_fit(tmp_path, linreg_study):
    linreg_study["ladder"]["batch_sizes"] = [4, 16]
    linreg_study["search"]["trials_per_rung"] = 2
    config = write_config(tmp_path, linreg_study)
    out = tmp_path / "two"
    result = runner.invoke(app, ["study", "run", str(config), "--out", str(out), "--json"], env=ENV)
    assert result.exit_code == EXIT_OK, result.output
    doc = json.loads(result.stdout)
    assert doc["result"]["analysis"] is None  # two rungs cannot be fitted
    assert [r["batch_size"] for r in doc["result"]["rungs"]] == [4, 16]
    answer = doc["answer"]
    assert answer["b_crit"] is None and "fit of S(B) needs 3" in answer["reason"]
    assert answer["reason"] in answer["headline"]


def test_fail_fast_with_json_exits_stopped_with_nothing_on_stdout(tmp_path, linreg_study):
    config = write_config(tmp_path, failing_study(linreg_study, "runtime"))
    result = runner.invoke(
        app,
        ["study", "run", str(config), "--out", str(tmp_path / "out"), "--fail-fast", "--json"],
        env=ENV,
    )
    assert result.exit_code == EXIT_STOPPED, result.output
    assert result.stdout.strip() == ""
    assert "failed: RuntimeError: boom" in result.stderr


def test_ctrl_c_exits_with_the_documented_code(tmp_path, monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Study, "run", interrupted)
    config = write_config(tmp_path, LINREG_STUDY)
    result = runner.invoke(
        app, ["study", "run", str(config), "--out", str(tmp_path / "out"), "--json"], env=ENV
    )
    assert result.exit_code == EXIT_INTERRUPTED
    assert result.stdout.strip() == ""
