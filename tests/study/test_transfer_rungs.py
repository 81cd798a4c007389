"""Rungs run "by rule" beside the tuned ones (``[transfer]``): what each rule costs.

Every rung but the base also trains the base rung's tuned hyperparameters moved to
its batch size by each rule, on fresh seeds, to the target or the budget; the
tuned steps-to-target are not touched by them; the analysis compares the two.
"""

from __future__ import annotations

import copy
import math

import pytest

from batchlab.analysis import median_steps, rule_costs
from batchlab.optim import transfer_hparams
from batchlab.results import load_study
from batchlab.study import RunSpec, Study, StudyConfig, run_training
from batchlab.study._plan import RULE_SLOT_BASE
from batchlab.workloads import get_workload


@pytest.fixture(scope="module")
def by_rule(tmp_path_factory):
    from .conftest import LINREG_STUDY

    data = copy.deepcopy(LINREG_STUDY)
    data["transfer"] = {"rules": ["linear", "sqrt"], "seeds": 2}
    plain = copy.deepcopy(LINREG_STUDY)
    out = tmp_path_factory.mktemp("transfer")
    with_rules = Study(StudyConfig.model_validate(data), out / "rules").run()
    tuned_only = Study(StudyConfig.model_validate(plain), out / "plain").run()
    return StudyConfig.model_validate(data), with_rules, tuned_only, out / "rules"


def test_every_rung_but_the_base_runs_each_rule_on_its_seeds(by_rule):
    config, result, _, _ = by_rule
    base = result.rungs[0]
    assert base.rule_steps == {} and base.trials_planned == 6
    for rung in result.rungs[1:]:
        rules = [t for t in rung.trials if t.rule is not None]
        assert rung.trials_planned == rung.trials_done == 6 + 4
        assert [t.slot for t in rules] == [RULE_SLOT_BASE + i for i in range(4)]
        assert [t.rule for t in rules] == ["linear", "linear", "sqrt", "sqrt"]
        assert len({t.seed for t in rung.trials}) == len(rung.trials)
        for t in rules:
            # The base rung's tuned point, moved by the rule (linreg: plain SGD, lr only).
            expected = transfer_hparams(
                base.best_hparams, 4, rung.batch_size, optimizer="sgd", lr_rule=t.rule
            ).hparams
            assert t.hparams == pytest.approx(expected)
            factor = rung.batch_size / 4 if t.rule == "linear" else math.sqrt(rung.batch_size / 4)
            assert t.hparams["lr"] == pytest.approx(base.best_hparams["lr"] * factor)
            assert t.params == base.best.params
            # Run to the target or the budget, as the trial alone would.
            alone = run_training(
                get_workload("linreg", {"dim": 8}),
                RunSpec(
                    batch_size=rung.batch_size,
                    optimizer="sgd",
                    hparams=t.hparams,
                    max_steps=rung.budget_steps,
                    eval_every=rung.eval_every,
                    seed=t.seed,
                    resolution=config.evaluation.resolution,
                ),
                _target(result),
            )
            assert t.steps_to_target == alone.steps_to_target


def _target(result):
    from batchlab.workloads import Target

    return Target(result.target["metric"], result.target["value"], result.target["direction"])


def test_rule_trials_leave_the_tuned_answer_alone(by_rule):
    _, result, tuned_only, _ = by_rule
    assert result.steps_to_target == tuned_only.steps_to_target
    for ours, theirs in zip(result.rungs, tuned_only.rungs, strict=True):
        assert ours.best_trial == theirs.best_trial
        assert ours.best_hparams == theirs.best_hparams


def test_the_analysis_prices_each_rule_and_the_results_file_keeps_it(by_rule):
    _, result, _, directory = by_rule
    costs = result.analysis["rule_costs"]
    assert [c["rule"] for c in costs] == ["linear", "sqrt"]
    read = load_study(directory)
    for cost in costs:
        for b, steps, ratio in zip(cost["batch_sizes"], cost["steps"], cost["ratios"], strict=True):
            rung = next(r for r in read.rungs if r.batch_size == b)
            assert steps == median_steps(rung.rule_steps[cost["rule"]])
            if ratio is not None:
                assert ratio == pytest.approx(steps / rung.steps_to_target)


def test_rule_costs_by_hand():
    costs = rule_costs(
        [8, 16, 32],
        [100, 60, None],
        [{}, {"sqrt": [90, 120, 80]}, {"sqrt": [50, None, None]}],
    )
    (sqrt,) = costs.values()
    assert sqrt.batch_sizes == (16, 32)
    assert sqrt.steps == (90, None)  # lower median of 3; fewer than half reached
    assert sqrt.ratios == (1.5, None)
    assert sqrt.unreached == ()  # at 32 the tuned rung did not reach either
    assert sqrt.median_ratio == 1.5
    again = rule_costs([8, 16], [100, 60], [{}, {"linear": [None, None]}])
    assert again["linear"].unreached == (16,)
    assert again["linear"].median_ratio is None


@pytest.mark.parametrize(
    ("transfer", "message"),
    [
        ({"rules": ["cubic"]}, "unknown rule"),
        ({"rules": ["surge"]}, "need transfer.noise_scale"),
        ({"rules": ["sqrt"], "base_batch_size": 8}, "not a rung of the ladder"),
        ({"rules": ["sqrt", "sqrt"]}, "each rule once"),
    ],
)
def test_bad_transfer_config_is_named(transfer, message):
    from pydantic import ValidationError

    from .conftest import LINREG_STUDY

    data = copy.deepcopy(LINREG_STUDY)
    data["transfer"] = transfer
    with pytest.raises(ValidationError, match=message):
        StudyConfig.model_validate(data)


def test_the_summary_and_the_report_show_the_costs(by_rule, capsys):
    from batchlab.cli._study import print_summary
    from batchlab.report import build_report

    _, result, _, directory = by_rule
    print_summary(result)
    out = capsys.readouterr().out
    assert "Tuned vs by rule (from the tuned batch size 4)" in out
    assert "Cost of following a rule instead of tuning: linear: " in out
    html = build_report([directory]).html
    section = html.split('<section id="rule-costs">', 1)[1].split("</section>", 1)[0]
    costs = {c["rule"]: c for c in result.analysis["rule_costs"]}
    for b, steps in zip(costs["sqrt"]["batch_sizes"], costs["sqrt"]["steps"], strict=True):
        row = section.split(f"<tr><td>{b}</td>", 1)[1].split("</tr>", 1)[0]
        assert ("not reached" if steps is None else f"{steps}") in row
