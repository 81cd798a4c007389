"""The report's "Hyperparameters vs batch size" section for a study that searched β2 and λ."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from batchlab.report import build_report
from batchlab.report._plots import hparam_rules_figure
from batchlab.report._summary import summarize
from batchlab.report._view import hparam_rules, transfer_text
from batchlab.results import load_study

from .conftest import make_results

#: Five rungs and six trials each keep the report (a figure per rung) quick to draw.
BATCH_SIZES = (8, 16, 32, 64, 128)
#: λ ∝ √B with η ∝ √B keeps AdamW's timescale B/(ηλN) fixed; β2 = 0.99^(B/8) keeps
#: its half-life fixed; η ∝ √B is the square-root rule.
SPACE = {
    "lr": {"low": 1e-4, "high": 1.0, "scale": "log"},
    "one_minus_beta2": {"low": 1e-3, "high": 1.0, "scale": "log"},
    "weight_decay": {"low": 1e-3, "high": 10.0, "scale": "log"},
}


def tuned(batch_size: int) -> dict[str, float]:
    root = math.sqrt(batch_size / 8)
    return {"lr": 1e-3 * root, "beta2": 0.99 ** (batch_size / 8), "weight_decay": 0.01 * root}


def adamw_results() -> dict[str, Any]:
    """The hand-made study, as AdamW with lr, 1 − β2 and λ searched, best trials on the rules."""
    results = make_results(
        "adamw-rules", batch_sizes=BATCH_SIZES, trials=6, in_progress=False, noise=False
    )
    results["config"]["optimizer"] = "adamw"
    results["config"]["search"]["space"] = SPACE
    results["workload"]["train_size"] = 10_000
    for rung in results["rungs"]:
        for record in rung["trials"]:
            hparams = tuned(rung["batch_size"])
            if record["number"] != rung["best_trial"]:
                hparams = {k: v * 1.5 for k, v in hparams.items() if k != "beta2"} | {"beta2": 0.9}
            record["hparams"] = hparams
            record["params"] = {
                "lr": hparams["lr"],
                "one_minus_beta2": 1 - hparams["beta2"],
                "weight_decay": hparams["weight_decay"],
            }
        rung["best_hparams"] = tuned(rung["batch_size"])
    return results


@pytest.fixture(scope="module")
def html() -> str:
    return build_report(adamw_results()).html


def test_section_has_a_table_per_searched_hyperparameter_and_the_transfer_line(html):
    assert '<section id="hparam-rules">' in html
    assert "Hyperparameters vs batch size" in html
    for name in ("lr", "beta2", "weight_decay"):
        assert f'id="hparam-rules-0-{name}"' in html
    section = html.split('<section id="hparam-rules">')[1].split("</section>")[0]
    assert "to go from B=8 to B=128 on this model: lr x4 (closest: square-root rule" in section
    assert "beta2 0.99 -&gt; 0.8515 (closest: half-life rule" in section  # 0.99^16
    assert "weight_decay x4 (closest: timescale rule" in section
    for rule in ("linear rule", "square-root rule", "half-life rule", "timescale rule"):
        assert rule in section
    assert "arXiv:2507.07101" in section  # Marek et al., the half-life rule
    assert len(re.findall(r'<img src="data:image/png;base64,', section)) == 1


def test_view_rows_hold_each_rules_prediction_and_error():
    study = load_study(adamw_results())
    summary = summarize(study)
    rules = {h.name: h for h in hparam_rules(summary)}
    beta2 = rules["beta2"]
    assert [r.rule for r in beta2.rules] == ["half-life", "unchanged"]
    last = beta2.rows[-1]
    assert last.batch_size == 128 and last.value == pytest.approx(0.99**16)
    half_life, unchanged = last.predictions
    assert half_life == (pytest.approx(0.99**16), pytest.approx(1.0))
    # "unchanged" predicts 0.99: measured/predicted of 1 − β2 is (1 − 0.99^16)/0.01.
    assert unchanged == (pytest.approx(0.99), pytest.approx((1 - 0.99**16) / 0.01))
    assert beta2.rules[0].consistent and not beta2.rules[1].consistent
    assert any("half-life" in line and "interval [" in line for line in beta2.exponents)
    timescale = rules["weight_decay"].rules[0]
    assert timescale.rule == "timescale" and timescale.error_factor == pytest.approx(1.0)
    assert hparam_rules_figure(study, summary).startswith("data:image/png;base64,")


def test_no_section_without_tuned_hyperparameters_that_vary():
    results = make_results(
        "flat", batch_sizes=BATCH_SIZES[:3], trials=6, in_progress=False, noise=False
    )
    for rung in results["rungs"]:
        rung["best_hparams"] = {"lr": 0.1, "momentum": 0.9}
    study = load_study(results)
    summary = summarize(study)
    assert hparam_rules(summary) == [] and transfer_text(summary) == ""
    assert hparam_rules_figure(study, summary) is None
