"""A study on the NQM finds exactly the optimum over its sampled hyperparameters."""

import math

import numpy as np
import optuna

from batchlab import analysis
from batchlab.study import Study, StudyConfig, open_storage
from batchlab.study._plan import load_rung_studies, plan_rungs, sample_points, to_hparams
from batchlab.workloads import get_workload
from batchlab.workloads.nqm import nqm_expected_loss


def independent_best_steps(
    config: StudyConfig, *, every_step: bool = False
) -> dict[int, int | None]:
    """The optimum over the same points on the coarse grid, computed from the recurrences.

    ``every_step``: the first step of the first coarse interval that reaches the target.
    """
    workload = get_workload(config.workload.name, config.workload.params)
    points = sample_points(config, config.search.trials_per_rung)
    best: dict[int, int | None] = {}
    for rung in plan_rungs(config):
        steps = np.arange(rung.eval_every, rung.budget_steps + 1, rung.eval_every)
        candidates = []
        for point in points:
            hp = to_hparams(config, point, rung.budget_steps)

            def loss_at(at, hp=hp, rung=rung):
                return nqm_expected_loss(
                    workload.curvature,
                    workload.noise,
                    workload.w0,
                    lr=hp["lr"],
                    momentum=hp["momentum"],
                    batch_size=rung.batch_size,
                    eval_steps=at,
                )

            hit = np.nonzero(loss_at(steps) <= workload.target.value)[0]
            if not hit.size:
                continue
            crossing = int(steps[hit[0]])
            if every_step:
                interval = np.arange(crossing - rung.eval_every + 1, crossing + 1)
                crossing = int(interval[np.argmax(loss_at(interval) <= workload.target.value)])
            candidates.append(crossing)
        best[rung.batch_size] = min(candidates) if candidates else None
    return best


def test_nqm_study_best_steps_equal_the_exact_optimum(tmp_path, nqm_study):
    nqm_study["evaluation"]["resolution"] = 0.0  # the coarse grid alone
    config = StudyConfig.model_validate(nqm_study)
    result = Study(config, tmp_path / "nqm").run()
    expected = independent_best_steps(config)
    assert result.steps_to_target == expected
    assert all(rung.trials_done == rung.trials_planned == 8 for rung in result.rungs)
    # The summary's fit and regimes are those of the exact optimum curve.
    reached = {b: s for b, s in expected.items() if s is not None}
    fit = analysis.fit_scaling(list(reached), list(reached.values()))
    assert math.isclose(result.analysis["fit"]["b_crit"], fit.b_crit, rel_tol=1e-9)
    assert math.isclose(result.analysis["fit"]["s_min"], fit.s_min, rel_tol=1e-9)
    regimes = analysis.scaling_regimes(list(reached), list(reached.values()))
    assert result.analysis["regimes"]["ideal_batch_size"] == regimes.ideal_batch_size
    # Results files were written, and read back identically.
    assert (tmp_path / "nqm" / "results.json").exists()
    assert (tmp_path / "nqm" / "results.csv").read_text().count("\n") == 1 + 5 * 8


def test_nqm_study_resolves_steps_to_target_to_two_percent(tmp_path, nqm_study):
    config = StudyConfig.model_validate(nqm_study)
    assert config.evaluation.resolution == 0.02  # the default
    study = Study(config, tmp_path / "nqm")
    result = study.run()
    exact = independent_best_steps(config, every_step=True)
    coarse = independent_best_steps(config)
    refined = 0
    for batch_size, steps in result.steps_to_target.items():
        assert steps is not None
        assert exact[batch_size] <= steps <= exact[batch_size] + max(1, 0.02 * steps)
        assert steps <= coarse[batch_size]
        refined += steps < coarse[batch_size]
    assert refined >= 2  # the fast rungs: crossings the coarse grid rounded up
    # Every trial records its resolution in its user attributes (key resolution_steps).
    for _, rung_study in load_rung_studies(open_storage(study.storage_url), config):
        for trial in rung_study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
            stt, resolution = (trial.user_attrs[k] for k in ("steps_to_target", "resolution_steps"))
            if stt is None:
                assert resolution is None
            else:
                assert 1 <= resolution <= max(1, 0.02 * stt)
                steps = trial.user_attrs["curve"]["steps"]
                assert resolution == stt - (steps[-2] if len(steps) > 1 else 0)


def test_rerun_of_a_finished_study_runs_nothing_again(tmp_path, nqm_study):
    config = StudyConfig.model_validate(nqm_study)
    first = Study(config, tmp_path / "s").run()
    second = Study(config, tmp_path / "s").run()
    assert second.steps_to_target == first.steps_to_target
    numbers = [t.number for r in second.rungs for t in r.trials]
    assert numbers == [t.number for r in first.rungs for t in r.trials]


def test_tpe_study_proposes_its_own_points_inside_the_space(tmp_path, nqm_study):
    nqm_study["search"]["sampler"] = "tpe"
    nqm_study["search"]["trials_per_rung"] = 12
    nqm_study["ladder"] = {"batch_sizes": [16, 64]}
    config = StudyConfig.model_validate(nqm_study)
    result = Study(config, tmp_path / "tpe").run()
    space = config.search_space()
    for rung in result.rungs:
        assert rung.trials_done == 12 and rung.steps_to_target is not None
        points = [tuple(t.params[name] for name in sorted(space)) for t in rung.trials]
        assert len(set(points)) == 12  # TPE proposed a fresh point for every trial
        for name, bounds in space.items():
            assert all(bounds.low <= t.params[name] <= bounds.high for t in rung.trials)
