"""Gradient noise scale (McCandlish et al. 2018): pure estimators and a hook-based tracker.

* :func:`measure_noise_scale` — B_simple (and optionally B_noise) at the current
  parameters, from a few batches; leaves the model exactly as it was.
* :class:`NoiseScaleTracker` — B_simple during training, from the micro-batches of
  gradient accumulation, with one ``tracker.step()`` per optimizer step.
* :class:`NormLayerNoiseTracker` — B_simple of the LayerNorm/RMSNorm parameters alone,
  from their cheap per-example gradients (Gray et al. 2024), as a proxy.
* :class:`NoiseScaleStatistics`, :func:`grad_sq_norm_estimate`,
  :func:`trace_cov_estimate`, :func:`noise_scale_from_norms`,
  :func:`fieller_interval` — the statistics alone, for norms you collect yourself
  (e.g. per-rank gradients under DDP).

References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
    Training", https://arxiv.org/abs/1812.06162 (Appendix A: the estimators).
"""

from typing import TYPE_CHECKING, Any

from ._estimators import fieller_interval, grad_sq_norm_estimate, trace_cov_estimate
from ._measure import measure_noise_scale
from ._norm_layers import NormLayerNoiseTracker
from ._plumbing import (
    DEFAULT_MICRO_BATCHES,
    ShardedModelError,
    check_micro_batch_size,
    check_not_sharded,
    split_batch,
)
from ._results import NoiseScaleEstimate, NoiseScaleRecord, NoiseScaleResult
from ._statistics import NoiseScaleStatistics, noise_scale_from_norms
from ._tracker import NoiseScaleTracker

if TYPE_CHECKING:
    from ._ddp_hook import NoiseScaleHook, register_noise_scale_hook
    from ._fsdp import FSDPNoiseScaleHook, register_fsdp_noise_scale_hook

#: The DDP comm hook imports torch.distributed's DDP machinery: only on first use.
_DDP_HOOK_NAMES = ("NoiseScaleHook", "register_noise_scale_hook")
#: Likewise the FSDP2 hook (torch.distributed.fsdp).
_FSDP_HOOK_NAMES = ("FSDPNoiseScaleHook", "register_fsdp_noise_scale_hook")


def __getattr__(name: str) -> Any:
    if name in _DDP_HOOK_NAMES:
        from . import _ddp_hook

        return getattr(_ddp_hook, name)
    if name in _FSDP_HOOK_NAMES:
        from . import _fsdp

        return getattr(_fsdp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MICRO_BATCHES",
    "FSDPNoiseScaleHook",
    "NoiseScaleEstimate",
    "NoiseScaleHook",
    "NoiseScaleRecord",
    "NoiseScaleResult",
    "NoiseScaleStatistics",
    "NoiseScaleTracker",
    "NormLayerNoiseTracker",
    "ShardedModelError",
    "check_micro_batch_size",
    "check_not_sharded",
    "fieller_interval",
    "grad_sq_norm_estimate",
    "measure_noise_scale",
    "noise_scale_from_norms",
    "register_fsdp_noise_scale_hook",
    "register_noise_scale_hook",
    "split_batch",
    "trace_cov_estimate",
]
