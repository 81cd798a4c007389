"""Nearest-first claiming: a rung's trials run in order of distance to a neighbour's best."""

from __future__ import annotations

import math

from batchlab.study import Study, StudyConfig
from batchlab.study._claims import claim
from batchlab.study._order import nearest_first
from batchlab.study._plan import load_rung_studies
from batchlab.study._space import unit_distance


def open_rungs(tmp_path, nqm_study):
    config = StudyConfig.model_validate(nqm_study)
    study = Study(config, tmp_path / "s")
    study.prepare()
    return config, load_rung_studies(study._storage(), config)


def test_queue_order_until_some_rung_has_reached_the_target(tmp_path, nqm_study):
    config, rungs = open_rungs(tmp_path, nqm_study)
    (r0, s0), (r1, _) = rungs[:2]
    assert nearest_first(config, r1, rungs, None) is None
    # A rung whose trials all missed the target gives no guide either.
    for c in claim(s0, config, r0, 3):
        s0.tell(c.trial, math.inf)
    assert nearest_first(config, r1, rungs, None) is None


def test_trials_are_claimed_nearest_the_best_point_of_the_nearest_rung_first(tmp_path, nqm_study):
    config, rungs = open_rungs(tmp_path, nqm_study)
    space = config.search_space()
    (r0, s0), (r1, s1), (r2, s2) = rungs[:3]
    first = claim(s0, config, r0, 3)
    # Slot 2 is rung 0's best (slot 1 also reached, later): it guides rung 1, whose
    # planned points are the same, so rung 1 starts with slot 2, not slot 0.
    for c, steps in zip(first, (math.inf, 500.0, 300.0), strict=True):
        s0.tell(c.trial, steps)
    guide = first[2].trial.user_attrs["params"]
    claimed = claim(s1, config, r1, 8, order=nearest_first(config, r1, rungs, None))
    assert [c.slot for c in claimed][0] == 2
    distances = [unit_distance(c.trial.user_attrs["params"], guide, space) for c in claimed]
    assert distances[0] == 0.0 and distances == sorted(distances)
    assert sorted(c.slot for c in claimed) == list(range(8))  # every trial still runs

    # Rung 2's nearest rung with a result is rung 1 once it has one, else rung 0.
    assert nearest_first(config, r2, rungs, None) is not None
    claimed_r2 = claim(s2, config, r2, 1, order=nearest_first(config, r2, rungs, None))
    assert claimed_r2[0].slot == 2
    s1.tell(claimed[5].trial, 200.0)  # rung 1's best is now its sixth-nearest trial
    order = nearest_first(config, r2, rungs, None)
    (next_r2,) = claim(s2, config, r2, 1, order=order)
    assert next_r2.slot == claimed[5].slot


def test_tpe_trials_keep_queue_order(tmp_path, nqm_study):
    nqm_study["search"]["sampler"] = "tpe"
    config, rungs = open_rungs(tmp_path, nqm_study)
    (r0, s0), (r1, _) = rungs[:2]
    for c in claim(s0, config, r0, 2):
        s0.tell(c.trial, 100.0)
    assert nearest_first(config, r1, rungs, None) is None
