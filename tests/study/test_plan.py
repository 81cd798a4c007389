import math

from batchlab.study import StudyConfig
from batchlab.study._plan import plan_rungs, rung_study_name, sample_points, slot_seed, to_hparams

CONFIG = {
    "name": "plan",
    "optimizer": "momentum",
    "workload": {"name": "nqm"},
    "ladder": {"batch_sizes": [8, 64]},
    "search": {
        "trials_per_rung": 8,
        "space": {
            "lr": {"low": 1e-3, "high": 1.0},
            "one_minus_momentum": {"low": 0.01, "high": 0.5},
            "warmup_fraction": {"low": 0.0, "high": 0.2, "scale": "linear"},
        },
    },
    "budget": {"steps": 1000},
    "evaluation": {"every": 10},
    "seed": 7,
}


def test_sobol_points_are_seeded_in_range_and_extend_as_a_prefix():
    config = StudyConfig.model_validate(CONFIG)
    eight = sample_points(config, 8)
    assert eight == sample_points(config, 8)
    assert sample_points(config, 16)[:8] == eight
    for point in eight:
        assert 1e-3 <= point["lr"] <= 1.0
        assert 0.01 <= point["one_minus_momentum"] <= 0.5
        assert 0.0 <= point["warmup_fraction"] <= 0.2
    other_seed = StudyConfig.model_validate({**CONFIG, "seed": 8})
    assert sample_points(other_seed, 8) != eight


def test_sobol_points_fill_the_log_space_evenly():
    # A scrambled Sobol set of 2^k points has exactly one point per 1/2^k stratum
    # of each coordinate (it is a (0, k, d)-net in base 2).
    config = StudyConfig.model_validate(CONFIG)
    points = sample_points(config, 8)
    strata = sorted(int(8 * math.log(p["lr"] / 1e-3) / math.log(1.0 / 1e-3)) for p in points)
    assert strata == list(range(8))


def test_to_hparams_undoes_one_minus_and_converts_warmup_to_steps():
    config = StudyConfig.model_validate(CONFIG)
    hparams = to_hparams(
        config, {"lr": 0.1, "one_minus_momentum": 0.1, "warmup_fraction": 0.05}, 1000
    )
    assert hparams == {"lr": 0.1, "momentum": 0.9, "warmup_steps": 50.0}


def test_rungs_and_names_and_seeds():
    config = StudyConfig.model_validate(CONFIG)
    rungs = plan_rungs(config)
    assert [r.study_name for r in rungs] == [
        rung_study_name("plan", 8),
        rung_study_name("plan", 64),
    ]
    assert rung_study_name("plan", 8) < rung_study_name("plan", 64)  # dashboards sort by B
    seeds = {slot_seed(config, rung, slot) for rung in rungs for slot in range(8)}
    assert len(seeds) == 16
    assert slot_seed(config, rungs[0], 3) == slot_seed(config, rungs[0], 3)
