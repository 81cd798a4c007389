"""Neighbour trials (``[search] neighbours``): a rung also tries its neighbouring rungs'
best points, the learning rate moved by the optimizer's default rule.

Tuned hyperparameters change gradually with the batch size, so in a two-dimensional
space (lr x 1 - momentum), where a rung's own quasi-random points easily miss the
narrow valley of good points, its neighbours' optima are good starting points.
"""

from __future__ import annotations

import copy
import math

import pytest

from batchlab import StudyConfig
from batchlab.study import Study
from batchlab.study._plan import NEIGHBOUR_SLOT_BASE
from batchlab.study._space import from_unit, to_unit

from .test_nqm_study import independent_best_steps


def _clamped(value: float, r) -> float:
    return from_unit(min(max(to_unit(value, r), 0.0), 1.0), r)


def test_each_rung_starts_from_its_neighbours_best_points_with_the_lr_moved(nqm_study, tmp_path):
    nqm_study["search"].update(trials_per_rung=4, neighbours=2)
    nqm_study["evaluation"]["resolution"] = 0.0
    config = StudyConfig.model_validate(nqm_study)
    result = Study(config, tmp_path / "nqm").run()
    space = config.search_space()
    search_only = independent_best_steps(config)  # the same 4 points, no neighbours
    by_size = {r.batch_size: r for r in result.rungs}
    sizes = sorted(by_size)
    best_search = {}
    for rung in result.rungs:
        search = [t for t in rung.trials if t.slot < NEIGHBOUR_SLOT_BASE]
        reached = [t for t in search if t.steps_to_target is not None]
        best_search[rung.batch_size] = min(reached, key=lambda t: (t.steps_to_target, t.slot))
    improved = False
    for i, rung in enumerate(result.rungs):
        assert rung.trials_done == rung.trials_planned == 4 + 2
        trials = [t for t in rung.trials if t.slot >= NEIGHBOUR_SLOT_BASE]
        assert [t.slot for t in trials] == [NEIGHBOUR_SLOT_BASE + k for k in range(2)]
        # The two nearest rungs, the smaller first: 4 -> 16, 64; 16 -> 4, 64; ...
        nearest = sorted((j for j in range(len(sizes)) if j != i), key=lambda j: (abs(j - i), j))
        for t, j in zip(trials, nearest, strict=False):
            origin = sizes[j]
            center = dict(best_search[origin].params)
            # Momentum SGD: the linear rule moves the learning rate with the batch.
            center["lr"] *= rung.batch_size / origin
            assert t.warm_start["from_batch_size"] == origin
            assert t.warm_start["center"] == pytest.approx(center, rel=1e-12)
            # Exactly at the moved point (clamped to the searched range).
            assert t.warm_start["width"] == 0.0
            for name, r in space.items():
                assert t.params[name] == pytest.approx(_clamped(center[name], r), rel=1e-9)
        # More points can only find as few steps or fewer (exact curves: no seed noise).
        assert rung.steps_to_target <= search_only[rung.batch_size]
        improved |= rung.steps_to_target < search_only[rung.batch_size]
    assert improved  # four points per rung miss the valley somewhere; a neighbour found it


def test_under_warm_start_only_smaller_rungs_are_neighbours(nqm_study, tmp_path):
    nqm_study["search"].update(trials_per_rung=4, neighbours=2, warm_start=True)
    result = Study(StudyConfig.model_validate(nqm_study), tmp_path / "nqm").run()
    first, *others = result.rungs
    assert first.trials_planned == 4 and all(t.slot < 4 for t in first.trials)
    sizes = [r.batch_size for r in result.rungs]
    for i, rung in enumerate(others, start=1):
        trials = [t for t in rung.trials if t.slot >= NEIGHBOUR_SLOT_BASE]
        starts = [(t.warm_start["from_batch_size"], t.warm_start["width"]) for t in trials]
        if i >= 2:
            assert starts == [(sizes[i - 1], 0.0), (sizes[i - 2], 0.0)]
        else:  # one smaller rung: the second trial searches a window around its point
            assert starts == [(sizes[0], 0.0), (sizes[0], 0.125)]
            assert trials[0].warm_start["center"] == trials[1].warm_start["center"]


def test_confirmation_waits_for_the_neighbour_trials_and_may_confirm_one(linreg_study, tmp_path):
    data = copy.deepcopy(linreg_study)
    data["search"].update(trials_per_rung=3, neighbours=2, confirm_top=3, confirm_seeds=1)
    result = Study(StudyConfig.model_validate(data), tmp_path / "s").run()
    confirmed_neighbour = False
    for rung in result.rungs:
        tuned = {t.slot: t for t in rung.trials if t.confirm_of is None}
        confirm = [t for t in rung.trials if t.confirm_of is not None]
        ranked = sorted(
            (t for t in tuned.values() if t.steps_to_target is not None),
            key=lambda t: (t.steps_to_target, t.slot),
        )
        # Candidates come from the search and the neighbour trials together.
        assert [t.confirm_of for t in confirm] == [t.slot for t in ranked[:3]]
        confirmed_neighbour |= any(t.confirm_of >= NEIGHBOUR_SLOT_BASE for t in confirm)
    assert confirmed_neighbour


def test_tpe_and_one_rung_ladders_plan_no_neighbour_trials(linreg_study, tmp_path):
    tpe = copy.deepcopy(linreg_study)
    tpe["search"].update(sampler="tpe", trials_per_rung=2, neighbours=2)
    one = copy.deepcopy(linreg_study)
    one["search"].update(trials_per_rung=2, neighbours=2)
    one["ladder"] = {"batch_sizes": [16]}
    for name, data in (("tpe", tpe), ("one", one)):
        result = Study(StudyConfig.model_validate(data), tmp_path / name).run()
        assert all(r.trials_planned == 2 for r in result.rungs), name


def test_neighbours_is_checked(linreg_study):
    linreg_study["search"]["neighbours"] = -1
    with pytest.raises(ValueError, match=r"search\.neighbours"):
        StudyConfig.model_validate(linreg_study)


def test_adding_neighbours_on_resume_plans_only_them(linreg_study, tmp_path):
    first = Study(StudyConfig.model_validate(linreg_study), tmp_path / "s").run()
    linreg_study["search"]["neighbours"] = 2
    again = Study(StudyConfig.model_validate(linreg_study), tmp_path / "s").run(force=True)
    for before, after in zip(first.rungs, again.rungs, strict=True):
        assert after.trials_planned == before.trials_planned + 2
        kept = [t for t in after.trials if t.slot < NEIGHBOUR_SLOT_BASE]
        assert [(t.slot, t.steps_to_target) for t in kept] == [
            (t.slot, t.steps_to_target) for t in before.trials
        ]
        assert all(not math.isnan(t.params["lr"]) for t in after.trials)
