"""A rung's stages: search, refine (a window around its best), confirm (fresh seeds).

Refinement: more quasi-random points in a window around the search's best point.
Confirmation: the best candidates re-run on fresh seeds, the median decides.
"""

from __future__ import annotations

import copy

import pytest

from batchlab._errors import ConfigError
from batchlab.analysis import median_steps
from batchlab.results import load_study
from batchlab.study import Study, StudyConfig
from batchlab.study._plan import CONFIRM_SLOT_BASE, REFINE_SLOT_BASE
from batchlab.study._space import to_unit

from .test_nqm_study import independent_best_steps


@pytest.fixture
def confirmed_linreg(linreg_study, tmp_path):
    data = copy.deepcopy(linreg_study)
    data["search"].update(confirm_top=2, confirm_seeds=2)
    data["stopping"] = {"at_target": True, "once_beaten": True}
    config = StudyConfig.model_validate(data)
    return Study(config, tmp_path / "linreg").run()


def test_the_best_two_candidates_run_on_two_fresh_seeds_each(confirmed_linreg):
    for rung in confirmed_linreg.rungs:
        assert rung.trials_done == rung.trials_planned == 6 + 2 * 2
        search = [t for t in rung.trials if t.confirm_of is None]
        confirm = [t for t in rung.trials if t.confirm_of is not None]
        assert [t.slot for t in search] == list(range(6))
        assert [t.slot for t in confirm] == [CONFIRM_SLOT_BASE + i for i in range(4)]
        # Candidates: the trials that reached the target by steps, then the others by
        # how close their loss got to the target (stopped once beaten: the runner-up).
        ranked = sorted(
            search,
            key=lambda t: (
                (0, t.steps_to_target, t.slot)
                if t.steps_to_target is not None
                else (1, min(t.curve["excess_loss"]), t.slot)
            ),
        )
        top = [t.slot for t in ranked[:2]]
        # Confirmation i re-runs candidate i % confirm_top (the best first): one round
        # of seeds after another, so that more seeds can be added on resume.
        assert [t.confirm_of for t in confirm] == [top[i % 2] for i in range(4)]
        by_slot = {t.slot: t for t in search}
        seeds = {t.seed for t in rung.trials}
        assert len(seeds) == len(rung.trials)  # every run on its own seed
        for t in confirm:
            assert t.params == by_slot[t.confirm_of].params
            assert t.hparams == by_slot[t.confirm_of].hparams
            # Run to the target or the budget: never stopped because another was faster.
            assert t.status in ("reached", "not_reached", "diverged")


def test_rung_steps_are_the_fewest_median_over_seeds(confirmed_linreg):
    for rung in confirmed_linreg.rungs:
        search = [t for t in rung.trials if t.confirm_of is None]
        reached = [t.steps_to_target for t in search if t.steps_to_target is not None]
        assert rung.search_steps == (min(reached) if reached else None)
        medians = {}
        for slot in dict.fromkeys(t.confirm_of for t in rung.trials if t.confirm_of is not None):
            runs = [t for t in rung.trials if t.slot == slot or t.confirm_of == slot]
            medians[slot] = median_steps([t.steps_to_target for t in runs])
        finite = {s: m for s, m in medians.items() if m is not None}
        if not finite:
            assert rung.steps_to_target is None
            continue
        assert rung.steps_to_target == min(finite.values())
        best = next(t for t in rung.trials if t.number == rung.best_trial)
        assert best.confirm_of is None and medians[best.slot] == rung.steps_to_target
        assert rung.seed_steps[0] == best.steps_to_target
        assert median_steps(rung.seed_steps) == rung.steps_to_target
        # Three seeds: the whole range is the median's (75%) interval.
        finite = [s for s in rung.seed_steps if s is not None]
        high = max(finite) if len(finite) == len(rung.seed_steps) else None
        assert rung.seed_interval == [min(finite), high] and rung.seed_coverage == 0.75
        assert rung.steps_to_target >= rung.search_steps  # the search's best was the luckiest


def test_confirmation_survives_a_round_trip_through_results_json(confirmed_linreg, tmp_path):
    confirmed_linreg.save(tmp_path)
    loaded = load_study(tmp_path)
    for written, read in zip(confirmed_linreg.rungs, loaded.rungs, strict=True):
        assert read.steps_to_target == written.steps_to_target
        assert read.search_steps == written.search_steps
        assert read.seed_steps == written.seed_steps
        assert read.seed_interval == written.seed_interval
        assert read.seed_coverage == written.seed_coverage
        assert [t.confirm_of for t in read.trials] == [t.confirm_of for t in written.trials]


def test_exact_curves_confirm_to_the_exact_optimum(nqm_study, tmp_path):
    # On the NQM's expected loss the seed changes nothing: every seed of a candidate
    # gives its exact steps, so the confirmed optimum is the search's.
    nqm_study["search"].update(confirm_top=2, confirm_seeds=2)
    nqm_study["evaluation"]["resolution"] = 0.0
    config = StudyConfig.model_validate(nqm_study)
    result = Study(config, tmp_path / "nqm").run()
    assert result.steps_to_target == independent_best_steps(config)
    for rung in result.rungs:
        assert rung.trials_done == rung.trials_planned == 8 + 4
        assert rung.search_steps == rung.steps_to_target
        assert len(set(rung.seed_steps)) <= 1


def test_report_and_cli_say_how_steps_were_confirmed(confirmed_linreg, tmp_path):
    from batchlab.report import write_report

    html = write_report(tmp_path / "linreg", tmp_path / "report.html").read_text()
    assert "confirmed on fresh seeds: median of 3 seeds" in html


def test_refinement_searches_a_window_around_the_search_best(nqm_study, tmp_path):
    nqm_study["search"].update(refine=6, refine_width=0.125)
    nqm_study["evaluation"]["resolution"] = 0.0
    config = StudyConfig.model_validate(nqm_study)
    result = Study(config, tmp_path / "nqm").run()
    search_only = independent_best_steps(config)  # the same search points, no refinement
    space = config.search_space()
    refined_any = False
    for rung in result.rungs:
        assert rung.trials_done == rung.trials_planned == 8 + 6
        search = [t for t in rung.trials if t.slot < REFINE_SLOT_BASE]
        refine = [t for t in rung.trials if t.slot >= REFINE_SLOT_BASE]
        assert [t.slot for t in refine] == [REFINE_SLOT_BASE + i for i in range(6)]
        reached = [t for t in search if t.steps_to_target is not None]
        center = min(reached, key=lambda t: (t.steps_to_target, t.slot)).params
        for t in refine:
            assert t.warm_start == {
                "from_batch_size": rung.batch_size,
                "center": center,
                "width": 0.125,
            }
            for name, r in space.items():
                window = 0.125 + 1e-9
                assert abs(to_unit(t.params[name], r) - to_unit(center[name], r)) <= window
        # More points can only find as few steps or fewer (exact curves: no seed noise).
        assert rung.steps_to_target <= search_only[rung.batch_size]
        refined_any |= rung.steps_to_target < search_only[rung.batch_size]
    assert refined_any  # somewhere the window held a better point than the whole space


def test_confirmation_waits_for_refinement_and_confirms_its_points(linreg_study, tmp_path):
    data = copy.deepcopy(linreg_study)
    data["search"].update(refine=4, confirm_top=2, confirm_seeds=1)
    result = Study(StudyConfig.model_validate(data), tmp_path / "s").run()
    for rung in result.rungs:
        confirm = [t for t in rung.trials if t.confirm_of is not None]
        by_slot = {t.slot: t for t in rung.trials if t.confirm_of is None}
        ranked = sorted(
            (t for t in by_slot.values() if t.steps_to_target is not None),
            key=lambda t: (t.steps_to_target, t.slot),
        )
        # Candidates come from the search and the refinement together.
        assert [t.confirm_of for t in confirm] == [t.slot for t in ranked[:2]]


def test_more_confirmation_seeds_on_resume_add_a_round_per_candidate(linreg_study, tmp_path):
    """Raising ``confirm_seeds`` on a finished study (``--force``) runs one more seed of
    each confirmed candidate; the trials already run keep their candidate."""
    data = copy.deepcopy(linreg_study)
    data["search"].update(confirm_top=2, confirm_seeds=1)
    first = Study(StudyConfig.model_validate(data), tmp_path / "s").run()
    before = {
        rung.batch_size: {t.slot: t.confirm_of for t in rung.trials if t.confirm_of is not None}
        for rung in first.rungs
    }
    data["search"]["confirm_seeds"] = 2
    again = Study(StudyConfig.model_validate(data), tmp_path / "s").run(force=True)
    assert again.complete
    for rung in again.rungs:
        assert rung.trials_done == rung.trials_planned == 6 + 2 * 2
        confirm = {t.slot: t.confirm_of for t in rung.trials if t.confirm_of is not None}
        assert {s: confirm[s] for s in before[rung.batch_size]} == before[rung.batch_size]
        old = list(before[rung.batch_size].values())
        assert len(set(old)) == 2  # the two candidates, one seed each ...
        new = [confirm[CONFIRM_SLOT_BASE + i] for i in (2, 3)]
        assert new == old  # ... and one more seed each, in the same order
        assert [len(runs) for runs in rung.candidates] == [3, 3]  # search + two seeds


def test_more_confirmed_candidates_on_resume_are_refused_before_anything_changes(
    linreg_study, tmp_path
):
    data = copy.deepcopy(linreg_study)
    data["search"].update(confirm_top=1, confirm_seeds=1)
    Study(StudyConfig.model_validate(data), tmp_path / "s").run()
    saved = (tmp_path / "s" / "config.json").read_text()
    data["search"]["confirm_top"] = 2
    with pytest.raises(ConfigError, match="search.confirm_top: .* planned for 1 candidates"):
        Study(StudyConfig.model_validate(data), tmp_path / "s").run(force=True)
    assert (tmp_path / "s" / "config.json").read_text() == saved
