"""Workloads: a model, its data, a loss, an evaluation and a default target.

Built-ins (all offline): ``mnist1d-cnn``, ``digits-mlp``, ``shakespeare-char``,
``linreg`` and ``nqm``; the last two have closed-form gradient statistics and exact
training curves, for testing everything else against ground truth.
Your own model and tensors: :func:`from_tensors` (the built-ins' fast path).
"""

from ._exact import ExactNoiseScale
from ._in_memory import ClassificationWorkload, InMemoryWorkload, shuffled_index_batches
from ._placement import on_device, workload_device
from ._protocol import Batch, Target, Workload, check_batch_size
from ._registry import BUILTIN_WORKLOADS, WorkloadInfo, get_workload, list_workloads
from ._tensors import TensorWorkload, from_tensors

__all__ = [
    "BUILTIN_WORKLOADS",
    "Batch",
    "ClassificationWorkload",
    "ExactNoiseScale",
    "InMemoryWorkload",
    "Target",
    "TensorWorkload",
    "Workload",
    "WorkloadInfo",
    "check_batch_size",
    "from_tensors",
    "get_workload",
    "list_workloads",
    "on_device",
    "shuffled_index_batches",
    "workload_device",
]
