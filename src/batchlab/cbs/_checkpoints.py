"""Checkpoints of one run (model + optimizer state at chosen steps), in memory or on disk.

A checkpoint file is a ``torch.save`` of plain containers (tensors, numbers, strings),
written atomically and read with ``torch.load(weights_only=True)``, so loading one
never runs code from the file. Files are named ``step_00000100.pt``; a directory of
them is one run.

Two ways to get checkpoints: :func:`train_base_run` trains a workload and keeps (and
optionally saves) its state at chosen steps; :class:`CheckpointSaver` does the saving
from any training loop.

Checkpoints hold their tensors on the CPU wherever the run trained (:func:`snapshot`
copies them there, :func:`load_checkpoint` maps them there), so one checkpoint serves
branches on any device: ``model.load_state_dict`` and ``optimizer.load_state_dict``
copy its state onto the device of the model they load it into.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._device import autocast, check_precision
from .._errors import BatchlabError
from .._io import atomic_write
from .._seeding import make_generator
from ..optim import optimizer_for
from ..training import set_lr, train_step
from ..workloads import Workload, check_batch_size, workload_device

logger = logging.getLogger(__name__)

#: Marks a file as a batchlab checkpoint (and its layout version).
CHECKPOINT_FORMAT = "batchlab-checkpoint-v1"

_NAME = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(BatchlabError, ValueError):
    """A checkpoint file or directory is missing, unreadable or not a batchlab checkpoint."""


@dataclass(frozen=True)
class Checkpoint:
    """The state of one run at one step.

    Attributes:
        step: optimizer steps taken before this state (0 = initialisation).
        model_state: the model's ``state_dict()`` (tensors on the CPU).
        optimizer_state: the optimizer's ``state_dict()``, or ``None`` (branches then
            start a fresh optimizer).
        optimizer: the optimizer's batchlab name (see :data:`batchlab.optim.OPTIMIZERS`).
        hparams: its hyperparameters (``lr``, ``momentum``, ...).
        batch_size: the run's batch size, if known.
        examples_seen: training examples consumed before this state, if known.
        seed: the run's seed, if known.
        workload: the workload's name, if known.
        workload_params: the workload's parameters.
        metrics: evaluation metrics at this state, if measured.
    """

    step: int
    model_state: dict[str, torch.Tensor] = field(repr=False)
    optimizer_state: dict[str, Any] | None = field(default=None, repr=False)
    optimizer: str | None = None
    hparams: dict[str, float] = field(default_factory=dict)
    batch_size: int | None = None
    examples_seen: int | None = None
    seed: int | None = None
    workload: str | None = None
    workload_params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        """The dict written to disk (plain containers only)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "model_state": self.model_state,
            "optimizer_state": self.optimizer_state,
            "optimizer": self.optimizer,
            "hparams": dict(self.hparams),
            "batch_size": self.batch_size,
            "examples_seen": self.examples_seen,
            "seed": self.seed,
            "workload": self.workload,
            "workload_params": dict(self.workload_params),
            "metrics": dict(self.metrics),
        }


def snapshot(
    step: int,
    model: nn.Module,
    torch_optimizer: torch.optim.Optimizer | None = None,
    **info: Any,
) -> Checkpoint:
    """A :class:`Checkpoint` holding *copies* of ``model``'s and ``torch_optimizer``'s state now.

    The copies are on the CPU, whatever device the model trains on.

    ``info`` fills the other fields (``optimizer`` name, ``hparams``, ``batch_size``,
    ``examples_seen``, ``seed``, ``workload``, ``workload_params``, ``metrics``).
    """
    _check_step(step)
    model_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    optimizer_state = None
    if torch_optimizer is not None:
        optimizer_state = _to_cpu(copy.deepcopy(torch_optimizer.state_dict()))
    return Checkpoint(step=step, model_state=model_state, optimizer_state=optimizer_state, **info)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"checkpoint step must be an integer >= 0, got {step!r}")
    return step


def checkpoint_path(directory: str | os.PathLike[str], step: int) -> Path:
    """``DIR/step_00000100.pt``: where the checkpoint of ``step`` lives."""
    return Path(directory) / f"step_{_check_step(step):08d}.pt"


def save_checkpoint(checkpoint: Checkpoint, directory: str | os.PathLike[str]) -> Path:
    """Write ``checkpoint`` into ``directory`` atomically; returns the file's path."""
    buffer = io.BytesIO()
    torch.save(checkpoint.to_payload(), buffer)
    data = buffer.getvalue()
    return atomic_write(checkpoint_path(directory, checkpoint.step), lambda f: f.write(data))


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read one checkpoint file (``torch.load(weights_only=True)``: no code runs).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a batchlab checkpoint, or a field is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "no such checkpoint file", str(path))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a batchlab checkpoint (expected format {CHECKPOINT_FORMAT!r}); "
            "save checkpoints with batchlab.cbs.CheckpointSaver or save_checkpoint"
        )
    model_state = payload.get("model_state")
    if not isinstance(model_state, dict):
        raise CheckpointError(f"{path}: field 'model_state' must be a state dict")
    step = payload.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path}: field 'step' must be an integer >= 0, got {step!r}")
    return Checkpoint(
        step=step,
        model_state=model_state,
        optimizer_state=payload.get("optimizer_state"),
        optimizer=payload.get("optimizer"),
        hparams=dict(payload.get("hparams") or {}),
        batch_size=payload.get("batch_size"),
        examples_seen=payload.get("examples_seen"),
        seed=payload.get("seed"),
        workload=payload.get("workload"),
        workload_params=dict(payload.get("workload_params") or {}),
        metrics=dict(payload.get("metrics") or {}),
    )


def load_checkpoints(
    directory: str | os.PathLike[str], steps: Iterable[int] | None = None
) -> list[Checkpoint]:
    """The checkpoints in ``directory`` (``step_*.pt``), by step; only ``steps`` if given.

    Raises:
        FileNotFoundError: the directory does not exist.
        CheckpointError: it holds no checkpoint, or lacks one of ``steps``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(2, "no such checkpoint directory", str(directory))
    found = {
        int(m.group(1)): p for p in directory.iterdir() if (m := _NAME.match(p.name)) is not None
    }
    if not found:
        raise CheckpointError(f"{directory}: no checkpoint files (step_*.pt)")
    wanted = sorted(found) if steps is None else sorted(set(steps))
    missing = [s for s in wanted if s not in found]
    if missing:
        raise CheckpointError(
            f"{directory}: no checkpoint at step(s) {', '.join(map(str, missing))}; "
            f"it has steps {', '.join(map(str, sorted(found)))}"
        )
    return [load_checkpoint(found[s]) for s in wanted]


class CheckpointSaver:
    """Saves model + optimizer state at chosen steps of any training loop.

    ::

        saver = CheckpointSaver("runs/ckpt", steps=[0, 500, 2000], optimizer="adam",
                                hparams={"lr": 3e-3}, batch_size=64)
        saver.maybe_save(0, model, opt)              # the initial state
        for step in range(1, 2001):
            ...                                      # one optimizer step
            saver.maybe_save(step, model, opt)

    ``batchlab cbs --checkpoint-dir runs/ckpt`` (or :func:`load_checkpoints`) then
    branches from them. Store the optimizer name and hyperparameters so the branches
    can rebuild the same optimizer and load its state.

    Args:
        directory: where the ``step_*.pt`` files go.
        steps: the steps to save (counted in optimizer steps).
        optimizer: the optimizer's batchlab name (e.g. ``"adam"``).
        hparams: its hyperparameters without ``optimizer`` (``lr``, ``momentum``, ...).
        batch_size: examples per optimizer step, if constant.
        **info: further :class:`Checkpoint` fields (``seed``, ``workload``, ...).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        steps: Iterable[int],
        *,
        optimizer: str | None = None,
        hparams: Mapping[str, float] | None = None,
        batch_size: int | None = None,
        **info: Any,
    ) -> None:
        self.directory = Path(directory)
        self.steps = frozenset(_check_step(s) for s in steps)
        if not self.steps:
            raise ValueError("steps must name at least one step to save")
        self.info = {
            "optimizer": optimizer,
            "hparams": dict(hparams or {}),
            "batch_size": batch_size,
            **info,
        }
        self.saved: list[Path] = []

    def maybe_save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        examples_seen: int | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> Path | None:
        """Save if ``step`` is one of the chosen steps; returns the path written, if any."""
        if step not in self.steps:
            return None
        if examples_seen is None and self.info.get("batch_size") is not None:
            examples_seen = step * int(self.info["batch_size"])
        checkpoint = snapshot(
            step,
            model,
            optimizer,
            examples_seen=examples_seen,
            metrics=dict(metrics or {}),
            **self.info,
        )
        path = save_checkpoint(checkpoint, self.directory)
        self.saved.append(path)
        return path


def train_base_run(
    workload: Workload,
    steps: Sequence[int],
    *,
    batch_size: int,
    optimizer: str,
    hparams: Mapping[str, float],
    seed: int = 0,
    directory: str | os.PathLike[str] | None = None,
    on_step: Callable[[int], None] | None = None,
    precision: str = "fp32",
    lr_schedule: Callable[[int], float] | None = None,
) -> list[Checkpoint]:
    """Train ``workload`` at a constant batch size and LR, keeping its state at ``steps``.

    The model trains where the workload's data are
    (:func:`batchlab.workloads.workload_device`; place the workload with
    :func:`batchlab.workloads.on_device` first); the checkpoints are copied to the CPU.

    Args:
        workload: the model and data.
        steps: the steps to keep (0 = the initial state), >= 0.
        batch_size: examples per step.
        optimizer: optimizer name.
        hparams: its hyperparameters (``lr`` required; constant learning rate).
        seed: model-initialisation and data-order seed.
        directory: also save each checkpoint here (``step_*.pt``).
        on_step: called after every optimizer step with the step number (progress).
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"``: the numerics of the forward
            passes (training loss and evaluation; :func:`batchlab._device.autocast`).
        lr_schedule: multiplier of ``hparams["lr"]`` after t optimizer steps (e.g.
            :func:`batchlab.optim.wsd_multiplier`); default constant.

    Returns:
        One :class:`Checkpoint` per distinct step, by step, with the evaluation
        metrics at that state.

    Raises:
        ValueError: bad steps or batch size, or the run diverged before the last step.
    """
    wanted = sorted({_check_step(s) for s in steps})
    if not wanted:
        raise ValueError("checkpoints must name at least one step")
    check_batch_size(batch_size, workload.train_size)
    check_precision(precision)
    device = workload_device(workload)
    model = workload.build_model(seed).to(device)
    model.train()
    opt = optimizer_for(model, optimizer, hparams)
    batches = workload.train_batches(batch_size, make_generator(seed))
    info = {
        "optimizer": optimizer,
        "hparams": dict(hparams),
        "batch_size": batch_size,
        "seed": seed,
        "workload": workload.name,
        "workload_params": dict(workload.params),
    }
    kept: list[Checkpoint] = []

    def keep(step: int) -> None:
        with autocast(precision, device):
            metrics = workload.evaluate(model)
        checkpoint = snapshot(
            step, model, opt, examples_seen=step * batch_size, metrics=metrics, **info
        )
        if directory is not None:
            save_checkpoint(checkpoint, directory)
        kept.append(checkpoint)

    if wanted[0] == 0:
        keep(0)
    for step in range(1, wanted[-1] + 1):
        if lr_schedule is not None:
            set_lr(opt, float(hparams["lr"]) * lr_schedule(step - 1))
        loss = train_step(workload, model, opt, batches, precision=precision)
        if loss != loss or loss in (float("inf"), float("-inf")):
            raise ValueError(
                f"the base run diverged at step {step} (training loss {loss}); lower its "
                "learning rate"
            )
        if on_step is not None:
            on_step(step)
        if step in wanted:
            keep(step)
    return kept
