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
from ._fits import HELD, INCONCLUSIVE, NOT_HELD, Verdict, fmt


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

    def steps(self, row: LargeBatchRow, study: str) -> int | None:
        """Steps-to-target of ``study`` (the reference or another) at ``row``'s rung."""
        return row.reference if study == self.reference else row.others.get(study)


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
    decisive = next(
        (
            r
            for r in reversed(rows)
            if r.reference is not None or any(v is not None for v in r.others.values())
        ),
        None,
    )
    if decisive is None:
        verdict, reason = INCONCLUSIVE, "no optimizer reached the target on the compared rungs."
    else:
        verdict, reason = _decide(decisive, reference.name, optimizers)
    return LargeBatchFinding(
        reference=reference.name,
        optimizers=optimizers,
        rows=tuple(rows),
        decisive=None if decisive is None else decisive.batch_size,
        verdict=verdict,
        reason=reason,
    )


def _decide(row: LargeBatchRow, reference: str, optimizers: dict[str, str]) -> tuple[Verdict, str]:
    """The verdict at the decisive rung: does the best other optimizer beat the reference?"""
    reached = {k: v for k, v in row.others.items() if v is not None}
    best_name = min(reached, key=lambda k: reached[k]) if reached else None
    ref, res = row.reference, row.resolution
    steps_text = ", ".join(
        f"{optimizers[k]} {fmt(v) if v is not None else 'not reached'}"
        for k, v in [(reference, ref), *row.others.items()]
    )
    text = f"at B = {fmt(row.batch_size)} steps to target: {steps_text} (evaluation interval {fmt(res)})"
    if best_name is None:
        return NOT_HELD, text + ": only the reference reached the target."
    if ref is None:
        return HELD, text + f": only {optimizers[best_name]} reached the target."
    if reached[best_name] < ref - res:
        return HELD, text + f": {optimizers[best_name]} needs fewer steps."
    return NOT_HELD, text + (
        f": no large-batch optimizer beats {optimizers[reference]} by more than one "
        "evaluation interval."
    )
