"""batchlab: how large can your batch be, and what learning rate then?

Measure the gradient noise scale of any PyTorch model, run batch-size scaling
studies with per-batch-size tuning, and train at large batch with LARS/LAMB.
See https://github.com/batchlab/batchlab and ``batchlab --help``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import noise, optim
from ._errors import BatchlabError, ConfigError, WorkloadError
from ._version import __version__
from .noise import NoiseScaleResult, NoiseScaleTracker, measure_noise_scale
from .optim import TransferResult, transfer_hparams
from .study import Study, StudyConfig, StudyResult
from .training import BatchRamp, BatchSizeSchedule
from .workloads import Target, Workload, get_workload, list_workloads

if TYPE_CHECKING:
    from . import analysis, cbs, report


#: Subpackages imported on first use: they pull in SciPy's fits and matplotlib, which
#: a study's worker processes (and ``batchlab --help``) never need.
_LAZY_SUBPACKAGES = ("analysis", "cbs", "report")


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BatchRamp",
    "BatchSizeSchedule",
    "BatchlabError",
    "ConfigError",
    "NoiseScaleResult",
    "NoiseScaleTracker",
    "Study",
    "StudyConfig",
    "StudyResult",
    "Target",
    "TransferResult",
    "Workload",
    "WorkloadError",
    "__version__",
    "analysis",
    "cbs",
    "get_workload",
    "list_workloads",
    "measure_noise_scale",
    "noise",
    "optim",
    "report",
    "transfer_hparams",
]
