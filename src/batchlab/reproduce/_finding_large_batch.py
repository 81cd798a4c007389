"""Finding 7: LARS/LAMB against momentum at the largest batch sizes.

A pure function of measured curves and run records: the numbers, a verdict and the
criterion that decided it (see :mod:`batchlab.reproduce`). Nothing here trains,
reads files or draws.

References:
    You, Gitman, Ginsburg 2017, "Large Batch Training of Convolutional Networks",
    arXiv:1708.03888; You et al. 2019, "Large Batch Optimization for Deep Learning",
    arXiv:1904.00962.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._curves import Curve
from ._fits import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    Verdict,
    fmt,
)


@dataclass(frozen=True, kw_only=True)
class LargeBatchRow:
    """Steps-to-target at one shared rung: the reference and every other optimizer."""

    batch_size: int
    resolution: int
    reference: int | None
    others: dict[str, int | None]


@dataclass(frozen=True, kw_only=True)
class LargeBatchFinding:
    """Finding 7: LARS/LAMB need fewer steps than momentum at the largest batch sizes.

    Attributes:
        optimizers: study name -> optimizer name (reference first).
        rows: the rungs the other studies ran, ascending.
        decisive: the largest of them where any study reached the target.
    """

    reference: str
    optimizers: dict[str, str]
    rows: tuple[LargeBatchRow, ...]
    decisive: int | None
    verdict: Verdict
    reason: str

    number = 7
    title = "LARS and LAMB against momentum at the largest batch sizes"

    @property
    def criterion(self) -> str:
        return (
            "at the largest compared rung where any optimizer reached the target: held if the "
            "best of the large-batch optimizers needs fewer steps than the reference by more "
            "than one evaluation interval (or only it reaches the target); did not hold "
            "otherwise; inconclusive if nothing reached the target"
        )


def evaluate_large_batch(reference: Curve, others: Sequence[Curve]) -> LargeBatchFinding:
    """Steps-to-target of large-batch optimizers against the reference on shared rungs."""
    rungs = sorted({b for c in others for b in c.batch_sizes} & set(reference.batch_sizes))
    rows = []
    for b in rungs:
        studies = [reference, *[c for c in others if b in c.batch_sizes]]
        resolution = max(c.eval_every_at(b) for c in studies)
        rows.append(
            LargeBatchRow(
                batch_size=b,
                resolution=resolution,
                reference=reference.steps_at(b),
                others={c.name: c.steps_at(b) if b in c.batch_sizes else None for c in others},
            )
        )
    optimizers = {reference.name: reference.optimizer, **{c.name: c.optimizer for c in others}}
    decisive_row = next(
        (
            r
            for r in reversed(rows)
            if r.reference is not None or any(v is not None for v in r.others.values())
        ),
        None,
    )
    if decisive_row is None:
        return LargeBatchFinding(
            reference=reference.name,
            optimizers=optimizers,
            rows=tuple(rows),
            decisive=None,
            verdict=INCONCLUSIVE,
            reason="no optimizer reached the target on the compared rungs.",
        )
    reached = {k: v for k, v in decisive_row.others.items() if v is not None}
    best_name = min(reached, key=lambda k: reached[k]) if reached else None
    ref = decisive_row.reference
    b, res = decisive_row.batch_size, decisive_row.resolution
    steps_text = ", ".join(
        f"{optimizers[k]} {fmt(v) if v is not None else 'not reached'}"
        for k, v in [(reference.name, ref), *decisive_row.others.items()]
    )
    text = f"at B = {fmt(b)} steps to target: {steps_text} (evaluation interval {fmt(res)})"
    if best_name is None:
        verdict, reason = NOT_HELD, text + ": only the reference reached the target."
    elif ref is None:
        verdict, reason = HELD, text + f": only {optimizers[best_name]} reached the target."
    elif reached[best_name] < ref - res:
        verdict, reason = HELD, text + f": {optimizers[best_name]} needs fewer steps."
    else:
        verdict, reason = (
            NOT_HELD,
            text
            + (
                f": no large-batch optimizer beats {optimizers[reference.name]} by more than one "
                "evaluation interval."
            ),
        )
    return LargeBatchFinding(
        reference=reference.name,
        optimizers=optimizers,
        rows=tuple(rows),
        decisive=b,
        verdict=verdict,
        reason=reason,
    )
