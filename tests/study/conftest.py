"""Small study configs that run in seconds."""

from __future__ import annotations

import copy
from typing import Any

import pytest

NQM_STUDY: dict[str, Any] = {
    "name": "nqm-test",
    "optimizer": "momentum",
    "workload": {"name": "nqm", "params": {"dim": 1000}},
    "ladder": {"batch_sizes": [4, 16, 64, 256, 1024]},
    "search": {
        "trials_per_rung": 8,
        "refine": 0,  # the search alone; tests/study/test_stages.py refines and confirms
        "confirm_top": 0,
        "space": {
            "lr": {"low": 1e-2, "high": 2.0},
            "one_minus_momentum": {"low": 0.01, "high": 1.0},
        },
    },
    "budget": {"steps": 6000},
    "evaluation": {"every": 10},
    "seed": 0,
}

LINREG_STUDY: dict[str, Any] = {
    "name": "linreg-test",
    "optimizer": "sgd",
    "workload": {"name": "linreg", "params": {"dim": 8}},
    "ladder": {"batch_sizes": [4, 16, 64]},
    "search": {
        "trials_per_rung": 6,
        "refine": 0,  # the search alone; tests/study/test_stages.py refines and confirms
        "confirm_top": 0,
        "space": {"lr": {"low": 1e-2, "high": 1.0}},
    },
    "budget": {"steps": 400},
    "evaluation": {"every": 10},
    "stopping": {"at_target": False, "once_beaten": False},
    # A grace period this short makes a loaded machine's late heartbeats look like dead
    # workers: such trials are re-run, and must not count against max_retries here.
    "workers": {"heartbeat_interval": 0.2, "grace_period": 1.0, "max_retries": 1000},
    "seed": 0,
}


@pytest.fixture
def nqm_study() -> dict[str, Any]:
    return copy.deepcopy(NQM_STUDY)


@pytest.fixture
def linreg_study() -> dict[str, Any]:
    return copy.deepcopy(LINREG_STUDY)
