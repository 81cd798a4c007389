"""Targets of a fixed improvement and the geometric evaluation grid (pure functions)."""

from __future__ import annotations

import math

import pytest

from batchlab.cbs import eval_schedule, improvement_target


def test_fraction_of_a_minimised_metric_scales_the_value():
    target = improvement_target(2.0, "min", metric="loss", fraction=0.25)
    assert (target.metric, target.value, target.direction) == ("loss", 1.5, "min")


def test_delta_moves_in_the_metric_direction():
    assert improvement_target(2.0, "min", metric="loss", delta=0.5).value == 1.5
    assert improvement_target(0.8, "max", metric="accuracy", delta=0.05).value == pytest.approx(
        0.85
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"delta": 0.1, "fraction": 0.1}, "exactly one"),
        ({"fraction": 1.0}, "improvement_fraction must be in"),
        ({"fraction": 0.0}, "improvement_fraction must be in"),
        ({"delta": -1.0}, "improvement_delta must be a positive"),
        ({"delta": math.nan}, "improvement_delta must be a positive"),
    ],
)
def test_bad_improvements_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        improvement_target(1.0, "min", metric="loss", **kwargs)


def test_fraction_of_a_maximised_metric_is_refused():
    with pytest.raises(ValueError, match="give improvement_delta instead"):
        improvement_target(0.9, "max", metric="accuracy", fraction=0.1)


def test_non_finite_checkpoint_value_is_refused():
    with pytest.raises(ValueError, match="must be finite"):
        improvement_target(math.inf, "min", metric="loss", fraction=0.1)


def test_resolution_zero_evaluates_every_step():
    assert eval_schedule(7, 0.0) == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize("resolution", [0.02, 0.05, 0.1, 0.3])
def test_grid_gaps_are_at_most_the_resolution(resolution):
    steps = eval_schedule(5000, resolution)
    assert steps[0] == 1 and steps[-1] == 5000
    assert all(b > a for a, b in zip(steps, steps[1:], strict=False))
    # A target first met just after step a is read at the next grid step b <= a(1 + r) + 1.
    assert all(
        b - a <= max(1, resolution * a) + 1e-9 for a, b in zip(steps, steps[1:-1], strict=False)
    )
    # Far fewer evaluations than steps.
    assert len(steps) < 1.5 * (1 / resolution + math.log(5000 * resolution) / resolution)


@pytest.mark.parametrize(("max_steps", "resolution"), [(0, 0.05), (10, 1.0), (10, -0.1)])
def test_bad_grids_are_refused(max_steps, resolution):
    with pytest.raises(ValueError):
        eval_schedule(max_steps, resolution)
