"""The gradient noise scale under FSDP2 (``torch.distributed.fsdp.fully_shard``).

Under FSDP2 each rank, in backward, first computes its own gradient of every
parameter whole (the *unsharded* gradient: the small batch of B/W examples), then
reduce-scatters it: afterwards each rank holds one shard of the averaged gradient
(the big batch), and the shards of all ranks partition it. So, per step,

* |g_r|², the rank's small-batch squared norm, is taken from each unsharded
  parameter's gradient as autograd finishes accumulating it (a post-accumulate-grad
  hook: it runs before FSDP2's reduce-scatter reads that gradient);
* |G_big|² = Σ_r |shard_r|², each rank's squared norm of its own shards.

One all-reduce (sum) of a small float64 tensor per step — [|g_r|² per parameter,
|shard_r|² per parameter, 1/b_r] — gives mean_r |g_r|², |G_big|² and the harmonic
mean batch size on every rank; then the statistics are those of the DDP hook
(:class:`~batchlab.noise.NoiseScaleStatistics`, McCandlish et al. 2018, Appendix A).

Supported: ``fully_shard`` on a 1-D device mesh (every parameter a ``DTensor`` with
one ``Shard`` placement). Refused: FSDP1 (``FullyShardedDataParallel``), HSDP and
tensor parallelism (meshes of more than one dimension, ``Replicate`` placements).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ._ddp_buckets import snap
from ._plumbing import (
    ShardedModelError,
    check_micro_batch_size,
    group_assignment,
    group_by_module,
    leading_size,
    sq_norm,
)
from ._results import NoiseScaleResult
from ._running import RunningNoiseScale, Step

_WHERE = "register_fsdp_noise_scale_hook"


def fsdp2_parameters(model: nn.Module, *, where: str = _WHERE) -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters of an FSDP2 model, checked to be sharded on one mesh axis.

    Raises:
        TypeError: ``model`` is not an ``FSDPModule`` (``fully_shard`` not applied to it).
        ShardedModelError: FSDP1 modules, or parameters sharded in a way whose shards do
            not partition the averaged gradient over the data-parallel ranks (HSDP,
            tensor parallelism).
        ValueError: a trainable parameter not managed by ``fully_shard``.
    """
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
    from torch.distributed.tensor import DTensor, Shard

    for name, module in model.named_modules():
        if isinstance(module, FullyShardedDataParallel):
            raise ShardedModelError(
                f"{where}: the model has FullyShardedDataParallel (FSDP1) at {name or 'the top level'}; only "
                "FSDP2 (fully_shard on a 1-D device mesh) is supported"
            )
    if not isinstance(model, FSDPModule):
        raise TypeError(
            f"{where}: model must be a module sharded with torch.distributed.fsdp.fully_shard "
            f"(an FSDPModule; apply fully_shard to the root too), got {type(model).__name__}; "
            "under DistributedDataParallel use register_noise_scale_hook"
        )
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(f"{where}: the model has no trainable parameters")
    for name, param in named:
        if not isinstance(param, DTensor):
            raise ValueError(
                f"{where}: parameter {name} is not managed by fully_shard (a plain tensor, "
                "e.g. ignored_params); its gradient is not reduced across ranks"
            )
        mesh, placements = param.device_mesh, param.placements
        if mesh.ndim != 1 or len(placements) != 1 or not isinstance(placements[0], Shard):
            raise ShardedModelError(
                f"{where}: parameter {name} has placements {tuple(placements)} on a "
                f"{mesh.ndim}-D mesh; only FSDP2 on a 1-D mesh (one Shard placement) is "
                "supported, not HSDP or tensor parallelism"
            )
    meshes = {id(p.device_mesh) for _, p in named}
    if len(meshes) > 1:
        raise ShardedModelError(f"{where}: the parameters are sharded over different meshes")
    return named


def fsdp_params(model: nn.Module) -> list[Any]:
    """FSDP2's per-parameter records (``FSDPParam``) of every ``fully_shard`` module.

    Private FSDP2 state (torch 2.13): each record holds the sharded parameter and the
    unsharded one that backward accumulates the rank's own gradient into.
    """
    from torch.distributed.fsdp import FSDPModule

    records = []
    for module in model.modules():
        if isinstance(module, FSDPModule):
            group = module._get_fsdp_state()._fsdp_param_group  # noqa: SLF001
            if group is not None:
                records.extend(group.fsdp_params)
    return records


def step_from_reduced(
    index: int, reduced: np.ndarray, assign: np.ndarray | None, world_size: int
) -> Step:
    """One step's (small, big) norms from the summed [|g_r|²..., |shard_r|²..., 1/b_r].

    Args:
        index: the optimizer step's index.
        reduced: (2P + 1,) the all-reduced (summed over ranks) per-parameter squared
            norms of the local gradients, then of the local shards, then 1/b_r.
        assign: (P, 1 + modules) 0/1 matrix with ``per_module``, else ``None``.
        world_size: W; B_big = W x B_small.

    Returns:
        ``(index, mean_r |g_r|², Σ_r |shard_r|² = |G_big|², B_small, B_big)`` with
        B_small the harmonic mean of the ranks' batch sizes (as for the DDP hook).
    """
    count = (reduced.shape[0] - 1) // 2
    rows = np.ones((count, 1)) if assign is None else assign
    small = reduced[:count] @ rows / world_size
    big = reduced[count : 2 * count] @ rows
    with np.errstate(divide="ignore"):
        b_small = snap(float(world_size / reduced[-1]))
    return (index, small, big, b_small, world_size * b_small)


class FSDPNoiseScaleHook(RunningNoiseScale):
    """B_simple during FSDP2 training: each rank's unsharded gradient is the small batch.

    Create it with :func:`register_fsdp_noise_scale_hook`; the results are those of
    :class:`~batchlab.noise.NoiseScaleHook` (:attr:`b_simple`, :attr:`b_simple_ci`,
    :attr:`history`, :meth:`result`, ...), identical on every rank.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A, https://arxiv.org/abs/1812.06162.
    """

    _skip_reason = "a NaN/inf gradient or batch size"

    def __init__(
        self,
        model: nn.Module,
        *,
        local_batch_size: int | None = None,
        per_module: bool = False,
        ema_decay: float | None = None,
        confidence: float = 0.95,
    ) -> None:
        named = fsdp2_parameters(model)
        if not isinstance(per_module, bool):
            raise TypeError(f"{_WHERE}: per_module must be True or False, got {per_module!r}")
        self._process_group = named[0][1].device_mesh.get_group()
        world_size = dist.get_world_size(self._process_group)
        if world_size < 2:
            raise ValueError(
                f"{_WHERE}: the FSDP2 mesh has world_size={world_size}; the noise scale needs "
                "two batch sizes. Run on >= 2 ranks, or use batchlab.NoiseScaleTracker"
            )
        self.world_size = world_size
        self.local_batch_size = local_batch_size
        self._model = model
        self._params = [p for _, p in named]
        self._position = {id(p): i for i, p in enumerate(self._params)}
        group_names, group_of = group_by_module([n for n, _ in named])
        super().__init__(
            group_names if per_module else (), ema_decay=ema_decay, confidence=confidence
        )
        self._assign = group_assignment(group_of, len(group_names)) if per_module else None
        self._local: dict[int, Tensor] = {}  # position -> |g_r|² of its last backward
        self._hooked: set[int] = set()
        self._handles: list[Any] = []
        self._forward_examples = 0
        self._active = True
        self._handles.append(model.register_forward_pre_hook(self._on_forward, with_kwargs=True))
        # The unsharded parameters exist from a module's first all-gather on: hook them
        # after each FSDP module's forward (a no-op once they are hooked).
        from torch.distributed.fsdp import FSDPModule

        for module in model.modules():
            if isinstance(module, FSDPModule):
                self._handles.append(module.register_forward_hook(self._hook_unsharded))

    # ----- configuration ---------------------------------------------------------------

    @property
    def local_batch_size(self) -> int | None:
        """Examples this rank contributes per optimizer step (``None``: counted).

        ``None`` counts the first dimension of the first tensor argument of every
        forward of the model with grad enabled since the last :meth:`step`.
        """
        return self._local_batch_size

    @local_batch_size.setter
    def local_batch_size(self, value: int | None) -> None:
        self._local_batch_size = check_micro_batch_size(value, name="local_batch_size")

    # ----- plumbing: hooks ---------------------------------------------------------------

    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if torch.is_grad_enabled():
            self._forward_examples += leading_size(args, kwargs) or 0

    def _hook_unsharded(self, module: nn.Module, args: Any, output: Any) -> None:
        if not torch.is_grad_enabled():
            return
        for record in fsdp_params(module):
            position = self._position.get(id(record.sharded_param))
            if position is None:
                continue  # not trainable
            unsharded = getattr(record, "_unsharded_param", None)
            if unsharded is None:
                # After a module's forward its parameters have been all-gathered once:
                # if there is no unsharded parameter, FSDP2's internals have changed.
                raise RuntimeError(
                    f"{_WHERE}: found no unsharded parameter in FSDP2's state after a "
                    f"forward (torch {torch.__version__}; written against torch 2.13); the "
                    "rank's own gradient cannot be read, so the noise scale is not measured"
                )
            if id(unsharded) in self._hooked:
                continue
            self._hooked.add(id(unsharded))
            self._handles.append(
                unsharded.register_post_accumulate_grad_hook(self._local_hook(position, record))
            )

    def _local_hook(self, position: int, record: Any) -> Any:
        def hook(param: Tensor) -> None:
            if not self._active or param.grad is None:
                return
            grad = param.grad
            # With a reduce dtype other than the parameter's, FSDP2 keeps the gradient
            # accumulated over no-sync backwards apart; the rank's gradient is the sum.
            accumulated = getattr(record, "unsharded_accumulated_grad", None)
            if accumulated is not None:
                grad = accumulated + grad.to(accumulated.dtype)
            # Overwritten, not added: .grad already holds earlier no-sync backwards.
            self._local[position] = sq_norm(grad).to(torch.float64)

        return hook

    # ----- the training loop's one call ------------------------------------------------

    def step(self) -> None:
        """Close one optimizer step: one all-reduce of the norms, on every rank.

        Call once per optimizer step, after the backward (the one that synchronises
        gradients) and before ``zero_grad`` (the big-batch norm is read from the
        sharded gradients), on every rank.

        Raises:
            ValueError: no backward since the last step, or examples per step that
                cannot be told.
        """
        index = self._start_step()
        local, self._local = self._local, {}
        size = self._local_batch_size or self._forward_examples
        self._forward_examples = 0
        if not local:
            raise ValueError(
                "FSDPNoiseScaleHook.step(): no backward pass since the last step; call "
                "step() once per optimizer step, after the backward and before zero_grad()"
            )
        if size <= 0:
            raise ValueError(
                "FSDPNoiseScaleHook.step(): could not tell this rank's examples per step: no "
                "forward with a tensor argument since the last step; pass local_batch_size="
            )
        zero = torch.zeros((), dtype=torch.float64, device=self._params[0].device)
        small, big, unseen = [], [], []
        for position, param in enumerate(self._params):
            grad = param.grad
            if grad is not None and position not in local:
                unseen.append(position)
            small.append(local.get(position, zero))
            big.append(zero if grad is None else sq_norm(grad.to_local()).to(torch.float64))
        if unseen:
            raise ValueError(
                f"FSDPNoiseScaleHook.step(): {len(unseen)} parameter(s) have a sharded "
                "gradient but no local one was seen in backward (e.g. a gradient set by "
                "hand, or FSDP2's reduce_scatter_unused_params); the step is not counted"
            )
        inverse = torch.full((1,), 1.0 / size, dtype=torch.float64, device=zero.device)
        flat = torch.cat([torch.stack(small), torch.stack(big), inverse])
        work = dist.all_reduce(flat, group=self._process_group, async_op=True)
        self._queue((index, flat, work))

    def _to_host(self, pending: list[Any]) -> list[Step]:
        steps = []
        for index, flat, work in pending:
            work.wait()
            reduced = flat.cpu().numpy()
            steps.append(step_from_reduced(index, reduced, self._assign, self.world_size))
        return steps

    # ----- results -----------------------------------------------------------------------

    def result(self) -> NoiseScaleResult:
        """Everything so far; ``micro_batch_size`` is B_small, ``batch_size`` B_big."""
        return super().result()

    def remove(self) -> None:
        """Stop measuring (all hooks removed); the statistics so far stay readable."""
        self._active = False
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._flush()


def register_fsdp_noise_scale_hook(
    model: nn.Module,
    *,
    local_batch_size: int | None = None,
    per_module: bool = False,
    ema_decay: float | None = None,
    confidence: float = 0.95,
) -> FSDPNoiseScaleHook:
    """Measure B_simple during FSDP2 (``fully_shard``) training: one tiny all-reduce a step.

    The FSDP2 sibling of :func:`~batchlab.noise.register_noise_scale_hook`. Each rank's
    own gradient, whole before FSDP2 reduce-scatters it, is the small batch (B_small =
    the rank's examples); the averaged gradient, of which each rank keeps a shard, is
    the big batch (B_big = world size x B_small). |G_small|² is the mean over ranks of
    their own squared norms; |G_big|² the sum over ranks of their shards' squared norms
    (the shards partition the gradient). Both cross ranks in one all-reduce of
    2 x (parameter tensors) + 1 float64 numbers per step, in :meth:`~FSDPNoiseScaleHook.step`.
    Training is unchanged: the hooks only read gradients.

    Use::

        fully_shard(model.layer1); fully_shard(model)      # the root too
        gns = register_fsdp_noise_scale_hook(model, local_batch_size=32)
        for x, y in loader:                                 # 32 examples per rank
            loss_fn(model(x), y).backward()
            optimizer.step()
            gns.step()                                      # before zero_grad()
            optimizer.zero_grad()

    Gradient accumulation: run all micro-batches but the last with
    ``model.set_requires_gradient_sync(False)``; the rank's accumulated unsharded
    gradient is the small batch (``local_batch_size`` = all its micro-batches).

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A, https://arxiv.org/abs/1812.06162.

    Args:
        model: the root module, with ``fully_shard`` applied to it (and to any
            submodules), on a 1-D device mesh of >= 2 ranks. Register on every rank.
        local_batch_size: examples this rank contributes per step, or ``None`` to count
            them from the model's forwards with grad enabled.
        per_module: also estimate each module's own noise scale.
        ema_decay: ``None`` for a plain average over all steps, or β in [0, 1).
        confidence: coverage of the intervals.

    Raises:
        TypeError: ``model`` is not an ``FSDPModule``.
        ShardedModelError: FSDP1, HSDP or tensor parallelism.
        ValueError: a world size of 1, a bad ``local_batch_size``, or a trainable
            parameter that ``fully_shard`` does not manage.
    """
    return FSDPNoiseScaleHook(
        model,
        local_batch_size=local_batch_size,
        per_module=per_module,
        ema_decay=ema_decay,
        confidence=confidence,
    )


__all__ = [
    "FSDPNoiseScaleHook",
    "fsdp2_parameters",
    "fsdp_params",
    "register_fsdp_noise_scale_hook",
    "step_from_reduced",
]
