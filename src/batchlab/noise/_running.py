"""Running B_simple over training steps: what NoiseScaleTracker and the DDP hook share.

Both collect, per optimizer step, the squared norms of a small-batch and a big-batch
gradient (the whole model, then each module); they differ only in where the norms
come from (parameter hooks vs DDP buckets). This base class holds what follows: the
running statistics, the history, the public results and the checkpoint state, and
the life of a step: :meth:`_start_step` numbers it, :meth:`_queue` keeps its norms on
the device until :meth:`_flush` copies a batch of steps to the host at once. Subclasses
implement :meth:`_to_host` (their pending norms as host :data:`Step` tuples).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Self

import numpy as np

from ._estimators import grad_sq_norm_estimate, trace_cov_estimate
from ._results import NoiseScaleRecord, NoiseScaleResult, make_record, make_result
from ._statistics import STATE_VERSION, NoiseScaleStatistics, check_state, state_int

#: The keys of :meth:`RunningNoiseScale.state_dict`.
_STATE_KEYS = ("version", "group_names", "total", "modules", "history", "skipped", "steps")

#: Steps whose norms wait on the device before one batched copy to the host: a copy
#: per step would synchronise with the device at every step.
FLUSH_EVERY = 32

#: One flushed step: its index, the small- and big-batch squared norms (column 0 the
#: whole model, then one column per module) and the two batch sizes.
Step = tuple[int, np.ndarray, np.ndarray, float, float]


class RunningNoiseScale(ABC):
    """Running |G|², tr(Σ) and B_simple of the whole model and of each module.

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", Appendix A, https://arxiv.org/abs/1812.06162.

    Args:
        group_names: the modules measured on their own (may be empty).
        ema_decay: ``None`` for a plain average over all steps, or β in [0, 1) for an
            exponential moving average.
        confidence: coverage of the intervals.
    """

    def __init__(
        self, group_names: Sequence[str], *, ema_decay: float | None, confidence: float
    ) -> None:
        self._group_names = tuple(group_names)
        self._total = NoiseScaleStatistics(ema_decay=ema_decay, confidence=confidence)
        self._modules = NoiseScaleStatistics(
            ema_decay=ema_decay, confidence=confidence, shape=(len(self._group_names),)
        )
        # History entries stay (step, norms, statistics state) tuples until read.
        self._history: list[NoiseScaleRecord | tuple[Any, ...]] = []
        self._history_done = 0  # entries before this one are records already
        self._skipped = 0
        self._steps = 0  # steps started so far: the index of the next step
        self._pending: list[Any] = []  # steps whose norms are still on the device

    # ----- the life of a step --------------------------------------------------------------

    def _start_step(self) -> int:
        """Number a new optimizer step (counted even if it is refused or skipped later)."""
        index, self._steps = self._steps, self._steps + 1
        return index

    def _queue(self, pending: Any) -> None:
        """Keep a step's norms (on the device) until :data:`FLUSH_EVERY` steps wait."""
        self._pending.append(pending)
        if len(self._pending) >= FLUSH_EVERY:
            self._flush()

    @abstractmethod
    def _to_host(self, pending: list[Any]) -> list[Step]:
        """The pending steps' norms, copied to the host (in one copy where possible)."""

    def _flush(self) -> None:
        """Move pending steps into the statistics; steps with a NaN/inf are skipped."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        kept = []
        for step in self._to_host(pending):
            index, small, big, b_small, _ = step
            if np.isfinite(small).all() and np.isfinite(big).all() and 0 < b_small < math.inf:
                kept.append(step)
            else:
                self._skipped += 1
                self._report_skip(index)
        self._add_steps(kept)

    #: What makes a step unusable, for the warning when one is skipped.
    _skip_reason = "a NaN/inf gradient"

    def _report_skip(self, index: int) -> None:
        warnings.warn(
            f"{type(self).__name__}: step {index} has {self._skip_reason}; skipped",
            RuntimeWarning,
            stacklevel=5,
        )

    def _add_steps(self, steps: Sequence[Step]) -> None:
        """Fold finite steps into the running statistics (skipped steps never come here)."""
        for index, small, big, b_small, b_big in steps:
            self._total.update(float(small[0]), float(big[0]), b_small, b_big)
            state = self._total.state()
            self._history.append((index, float(small[0]), float(big[0]), b_small, b_big, state))
        if steps and self._group_names:
            small = np.stack([step[1][1:] for step in steps])
            big = np.stack([step[2][1:] for step in steps])
            sizes = np.array([(step[3], step[4]) for step in steps])
            b_small, b_big = sizes[:, :1], sizes[:, 1:]
            self._modules.update_many(
                grad_sq_norm_estimate(small, big, b_small, b_big),
                trace_cov_estimate(small, big, b_small, b_big),
            )

    # ----- results -----------------------------------------------------------------------

    @property
    def n(self) -> int:
        """Steps averaged so far (skipped steps excluded)."""
        self._flush()
        return self._total.n

    @property
    def skipped(self) -> int:
        """Steps skipped because a gradient (or a batch size) was NaN/inf."""
        self._flush()
        return self._skipped

    @property
    def b_simple(self) -> float:
        """Running tr(Σ)/|G|² (NaN before the first step; never clipped)."""
        self._flush()
        return float(self._total.b_simple)

    @property
    def b_simple_ci(self) -> tuple[float, float]:
        """Fieller's interval for :attr:`b_simple`."""
        self._flush()
        return self._total.b_simple_ci

    @property
    def grad_sq_norm(self) -> float:
        """Running average of the unbiased |G|² estimates."""
        self._flush()
        return float(self._total.grad_sq_norm)

    @property
    def trace_cov(self) -> float:
        """Running average of the unbiased tr(Σ) estimates."""
        self._flush()
        return float(self._total.trace_cov)

    @property
    def history(self) -> list[NoiseScaleRecord]:
        """One record per (non-skipped) step: its norms and the running estimate after it."""
        self._flush()
        for position in range(self._history_done, len(self._history)):
            index, small, big, b_small, b_big, state = self._history[position]  # type: ignore[misc]
            estimate = self._total.estimate_from_state(state)
            self._history[position] = make_record(index, estimate, small, big, b_small, b_big)
        self._history_done = len(self._history)
        return list(self._history)  # type: ignore[arg-type]

    @property
    def per_module(self) -> dict[str, Any]:
        """Module name -> its own running estimate (see :meth:`result`)."""
        return self.result().per_module

    def state_dict(self) -> dict[str, Any]:
        """The running statistics, history and step count, to resume from a checkpoint.

        ``torch.save`` it with the model and optimizer; a new tracker (or hook) on the
        same model then loads it with :meth:`load_state_dict` and goes on unchanged.
        """
        history = self.history  # flushes pending steps into the statistics first
        return {
            "version": STATE_VERSION,
            "group_names": list(self._group_names),
            "total": self._total.state_dict(),
            "modules": self._modules.state_dict(),
            "history": [dataclasses.asdict(record) for record in history],
            "skipped": self._skipped,
            "steps": self._steps,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (of a tracker on the same modules).

        Raises:
            ValueError: a missing key, another version, other measured modules, or a
                value of the wrong kind (each message names the key).
        """
        what = "noise-scale tracker state"
        check_state(state, _STATE_KEYS, what=what)
        if tuple(state["group_names"]) != self._group_names:
            raise ValueError(
                f"{what} measures other modules: "
                f"{list(state['group_names'])} vs {list(self._group_names)}"
            )
        history = []
        for position, entry in enumerate(state["history"]):
            try:
                history.append(
                    NoiseScaleRecord(**{**entry, "b_simple_ci": tuple(entry["b_simple_ci"])})
                )
            except (TypeError, KeyError) as error:
                raise ValueError(
                    f"{what}['history'][{position}] is not a history record ({error})"
                ) from None
        skipped, steps = (state_int(state, key, what=what) for key in ("skipped", "steps"))
        # Loaded into new statistics first: a bad state leaves this one as it was.
        total, modules = NoiseScaleStatistics(), NoiseScaleStatistics(shape=self._modules.shape)
        total.load_state_dict(state["total"])
        modules.load_state_dict(state["modules"])
        self._flush()
        self._total, self._modules = total, modules
        self._history, self._history_done = history, len(history)  # type: ignore[assignment]
        self._skipped, self._steps = skipped, steps

    def result(self) -> NoiseScaleResult:
        """Everything so far as a frozen :class:`~batchlab.noise.NoiseScaleResult`."""
        return make_result(
            self._total, self._modules, self._group_names, self.history, skipped=self._skipped
        )


class HookedNoiseScale(RunningNoiseScale):
    """A running noise scale fed by hooks on a model: attached only for the steps it
    measures (one in ``measure_every``), pausing them, removing them, and ``with``
    blocks that remove them on exit.

    Subclasses set ``measure_every``, implement :meth:`_register_hooks` and call
    :meth:`_start_hooks` at the end of ``__init__``; their ``step()`` calls
    :meth:`_attach_hooks` with :attr:`measures_next_step` once it has numbered the
    step. Between measured steps the hooks are detached rather than left to return at
    once: a hook that does nothing still costs its Python call, which on a small model
    is most of the overhead (``benchmarks/gns_overhead.py``, ``benchmarks/norm_gns.py``).
    """

    measure_every: int
    _paused: bool

    def _start_hooks(self) -> None:
        """Attach the hooks for step 0 (every tracker measures its first step)."""
        self._handles: list[Any] = []
        self._removed = False
        self._attach_hooks(True)

    @abstractmethod
    def _register_hooks(self) -> list[Any]:
        """Register this tracker's hooks on the model; their handles."""

    def _attach_hooks(self, attached: bool) -> None:
        """Attach the hooks (before a measured step) or detach them (before one
        ``measure_every`` leaves out, which then calls none); nothing after :meth:`remove`."""
        if self._removed or attached == bool(self._handles):
            return
        if attached:
            self._handles = self._register_hooks()
            return
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def measures_next_step(self) -> bool:
        """Whether the next ``step()`` closes a measured step (one in ``measure_every``)."""
        return self._steps % self.measure_every == 0

    @contextmanager
    def paused(self) -> Iterator[Self]:
        """Ignore the passes inside this block (e.g. an extra loss for logging)."""
        self._paused, previous = True, self._paused
        try:
            yield self
        finally:
            self._paused = previous

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; the hooks then follow its step count."""
        super().load_state_dict(state)
        self._attach_hooks(self.measures_next_step)

    def remove(self) -> None:
        """Detach all hooks for good; the statistics gathered so far stay readable."""
        self._attach_hooks(False)
        self._removed = True
        self._flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
