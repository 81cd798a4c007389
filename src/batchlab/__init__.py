"""batchlab: how large can your batch be, and what learning rate then?

Measure the gradient noise scale of any PyTorch model, run batch-size scaling
studies with per-batch-size tuning, and train at large batch with LARS/LAMB.
See https://github.com/batchlab/batchlab and ``batchlab --help``.
"""

from ._errors import BatchlabError, ConfigError, WorkloadError
from .workloads import Target, Workload, get_workload, list_workloads

__version__ = "0.1.0"

__all__ = [
    "BatchlabError",
    "ConfigError",
    "Target",
    "Workload",
    "WorkloadError",
    "__version__",
    "get_workload",
    "list_workloads",
]
