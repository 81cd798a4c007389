"""Opt-in search shortcuts: warm start around the neighbour's best, and pruning."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from batchlab import StudyConfig
from batchlab.report import write_report
from batchlab.study import Study
from batchlab.study._pruning import best_by_step, is_hopeless
from batchlab.study._space import ParamRange, warm_start_point
from batchlab.training import RunSpec, run_ensemble, run_training
from batchlab.workloads import get_workload

LR = ParamRange(low=1e-3, high=1e1, scale="log")  # four decades
MOM = ParamRange(low=0.0, high=1.0, scale="linear")


def test_warm_start_point_maps_the_whole_range_onto_a_window_around_the_centre() -> None:
    space = {"lr": LR, "m": MOM}
    center = {"lr": 1e-1, "m": 0.5}  # unit coordinates 0.5 and 0.5
    # A quarter of the range: one decade of lr around 0.1, and 0.375..0.625 of m.
    low = warm_start_point({"lr": 1e-3, "m": 0.0}, center, space, 0.25)
    high = warm_start_point({"lr": 1e1, "m": 1.0}, center, space, 0.25)
    mid = warm_start_point({"lr": 1e-1, "m": 0.5}, center, space, 0.25)
    assert low["lr"] == pytest.approx(10**-1.5) and high["lr"] == pytest.approx(10**-0.5)
    assert (low["m"], mid["m"], high["m"]) == pytest.approx((0.375, 0.5, 0.625))
    assert mid["lr"] == pytest.approx(0.1)


def test_a_window_at_the_edge_is_shifted_inside_the_range() -> None:
    space = {"lr": LR}
    low = warm_start_point({"lr": 1e-3}, {"lr": 2e-3}, space, 0.5)
    high = warm_start_point({"lr": 1e1}, {"lr": 2e-3}, space, 0.5)
    assert (low["lr"], high["lr"]) == pytest.approx((1e-3, 1e-1))  # lower half of the range


def test_best_by_step_is_direction_aware_and_ignores_later_steps() -> None:
    steps, values = [10, 20, 30], [0.5, 0.7, 0.9]
    assert best_by_step(steps, values, 25, "max") == 0.7
    assert best_by_step(steps, values, 25, "min") == 0.5
    assert best_by_step(steps, values, 5, "max") is None
    assert best_by_step(steps, [None, math.nan, 0.2], 30, "max") == 0.2


def test_is_hopeless_is_the_median_stopping_rule() -> None:
    peers = [0.6, 0.7, 0.8, 0.9]  # median 0.75
    assert is_hopeless(0.74, peers, "max", 0.5, 3)
    assert not is_hopeless(0.76, peers, "max", 0.5, 3)
    assert not is_hopeless(0.74, peers, "max", 0.5, 5)  # too few peers
    # A stricter bar: the 0.25 quantile from the best is 0.825 for "max".
    assert is_hopeless(0.8, peers, "max", 0.25, 3)
    # For a loss ("min") the best peers are the smallest values.
    assert is_hopeless(0.76, peers, "min", 0.5, 3) and not is_hopeless(0.74, peers, "min", 0.5, 3)


def test_warm_start_is_refused_with_tpe() -> None:
    with pytest.raises(ValueError, match="warm_start .* does not apply to sampler 'tpe'"):
        StudyConfig.model_validate(
            {
                "name": "x",
                "workload": {"name": "linreg"},
                "ladder": {"batch_sizes": [4]},
                "search": {"sampler": "tpe", "warm_start": True},
                "budget": {"steps": 10},
            }
        )


def test_warm_started_rungs_search_around_their_neighbours_best(tmp_path, linreg_study) -> None:
    linreg_study["search"]["warm_start"] = True
    linreg_study["search"]["warm_start_width"] = 0.3
    linreg_study["stopping"] = {"at_target": True, "once_beaten": True}
    config = StudyConfig.model_validate(linreg_study)
    study = Study(config, tmp_path)
    result = study.run(workers=2)
    space = config.search_space()["lr"]
    decades = 0.3 * math.log10(space.high / space.low)
    rungs = result.rungs
    assert all(t.warm_start is None for t in rungs[0].trials)
    for below, rung in zip(rungs, rungs[1:], strict=False):
        assert below.steps_to_target is not None
        center = below.best_hparams["lr"]
        lrs = [t.params["lr"] for t in rung.trials]
        assert all(t.warm_start["from_batch_size"] == below.batch_size for t in rung.trials)
        assert all(t.warm_start["center"]["lr"] == pytest.approx(center) for t in rung.trials)
        # Every point in a window of 0.3 of the log range that contains the centre.
        spread = math.log10(max(lrs) / min(lrs))
        assert spread <= decades + 1e-9
        assert min(lrs) <= center * (1 + 1e-9) or math.isclose(min(lrs), space.low)
        assert math.log10(max(lrs) / center) <= decades and math.log10(center / min(lrs)) <= decades
    # A rung starts only once its neighbour has finished every trial.
    storage = study._storage()
    times = {}
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(
            states=(TrialState.COMPLETE,)
        )
        times[summary.study_name] = (
            min(t.datetime_start for t in trials),
            max(t.datetime_complete for t in trials),
        )
    ordered = [times[name] for name in sorted(times)]
    for (_, finished), (started, _) in zip(ordered, ordered[1:], strict=False):
        assert started >= finished
    report = write_report(tmp_path)
    assert "Warm-started search (opt-in)" in report.read_text()


def test_pruning_is_off_by_default_and_labelled_when_on(tmp_path, nqm_study) -> None:
    nqm_study["ladder"] = {"batch_sizes": [4, 64, 1024]}
    plain = Study(StudyConfig.model_validate(nqm_study), tmp_path / "plain").run()
    assert all(t.status != "pruned" for r in plain.rungs for t in r.trials)
    nqm_study["pruning"] = {"enabled": True, "quantile": 0.5, "after": 0.05, "min_peers": 2}
    pruned = Study(StudyConfig.model_validate(nqm_study), tmp_path / "pruned").run()
    stopped = [t for r in pruned.rungs for t in r.trials if t.status == "pruned"]
    assert stopped, "the median rule pruned nothing"
    for trial in stopped:
        assert "median stopping rule" in trial.reason
        assert trial.steps_to_target is None
    report = write_report(tmp_path / "pruned")
    assert f"{len(stopped)} trial(s) were stopped as hopeless" in report.read_text()


def test_a_pruned_trial_stops_where_the_rule_says_and_others_are_untouched() -> None:
    workload = get_workload("digits-mlp", {})
    specs = [
        RunSpec(
            batch_size=32,
            optimizer="momentum",
            hparams={"lr": lr, "momentum": 0.9},
            max_steps=60,
            eval_every=10,
            seed=i,
        )
        for i, lr in enumerate([1e-3, 0.05, 0.1])
    ]
    target = workload.target

    def worst_goes(step, own, cohort):
        # Prune at step 20 whoever is below every other member.
        return "pruned by test" if step == 20 and cohort and own < min(cohort) else None

    results = run_ensemble(workload, specs, target, stop_at_target=False, prune=worst_goes)
    assert [r.status for r in results] == ["pruned", "not_reached", "not_reached"]
    assert results[0].steps == [10, 20] and results[0].reason == "pruned by test"
    alone = run_training(workload, specs[1], target, stop_at_target=False)
    assert results[1].metrics["loss"] == pytest.approx(alone.metrics["loss"], rel=1e-4)
    single = run_training(
        workload,
        specs[0],
        target,
        stop_at_target=False,
        prune=lambda s, o, c: "x" if s >= 30 else None,
    )
    assert single.status == "pruned" and single.steps == [10, 20, 30]
