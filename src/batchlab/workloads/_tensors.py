"""A workload from a model constructor and in-memory tensors: the built-ins' fast path.

A user with ``(x, y)`` tensors and an ``nn.Module`` gets what the built-in workloads
have (airbench's recipe): batches gathered by index from a seeded permutation, no
DataLoader in the hot loop, evaluation in one batched pass that also runs under
``torch.func.vmap`` — so a study trains a rung's trials as one vmapped ensemble and
evaluates all of them at once, instead of member by member.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._seeding import with_torch_seed
from ._in_memory import InMemoryWorkload
from ._protocol import Batch, Target

#: ``metric(outputs, labels) -> 0-d tensor``: a mean over the examples given.
MetricFn = Callable[[Tensor, Tensor], Tensor]


def accuracy(outputs: Tensor, labels: Tensor) -> Tensor:
    """Fraction of examples whose largest output is the label."""
    return (outputs.argmax(dim=-1) == labels).float().mean()


#: Losses known by name, and the metrics each one reports by default.
LOSSES: dict[str, tuple[MetricFn, dict[str, MetricFn]]] = {
    "cross_entropy": (F.cross_entropy, {"accuracy": accuracy, "loss": F.cross_entropy}),
    "mse": (F.mse_loss, {"loss": F.mse_loss}),
}


class TensorWorkload(InMemoryWorkload):
    """A workload over ``(inputs, labels)`` tensors; build it with :func:`from_tensors`."""

    def __init__(
        self,
        model: Callable[[], nn.Module],
        train: tuple[Tensor, Tensor],
        val: tuple[Tensor, Tensor],
        *,
        target: Target,
        loss: MetricFn,
        metrics: dict[str, MetricFn],
        name: str,
        description: str,
        default_steps: int,
        default_hparams: Mapping[str, Any],
        eval_batch_size: int | None,
        params: Mapping[str, Any],
    ) -> None:
        self._model = model
        self.x_train, self.y_train = train
        self.x_val, self.y_val = val
        self.num_train = int(self.x_train.shape[0])
        self._loss, self._metrics = loss, metrics
        self.target = target
        self.metrics = tuple(metrics)
        self.name, self.description = name, description
        self.default_steps = default_steps
        self.default_hparams = dict(default_hparams)
        self.eval_batch_size = eval_batch_size
        self.params = dict(params)

    def build_model(self, seed: int) -> nn.Module:
        return with_torch_seed(seed, self._model)

    def take_train(self, indices: Tensor) -> Batch:
        return self.x_train[indices], self.y_train[indices]

    def loss_fn(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        return self._loss(model(x), y)

    def val_metrics(self, model: nn.Module) -> dict[str, Tensor]:
        """Every metric over the validation set, in chunks of ``eval_batch_size``.

        A chunk's metrics are weighted by its size, which is exact for metrics that
        are means over examples (accuracy, mean loss). Runs under ``vmap``.
        """
        total = int(self.x_val.shape[0])
        size = self.eval_batch_size or total
        sums: dict[str, Tensor] = {}
        for start in range(0, total, size):
            x, y = self.x_val[start : start + size], self.y_val[start : start + size]
            outputs = model(x)
            for key, metric in self._metrics.items():
                value = metric(outputs, y) * (x.shape[0] / total)
                sums[key] = value if key not in sums else sums[key] + value
        return sums


def from_tensors(
    model: Callable[[], nn.Module],
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    *,
    target: Target | tuple[str, float, str],
    loss: str | MetricFn = "cross_entropy",
    metrics: Mapping[str, MetricFn] | None = None,
    name: str = "tensors",
    description: str = "a model on in-memory tensors",
    default_steps: int = 1000,
    default_hparams: Mapping[str, Any] | None = None,
    eval_batch_size: int | None = None,
    params: Mapping[str, Any] | None = None,
) -> TensorWorkload:
    """A workload from a model constructor and ``(inputs, labels)`` tensors.

    The fast path for your own model: training batches are gathered by index from a
    permutation drawn with the trial's seeded generator, and the validation metrics
    are one batched pass that also runs under ``torch.func.vmap``, so a study trains
    and evaluates a rung's trials as one vmapped ensemble (as the built-in workloads
    do; a model that cannot run under vmap, e.g. with BatchNorm's running statistics,
    falls back to one trial at a time, and the study says why). Checked here, once,
    on two validation examples: the model builds, its outputs go through the loss and
    every metric, and each gives a single number.

    Example::

        import torch, batchlab as bl
        from torch import nn

        x, y = torch.randn(5000, 20), torch.randint(0, 3, (5000,))
        workload = bl.workloads.from_tensors(
            lambda: nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3)),
            train=(x[:4000], y[:4000]),
            val=(x[4000:], y[4000:]),
            target=("accuracy", 0.6, "max"),
        )

    Args:
        model: builds a fresh model, no arguments (batchlab seeds torch's RNG around
            the call, so every seed gives its own reproducible initialisation).
        train: training ``(inputs, labels)``; the first dimension indexes examples.
        val: validation ``(inputs, labels)``.
        target: the goal that defines steps-to-target, a :class:`Target` or
            ``(metric, value, "max" | "min")``; ``metric`` must be one of the metrics.
        loss: ``"cross_entropy"`` (metrics accuracy and loss), ``"mse"`` (metric
            loss), or a function ``loss(outputs, labels) -> scalar mean``.
        metrics: ``{name: metric(outputs, labels) -> 0-d tensor}``, each a mean over
            examples; default: those of a named loss, else ``{"loss": loss}``.
        name: short name shown in tables and results.
        description: one line for tables.
        default_steps: step budget of a training run when a study sets none.
        default_hparams: optimizer and hyperparameters for ``batchlab train``
            (default Nesterov, lr 0.05, momentum 0.9).
        eval_batch_size: validation examples per forward pass (default: all at once;
            set it when the whole validation set times the ensemble does not fit
            in memory).
        params: what built the data (recorded for reproducibility).

    Returns:
        A :class:`~batchlab.workloads.Workload` (an :class:`InMemoryWorkload`).

    Raises:
        ValueError: a bad argument, named, with what was expected.
    """
    if not callable(model):
        raise ValueError(
            f"from_tensors: model must be a callable that builds a model, got {model!r}"
        )
    train = _check_pair("train", train)
    val = _check_pair("val", val)
    if train[0].shape[1:] != val[0].shape[1:]:
        raise ValueError(
            f"from_tensors: train inputs have shape (n, {', '.join(map(str, train[0].shape[1:]))}) "
            f"but val inputs (n, {', '.join(map(str, val[0].shape[1:]))})"
        )
    loss_fn, named_metrics = _loss(loss)
    chosen = dict(metrics) if metrics is not None else named_metrics
    if not chosen or not all(isinstance(k, str) and callable(f) for k, f in chosen.items()):
        raise ValueError("from_tensors: metrics must map metric names to functions")
    goal = target if isinstance(target, Target) else _target(target)
    if goal.metric not in chosen:
        raise ValueError(
            f"from_tensors: target metric {goal.metric!r} is not a metric; "
            f"metrics are: {', '.join(chosen)}"
        )
    if isinstance(default_steps, bool) or not isinstance(default_steps, int) or default_steps <= 0:
        raise ValueError(
            f"from_tensors: default_steps must be a positive integer, got {default_steps!r}"
        )
    if eval_batch_size is not None and (
        isinstance(eval_batch_size, bool)
        or not isinstance(eval_batch_size, int)
        or eval_batch_size <= 0
    ):
        raise ValueError(
            f"from_tensors: eval_batch_size must be a positive integer or None, got {eval_batch_size!r}"
        )
    recorded = {"num_train": int(train[0].shape[0]), "num_val": int(val[0].shape[0])}
    workload = TensorWorkload(
        model,
        train,
        val,
        target=goal,
        loss=loss_fn,
        metrics=chosen,
        name=name,
        description=description,
        default_steps=default_steps,
        default_hparams=default_hparams or {"optimizer": "nesterov", "lr": 0.05, "momentum": 0.9},
        eval_batch_size=eval_batch_size,
        params={**recorded, **(params or {})},
    )
    _smoke_check(workload)
    return workload


def _check_pair(field: str, pair: Any) -> tuple[Tensor, Tensor]:
    if not (isinstance(pair, tuple | list) and len(pair) == 2):
        raise ValueError(f"from_tensors: {field} must be a pair (inputs, labels) of tensors")
    inputs, labels = pair
    if not (isinstance(inputs, Tensor) and isinstance(labels, Tensor)):
        raise ValueError(
            f"from_tensors: {field} must hold tensors, got "
            f"({type(inputs).__name__}, {type(labels).__name__})"
        )
    if inputs.dim() == 0 or labels.dim() == 0 or inputs.shape[0] != labels.shape[0]:
        raise ValueError(
            f"from_tensors: {field} inputs and labels must have the same number of examples "
            f"(first dimension), got shapes {tuple(inputs.shape)} and {tuple(labels.shape)}"
        )
    if inputs.shape[0] == 0:
        raise ValueError(f"from_tensors: {field} has no examples")
    return inputs, labels


def _loss(loss: str | MetricFn) -> tuple[MetricFn, dict[str, MetricFn]]:
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(
                f"from_tensors: loss must be one of {', '.join(LOSSES)} or a function, got {loss!r}"
            )
        return LOSSES[loss]
    if not callable(loss):
        raise ValueError(f"from_tensors: loss must be a name or a function, got {loss!r}")
    return loss, {"loss": loss}


def _target(spec: Any) -> Target:
    try:
        metric, value, direction = spec
        return Target(str(metric), float(value), direction)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"from_tensors: target must be a Target or (metric, value, 'max' | 'min'), "
            f"got {spec!r} ({error})"
        ) from None


def _smoke_check(workload: TensorWorkload) -> None:
    """Build the model and run two validation examples through loss and metrics."""
    try:
        model = workload.build_model(0)
    except Exception as error:
        raise ValueError(
            f"from_tensors: model() failed: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"from_tensors: model() must return an nn.Module, got {type(model).__name__}"
        )
    x, y = workload.x_val[:2], workload.y_val[:2]
    with torch.no_grad():
        try:
            outputs = model(x)
        except Exception as error:
            raise ValueError(
                f"from_tensors: the model fails on inputs of shape {tuple(x.shape)}: "
                f"{type(error).__name__}: {error}"
            ) from error
        checks = {
            "loss": workload._loss,
            **{f"metric {k!r}": f for k, f in workload._metrics.items()},
        }
        for what, fn in checks.items():
            try:
                value = fn(outputs, y)
            except Exception as error:
                raise ValueError(
                    f"from_tensors: the {what} fails on the model's outputs "
                    f"{tuple(outputs.shape)} and labels {tuple(y.shape)} {y.dtype}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            if not (isinstance(value, Tensor) and value.numel() == 1):
                raise ValueError(f"from_tensors: the {what} must return a single-number tensor")
