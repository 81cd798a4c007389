"""What several findings share: two studies' fits side by side, and the band they are read against.

Findings 2 (momentum against plain SGD) and 4 (a large against a small training set)
both summarize two studies as their answers do (B_crit off S_min (1 + B_crit / B), or
off a free bend where that fits better; McCandlish et al. 2018, Eq. 2.11) and read the
ratio of their B_crit and S_min (Shallue et al. 2018, Sec. 4.4-4.5); findings 1, 4
and 6 call a ratio inside [1/factor, factor] "the same".
"""

from __future__ import annotations

from dataclasses import dataclass

from ._curves import Curve
from ._fits import FitSummary, Ratio, fit_ratio, fmt, summarize_fit


@dataclass(frozen=True, kw_only=True)
class FitPair:
    """Two studies' fits and the ratios ``other / reference``.

    Attributes:
        reference, other: the fits (``None``: fewer than three reached rungs).
        b_crit_ratio, s_min_ratio: the ratios with their intervals (``None`` unless
            both fits exist).
        missing: the first of the two studies without a fit (``None`` if both have one).
    """

    reference: FitSummary | None
    other: FitSummary | None
    b_crit_ratio: Ratio | None
    s_min_ratio: Ratio | None
    missing: str | None


def fit_pair(reference: Curve, other: Curve) -> FitPair:
    """Fit both curves and, if both fit, the B_crit and S_min ratios ``other / reference``."""
    reference_fit, other_fit = summarize_fit(reference), summarize_fit(other)
    ratios: tuple[Ratio | None, Ratio | None] = (None, None)
    if reference_fit is not None and other_fit is not None:
        ratios = fit_ratio(reference_fit, other_fit), fit_ratio(reference_fit, other_fit, "s_min")
    return FitPair(
        reference=reference_fit,
        other=other_fit,
        b_crit_ratio=ratios[0],
        s_min_ratio=ratios[1],
        missing=(
            reference.name if reference_fit is None else other.name if other_fit is None else None
        ),
    )


def fmt_band(factor: float) -> str:
    """The agreement band ``[1/factor, factor]`` as the document writes it."""
    return f"[1/{fmt(factor)}, {fmt(factor)}]"
