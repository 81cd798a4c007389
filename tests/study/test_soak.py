"""A short, bounded run of benchmarks/soak.py: random kill -9 of several workers, each
while it holds a trial."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


@pytest.mark.slow
def test_soak_with_random_kills_runs_every_trial_exactly_once(tmp_path):
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    assert spec is not None and spec.loader is not None
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    figures = soak.soak(
        tmp_path,
        seconds=25.0,
        workers=3,
        trials_per_rung=48,
        rungs=3,
        seed=1,
        mean_kill_interval_s=2.0,
    )
    print(figures)
    # Only kills of live workers that held an unfinished trial count (benchmarks/soak.py),
    # not the clean-up of the workers left when time is up.
    assert figures["kills"] >= 3
    # Per rung: the search, then the refinement window and the confirmation seeds
    # (the defaults: 8 and 2 x 2), each stage waiting for the one before.
    assert figures["planned"] == figures["finished"] == 3 * (48 + 8 + 2 * 2)
    assert figures["duplicated"] == 0 and figures["lost"] == 0
    assert figures["same best steps as a clean run"]
