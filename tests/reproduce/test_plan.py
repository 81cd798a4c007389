"""Reproduction plans: the shipped ones load, and mistakes fail early naming the field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from batchlab import ConfigError
from batchlab.reproduce import default_plan_dir, load_plan
from batchlab.study import StudyConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLANS = EXAMPLES / "findings"


@pytest.mark.parametrize("variant", ["full", "quick"])
def test_shipped_plans_load_with_studies_in_findings_order(variant):
    plan = load_plan(PLANS / variant)
    assert plan.variant == variant
    assert list(plan.studies)[:3] == plan.settings.regimes.studies
    assert set(plan.studies) == {
        "mnist1d-nesterov",
        "digits-nesterov",
        "shakespeare-adam",
        "mnist1d-sgd",
        "mnist1d-nesterov-40k",
        "mnist1d-lars",
        "mnist1d-lamb",
    }


def test_quick_plan_is_a_cut_down_full_plan():
    full, quick = load_plan(PLANS / "full"), load_plan(PLANS / "quick")
    for name, config in quick.studies.items():
        reference = full.studies[name]
        assert config.optimizer == reference.optimizer
        assert config.workload.name == reference.workload.name
        assert len(config.batch_sizes()) <= len(reference.batch_sizes())
        assert config.search.trials_per_rung <= reference.search.trials_per_rung


def test_full_plans_reference_study_is_the_default_study():
    """Findings 1-7 say they measure the default study: its settings, stages included."""
    reference = load_plan(PLANS / "full").studies["mnist1d-nesterov"].to_json_dict()
    default = StudyConfig.from_toml(EXAMPLES / "mnist1d-cnn.toml").to_json_dict()
    for config in (reference, default):
        del config["name"], config["workload"]["path"]
    assert reference == default


def test_full_plan_studies_run_the_default_studys_stages():
    default = StudyConfig.from_toml(EXAMPLES / "mnist1d-cnn.toml").search
    stages = ("refine", "edge_extension", "confirm_top", "confirm_seeds", "confirm_reserve")
    stages += ("spread_seeds", "spread_rounds", "recheck")
    for name, config in load_plan(PLANS / "full").studies.items():
        for stage in stages:
            assert getattr(config.search, stage) == getattr(default, stage), (name, stage)


def test_default_plan_dir_finds_the_checkout_from_anywhere(tmp_path):
    assert default_plan_dir("quick", start=tmp_path) == PLANS / "quick"


def copy_plan(tmp_path: Path) -> Path:
    target = tmp_path / "plan"
    shutil.copytree(PLANS / "quick", target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("file", "old", "new", "error", "match"),
    [
        pytest.param(
            "findings.toml",
            'sgd = "mnist1d-sgd"',
            'sgd = "mnist1d-sdg"',
            ConfigError,
            r"momentum.sgd names study 'mnist1d-sdg'",
            id="unknown-study-reference-names-the-field",
        ),
        pytest.param(
            "findings.toml",
            'sgd = "mnist1d-sgd"',
            'sgd = "mnist1d-lamb"',
            ConfigError,
            "momentum.sgd must use optimizer 'sgd'",
            id="momentum-finding-needs-plain-sgd",
        ),
        pytest.param(
            "mnist1d-lars.toml",
            "batch_sizes = [512, 1024]",
            "batch_sizes = [512, 2048]",
            ConfigError,
            r"rungs \[2048\] that the reference",
            id="large-batch-rungs-must-be-on-the-reference-ladder",
        ),
        pytest.param(
            "findings.toml",
            "small_batch_max = 32",
            "small_batch_maxx = 32",
            ValueError,
            "small_batch_maxx",
            id="a-typo-in-the-settings-is-a-validation-error",
        ),
    ],
)
def test_a_mistake_in_the_plan_fails_on_load_naming_it(tmp_path, file, old, new, error, match):
    plan = copy_plan(tmp_path)
    edit(plan / file, old, new)
    with pytest.raises(error, match=match):
        load_plan(plan)


def test_a_study_no_finding_uses_is_an_error(tmp_path):
    plan = copy_plan(tmp_path)
    shutil.copy(plan / "mnist1d-sgd.toml", plan / "extra.toml")
    edit(plan / "extra.toml", 'name = "mnist1d-sgd"', 'name = "extra"')
    with pytest.raises(ConfigError, match="extra is not used by any finding"):
        load_plan(plan)


def test_missing_plan_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="is not a findings plan"):
        load_plan(tmp_path)
