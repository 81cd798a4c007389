"""A workload on which some seeds never reach the target, for the reserve tests.

Used as ``tests.study.unstable_workload:make`` (a ``module:function`` workload): it is
linreg, except that a model built from one of the seeds in ``never`` evaluates 1000x
worse than it is, so that run never reaches the target: a point that is fast on one
seed and never gets there on another, as at the edge of stability.
"""

from __future__ import annotations

import weakref
from typing import Any

from torch import nn

from batchlab.workloads import get_workload


class UnstableLinreg:
    def __init__(self, never: list[int], dim: int) -> None:
        self._inner = get_workload("linreg", {"dim": dim})
        self._never = set(never)
        self._poisoned: weakref.WeakSet[nn.Module] = weakref.WeakSet()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def build_model(self, seed: int) -> nn.Module:
        model = self._inner.build_model(seed)
        if seed in self._never:
            self._poisoned.add(model)
        return model

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        metrics = self._inner.evaluate(model)
        if model in self._poisoned:
            return {name: 1000.0 * (1.0 + value) for name, value in metrics.items()}
        return metrics


def make(never: list[int] | None = None, dim: int = 8) -> UnstableLinreg:
    return UnstableLinreg(list(never or []), dim)
