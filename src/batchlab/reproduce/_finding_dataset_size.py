"""Finding 4: the data-set size changes the scaling curve little.

A pure function of measured curves and run records: the numbers, a verdict and the
criterion that decided it (see :mod:`batchlab.reproduce`). Nothing here trains,
reads files or draws.

References:
    Shallue et al. 2018, JMLR 20(112), Sec. 4.5.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._compare import fit_pair, fmt_band
from ._curves import Curve
from ._fits import HELD, INCONCLUSIVE, NOT_HELD, FitSummary, Ratio, Verdict, fmt, fmt_ci


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
        band = fmt_band(self.factor)
        return (
            f"held if the interval of B_crit(large) / B_crit(small) lies within {band} "
            f"(one ladder rung); did not hold if it misses {band} entirely; "
            "inconclusive otherwise"
        )


def evaluate_dataset_size(small: Curve, large: Curve, factor: float = 2.0) -> DatasetSizeFinding:
    """B_crit and S_min of the same study on a small and a large training set."""
    pair = fit_pair(small, large)
    ratio, band = pair.b_crit_ratio, fmt_band(factor)
    if pair.reference is None or pair.other is None or ratio is None:
        verdict, reason = (
            INCONCLUSIVE,
            f"{pair.missing} reached the target on fewer than three rungs.",
        )
    else:
        text = (
            f"with {fmt(large.train_size)} training examples B_crit is {fmt(pair.other.b_crit)}, "
            f"with {fmt(small.train_size)} it is {fmt(pair.reference.b_crit)}: ratio "
            f"{fmt(ratio.value)}, 95% interval {fmt_ci(ratio.ci)}"
        )
        if ratio.within(factor):
            verdict, reason = HELD, text + f", within {band}."
        elif ratio.outside(factor):
            verdict, reason = NOT_HELD, text + f", outside {band}."
        else:
            verdict, reason = (
                INCONCLUSIVE,
                text + f", which reaches past {band} without leaving it.",
            )
    return DatasetSizeFinding(
        small_study=small.name,
        large_study=large.name,
        small_size=small.train_size,
        large_size=large.train_size,
        small=pair.reference,
        large=pair.other,
        b_crit_ratio=ratio,
        s_min_ratio=pair.s_min_ratio,
        factor=factor,
        verdict=verdict,
        reason=reason,
    )
