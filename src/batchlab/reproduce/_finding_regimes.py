"""Finding 1: three scaling regimes, whose bends depend on the model.

A pure function of measured curves and run records: the numbers, a verdict and the
criterion that decided it (see :mod:`batchlab.reproduce`). Nothing here trains,
reads files or draws.

References:
    Shallue, Lee, Antognini, Sohl-Dickstein, Frostig, Dahl 2018, "Measuring the Effects
    of Data Parallelism on Neural Network Training", JMLR 20(112), Sec. 4.1-4.3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from ._compare import fmt_band
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
class RegimesFinding:
    """Finding 1: S(B) has three regimes, and where they lie differs by model.

    Attributes:
        fits: one fit per model that reached the target on at least three rungs.
        missing: studies without a fit.
        pairs: B_crit ratio of every pair of fitted models (later / earlier in ``fits``).
        factor: ratios inside [1/factor, factor] count as "the same place".
    """

    fits: tuple[FitSummary, ...]
    missing: tuple[str, ...]
    pairs: tuple[Ratio, ...]
    factor: float
    verdict: Verdict
    reason: str

    number = 1
    title = "Three regimes, and where they lie depends on the model"

    @property
    def criterion(self) -> str:
        return (
            "held if the B_crit ratio interval of at least one pair of models excludes 1; "
            f"did not hold if every pair's interval lies within {fmt_band(self.factor)}; "
            "inconclusive otherwise (or with fewer than two fitted models)"
        )


def evaluate_regimes(curves: Sequence[Curve], factor: float = 2.0) -> RegimesFinding:
    """B_crit and regimes of each model's S(B), and whether the models differ."""
    fits, missing = [], []
    for curve in curves:
        summary = summarize_fit(curve)
        if summary is None:
            missing.append(curve.name)
        else:
            fits.append(summary)
    pairs = tuple(fit_ratio(a, b) for a, b in combinations(fits, 2))
    three = [f.study for f in fits if len(f.regimes_seen) == 3]
    seen = (
        f" All three regimes appear in {', '.join(three)}."
        if three
        else " No model shows all three regimes on its ladder."
    )
    if len(fits) < 2:
        verdict, reason = (
            INCONCLUSIVE,
            (f"only {len(fits)} model(s) reached the target on enough rungs for a fit."),
        )
    elif any(p.above_one or p.below_one for p in pairs):
        split = next(p for p in pairs if p.above_one or p.below_one)
        verdict, reason = (
            HELD,
            (
                f"B_crit of {split.numerator} is ×{fmt(split.value)} that of {split.denominator} "
                f"(95% interval {fmt_ci(split.ci)}, excluding 1).{seen}"
            ),
        )
    elif all(p.within(factor) for p in pairs):
        verdict, reason = (
            NOT_HELD,
            (
                f"every pair's B_crit ratio interval lies within {fmt_band(factor)}: "
                f"the models' bends sit at the same batch size here.{seen}"
            ),
        )
    else:
        verdict, reason = (
            INCONCLUSIVE,
            (
                "every pair's B_crit ratio interval contains 1 but some are too wide to say the "
                f"bends coincide.{seen}"
            ),
        )
    return RegimesFinding(
        fits=tuple(fits),
        missing=tuple(missing),
        pairs=pairs,
        factor=factor,
        verdict=verdict,
        reason=reason,
    )
