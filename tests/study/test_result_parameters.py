"""``Study.results()`` records the model size: trainable parameters of the study's model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from batchlab import Study, StudyConfig
from batchlab.results import load_study
from batchlab.study._study import trainable_parameters

from .conftest import LINREG_STUDY


def tiny_linreg(**overrides: Any) -> dict[str, Any]:
    """A linreg study of two rungs, one short trial each: seconds on a CPU."""
    config = json.loads(json.dumps(LINREG_STUDY))
    config["name"] = "linreg-parameters"
    config["ladder"] = {"batch_sizes": [4, 16]}
    config["search"]["trials_per_rung"] = 1
    config["budget"] = {"steps": 20}
    config.update(overrides)
    return config


def test_results_record_the_trainable_parameters_of_the_model(tmp_path: Path):
    study = Study(StudyConfig.model_validate(tiny_linreg()), tmp_path / "study")
    result = study.run(workers=1)
    model = study.workload().build_model(seed=study.config.seed)
    expected = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert expected > 0
    assert result.workload["parameters"] == expected
    # Written to results.json and read back by the one reader.
    assert load_study(tmp_path / "study").workload["parameters"] == expected


def test_frozen_parameters_are_not_counted(tmp_path: Path):
    """Only ``requires_grad`` parameters count: a frozen extra layer adds nothing."""
    study = Study(StudyConfig.model_validate(tiny_linreg()), tmp_path / "study")
    workload = study.workload()
    build = workload.build_model

    def with_frozen_layer(seed: int) -> nn.Module:
        model = build(seed=seed)
        frozen = nn.Linear(3, 5)
        frozen.requires_grad_(False)
        model.add_module("frozen", frozen)
        return model

    plain = trainable_parameters(workload, 0)
    workload.build_model = with_frozen_layer  # type: ignore[method-assign]
    assert trainable_parameters(workload, 0) == plain
    assert sum(p.numel() for p in with_frozen_layer(0).parameters()) == plain + 3 * 5 + 5
