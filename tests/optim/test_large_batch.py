"""LARS and LAMB with warmup reach mnist1d-cnn's default target at batch size 2048."""

from __future__ import annotations

import pytest

from batchlab.study import RunSpec, run_training
from batchlab.workloads import get_workload

# The trainer gives LARS/LAMB `lars_param_groups`: biases take plain SGD steps at
# `lr`, so lr stays O(1) and the trust coefficient sets the layers' rate. Found by a
# sweep (seed 0): LARS lr in {0.5, 1, 2, 4} with lr * trust_coefficient = 0.02 reached
# the target in 150-175 steps; LAMB lr=0.02 in 225 steps (0.01: 425; 0.05: not within 600).
CASES = [
    pytest.param(
        "lars",
        {"lr": 1.0, "momentum": 0.9, "trust_coefficient": 0.02, "warmup_steps": 50},
        id="lars",
    ),
    pytest.param("lamb", {"lr": 0.02, "warmup_steps": 50}, id="lamb"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("optimizer", "hparams"), CASES)
def test_large_batch_optimizer_with_warmup_reaches_default_target(optimizer, hparams):
    workload = get_workload("mnist1d-cnn")
    spec = RunSpec(
        batch_size=2048, optimizer=optimizer, hparams=hparams, max_steps=600, eval_every=25, seed=0
    )
    result = run_training(workload, spec, workload.target)
    assert result.status == "reached", result.reason
