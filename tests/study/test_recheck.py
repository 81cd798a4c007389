"""A rising rung's recheck (``[search] recheck``, issue [answer]).

At its best settings a larger batch needs no more steps (McCandlish et al. 2018,
eq. 2.11). A rung whose chosen candidate needed more steps on every seed than a smaller
rung's did on every seed most likely missed its optimum, so it also runs the chosen
point of the smaller rung with the fewest steps, as one more confirmed candidate; rungs
that do not rise skip those trials, never trained.
"""

from __future__ import annotations

import copy
import itertools
import statistics

import optuna
import pytest

from batchlab.report._summary import summarize
from batchlab.results import load_study, rise_chance, rises_above
from batchlab.results._rises import RISE_LEVEL
from batchlab.study import Study, StudyConfig, open_storage
from batchlab.study._collect import missing_slots
from batchlab.study._plan import (
    CONFIRM_SLOT_BASE,
    RECHECK_SLOT_BASE,
    SKIPPED,
    load_rung_studies,
    plan_rungs,
    rechecks_wanted,
    slot_seed,
)
from batchlab.study._recheck import decide_recheck, recheck_source

from ..results.rungs import rung

SPEC = "tests.study.unstable_workload:make"


def test_a_rung_rises_only_where_every_seed_needs_more_than_every_smaller_seed():
    assert rises_above([360, 384, 468], [213, 217, 244])
    assert not rises_above([240, 384, 468], [213, 217, 244])  # overlap: no rise
    assert not rises_above([240, 384, 468], [float("inf")] * 3)  # never reached below
    assert rises_above([float("inf")], [213, 217, 244])  # never reached above


def test_more_seeds_rise_where_enough_of_them_lie_above_as_rarely_as_three_of_three():
    # protocol-2d at seed 2 with spread_rounds = 2: B = 1448's chosen candidate on 7
    # seeds, the first its search's luckiest trial, against B = 1024's 3.
    inf = float("inf")
    assert rises_above([190, 425, 554, inf, 782, 425, inf], [159, 168, 195])  # 6 of 7
    assert rise_chance(7, 3, 6) == pytest.approx(4 / 120)
    assert not rises_above([190, 195, 425, 554, inf, 782, 425], [159, 168, 195])  # 5 of 7
    assert rise_chance(7, 3, 5) == pytest.approx(10 / 120)
    assert rise_chance(7, 3, 5) > RISE_LEVEL
    assert rise_chance(3, 3, 3) == pytest.approx(RISE_LEVEL)  # the 3-of-3 rule's chance
    # Seven seeds against seven need 4 above (C(10, 7) / C(14, 7) = 120 / 3432), not 3.
    assert rises_above([100, 100, 300, 300, 300, 300, 100], [200] * 7)
    assert not rises_above([100, 100, 100, 300, 300, 300, 100], [200] * 7)


@pytest.mark.parametrize(("n", "m"), [(3, 3), (5, 3), (7, 3), (4, 2)])
def test_the_rise_chance_is_the_share_of_orderings_that_put_k_seeds_above(n, m):
    # Ground truth: every way to split n + m distinct counts into the rung's n and the
    # smaller rung's m, equally likely were they drawn alike.
    splits = list(itertools.combinations(range(n + m), m))
    for k in range(1, n + 1):
        share = sum(sum(c > max(low) for c in set(range(n + m)) - set(low)) >= k
                    for low in splits) / len(splits)  # fmt: skip
        assert rise_chance(n, m, k) == pytest.approx(share)


def test_a_rising_rung_with_more_seeds_says_how_many_lie_above():
    smaller = [rung(1024, [159, 168, 195], 0.11)]
    decision = decide_recheck(rung(1448, [190, 425, 554, None, 782, 425, None], 0.2), smaller)
    assert decision.from_batch_size == 1024
    assert "needed more than 195 steps on 6 of its 7 seeds" in decision.reason


def test_a_rising_rung_rechecks_the_smaller_rung_with_the_fewest_steps():
    # The default study at seed 4 (docs: README): B = 2048 above B = 512 and 128.
    smaller = [rung(128, [228, 265, 270], 0.5), rung(512, [244, 213, 217], 1.2)]
    decision = decide_recheck(rung(2048, [384, 360, 468], 2.9), smaller)
    assert decision.runs
    assert decision.from_batch_size == 512
    assert decision.params == {"lr": 1.2}
    assert "B = 2048 rises above B = 128" in decision.reason
    assert "360 steps or more on every seed" in decision.reason


def test_of_two_smaller_rungs_as_fast_the_larger_is_rechecked():
    smaller = [rung(128, [228, 217, 270], 0.5), rung(512, [244, 213, 217], 1.2)]
    assert decide_recheck(rung(2048, [384, 360, 468], 2.9), smaller).from_batch_size == 512


def test_of_smaller_rungs_within_the_fastest_ones_seeds_the_largest_is_rechecked():
    # protocol-2d at seed 2 (README, 'Rechecking a rising rung'): B = 2048 rose above
    # B = 1024; the fewest steps were B = 362's (159), whose point, run at 2048, stalled
    # on two seeds of three. B = 724 and 1024 (182 and 168 steps) lie within B = 362's
    # seeds (148 to 244), so the largest of them, 1024, is rechecked; B = 128 (250) and
    # B = 1448 (425: its seeds spread from 190 to 554) lie outside them.
    smaller = [
        rung(128, [250, 250, 260], 0.08),
        rung(362, [159, 148, 244], 0.22),
        rung(724, [182, 176, 224], 0.08),
        rung(1024, [159, 168, 195], 0.11),
        rung(1448, [190, 425, 554], 0.20),
    ]
    decision = decide_recheck(rung(2048, [300, 298, 276], 0.03), smaller)
    assert decision.from_batch_size == 1024 and decision.params == {"lr": 0.11}
    assert recheck_source(smaller).batch_size == 1024
    # The fastest rung's seeds that never reached the target do not widen the range.
    smaller = [rung(64, [120, None, 150], 0.1), rung(128, [155, 160, 170], 0.2)]
    assert recheck_source(smaller).batch_size == 64


def test_an_unreached_rung_rises_above_any_reached_one():
    decision = decide_recheck(
        rung(2048, [None, None, None], 2.9), [rung(16, [None] * 3, 0.1), rung(64, [90] * 3, 0.3)]
    )
    assert decision.from_batch_size == 64
    assert "never reached the target" in decision.reason


@pytest.mark.parametrize(
    ("seeds", "smaller", "why"),
    [
        ([230, 300, 400], [[213, 217, 244]], "does not rise"),  # overlapping seeds
        ([360, 384, 468], [[None, None, None]], "does not rise"),  # none reached below
        ([300, 300, 300], [[300, 300, 300]], "does not rise"),  # as fast: no rise
        # 5 of 7 above 3: chance 0.083 > 1/20 (the rank test's reason names its level)
        ([190, 425, 554, None, 782, 170, None], [[159, 183, 195]], "1 time in 20"),
    ],
)
def test_a_rung_that_does_not_rise_skips_its_recheck(seeds, smaller, why):
    below = [rung(2**k, s, 0.1 * k) for k, s in enumerate(smaller, 4)]
    decision = decide_recheck(rung(2048, seeds, 2.9), below)
    assert not decision.runs and decision.params is None and why in decision.reason


def test_a_point_the_rung_already_confirmed_is_not_rechecked():
    decision = decide_recheck(rung(2048, [384, 360, 468], 1.2), [rung(512, [244, 213, 217], 1.2)])
    assert not decision.runs
    assert "already confirmed B = 512's chosen point" in decision.reason


def test_recheck_needs_confirmation_and_names_a_bad_value(linreg_study):
    data = copy.deepcopy(linreg_study)
    data["search"].update(recheck=3, confirm_top=0)
    config = StudyConfig.model_validate(data)  # valid: confirmation off turns it off
    assert [rechecks_wanted(config, r) for r in plan_rungs(config)] == [0, 0, 0]
    data["search"]["confirm_top"] = 2
    config = StudyConfig.model_validate(data)
    assert [rechecks_wanted(config, r) for r in plan_rungs(config)] == [0, 3, 3]
    for bad in (-1, 65, 1.5):
        data["search"]["recheck"] = bad
        with pytest.raises(ValueError, match="recheck"):
            StudyConfig.model_validate(data)


def test_a_rung_that_never_reaches_rechecks_a_smaller_rungs_point_and_reads_it(
    linreg_study, tmp_path
):
    data = copy.deepcopy(linreg_study)
    data["search"].update(confirm_top=2, confirm_seeds=2, recheck=3)
    data["performance"] = {"ensemble_size": 1}
    config = StudyConfig.model_validate(data)
    top = plan_rungs(config)[-1]
    # Every tuning trial of the largest rung (search and confirmation) never reaches.
    never = [slot_seed(config, top, s) for s in range(6)] + [
        slot_seed(config, top, CONFIRM_SLOT_BASE + i) for i in range(4)
    ]
    data["workload"] = {"name": SPEC, "params": {"never": never, "dim": 8}}
    config = StudyConfig.model_validate(data)
    result = Study(config, tmp_path / "study").run()
    assert result.complete
    first, middle, last = result.rungs
    assert first.trials_planned == 6 + 4  # the smallest rung has nothing to rise above
    assert middle.trials_planned == last.trials_planned == 6 + 4 + 3

    source = min((first, middle), key=lambda r: (r.steps_to_target, -r.batch_size))
    rechecks = [t for t in last.trials if t.slot >= RECHECK_SLOT_BASE]
    assert [t.slot for t in rechecks] == [RECHECK_SLOT_BASE + i for i in range(3)]
    assert [t.confirm_of for t in rechecks] == [None, RECHECK_SLOT_BASE, RECHECK_SLOT_BASE]
    assert all(t.recheck_from == source.batch_size for t in rechecks)
    assert all(t.params == source.best.params for t in rechecks)
    assert all(t.steps_to_target is not None for t in rechecks)
    # The recheck is a candidate of the rung, the only one that reached the target.
    assert last.candidate_slots[-1] == RECHECK_SLOT_BASE
    assert last.best.slot == RECHECK_SLOT_BASE
    assert last.steps_to_target == statistics.median(t.steps_to_target for t in rechecks)
    assert last.seed_steps == [t.steps_to_target for t in rechecks]

    # The middle rung does not rise above the smallest: its recheck never trained.
    assert all(t.slot < RECHECK_SLOT_BASE for t in middle.trials)
    storage = open_storage(Study(config, tmp_path / "study").storage_url)
    for r, study in load_rung_studies(storage, config):
        skipped = [t for t in study.get_trials() if t.user_attrs.get("status") == SKIPPED]
        if r.batch_size == middle.batch_size:
            assert len(skipped) == 3
            assert all(t.state == optuna.trial.TrialState.FAIL for t in skipped)
            assert all("does not rise" in t.user_attrs["reason"] for t in skipped)
        else:
            assert skipped == []
        assert missing_slots(study) == []  # a skipped slot is done: resume runs nothing
    # The results file keeps where the recheck came from.
    reread = load_study(tmp_path / "study")
    assert [t.recheck_from for t in reread.rungs[-1].trials if t.slot >= RECHECK_SLOT_BASE] == [
        source.batch_size
    ] * 3
    # The report says what the recheck measured and that its point is now the chosen one.
    notes = [n for n in summarize(reread).notes if n.startswith("Recheck:")]
    steps = ", ".join(str(t.steps_to_target) for t in rechecks)
    assert notes == [
        f"Recheck: B = {last.batch_size} needed more steps than a smaller batch size on every "
        f"seed, so it also ran B = {source.batch_size}'s chosen point (3 seeds: {steps} "
        "steps); that point is now its chosen candidate."
    ]


@pytest.mark.parametrize("skipped_stage", ["confirm_reserve", "spread_seeds"])
def test_a_lone_worker_goes_on_to_the_recheck_after_a_pass_that_only_skipped_trials(
    linreg_study, tmp_path, skipped_stage
):
    # The largest rung's last tuning trials (reserve or spread, not needed on linreg's
    # agreeing seeds) are skipped in the pass that finds its recheck not yet ready; the
    # worker used to see nothing claimed and nothing running, and stop one pass short.
    data = copy.deepcopy(linreg_study)
    data["search"].update(confirm_top=2, confirm_seeds=2, recheck=3, **{skipped_stage: 2})
    data["performance"] = {"ensemble_size": 1}
    result = Study(StudyConfig.model_validate(data), tmp_path / "study").run(workers=1)
    assert result.complete  # (it raised StudyIncomplete: the recheck trials never ran)
