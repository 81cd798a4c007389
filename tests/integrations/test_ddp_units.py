"""The parts of the DDP integration that need no process group (see test_ddp.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from batchlab.noise import ShardedModelError, register_noise_scale_hook
from batchlab.noise._ddp_buckets import snap
from batchlab.noise._plumbing import sharding_of

from .ddp_worker import build_model


def test_unsharded_models_are_not_taken_for_sharded() -> None:
    model = build_model(torch.float32)
    assert sharding_of(model) is None
    assert sharding_of(nn.Sequential(model, nn.Linear(3, 2))) is None


def test_a_plain_module_is_refused_before_any_communication() -> None:
    with pytest.raises(TypeError, match="DistributedDataParallel, got Linear.*NoiseScaleTracker"):
        register_noise_scale_hook(nn.Linear(2, 2))


def test_sharded_model_error_is_a_type_error_and_a_batchlab_error() -> None:
    from batchlab import BatchlabError

    assert issubclass(ShardedModelError, TypeError)
    assert issubclass(ShardedModelError, BatchlabError)


@pytest.mark.parametrize(
    ("harmonic", "expected"),
    [
        (32.000001, 32.0),  # float32 rounding of 1 / mean(1/b) with equal sizes: snapped
        (3.75, 3.75),  # ranks of 3 and 5 examples: a real harmonic mean, kept
        (10.4, 10.4),  # 4e-2 from an integer is not rounding error: kept
        (4e5 + 1.0 / 3, 4e5),  # within 1e-5 relative: taken as rounding (harmless)
    ],
)
def test_snap_rounds_only_what_float32_error_explains(harmonic: float, expected: float) -> None:
    assert snap(harmonic) == expected


def test_snap_leaves_nan_for_the_step_to_be_skipped() -> None:
    assert math.isnan(snap(math.nan))
