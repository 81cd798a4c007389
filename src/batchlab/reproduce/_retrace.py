"""What the extra runs of findings 5 and 6 share: retracing a study's best trial.

Both findings re-run a rung's best trial with its tuned hyperparameters and seed, so
the run starts exactly as the study's did: finding 5 for a fixed epoch budget and for
the rung's step budget (Masters & Luschi 2018; Shallue et al. 2018, Sec. 5), finding 6
up to its steps-to-target while measuring B_simple (McCandlish et al. 2018). Each such
run is a :class:`Job` whose result is stored as JSON.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from ..training import RunSpec
from ._curves import Curve


class Job(Protocol):
    """A run to make: a file-name-safe ``key``, its ``spec``, and what determines it."""

    @property
    def key(self) -> str: ...

    @property
    def spec(self) -> RunSpec: ...

    def describe(self) -> dict[str, Any]:
        """What determines the run (stored with its result, to detect a changed plan)."""
        ...


def retraceable(curve: Curve) -> tuple[int, ...]:
    """The rungs whose best trial can be retraced: reached, with its hyperparameters and seed."""
    unknown = (None,) * len(curve.batch_sizes)  # a hand-built curve may leave these out
    return tuple(
        b
        for b, steps, hparams, seed in zip(
            curve.batch_sizes,
            curve.steps,
            curve.hparams or unknown,
            curve.seeds or unknown,
            strict=True,
        )
        if steps is not None and hparams is not None and seed is not None
    )


def best_trial_spec(
    curve: Curve, batch_size: int, *, max_steps: int, eval_every: int, decay: str
) -> RunSpec:
    """The run of ``batch_size``'s best trial (its hyperparameters and seed) for ``max_steps``."""
    i = curve.batch_sizes.index(batch_size)
    hparams, seed = curve.hparams[i], curve.seeds[i]
    if hparams is None or seed is None:
        raise ValueError(f"{curve.name}: rung {batch_size} has no best trial to retrace")
    return RunSpec(
        batch_size=batch_size,
        optimizer=curve.optimizer,
        hparams=dict(hparams),
        max_steps=max_steps,
        eval_every=eval_every,
        seed=seed,
        decay=decay,
    )


def finite(value: float | None) -> float | None:
    """``value`` for JSON: ``None`` if missing, NaN or infinite."""
    return None if value is None or not math.isfinite(value) else float(value)
