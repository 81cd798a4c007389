"""Best trials on the edge of the searched space are flagged in results.json, the CLI and the report."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from batchlab.cli import app
from batchlab.report import write_report
from batchlab.results import RungResult, SearchRange, TrialRecord, edge_warnings, load_study

from ..study.conftest import NQM_STUDY
from ..study.test_cli_study import ENV, write_config

LR = SearchRange(low=1e-3, high=1.0, scale="log")  # position = log10(lr / 1e-3) / 3


def rung(best_lr: float, other_lrs: list[float]) -> RungResult:
    trials = [
        TrialRecord(
            number=i,
            slot=i,
            seed=i,
            params={"lr": lr},
            hparams={"lr": lr},
            status="reached" if i == 0 else "beaten",
            steps_to_target=100 if i == 0 else None,
            reason=None,
            wall_time_s=1.0,
            curve=None,
        )
        for i, lr in enumerate([best_lr, *other_lrs])
    ]
    return RungResult(
        batch_size=64,
        budget_steps=1000,
        eval_every=10,
        trials_planned=len(trials),
        trials_done=len(trials),
        trials_running=0,
        steps_to_target=100,
        best_hparams={"lr": best_lr},
        best_trial=0,
        trials=trials,
    )


@pytest.mark.parametrize(
    ("best", "others", "side"),
    [
        (0.1, [0.01, 0.3], None),  # bracketed on both sides, inside the range
        (0.3, [0.01, 0.1], "high"),  # the largest tried: unbracketed above
        (0.003, [0.01, 0.1], "low"),  # the smallest tried
        (0.95, [0.01, 0.99], "high"),  # within 5% of the top, even with a trial beyond
        (0.0011, [0.001, 0.01], "low"),  # within 5% of the bottom
    ],
)
def test_edge_rule_on_hand_built_rungs(best, others, side):
    found = edge_warnings([rung(best, others)], {"lr": LR})
    assert [w.side for w in found] == ([side] if side else [])
    if side:
        assert found[0].param == "lr" and found[0].batch_size == 64
        assert f"{side} edge" in found[0].message and "widen the range" in found[0].message


def test_a_lone_trial_is_on_both_ends_and_is_not_flagged_for_either():
    # One trial brackets nothing, but it is not evidence for one side either.
    assert edge_warnings([rung(0.1, [])], {"lr": LR}) == []


def test_bad_margin_is_named():
    with pytest.raises(ValueError, match="margin"):
        edge_warnings([rung(0.1, [0.01])], {"lr": LR}, margin=0.5)


def test_too_narrow_space_is_flagged_in_results_cli_and_report(tmp_path):
    # SGD on the NQM with learning rates far below its best one: every rung's best is
    # the largest LR tried.
    data = json.loads(json.dumps(NQM_STUDY))
    data["optimizer"] = "sgd"
    data["search"]["space"] = {"lr": {"low": 0.01, "high": 0.05}}
    config = write_config(tmp_path, data)
    out = tmp_path / "narrow"
    result = CliRunner().invoke(app, ["study", "run", str(config), "--out", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    assert result.output.count("search space too narrow?") == 5  # one line per rung

    written = json.loads((out / "results.json").read_text())
    assert [(e["batch_size"], e["param"], e["side"]) for e in written["edges"]] == [
        (b, "lr", "high") for b in (4, 16, 64, 256, 1024)
    ]
    assert all("widen the range" in e["message"] for e in written["edges"])

    study = load_study(out)
    assert len(edge_warnings(study.rungs, study.search_space)) == 5
    html = write_report(out, tmp_path / "report.html").read_text()
    assert "Search space too narrow?" in html and "largest tried" in html
