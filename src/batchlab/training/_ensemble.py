"""Trial ensembles: K trials of one rung trained as one batched model with ``torch.func``.

The K models (same architecture, own seeds) are stacked with ``stack_module_state``
and trained with ``vmap`` over ``functional_call``: one forward/backward for all of
them, each with its own batches (its own generator), learning rate, momentum and
warmup. The update rules are torch.optim's SGD (plain, heavy-ball, Nesterov) and
Adam/AdamW written over the stacked tensors, so a member's curve equals the same
trial run alone up to float rounding (``tests/study/test_ensemble.py``).

Members leave the ensemble as soon as their outcome is known (target reached,
diverged, or beaten: once one member reaches the target at step s, every member that
has not reached it by s can no longer give the rung's best), so the batch shrinks
as the run goes on. Each member is evaluated on its own schedule (:mod:`._evaluation`:
the coarse grid, dense while it is predicted near the target), exactly as if it ran
alone, so its curve and its steps-to-target do not depend on its co-members (a trial
re-run after a crash in another ensemble measures the same); one batched evaluation
serves every member due at a step. Workloads or optimizers that cannot be batched
raise :class:`EnsembleUnsupported`; the caller falls back to sequential trials.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from .._device import autocast, matmul_precision
from .._seeding import make_generator
from ..optim import lr_multiplier
from ..workloads import Batch, Target, Workload, workload_device
from ._evaluation import EvaluationSchedule, near_target, resolution_steps
from ._run import (
    LOSS_READBACK_EVERY,
    SCHEDULE_HPARAMS,
    PendingLosses,
    PruneRule,
    RunResult,
    RunSpec,
    best_so_far,
    has_exact_curves,
    optimizer_and_schedule,
)

ENSEMBLE_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
_BATCHED_HPARAMS = ("lr", "momentum", "weight_decay", "beta1", "beta2", "eps", *SCHEDULE_HPARAMS)


class EnsembleUnsupported(Exception):
    """This rung's trials cannot be trained as one batched model; run them one by one."""


class _LossModule(nn.Module):
    """``forward(batch) = loss_fn(model, batch)``, so ``functional_call`` can swap weights."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Batch], Tensor]) -> None:
        super().__init__()
        self.model = model
        self._loss_fn = loss_fn

    def forward(self, batch: Batch) -> Tensor:
        return self._loss_fn(self.model, batch)


class _MetricsModule(nn.Module):
    def __init__(
        self, model: nn.Module, metrics_fn: Callable[[nn.Module], dict[str, Tensor]]
    ) -> None:
        super().__init__()
        self.model = model
        self._metrics_fn = metrics_fn

    def forward(self) -> dict[str, Tensor]:
        return self._metrics_fn(self.model)


def _stack_batches(batches: list[Batch]) -> Batch:
    if isinstance(batches[0], tuple):
        return tuple(torch.stack(parts) for parts in zip(*batches, strict=True))
    return torch.stack(batches)  # type: ignore[arg-type]


def _broadcastable(values: Tensor, like: Tensor) -> Tensor:
    """A (K,) per-member tensor as (K, 1, ..., 1), to broadcast against ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class _StackedOptimizer:
    """torch.optim's SGD/momentum/Nesterov/Adam/AdamW over stacked per-member tensors.

    Per-member hyperparameters live on the parameters' device, and the learning rate of
    every member at every step is one table made up front: a step sends nothing to the
    device and reads nothing back.
    """

    def __init__(
        self,
        name: str,
        hparams: list[dict[str, float]],
        params: dict[str, Tensor],
        *,
        total_steps: int,
        decay: str = "constant",
    ) -> None:
        self.name = name
        self.step_count = 0

        def column(key: str, default: float) -> list[float]:
            return [float(h.get(key, default)) for h in hparams]

        self.lr = column("lr", math.nan)
        self.weight_decay = column("weight_decay", 0.0)
        # The sequential trainer's warmup_schedule, one multiplier per member.
        self.schedule = [
            lr_multiplier(int(round(w)), total_steps, decay) for w in column("warmup_steps", 0.0)
        ]
        if name in ("momentum", "nesterov"):
            self.momentum = column("momentum", 0.9)
        if name in ("adam", "adamw"):
            self.beta1, self.beta2 = column("beta1", 0.9), column("beta2", 0.999)
            self.eps = column("eps", 1e-8)
        self.state: dict[str, dict[str, Tensor]] = {key: {} for key in params}
        like = next(iter(params.values()))
        self.device, dtype = like.device, like.dtype
        # lr_table[k, t]: member k's learning rate after t steps, as LambdaLR gives it.
        rates = [
            [lr * multiplier(t) for t in range(total_steps + 1)]
            for lr, multiplier in zip(self.lr, self.schedule, strict=True)
        ]
        self.lr_table = torch.tensor(rates, dtype=dtype).to(self.device)
        self.columns = {
            key: torch.tensor(getattr(self, key), dtype=dtype).to(self.device)
            for key in ("weight_decay", "momentum")
            if hasattr(self, key)
        }

    def keep(self, rows: list[int]) -> None:
        """Drop the members not in ``rows`` (their state too)."""
        for attr in ("lr", "weight_decay", "schedule", "momentum", "beta1", "beta2", "eps"):
            if hasattr(self, attr):
                setattr(self, attr, [getattr(self, attr)[i] for i in rows])
        index = torch.tensor(rows, dtype=torch.long).to(self.device)
        self.lr_table = self.lr_table.index_select(0, index)
        self.columns = {key: value.index_select(0, index) for key, value in self.columns.items()}
        for key, state in self.state.items():
            self.state[key] = {name: value.index_select(0, index) for name, value in state.items()}

    def _lr_now(self) -> list[float]:
        t = self.step_count  # steps taken, as LambdaLR counts them
        return [lr * multiplier(t) for lr, multiplier in zip(self.lr, self.schedule, strict=True)]

    @torch.no_grad()
    def step(self, params: dict[str, Tensor], grads: dict[str, Tensor]) -> None:
        lr_now = self.lr_table[:, self.step_count]
        lrs = self._lr_now() if self.name in ("adam", "adamw") else []
        self.step_count += 1
        for key, p in params.items():
            g = grads[key]
            state = self.state[key]
            if self.name in ("adam", "adamw"):
                self._adam(p, g, state, lrs)
                continue
            lr = _broadcastable(lr_now, p)
            if any(self.weight_decay):
                g = g + _broadcastable(self.columns["weight_decay"], p) * p
            if self.name == "sgd":
                p.sub_(lr * g)
                continue
            momentum = _broadcastable(self.columns["momentum"], p)
            if "buf" not in state:
                state["buf"] = g.clone()
            else:
                state["buf"].mul_(momentum).add_(g)
            update = g + momentum * state["buf"] if self.name == "nesterov" else state["buf"]
            p.sub_(lr * update)

    def _adam(self, p: Tensor, g: Tensor, state: dict[str, Tensor], lrs: list[float]) -> None:
        # Member by member with Python scalars, in torch.optim.Adam's order of operations:
        # Adam's normalisation amplifies rounding differences, so "the same up to float
        # rounding" needs the same rounding.
        t = self.step_count
        if "m" not in state:
            state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
        for k, lr in enumerate(lrs):
            param, grad, m, v = p[k], g[k], state["m"][k], state["v"][k]
            beta1, beta2, decay = self.beta1[k], self.beta2[k], self.weight_decay[k]
            if self.name == "adamw":
                param.mul_(1 - lr * decay)
            elif decay:
                grad = grad.add(param, alpha=decay)
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = lr / (1 - beta1**t)
            denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(self.eps[k])
            param.addcdiv_(m, denom, value=-step_size)


def check_ensemble_support(workload: Workload, specs: list[RunSpec]) -> None:
    """Raise :class:`EnsembleUnsupported` (with the reason) if these trials can't be batched."""
    if has_exact_curves(workload):
        raise EnsembleUnsupported(f"{workload.name} computes exact curves; nothing to batch")
    first = specs[0]
    if first.optimizer not in ENSEMBLE_OPTIMIZERS:
        raise EnsembleUnsupported(
            f"optimizer {first.optimizer!r} has no batched update (batched: {', '.join(ENSEMBLE_OPTIMIZERS)})"
        )
    for spec in specs:
        shared = (
            "batch_size",
            "optimizer",
            "max_steps",
            "eval_every",
            "resolution",
            "decay",
            "precision",
            "compile",
        )
        if any(getattr(spec, name) != getattr(first, name) for name in shared):
            raise ValueError(
                "an ensemble's trials must share batch size, optimizer, budget, evaluation "
                "(interval and resolution), decay, precision and compile"
            )
        unknown = set(spec.hparams) - set(_BATCHED_HPARAMS)
        if unknown:
            raise EnsembleUnsupported(f"hyperparameters {sorted(unknown)} have no batched update")


def run_ensemble(
    workload: Workload,
    specs: list[RunSpec],
    target: Target,
    *,
    stop_at_target: bool = True,
    stop_after: int | Callable[[], int | None] | None = None,
    on_eval: Callable[[int, int, dict[str, float]], None] | None = None,
    prune: PruneRule | None = None,
) -> list[RunResult]:
    """Train ``specs`` (one rung's trials) as one vmapped ensemble; one result per spec.

    The specs' batch size and the target are trusted, not checked again: a study
    validated them in its config (:func:`run_training` checks its own arguments).

    Args:
        workload: the model and data (its model must work under ``torch.func.vmap``).
        specs: the trials; same batch size, optimizer, budget, evaluation interval and
            resolution.
        target: defines steps-to-target.
        stop_at_target: members leave once they reach the target.
        stop_after: the rung's best steps-to-target known so far (stop-once-beaten),
            or a callable asked at every evaluation; tightened as members of this
            ensemble reach the target. ``None`` turns stop-once-beaten off.
        on_eval: called with (member index, step, metrics) at every evaluation.
        prune: asked at every evaluation for each member still short of the target,
            with its best value so far and those of the other members (see
            :func:`~batchlab.training.run_training`).

    Raises:
        EnsembleUnsupported: the trials cannot be batched (the caller runs them alone).
    """
    check_ensemble_support(workload, specs)
    with matmul_precision(specs[0].precision):  # for the whole run, backward passes too
        return _train_ensemble(workload, specs, target, stop_at_target, stop_after, on_eval, prune)


def _train_ensemble(
    workload: Workload,
    specs: list[RunSpec],
    target: Target,
    stop_at_target: bool,
    stop_after: int | Callable[[], int | None] | None,
    on_eval: Callable[[int, int, dict[str, float]], None] | None,
    prune: PruneRule | None,
) -> list[RunResult]:
    """:func:`run_ensemble`'s training loop, for checked ``specs``."""
    first = specs[0]
    device = workload_device(workload)
    models = [workload.build_model(spec.seed).to(device) for spec in specs]
    for model in models:
        model.train()
    base = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)
    loss_module = _LossModule(base, workload.loss_fn)

    def member_loss(p: dict[str, Tensor], b: dict[str, Tensor], batch: Batch) -> Tensor:
        weights = {f"model.{k}": v for k, v in {**p, **b}.items()}
        return functional_call(loss_module, weights, (batch,))

    batched_loss = vmap(member_loss)
    if first.compile:
        batched_loss = torch.compile(batched_loss)
    metrics_fn = getattr(workload, "val_metrics", None)
    batched_metrics = None
    if callable(metrics_fn):
        metrics_module = _MetricsModule(base, metrics_fn)

        def member_metrics(p: dict[str, Tensor], b: dict[str, Tensor]) -> dict[str, Tensor]:
            weights = {f"model.{k}": v for k, v in {**p, **b}.items()}
            return functional_call(metrics_module, weights, ())

        batched_metrics = vmap(member_metrics)

    optimizer = _StackedOptimizer(
        first.optimizer,
        [dict(s.hparams) for s in specs],
        params,
        total_steps=first.max_steps,
        decay=first.decay,
    )
    streams: list[Iterator[Batch]] = [
        workload.train_batches(spec.batch_size, make_generator(spec.seed)) for spec in specs
    ]
    results = [RunResult(status="not_reached", steps_to_target=None) for _ in specs]
    active = list(range(len(specs)))  # member index of each row of the stacked tensors
    # Each member keeps its own schedule, as if it ran alone: its curve and its
    # steps-to-target do not depend on which trials share its ensemble.
    schedules = [EvaluationSchedule(spec.eval_steps(), spec.resolution) for spec in specs]
    best: int | None = None  # best steps-to-target reached inside this ensemble

    def evaluate(rows: list[int]) -> dict[int, dict[str, float]]:
        base.eval()
        try:
            with torch.inference_mode(), autocast(first.precision, device):
                if batched_metrics is not None:  # one batched pass serves every row
                    values = {k: v.tolist() for k, v in batched_metrics(params, buffers).items()}
                    return {row: {k: float(v[row]) for k, v in values.items()} for row in rows}
            return {
                row: _evaluate_member(workload, models[active[row]], params, buffers, row)
                for row in rows
            }
        finally:
            base.train()

    # The members' training losses stay on the device until an evaluation (or every
    # LOSS_READBACK_EVERY steps) reads them back at once; only then can members leave.
    pending = PendingLosses()
    for step in range(1, first.max_steps + 1):
        batch = _stack_batches([next(streams[m]) for m in active])
        try:
            with autocast(first.precision, device):
                losses = batched_loss(params, buffers, batch)
            grads = torch.autograd.grad(losses.sum(), list(params.values()))
        except RuntimeError as error:
            if step == 1:
                raise EnsembleUnsupported(f"the model does not run under vmap: {error}") from error
            raise
        optimizer.step(params, dict(zip(params, grads, strict=True)))
        pending.add(step, losses)
        due = [row for row, member in enumerate(active) if schedules[member].due(step)]
        if not (due or len(pending) >= LOSS_READBACK_EVERY or step == first.max_steps):
            continue
        leaving: list[int] = []
        train_losses: list[float] = []
        for loss_step, train_losses in pending.read():
            for row, value in enumerate(train_losses):
                if row not in leaving and not math.isfinite(value):
                    results[active[row]].status = "diverged"
                    results[
                        active[row]
                    ].reason = f"training loss became {value} at step {loss_step}"
                    leaving.append(row)
        due = [row for row in due if row not in leaving]
        if due:
            metrics = evaluate(due)
            for row in due:
                member, result = active[row], results[active[row]]
                value = metrics[row].get(target.metric, math.nan)
                result.steps.append(step)
                result.train_loss.append(train_losses[row])
                for name, metric in metrics[row].items():
                    result.metrics.setdefault(name, []).append(metric)
                if on_eval is not None:
                    on_eval(member, step, metrics[row])
                if not math.isfinite(value):
                    result.status, result.reason = (
                        "diverged",
                        f"{target.metric} became {value} at step {step}",
                    )
                    leaving.append(row)
                elif target.reached(value):
                    if result.steps_to_target is None:
                        result.status, result.steps_to_target = "reached", step
                        best = step if best is None else min(best, step)
                    if stop_at_target:
                        leaving.append(row)
            # Stop-once-beaten is on only when the caller passes stop_after; then a
            # member reaching the target beats the others as much as a known best does.
            bound = None
            if stop_after is not None:
                known = stop_after() if callable(stop_after) else stop_after
                bound = min((b for b in (best, known) if b is not None), default=None)
            for row in due:
                result = results[active[row]]
                if (
                    row not in leaving
                    and result.steps_to_target is None
                    and bound is not None
                    and step >= bound
                ):
                    result.status = "beaten"
                    result.reason = (
                        f"stopped at step {step}: another run reached the target by step {bound}"
                    )
                    leaving.append(row)
            if prune is not None:
                bests = [best_so_far(r, target) for r in results]
                for row in due:
                    member = active[row]
                    own = bests[member]
                    if row in leaving or results[member].steps_to_target is not None or own is None:
                        continue
                    cohort = [b for i, b in enumerate(bests) if i != member and b is not None]
                    why = prune(step, own, cohort)
                    if why is not None:
                        results[member].status, results[member].reason = "pruned", why
                        leaving.append(row)
            for row in due:
                result = results[active[row]]
                near = result.steps_to_target is None and near_target(
                    result.steps, result.metrics[target.metric], target, first.eval_every
                )
                schedules[active[row]].advance(step, near)
        if leaving:
            keep = [row for row in range(len(active)) if row not in leaving]
            if not keep:
                break
            index = torch.tensor(keep, dtype=torch.long).to(device)
            params = {
                k: v.detach().index_select(0, index).requires_grad_() for k, v in params.items()
            }
            buffers = {k: v.index_select(0, index) for k, v in buffers.items()}
            optimizer.keep(keep)
            active = [active[row] for row in keep]
    for result in results:
        result.resolution_steps = resolution_steps(result.steps, result.steps_to_target)
        if result.status == "not_reached":
            result.reason = f"{target.describe()} not reached within {first.max_steps} steps"
    return results


def _evaluate_member(
    workload: Workload,
    model: nn.Module,
    params: dict[str, Tensor],
    buffers: dict[str, Tensor],
    row: int,
) -> dict[str, float]:
    """Evaluate one member with the workload's own ``evaluate`` on a real module."""
    state: dict[str, Any] = {k: v[row].detach() for k, v in {**params, **buffers}.items()}
    model.load_state_dict(state, strict=False)
    return workload.evaluate(model)


def member_memory(workload: Workload, spec: RunSpec) -> int:
    """Peak GPU memory, bytes, of one member's training step at ``spec`` (its batch size).

    One step of one model built and trained like a member (weights, gradients,
    optimizer state, activations), on the workload's CUDA device; the memory the
    workload's data already hold is not counted. Sizes GPU ensembles
    (:func:`batchlab.study._runner.members_that_fit`).
    """
    device = workload_device(workload)
    if device.type != "cuda":
        raise ValueError(f"member_memory measures CUDA memory; the workload is on {device}")
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    model = workload.build_model(spec.seed).to(device)
    optimizer, _ = optimizer_and_schedule(model, spec)
    batch = next(workload.train_batches(spec.batch_size, make_generator(spec.seed)))
    with autocast(spec.precision, device):
        loss = workload.loss_fn(model, batch)
    loss.backward()
    optimizer.step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del model, optimizer, batch, loss
    return int(peak)
