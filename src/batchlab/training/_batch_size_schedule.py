"""``BatchSizeSchedule``: grow the batch size with the measured noise scale.

The noise scale B_simple grows as training proceeds (the gradient shrinks faster
than its noise), and so does the critical batch size it predicts (McCandlish et al.
2018, Sec. 4 and Fig. 7). A batch well below B_crit wastes steps; one well above it
wastes examples. This schedule keeps the effective batch size near a chosen fraction
of the tracked B_simple: it raises the number of gradient-accumulation micro-batches
per optimizer step (never lowers it), up to a cap, and rescales the learning rate by
a rule when the batch grows. The same idea drives "batch size warmup" (Merrill et al.
2025, Sec. 6) and replaces LR decay by batch growth (Smith et al. 2018).

:func:`next_batch_size` is the rule alone, a pure function; the class applies it to
a :class:`~batchlab.noise.NoiseScaleTracker` and an optimizer.

References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
    Training", arXiv:1812.06162, Sec. 4 (B_crit grows during training) and eq. 2.9.
    Merrill, Arora, Groeneveld, Hajishirzi 2025, "Critical Batch Size Revisited",
    arXiv:2505.23971, Sec. 6 (batch size warmup).
    Smith, Kindermans, Ying, Le 2018, "Don't Decay the Learning Rate, Increase the
    Batch Size", ICLR, arXiv:1711.00489.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch

from ..optim import SCALING_RULES, scale_lr

Growth = Literal["pow2", "multiple"]
GROWTHS: tuple[str, ...] = ("pow2", "multiple")


class _Tracker(Protocol):
    """What the schedule reads from a :class:`~batchlab.noise.NoiseScaleTracker`."""

    @property
    def b_simple(self) -> float: ...

    @property
    def n(self) -> int: ...


def _positive_int(value: Any, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def next_batch_size(
    current: int,
    b_simple: float,
    *,
    micro_batch_size: int,
    base_accumulation: int,
    fraction: float,
    max_batch_size: int | None = None,
    growth: Growth = "pow2",
) -> int:
    """The batch size to use next: the largest allowed size ≤ fraction·B_simple, never smaller.

    Allowed sizes are ``micro_batch_size · k`` with k = ``base_accumulation`` · 2^j
    (``growth="pow2"``) or any k ≥ ``base_accumulation`` (``"multiple"``), capped at
    ``max_batch_size``. The result is never below ``current`` (growth is monotone: an
    estimate that falls back, e.g. by chance, does not shrink the batch), and stays
    ``current`` when ``b_simple`` is not a positive finite number.

    Args:
        current: the batch size now (an allowed size).
        b_simple: the noise-scale estimate (McCandlish et al. 2018, eq. 2.9).
        micro_batch_size: examples per micro-batch.
        base_accumulation: micro-batches per step at the start (>= 1).
        fraction: target batch size as a fraction of B_simple, > 0.
        max_batch_size: the cap (``None``: none).
        growth: ``"pow2"`` or ``"multiple"``.

    Returns:
        The new batch size, a multiple of ``micro_batch_size``.
    """
    if not (math.isfinite(b_simple) and b_simple > 0):
        return current
    want = fraction * b_simple
    if max_batch_size is not None:
        want = min(want, max_batch_size)
    k = int(want // micro_batch_size)
    if growth == "pow2":
        if k < base_accumulation:
            return current
        k = base_accumulation * 2 ** int(math.floor(math.log2(k / base_accumulation)))
    return max(current, micro_batch_size * max(k, base_accumulation))


def rescale_learning_rates(
    optimizer: torch.optim.Optimizer | None, lr_scheduler: Any, ratio: float
) -> None:
    """Multiply every param group's LR (and a torch LR scheduler's base LRs) by ``ratio``."""
    if ratio == 1.0:
        return
    if optimizer is not None:
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * ratio
            if "initial_lr" in group:  # set by torch LR schedulers
                group["initial_lr"] = group["initial_lr"] * ratio
    if lr_scheduler is not None:
        lr_scheduler.base_lrs = [lr * ratio for lr in lr_scheduler.base_lrs]


@dataclass(frozen=True)
class BatchSizeChange:
    """One change of the batch size.

    Attributes:
        step: optimizer steps taken when it changed (the new size applies from the next).
        examples_seen: training examples used by then.
        batch_size: the new effective batch size.
        accumulation_steps: the new number of micro-batches per step.
        lr_factor: the new LR multiplier relative to the base batch size.
        b_simple: the noise-scale estimate that triggered it.
    """

    step: int
    examples_seen: int
    batch_size: int
    accumulation_steps: int
    lr_factor: float
    b_simple: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "examples_seen": self.examples_seen,
            "batch_size": self.batch_size,
            "accumulation_steps": self.accumulation_steps,
            "lr_factor": self.lr_factor,
            "b_simple": self.b_simple if math.isfinite(self.b_simple) else None,
        }


class AccumulationGrowth:
    """What the batch-size growers share: the batch as micro-batches of gradient
    accumulation, the step and example counters, and their checkpoint.

    Subclasses (:class:`BatchSizeSchedule`, :class:`batchlab.BatchRamp`) decide when
    and how far the batch grows, in their ``step``, and how the ``optimizer`` (and
    its ``lr_scheduler``) follow; :meth:`_count` says when an update is due.

    Raises:
        TypeError: ``tracker`` has no ``b_simple`` and ``n``.
        ValueError: an argument out of range, naming it.
    """

    def __init__(
        self,
        tracker: _Tracker,
        *,
        micro_batch_size: int,
        base_accumulation: int,
        max_batch_size: int | None,
        fraction: float,
        growth: Growth,
        update_every: int,
        min_steps: int,
        optimizer: torch.optim.Optimizer | None,
        lr_scheduler: Any,
    ) -> None:
        if not hasattr(tracker, "b_simple") or not hasattr(tracker, "n"):
            raise TypeError(
                f"tracker must be a NoiseScaleTracker (with b_simple and n), "
                f"got {type(tracker).__name__}"
            )
        self.micro_batch_size = _positive_int(micro_batch_size, "micro_batch_size")
        self.base_accumulation = _positive_int(base_accumulation, "base_accumulation", 2)
        self.base_batch_size = self.micro_batch_size * self.base_accumulation
        if max_batch_size is not None:
            _positive_int(max_batch_size, "max_batch_size")
            if max_batch_size < self.base_batch_size:
                raise ValueError(
                    f"max_batch_size={max_batch_size} is below the starting batch size "
                    f"micro_batch_size * base_accumulation = {self.base_batch_size}"
                )
        self.max_batch_size = max_batch_size
        ok = isinstance(fraction, int | float) and not isinstance(fraction, bool)
        if not (ok and math.isfinite(fraction) and fraction > 0):
            raise ValueError(f"fraction must be a positive number, got {fraction!r}")
        self.fraction = float(fraction)
        if growth not in GROWTHS:
            raise ValueError(f"growth must be one of {', '.join(GROWTHS)}, got {growth!r}")
        self.growth: Growth = growth
        self.update_every = _positive_int(update_every, "update_every")
        self.min_steps = _positive_int(min_steps, "min_steps")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if lr_scheduler is not None and not isinstance(
            getattr(lr_scheduler, "base_lrs", None), list
        ):
            raise TypeError("lr_scheduler must be a torch LR scheduler (with a base_lrs list)")
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.tracker = tracker
        self._batch_size = self.base_batch_size
        self._steps = 0
        self._examples = 0

    @property
    def batch_size(self) -> int:
        """Effective examples per optimizer step now."""
        return self._batch_size

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches to accumulate for the next optimizer step."""
        return self._batch_size // self.micro_batch_size

    @property
    def steps(self) -> int:
        """Optimizer steps so far (calls of ``step``)."""
        return self._steps

    @property
    def examples_seen(self) -> int:
        """Training examples used so far (the batch size of every step, summed)."""
        return self._examples

    def _count(self, examples: int | None) -> bool:
        """Count one optimizer step (``examples``: when not :attr:`batch_size`);
        whether an update is due: every ``update_every`` steps, once the tracker
        has averaged ``min_steps`` steps."""
        self._steps += 1
        self._examples += self._batch_size if examples is None else int(examples)
        return not (self._steps % self.update_every or self.tracker.n < self.min_steps)

    def _progress_state(self) -> dict[str, Any]:
        """The counters, for a subclass's ``state_dict``."""
        return {
            "batch_size": self._batch_size,
            "steps": self._steps,
            "examples_seen": self._examples,
        }

    def _load_progress(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`_progress_state` (validated, naming the bad key)."""
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        batch_size = _positive_int(state.get("batch_size"), "state['batch_size']")
        if batch_size % self.micro_batch_size:
            raise ValueError(
                f"state['batch_size']={batch_size} is not a multiple of "
                f"micro_batch_size={self.micro_batch_size}"
            )
        self._batch_size = batch_size
        self._steps = _positive_int(state.get("steps", 0), "state['steps']", 0)
        self._examples = _positive_int(state.get("examples_seen", 0), "state['examples_seen']", 0)


class BatchSizeSchedule(AccumulationGrowth):
    """Grows the effective batch size (gradient accumulation) as the noise scale grows.

    A plain training loop asks :attr:`accumulation_steps` before each optimizer step
    and calls :meth:`step` after it::

        tracker = bl.NoiseScaleTracker(model, ema_decay=0.95)
        sched = bl.BatchSizeSchedule(tracker, micro_batch_size=32, base_accumulation=2,
                                     max_batch_size=1024, fraction=0.5, lr_rule="sqrt",
                                     optimizer=opt)
        while sched.examples_seen < budget:
            k = sched.accumulation_steps
            for _ in range(k):
                (loss_fn(model, next(micro_batches)) / k).backward()
            opt.step()
            tracker.step()
            sched.step()           # may raise accumulation_steps and rescale the LR
            opt.zero_grad()

    Every ``update_every`` steps (once the tracker has averaged ``min_steps`` steps)
    the batch size becomes :func:`next_batch_size` of the tracker's B_simple: the
    largest allowed size at most ``fraction`` · B_simple, never smaller than now, at
    most ``max_batch_size``. When it changes, every param group's learning rate is
    multiplied by the rule's ratio, so that lr = lr₀ · ``scale_lr(1, B₀, B, lr_rule)``
    (at most lr₀ · ``max_lr_factor``) with lr₀ the group's learning rate at
    construction and B₀ = ``micro_batch_size`` · ``base_accumulation``. With an LR scheduler (warmup, decay), pass it as
    ``lr_scheduler`` so its base learning rates are rescaled too (otherwise its next
    step would undo the change), or leave ``optimizer`` out and multiply by
    :attr:`lr_factor` yourself.

    The tracker needs at least two micro-batches per step, hence
    ``base_accumulation`` >= 2. A plain average over all steps lags behind a growing
    B_simple: give the tracker an ``ema_decay`` (e.g. 0.95).

    References:
        McCandlish et al. 2018, arXiv:1812.06162, Sec. 4; Merrill et al. 2025,
        arXiv:2505.23971, Sec. 6; Smith et al. 2018, arXiv:1711.00489.

    Args:
        tracker: a :class:`~batchlab.noise.NoiseScaleTracker` on the model (anything
            with ``b_simple`` and ``n``).
        micro_batch_size: examples per micro-batch.
        base_accumulation: micro-batches per step at the start, >= 2.
        max_batch_size: cap on the effective batch size (``None``: none).
        fraction: target batch size as a fraction of B_simple, > 0 (0.5 by default:
            under S(B) = S_min(1 + B_crit/B) a batch of B_crit/2 costs 1.5 E_min
            examples and 3 S_min steps).
        growth: ``"pow2"`` (double the accumulation) or ``"multiple"`` (any number of
            micro-batches).
        lr_rule: ``"linear"``, ``"sqrt"`` or ``"none"`` (:func:`batchlab.optim.scale_lr`).
        optimizer: the optimizer whose learning rates follow the rule (optional).
        lr_scheduler: an LR scheduler with ``base_lrs`` to rescale with it (optional).
        update_every: steps between updates, >= 1.
        min_steps: tracker steps averaged before the first change, >= 1.
        max_lr_factor: cap on the LR multiplier (``None``: none). The rules hold only up
            to a point (Goyal et al. 2017; Shallue et al. 2018 find the tuned LR stops
            growing beyond the perfect-scaling regime): e.g. the largest tuned LR of a
            study over the LR tuned at the base batch size.
    """

    def __init__(
        self,
        tracker: _Tracker,
        *,
        micro_batch_size: int,
        base_accumulation: int = 2,
        max_batch_size: int | None = None,
        fraction: float = 0.5,
        growth: Growth = "pow2",
        lr_rule: str = "sqrt",
        optimizer: torch.optim.Optimizer | None = None,
        lr_scheduler: Any = None,
        update_every: int = 10,
        min_steps: int = 20,
        max_lr_factor: float | None = None,
    ) -> None:
        super().__init__(
            tracker,
            micro_batch_size=micro_batch_size,
            base_accumulation=base_accumulation,
            max_batch_size=max_batch_size,
            fraction=fraction,
            growth=growth,
            update_every=update_every,
            min_steps=min_steps,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
        )
        if lr_rule not in SCALING_RULES:
            raise ValueError(f"lr_rule must be one of {', '.join(SCALING_RULES)}, got {lr_rule!r}")
        self.lr_rule = lr_rule
        if max_lr_factor is not None and not (
            isinstance(max_lr_factor, int | float) and math.isfinite(max_lr_factor)
            and max_lr_factor >= 1
        ):  # fmt: skip
            raise ValueError(f"max_lr_factor must be a number >= 1 or None, got {max_lr_factor!r}")
        self.max_lr_factor = None if max_lr_factor is None else float(max_lr_factor)
        self._history: list[BatchSizeChange] = []

    # ----- what the training loop reads ------------------------------------------------

    @property
    def lr_factor(self) -> float:
        """The LR multiplier at the current batch size (1 at the start)."""
        return self.lr_factor_at(self._batch_size)

    def lr_factor_at(self, batch_size: int) -> float:
        """The rule's LR multiplier at ``batch_size``, at most ``max_lr_factor``."""
        factor = scale_lr(1.0, self.base_batch_size, batch_size, self.lr_rule)
        return factor if self.max_lr_factor is None else min(factor, self.max_lr_factor)

    @property
    def history(self) -> list[BatchSizeChange]:
        """Every change so far, in order."""
        return list(self._history)

    # ----- the loop's one call ---------------------------------------------------------

    def step(self, *, examples: int | None = None) -> bool:
        """Count one optimizer step; maybe grow the batch size. Returns True if it grew.

        Call after ``optimizer.step()`` and ``tracker.step()``.

        Args:
            examples: examples the step used, when it was not :attr:`batch_size` (a
                framework that applies a new accumulation later, or a short last batch).
        """
        if not self._count(examples):
            return False
        b_simple = float(self.tracker.b_simple)
        new = next_batch_size(
            self._batch_size,
            b_simple,
            micro_batch_size=self.micro_batch_size,
            base_accumulation=self.base_accumulation,
            fraction=self.fraction,
            max_batch_size=self.max_batch_size,
            growth=self.growth,
        )
        if new == self._batch_size:
            return False
        old_factor = self.lr_factor
        self._batch_size = new
        self._rescale(self.lr_factor / old_factor)
        self._history.append(
            BatchSizeChange(
                step=self._steps,
                examples_seen=self._examples,
                batch_size=new,
                accumulation_steps=self.accumulation_steps,
                lr_factor=self.lr_factor,
                b_simple=b_simple,
            )
        )
        return True

    def _rescale(self, ratio: float) -> None:
        rescale_learning_rates(self.optimizer, self.lr_scheduler, ratio)

    # ----- checkpointing ---------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The schedule's progress (batch size, counters, history), for resuming."""
        return {
            **self._progress_state(),
            "history": [change.to_dict() for change in self._history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict` (the optimizer's LRs come from its own state)."""
        self._load_progress(state)
        self._history = [
            BatchSizeChange(
                **{**c, "b_simple": math.nan if c["b_simple"] is None else c["b_simple"]}
            )
            for c in _history(state.get("history", []))
        ]


def _history(raw: Sequence[Any]) -> list[dict[str, Any]]:
    if not isinstance(raw, list | tuple) or not all(isinstance(c, dict) for c in raw):
        raise ValueError("state['history'] must be a list of dicts (from state_dict())")
    return list(raw)
