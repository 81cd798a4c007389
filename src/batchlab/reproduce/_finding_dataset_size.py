"""Finding 4: the data-set size changes the scaling curve little.

A pure function of measured curves and run records: the numbers, a verdict and the
criterion that decided it (see :mod:`batchlab.reproduce`). Nothing here trains,
reads files or draws.

References:
    Shallue et al. 2018, JMLR 20(112), Sec. 4.5.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._curves import Curve
from ._fits import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    FitSummary,
    Ratio,
    Verdict,
    fit_ratio,
    fmt,
    fmt_ci,
    summarize_fit,
)


@dataclass(frozen=True, kw_only=True)
class DatasetSizeFinding:
    """Finding 4: B_crit with a 10x larger training set is within a factor of the small one's."""

    small_study: str
    large_study: str
    small_size: int | None
    large_size: int | None
    small: FitSummary | None
    large: FitSummary | None
    b_crit_ratio: Ratio | None
    s_min_ratio: Ratio | None
    factor: float
    verdict: Verdict
    reason: str

    number = 4
    title = "Data-set size matters little"

    @property
    def criterion(self) -> str:
        f = fmt(self.factor)
        return (
            f"held if the interval of B_crit(large) / B_crit(small) lies within [1/{f}, {f}] "
            f"(one ladder rung); did not hold if it misses [1/{f}, {f}] entirely; "
            "inconclusive otherwise"
        )


def evaluate_dataset_size(small: Curve, large: Curve, factor: float = 2.0) -> DatasetSizeFinding:
    """B_crit and S_min of the same study on a small and a large training set."""
    small_fit, large_fit = summarize_fit(small), summarize_fit(large)
    sizes = (small.train_size, large.train_size)
    if small_fit is None or large_fit is None:
        missing = small.name if small_fit is None else large.name
        return DatasetSizeFinding(
            small_study=small.name,
            large_study=large.name,
            small_size=sizes[0],
            large_size=sizes[1],
            small=small_fit,
            large=large_fit,
            b_crit_ratio=None,
            s_min_ratio=None,
            factor=factor,
            verdict=INCONCLUSIVE,
            reason=f"{missing} reached the target on fewer than three rungs.",
        )
    ratio, s_ratio = fit_ratio(small_fit, large_fit), fit_ratio(small_fit, large_fit, "s_min")
    text = (
        f"with {fmt(large.train_size)} training examples B_crit is {fmt(large_fit.b_crit)}, with "
        f"{fmt(small.train_size)} it is {fmt(small_fit.b_crit)}: ratio {fmt(ratio.value)}, "
        f"95% interval {fmt_ci(ratio.ci)}"
    )
    if ratio.within(factor):
        verdict, reason = HELD, text + f", within [1/{fmt(factor)}, {fmt(factor)}]."
    elif ratio.outside(factor):
        verdict, reason = NOT_HELD, text + f", outside [1/{fmt(factor)}, {fmt(factor)}]."
    else:
        verdict, reason = (
            INCONCLUSIVE,
            text + (f", which reaches past [1/{fmt(factor)}, {fmt(factor)}] without leaving it."),
        )
    return DatasetSizeFinding(
        small_study=small.name,
        large_study=large.name,
        small_size=sizes[0],
        large_size=sizes[1],
        small=small_fit,
        large=large_fit,
        b_crit_ratio=ratio,
        s_min_ratio=s_ratio,
        factor=factor,
        verdict=verdict,
        reason=reason,
    )
