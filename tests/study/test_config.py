"""StudyConfig validation: every invalid field gets one clear error naming it."""

import copy
from pathlib import Path

import pydantic
import pytest

from batchlab.study import StudyConfig
from batchlab.study._config import validate_against_workload
from batchlab.workloads import get_workload

EXAMPLES = Path(__file__).parents[2] / "examples"

VALID = {
    "name": "t",
    "optimizer": "momentum",
    "workload": {"name": "nqm", "params": {"dim": 100}},
    "ladder": {"min": 4, "max": 64},
    "search": {"trials_per_rung": 4},
    "budget": {"steps": 1000},
    "evaluation": {"every": 10},
}


def with_change(path: str, value):
    data = copy.deepcopy(VALID)
    keys = path.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(keys[-1])
    else:
        node[keys[-1]] = value
    return data


_DELETE = object()


@pytest.mark.parametrize("path", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_every_example_config_is_valid(path):
    config = StudyConfig.from_toml(EXAMPLES / path)
    assert config.batch_sizes() == sorted(config.batch_sizes())


def test_powers_of_two_ladder_and_budget_from_examples():
    config = StudyConfig.model_validate(
        with_change("budget", {"examples": 10_000, "min_steps": 100, "max_steps": 2000})
    )
    assert config.batch_sizes() == [4, 8, 16, 32, 64]
    assert [config.budget.steps_for(b) for b in config.batch_sizes()] == [2000, 1250, 625, 313, 157]


def test_ladder_bounds_need_not_be_powers_of_two():
    config = StudyConfig.model_validate(with_change("ladder", {"min": 3, "max": 100}))
    assert config.batch_sizes() == [4, 8, 16, 32, 64]


def test_per_octave_spaces_the_rungs_evenly_in_log_batch_size():
    config = StudyConfig.model_validate(
        with_change("ladder", {"min": 4, "max": 64, "per_octave": 2})
    )
    sizes = config.batch_sizes()
    assert sizes == [4, 6, 8, 11, 16, 23, 32, 45, 64]  # round(2 ** (k / 2))
    # the rounded middles sit within 1/2 of the geometric mean of their neighbours
    for low, middle, high in zip(sizes[0::2], sizes[1::2], sizes[2::2], strict=False):
        assert abs(middle - (low * high) ** 0.5) <= 0.5
    one = StudyConfig.model_validate(with_change("ladder", {"min": 4, "max": 64, "per_octave": 1}))
    assert one.batch_sizes() == StudyConfig.model_validate(VALID).batch_sizes()
    three = StudyConfig.model_validate(
        with_change("ladder", {"min": 3, "max": 17, "per_octave": 3})
    )
    assert three.batch_sizes() == [3, 4, 5, 6, 8, 10, 13, 16]  # from 2 ** (5 / 3) = 3.17
    # a bound that is itself a rounded rung is one: 23 = round(2 ** 4.5 = 22.6)
    middle = StudyConfig.model_validate(
        with_change("ladder", {"min": 23, "max": 91, "per_octave": 2})
    )
    assert middle.batch_sizes() == [23, 32, 45, 64, 91]


def test_default_search_space_follows_shallue():
    config = StudyConfig.model_validate(with_change("search", {"trials_per_rung": 4}))
    space = config.search_space()
    assert set(space) == {"lr", "one_minus_momentum"}
    assert all(r.scale == "log" for r in space.values())


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        ("workload.name", "mnist", "workload.name", "unknown workload 'mnist'"),
        ("ladder", {"batch_sizes": []}, "ladder", "batch_sizes is empty"),
        ("ladder", {"batch_sizes": [16, 0]}, "ladder.batch_sizes.1", "greater than 0"),
        ("ladder", {"min": 64, "max": 4}, "ladder", "min (64) is larger than max (4)"),
        ("ladder", {"min": 5, "max": 7}, "ladder", "no power of two"),
        ("ladder", {"min": 4}, "ladder", "both min and max"),
        ("ladder", {"min": 17, "max": 22, "per_octave": 2}, "ladder", "no rung of 2 per doubling"),
        ("ladder", {"min": 4, "max": 64, "per_octave": 0}, "ladder.per_octave", "greater than"),
        ("ladder", {"batch_sizes": [8, 16], "per_octave": 2}, "ladder", "not both"),
        ("optimizer", "adagrad", "optimizer", "unknown optimizer 'adagrad'"),
        ("search.sampler", "grid", "search.sampler", "'sobol', 'random' or 'tpe'"),
        ("search.trials_per_rung", 0, "search.trials_per_rung", "greater than 0"),
        ("search.space", {"lr": {"low": 1.0, "high": 0.1}}, "search.space.lr", "must be smaller"),
        (
            "search.space",
            {"lr": {"low": 0.0, "high": 1.0, "scale": "log"}},
            "search.space.lr",
            "low > 0",
        ),
        (
            "search.space",
            {"lr": {"low": 0.1, "high": 1.0, "scale": "cubic"}},
            "search.space.lr.scale",
            "'log' or 'linear'",
        ),
        (
            "search.space",
            {"beta2": {"low": 0.9, "high": 0.99}},
            "",
            "does not apply to optimizer 'momentum'",
        ),
        ("search.space", {"one_minus_momentum": {"low": 0.1, "high": 0.5}}, "", "must include lr"),
        ("budget", {"steps": 5}, "", "smaller than the evaluation interval"),
        ("budget", {}, "budget", "exactly one of steps or examples"),
        ("budget", {"steps": 0}, "budget.steps", "greater than 0"),
        ("evaluation", {"every": 5, "per_run": 4}, "evaluation", "either every or per_run"),
        (
            "evaluation",
            {"every": 10, "resolution": -0.01},
            "evaluation.resolution",
            "greater than or equal to 0",
        ),
        ("evaluation", {"every": 10, "resolution": 1.0}, "evaluation.resolution", "less than 1"),
        (
            "evaluation",
            {"every": 10, "resolution": float("nan")},
            "evaluation.resolution",
            "finite number",
        ),
        ("name", "has space", "name", "pattern"),
        (
            "target",
            {"metric": "loss", "value": 1.0, "direction": "up"},
            "target.direction",
            "'max' or 'min'",
        ),
        ("seed", -1, "seed", "greater than or equal to 0"),
        ("extra_field", 1, "extra_field", "Extra inputs are not permitted"),
        (
            "workers",
            {"heartbeat_interval": 5, "grace_period": 2},
            "workers",
            "grace_period must be longer",
        ),
    ],
)
def test_invalid_field_gets_an_error_naming_it(path, value, field, message):
    with pytest.raises(pydantic.ValidationError) as info:
        StudyConfig.model_validate(with_change(path, value))
    errors = info.value.errors()
    assert len(errors) == 1, errors
    location = ".".join(str(part) for part in errors[0]["loc"])
    assert location == field
    assert message in errors[0]["msg"]


def test_target_metric_must_be_reported_by_the_workload():
    config = StudyConfig.model_validate(
        with_change("target", {"metric": "accuracy", "value": 0.9, "direction": "max"})
    )
    with pytest.raises(ValueError, match="does not report 'accuracy'; it reports: loss"):
        validate_against_workload(config, get_workload("nqm", {"dim": 100}))


def test_largest_rung_must_fit_the_training_set():
    data = with_change("workload", {"name": "digits-mlp"})
    data["ladder"] = {"batch_sizes": [64, 4096]}
    config = StudyConfig.model_validate(data)
    with pytest.raises(ValueError, match="4096 is larger than the training set"):
        validate_against_workload(config, get_workload("digits-mlp"))


@pytest.mark.parametrize(("warmup", "refused"), [(0.1, True), (0.0, False)])
def test_exact_workloads_refuse_a_fixed_warmup_before_any_trial_runs(warmup, refused):
    # Checked once, here at the boundary: no trial may fail later for it.
    config = StudyConfig.model_validate(with_change("search.fixed", {"warmup_fraction": warmup}))
    nqm = get_workload("nqm", {"dim": 100})
    if refused:
        with pytest.raises(ValueError, match="exact curves for a constant learning rate only"):
            validate_against_workload(config, nqm)
    else:
        validate_against_workload(config, nqm)
