"""Candidates held in reserve (``[search] confirm_reserve``, issue [answer]).

Near the edge of stability the luckiest search points are often unstable: fast on one
seed, never on another. When the candidate a rung would choose after confirmation
missed the target on a seed, the next candidates are confirmed too; otherwise their
trials are skipped, never trained, and their slots count as done.
"""

from __future__ import annotations

import copy

import optuna
import pytest

from batchlab.study import Study, StudyConfig, open_storage
from batchlab.study._collect import missing_slots
from batchlab.study._plan import (
    CONFIRM_SLOT_BASE,
    RESERVE_SLOT_BASE,
    SKIPPED,
    load_rung_studies,
    plan_rungs,
    slot_seed,
)

SPEC = "tests.study.unstable_workload:make"
PLANNED = 6 + 2 * 2 + 1 * 2  # search, confirmations (2 x 2 seeds), reserve (1 x 2 seeds)


def reserve_study(linreg_study: dict, unstable: bool) -> StudyConfig:
    data = copy.deepcopy(linreg_study)
    data["search"].update(confirm_top=2, confirm_seeds=2, confirm_reserve=1)
    data["performance"] = {"ensemble_size": 1}
    config = StudyConfig.model_validate(data)
    if unstable:  # the second seed of both confirmed candidates never reaches the target
        never = [
            slot_seed(config, rung, CONFIRM_SLOT_BASE + i)
            for rung in plan_rungs(config)
            for i in (2, 3)  # seed-major: trials 0, 1 are each candidate's first seed
        ]
        data["workload"] = {"name": SPEC, "params": {"never": never, "dim": 8}}
        config = StudyConfig.model_validate(data)
    return config


def ranked_search_slots(rung) -> list[int]:
    search = [t for t in rung.trials if t.confirm_of is None and t.steps_to_target is not None]
    return [t.slot for t in sorted(search, key=lambda t: (t.steps_to_target, t.slot))]


def test_unstable_candidates_bring_in_the_reserve(linreg_study, tmp_path):
    result = Study(reserve_study(linreg_study, unstable=True), tmp_path / "study").run()
    assert result.complete
    for rung in result.rungs:
        ranked = ranked_search_slots(rung)
        assert rung.trials_done == rung.trials_planned == PLANNED
        # Both confirmed candidates missed on a seed; the third candidate ran on two.
        assert rung.candidate_slots == ranked[:3], rung.batch_size
        assert [None in runs for runs in rung.candidates] == [True, True, False]
        reserve = [t for t in rung.trials if t.slot >= RESERVE_SLOT_BASE]
        assert [t.slot for t in reserve] == [RESERVE_SLOT_BASE, RESERVE_SLOT_BASE + 1]
        assert all(t.confirm_of == ranked[2] and t.status == "reached" for t in reserve)
        # The rung's count is the fewest median over the three candidates' seeds.
        assert rung.steps_to_target == min(
            sorted(runs, key=lambda s: float("inf") if s is None else s)[1]
            for runs in rung.candidates
        )


def test_stable_candidates_skip_the_reserve(linreg_study, tmp_path):
    config = reserve_study(linreg_study, unstable=False)
    result = Study(config, tmp_path / "study").run()
    assert result.complete
    for rung in result.rungs:
        assert rung.trials_done == rung.trials_planned == PLANNED
        chosen = rung.candidates[rung.candidate_slots.index(rung.best.slot)]
        assert None not in chosen  # the premise: it reached on every seed
        assert len(rung.candidates) == 2
        assert all(t.slot < RESERVE_SLOT_BASE for t in rung.trials)  # never trained
        assert len(rung.trials) == PLANNED - 2
    storage = open_storage(Study(config, tmp_path / "study").storage_url)
    for _, study in load_rung_studies(storage, config):
        skipped = [t for t in study.get_trials() if t.user_attrs.get("status") == SKIPPED]
        assert sorted(t.user_attrs["slot"] for t in skipped) == [
            RESERVE_SLOT_BASE,
            RESERVE_SLOT_BASE + 1,
        ]
        assert all(t.state == optuna.trial.TrialState.FAIL for t in skipped)
        assert all(
            "reached the target on all 3 of its seeds" in t.user_attrs["reason"] for t in skipped
        )
        assert missing_slots(study) == []  # a skipped slot is done: resume runs nothing


@pytest.mark.parametrize("reserve", [-1, 65, 1.5])
def test_a_bad_reserve_names_the_field(linreg_study, reserve):
    data = copy.deepcopy(linreg_study)
    data["search"]["confirm_reserve"] = reserve
    with pytest.raises(ValueError, match="confirm_reserve"):
        StudyConfig.model_validate(data)
