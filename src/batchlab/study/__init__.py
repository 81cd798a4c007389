"""Scaling studies: batch-size ladder, per-batch-size tuning, steps-to-target."""

from ._trial import RunResult, RunSpec, run_training, steps_to_target

__all__ = ["RunResult", "RunSpec", "run_training", "steps_to_target"]
