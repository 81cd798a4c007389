"""A workload whose DDP rank 1 aborts, as gloo's transport sometimes makes a rank do.

Used as ``tests.study.aborting_workload:make`` (a ``module:function`` workload): it is
digits-mlp, except that on rank 1 the ``at_eval``-th evaluation calls ``os.abort()``
(SIGABRT, no Python error) in the first ``aborts`` launches, or (``at_eval=0``) the
process aborts on its way out, after training; the launches are counted in the file
``counter``, so a relaunch of the same trial trains through.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any

from torch import nn

from batchlab.workloads import get_workload


class AbortingDigits:
    def __init__(self, counter: str, aborts: int, at_eval: int) -> None:
        self._inner = get_workload("digits-mlp", {})
        self._evaluations = 0
        self._abort = False
        if os.environ.get("RANK") == "1":
            path = Path(counter)
            launches = int(path.read_text()) if path.exists() else 0
            path.write_text(str(launches + 1))
            self._abort = launches < aborts
        self._at_eval = at_eval
        if self._abort and at_eval == 0:
            atexit.register(os.abort)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        self._evaluations += 1
        if self._abort and self._evaluations == self._at_eval:
            os.abort()
        return self._inner.evaluate(model)


def make(counter: str, aborts: int = 1, at_eval: int = 2) -> AbortingDigits:
    return AbortingDigits(counter, aborts, at_eval)
