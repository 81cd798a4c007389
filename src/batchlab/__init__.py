"""batchlab: how large can your batch be, and what learning rate then?

Measure the gradient noise scale of any PyTorch model, run batch-size scaling
studies with per-batch-size tuning, and train at large batch with LARS/LAMB.
See https://github.com/batchlab/batchlab and ``batchlab --help``.
"""

from . import analysis, cbs, noise, optim, report
from ._batch_size_schedule import BatchSizeSchedule
from ._errors import BatchlabError, ConfigError, WorkloadError
from .noise import NoiseScaleResult, NoiseScaleTracker, measure_noise_scale
from .study import Study, StudyConfig, StudyResult
from .workloads import Target, Workload, get_workload, list_workloads

__version__ = "0.1.0"

__all__ = [
    "BatchSizeSchedule",
    "BatchlabError",
    "ConfigError",
    "NoiseScaleResult",
    "NoiseScaleTracker",
    "Study",
    "StudyConfig",
    "StudyResult",
    "Target",
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
]
