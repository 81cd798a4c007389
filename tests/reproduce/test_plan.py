"""Reproduction plans: the shipped ones load, and mistakes fail early naming the field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from batchlab import ConfigError
from batchlab.reproduce import default_plan_dir, load_plan

PLANS = Path(__file__).resolve().parents[2] / "examples" / "findings"


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


def test_unknown_study_reference_names_the_field(tmp_path):
    plan = copy_plan(tmp_path)
    edit(plan / "findings.toml", 'sgd = "mnist1d-sgd"', 'sgd = "mnist1d-sdg"')
    with pytest.raises(ConfigError, match=r"momentum.sgd names study 'mnist1d-sdg'"):
        load_plan(plan)


def test_a_study_no_finding_uses_is_an_error(tmp_path):
    plan = copy_plan(tmp_path)
    shutil.copy(plan / "mnist1d-sgd.toml", plan / "extra.toml")
    edit(plan / "extra.toml", 'name = "mnist1d-sgd"', 'name = "extra"')
    with pytest.raises(ConfigError, match="extra is not used by any finding"):
        load_plan(plan)


def test_momentum_finding_needs_plain_sgd(tmp_path):
    plan = copy_plan(tmp_path)
    edit(plan / "findings.toml", 'sgd = "mnist1d-sgd"', 'sgd = "mnist1d-lamb"')
    with pytest.raises(ConfigError, match="momentum.sgd must use optimizer 'sgd'"):
        load_plan(plan)


def test_large_batch_rungs_must_be_on_the_reference_ladder(tmp_path):
    plan = copy_plan(tmp_path)
    edit(plan / "mnist1d-lars.toml", "batch_sizes = [512, 1024]", "batch_sizes = [512, 2048]")
    with pytest.raises(ConfigError, match=r"rungs \[2048\] that the reference"):
        load_plan(plan)


def test_a_typo_in_the_settings_is_a_validation_error(tmp_path):
    plan = copy_plan(tmp_path)
    edit(plan / "findings.toml", "small_batch_max = 32", "small_batch_maxx = 32")
    with pytest.raises(ValueError, match="small_batch_maxx"):
        load_plan(plan)


def test_missing_plan_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="is not a findings plan"):
        load_plan(tmp_path)
