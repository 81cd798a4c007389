"""Workloads: a model, its data, a loss, an evaluation and a default target.

Built-ins (all offline): ``mnist1d-cnn``, ``digits-mlp``, ``shakespeare-char``,
``linreg`` and ``nqm``; the last two have closed-form gradient statistics and exact
training curves, for testing everything else against ground truth.
"""

from ._exact import ExactNoiseScale
from ._in_memory import ClassificationWorkload, InMemoryWorkload, shuffled_index_batches
from ._protocol import Batch, Target, Workload, check_batch_size
from ._registry import BUILTIN_WORKLOADS, WorkloadInfo, get_workload, list_workloads

__all__ = [
    "BUILTIN_WORKLOADS",
    "Batch",
    "ClassificationWorkload",
    "ExactNoiseScale",
    "InMemoryWorkload",
    "Target",
    "Workload",
    "WorkloadInfo",
    "check_batch_size",
    "get_workload",
    "list_workloads",
    "shuffled_index_batches",
]
