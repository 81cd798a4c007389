"""More seeds for a chosen candidate whose seeds disagree (``[search] spread_seeds``,
issue [answer]).

Near the edge of stability one hyperparameter point needs 224 steps on one seed and
500 on the next (the default study at seed 8, B = 128): the median of three is then
whichever seed fell in the middle, and the rung's count moves the fitted B_crit. Such a
rung re-runs its chosen candidate on more fresh seeds; rungs whose seeds agree skip
those trials, never trained.
"""

from __future__ import annotations

import copy

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from batchlab.analysis import median_steps
from batchlab.report._summary import summarize
from batchlab.results import load_study
from batchlab.study import Study, StudyConfig, open_storage
from batchlab.study._claims import spread_candidate
from batchlab.study._collect import missing_slots
from batchlab.study._plan import (
    CONFIRM_SLOT_BASE,
    RESERVE_SLOT_BASE,
    SKIPPED,
    SPREAD_SLOT_BASE,
    load_rung_studies,
    plan_rungs,
    slot_seed,
    spreads_wanted,
)

SPEC = "tests.study.unstable_workload:make"


def _trial(slot: int, steps: int | None, **attrs):
    return create_trial(
        state=TrialState.COMPLETE,
        value=float(steps or 1000),
        params={"lr": 0.1},
        distributions={"lr": FloatDistribution(1e-3, 1.0, log=True)},
        user_attrs={"slot": slot, "params": {"lr": 0.1 * (slot + 1)}, "steps_to_target": steps,
                    **attrs},
    )  # fmt: skip


def _rung(
    candidates: dict[int, list[int | None]],
    reserve: dict[int, list[int | None]] | None = None,
    spread: dict[int, list[int | None]] | None = None,
):
    """A rung's study: per search slot, its search trial's steps then its confirmations';
    ``spread``: per candidate slot, the steps of its round-0 spread trials."""
    study = optuna.create_study()
    index = 0
    for stage_base, table, extra in (
        (CONFIRM_SLOT_BASE, candidates, {}),
        (RESERVE_SLOT_BASE, reserve or {}, {"reserve": True}),
    ):
        for slot, (first, *seeds) in table.items():
            study.add_trial(_trial(slot, first))
            for steps in seeds:
                study.add_trial(
                    _trial(stage_base + index, steps, confirm_of=slot, confirm_rank=0, **extra)
                )
                index += 1
    for slot, seeds in (spread or {}).items():
        for steps in seeds:
            study.add_trial(
                _trial(SPREAD_SLOT_BASE + index, steps, confirm_of=slot, spread=True,
                       spread_round=0)
            )  # fmt: skip
            index += 1
    return study


def test_a_chosen_candidate_whose_seeds_spread_twofold_gets_more_seeds():
    # The default study at seed 8, B = 128: 224, 378 and 500 steps (2.23x).
    study = _rung({0: [224, 378, 500], 1: [400, 410, 420]})
    spread = spread_candidate(study, 2.0)
    assert spread.candidate is not None and spread.candidate.user_attrs["slot"] == 0
    assert "224, 378, 500 steps) spread 2.23x" in spread.reason


def test_seeds_that_agree_within_the_ratio_need_no_more():
    spread = spread_candidate(_rung({0: [300, 310, 590], 1: [400, 410, 420]}), 2.0)
    assert spread.candidate is None
    assert "agree within 1.97x, under spread_ratio 2" in spread.reason
    # The same seeds under a stricter ratio do need more.
    assert spread_candidate(_rung({0: [300, 310, 590]}), 1.5).candidate is not None


def test_a_seed_that_never_reached_needs_more_seeds():
    spread = spread_candidate(_rung({0: [200, None, 210], 1: [400, 410, 420]}), 2.0)
    assert spread.candidate is not None and spread.candidate.user_attrs["slot"] == 0
    assert "missed the target on 1 of its 3 seeds" in spread.reason


def test_the_candidate_chosen_after_the_reserve_is_the_one_spread():
    # The confirmed candidate missed on a seed, so the reserve (slot 1) was confirmed and
    # is faster: its own seeds decide.
    study = _rung({0: [200, None, None]}, reserve={1: [150, 160, 400]})
    spread = spread_candidate(study, 2.0)
    assert spread.candidate is not None and spread.candidate.user_attrs["slot"] == 1
    assert "150, 160, 400 steps) spread 2.67x" in spread.reason


def test_without_a_reached_median_there_is_nothing_to_spread():
    spread = spread_candidate(_rung({0: [200, None, None]}), 2.0)
    assert spread.candidate is None and "no confirmed candidate" in spread.reason


def test_a_second_round_spreads_a_newly_chosen_candidate_with_too_few_seeds():
    # Protocol-2d at seed 2, B = 1448: the candidate chosen first (slot 10: 306, 424 and
    # 710 steps) ran four more seeds and lost to one chosen on three that spread 2.9x.
    study = _rung({10: [306, 424, 710], 3: [190, 425, 554]}, spread={10: [600, 560, 480, 650]})
    assert spread_candidate(study, 2.0).candidate.user_attrs["slot"] == 10  # round 0, as before
    spread = spread_candidate(study, 2.0, round_=1)
    assert spread.candidate is not None and spread.candidate.user_attrs["slot"] == 3
    assert "(slot 3: 190, 425, 554 steps) spread 2.92x" in spread.reason


def test_a_later_round_runs_no_candidate_twice_and_none_that_agrees():
    # The spread seeds kept the first choice: nothing more to learn from another round.
    kept = _rung({10: [306, 424, 710], 3: [190, 525, 554]}, spread={10: [400, 410, 420, 430]})
    spread = spread_candidate(kept, 2.0, round_=1)
    assert spread.candidate is None
    assert "(slot 10: 306, 424, 710, 400, 410, 420, 430 steps) ran its spread seeds" in (
        spread.reason
    )
    # A newly chosen candidate whose three seeds agree needs no more either.
    agrees = _rung({10: [306, 424, 710], 3: [400, 425, 450]}, spread={10: [600, 560, 480, 650]})
    spread = spread_candidate(agrees, 2.0, round_=1)
    assert spread.candidate is None and "(slot 3: 400, 425, 450 steps) agree within" in (
        spread.reason
    )


def test_spread_needs_confirmation_and_names_a_bad_value(linreg_study):
    data = copy.deepcopy(linreg_study)
    data["search"].update(spread_seeds=4, confirm_top=0)
    config = StudyConfig.model_validate(data)  # valid: confirmation off turns it off
    assert [spreads_wanted(config, r) for r in plan_rungs(config)] == [0, 0, 0]
    data["search"]["confirm_top"] = 2
    config = StudyConfig.model_validate(data)
    assert [spreads_wanted(config, r) for r in plan_rungs(config)] == [4, 4, 4]
    data["search"]["spread_rounds"] = 2
    config = StudyConfig.model_validate(data)
    assert [spreads_wanted(config, r) for r in plan_rungs(config)] == [8, 8, 8]
    for field, bad in (("spread_seeds", -1), ("spread_seeds", 65), ("spread_ratio", 1.0),
                       ("spread_ratio", float("inf")), ("spread_rounds", 0),
                       ("spread_rounds", 9)):  # fmt: skip
        broken = copy.deepcopy(data)
        broken["search"][field] = bad
        with pytest.raises(ValueError, match=field):
            StudyConfig.model_validate(broken)


def test_a_rung_whose_chosen_candidate_missed_a_seed_runs_more_seeds_and_reads_them(
    linreg_study, tmp_path
):
    data = copy.deepcopy(linreg_study)
    data["search"].update(confirm_top=2, confirm_seeds=2, spread_seeds=2)
    data["performance"] = {"ensemble_size": 1}
    config = StudyConfig.model_validate(data)
    first_rung = plan_rungs(config)[0]
    # Each candidate's first confirmation at the smallest rung never reaches the target,
    # so whichever it chooses missed on a seed.
    never = [slot_seed(config, first_rung, CONFIRM_SLOT_BASE + i) for i in range(2)]
    data["workload"] = {"name": SPEC, "params": {"never": never, "dim": 8}}
    config = StudyConfig.model_validate(data)
    result = Study(config, tmp_path / "study").run()
    assert result.complete
    smallest = result.rungs[0]
    assert all(r.trials_planned == 6 + 4 + 2 for r in result.rungs)

    spreads = [t for t in smallest.trials if t.slot >= SPREAD_SLOT_BASE]
    assert [t.slot for t in spreads] == [SPREAD_SLOT_BASE, SPREAD_SLOT_BASE + 1]
    assert all(t.confirm_of == smallest.best.slot for t in spreads)
    assert all(t.params == smallest.best.params for t in spreads)
    assert all("missed the target on 1 of its 3 seeds" in t.spread for t in spreads)
    assert all(t.stage == "spread" for t in spreads)
    # The chosen candidate's median now reads five seeds, the missed one among them.
    assert len(smallest.seed_steps) == 5 and smallest.seed_steps.count(None) == 1
    assert smallest.steps_to_target == median_steps(smallest.seed_steps)

    # Elsewhere the spread trials ran exactly where the chosen candidate's first three
    # seeds disagree twofold; otherwise they were skipped, never trained.
    storage = open_storage(Study(config, tmp_path / "study").storage_url)
    for rung, study in load_rung_studies(storage, config):
        assert missing_slots(study) == []  # a skipped slot is done: resume runs nothing
        if rung.index == 0:
            continue
        done = next(r for r in result.rungs if r.batch_size == rung.batch_size)
        seeds = done.seed_steps[:3]
        skipped = [t for t in study.get_trials() if t.user_attrs.get("status") == SKIPPED]
        if None not in seeds and max(seeds) < 2 * min(seeds):
            assert len(skipped) == 2 and all(t.state == TrialState.FAIL for t in skipped)
            assert all("spread not run" in t.user_attrs["reason"] for t in skipped)
        else:
            assert skipped == [] and len(done.seed_steps) == 5

    # The results file keeps why, and the report says what the more seeds measured.
    reread = load_study(tmp_path / "study").rungs[0]
    assert [t.spread for t in reread.trials if t.slot >= SPREAD_SLOT_BASE] == [
        t.spread for t in spreads
    ]
    notes = [n for n in summarize(load_study(tmp_path / "study")).notes if n.startswith("More")]
    steps = ", ".join("never" if t.steps_to_target is None else str(t.steps_to_target)
                      for t in spreads)  # fmt: skip
    assert notes[0] == (
        f"More seeds: at B = {smallest.batch_size} {spreads[0].spread}, so it ran 2 more "
        f"({steps} steps); the rung's steps-to-result is now {smallest.steps_to_target}."
    )


def test_a_second_round_runs_the_candidate_chosen_after_the_first(linreg_study, tmp_path):
    data = copy.deepcopy(linreg_study)
    data["search"].update(confirm_top=2, confirm_seeds=2, spread_seeds=2, spread_rounds=2)
    data["performance"] = {"ensemble_size": 1}
    config = StudyConfig.model_validate(data)
    first_rung = plan_rungs(config)[0]
    # At the smallest rung each candidate misses on its first confirmation, and the one
    # chosen first misses on both its spread seeds too (2 of 5 reached): the rung then
    # chooses the other, on three seeds one of which missed, so round 1 runs it.
    never = [slot_seed(config, first_rung, CONFIRM_SLOT_BASE + i) for i in range(2)]
    never += [slot_seed(config, first_rung, SPREAD_SLOT_BASE + i) for i in range(2)]
    data["workload"] = {"name": SPEC, "params": {"never": never, "dim": 8}}
    config = StudyConfig.model_validate(data)
    result = Study(config, tmp_path / "study").run()
    assert result.complete
    assert all(r.trials_planned == 6 + 4 + 4 for r in result.rungs)

    smallest = result.rungs[0]
    spreads = sorted((t for t in smallest.trials if t.slot >= SPREAD_SLOT_BASE),
                     key=lambda t: t.slot)  # fmt: skip
    first, second = spreads[:2], spreads[2:]
    assert [t.slot for t in spreads] == [SPREAD_SLOT_BASE + i for i in range(4)]
    assert len({t.confirm_of for t in first}) == 1 and first[0].confirm_of != smallest.best.slot
    assert all(t.steps_to_target is None for t in first)
    assert all(t.confirm_of == smallest.best.slot for t in second)
    assert all(f"(slot {smallest.best.slot}) missed the target on 1 of its 3 seeds" in t.spread
               for t in second)  # fmt: skip
    assert len(smallest.seed_steps) == 5 and smallest.seed_steps.count(None) == 1

    # Elsewhere round 1 was skipped, never trained: either round 0 ran the chosen
    # candidate, or its seeds agreed.
    storage = open_storage(Study(config, tmp_path / "study").storage_url)
    for rung, study in load_rung_studies(storage, config):
        assert missing_slots(study) == []
        if rung.index == 0:
            continue
        later = [t for t in study.get_trials() if t.user_attrs.get("spread_round") == 1]
        assert len(later) == 2 and all(t.user_attrs["status"] == SKIPPED for t in later)
        assert all(("ran its spread seeds" in t.user_attrs["reason"]) or
                   ("agree within" in t.user_attrs["reason"]) for t in later)  # fmt: skip

    # The report says what each round measured.
    notes = [n for n in summarize(load_study(tmp_path / "study")).notes if n.startswith("More")]
    assert notes[0].startswith(f"More seeds: at B = {smallest.batch_size} {first[0].spread}")
    assert f"; then {second[0].spread}, so it ran 2 more" in notes[0]
