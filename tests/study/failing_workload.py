"""A workload whose trials fail on purpose, for the failure-handling tests.

Used as ``tests.study.failing_workload:make`` (a ``module:function`` workload): it is
linreg, except that a model built from a seed divisible by ``every`` raises ``error``
in its first training step (``error="exit"``: its process exits at once, as a worker
killed by the operating system would).
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from torch import nn

from batchlab.workloads import get_workload

ERRORS = {"runtime": RuntimeError, "memory": MemoryError, "exit": SystemExit}


class FailingLinreg:
    def __init__(self, error: str, every: int) -> None:
        self._inner = get_workload("linreg", {"dim": 4})
        self._error, self._every = ERRORS[error], every
        # The failing models themselves, weakly: a set of id()s would also catch a
        # later model that happens to reuse a freed failing model's address.
        self._failing: weakref.WeakSet[nn.Module] = weakref.WeakSet()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def build_model(self, seed: int) -> nn.Module:
        model = self._inner.build_model(seed)
        if seed % self._every == 0:
            self._failing.add(model)
        return model

    def loss_fn(self, model: nn.Module, batch: Any) -> Any:
        if model in self._failing:
            if self._error is SystemExit:
                os._exit(3)
            raise self._error("boom: this trial fails on purpose")
        return self._inner.loss_fn(model, batch)


def make(error: str = "runtime", every: int = 3) -> FailingLinreg:
    return FailingLinreg(error, every)
