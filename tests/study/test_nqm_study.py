"""A study on the NQM finds exactly the optimum over its sampled hyperparameters."""

import math

import numpy as np

from batchlab import analysis
from batchlab.study import Study, StudyConfig
from batchlab.study._plan import plan_rungs, sample_points, to_hparams
from batchlab.workloads import get_workload
from batchlab.workloads.nqm import nqm_expected_loss


def independent_best_steps(config: StudyConfig) -> dict[int, int | None]:
    """The optimum over the same points, computed from the recurrences directly."""
    workload = get_workload(config.workload.name, config.workload.params)
    points = sample_points(config, config.search.trials_per_rung)
    best: dict[int, int | None] = {}
    for rung in plan_rungs(config):
        steps = np.arange(rung.eval_every, rung.budget_steps + 1, rung.eval_every)
        candidates = []
        for point in points:
            hp = to_hparams(config, point, rung.budget_steps)
            loss = nqm_expected_loss(
                workload.curvature,
                workload.noise,
                workload.w0,
                lr=hp["lr"],
                momentum=hp["momentum"],
                batch_size=rung.batch_size,
                eval_steps=steps,
            )
            hit = np.nonzero(loss <= workload.target.value)[0]
            if hit.size:
                candidates.append(int(steps[hit[0]]))
        best[rung.batch_size] = min(candidates) if candidates else None
    return best


def test_nqm_study_best_steps_equal_the_exact_optimum(tmp_path, nqm_study):
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
