"""The gradient noise scale under DistributedDataParallel (a DDP communication hook).

The hook lives in :mod:`batchlab.noise` with the other noise-scale plumbing; this
module is the documented import path for DDP users::

    from batchlab.integrations.ddp import register_noise_scale_hook
"""

from ..noise import NoiseScaleHook, ShardedModelError, register_noise_scale_hook

__all__ = ["NoiseScaleHook", "ShardedModelError", "register_noise_scale_hook"]
