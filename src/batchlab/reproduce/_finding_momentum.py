"""Finding 2: momentum extends perfect scaling to larger batches than plain SGD.

A pure function of measured curves and run records: the numbers, a verdict and the
criterion that decided it (see :mod:`batchlab.reproduce`). Nothing here trains,
reads files or draws.

References:
    Shallue et al. 2018, JMLR 20(112), Sec. 4.4 (Fig. 4).
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
class MomentumFinding:
    """Finding 2: momentum extends perfect scaling (B_crit with momentum / with SGD > 1).

    Attributes:
        sgd, momentum: the two fits (``None`` if a study had too few reached rungs).
        b_crit_ratio: momentum's B_crit / SGD's, with interval.
        s_min_ratio: momentum's S_min / SGD's, with interval.
        rungs: (batch size, SGD steps, momentum steps) per rung of the shared ladder.
    """

    sgd_study: str
    momentum_study: str
    sgd: FitSummary | None
    momentum: FitSummary | None
    b_crit_ratio: Ratio | None
    s_min_ratio: Ratio | None
    rungs: tuple[tuple[int, int | None, int | None], ...]
    verdict: Verdict
    reason: str

    number = 2
    title = "Momentum extends perfect scaling"

    @property
    def criterion(self) -> str:
        return (
            "held if the interval of B_crit(momentum) / B_crit(SGD) lies above 1; did not "
            "hold if it lies below 1; inconclusive if it contains 1 (or a fit is missing)"
        )


def evaluate_momentum(sgd: Curve, momentum: Curve) -> MomentumFinding:
    """B_crit of momentum against plain SGD on the same workload and ladder."""
    sgd_fit, mom_fit = summarize_fit(sgd), summarize_fit(momentum)
    shared = sorted(set(sgd.batch_sizes) & set(momentum.batch_sizes))
    rungs = tuple((b, sgd.steps_at(b), momentum.steps_at(b)) for b in shared)
    if sgd_fit is None or mom_fit is None:
        missing = sgd.name if sgd_fit is None else momentum.name
        return MomentumFinding(
            sgd_study=sgd.name,
            momentum_study=momentum.name,
            sgd=sgd_fit,
            momentum=mom_fit,
            b_crit_ratio=None,
            s_min_ratio=None,
            rungs=rungs,
            verdict=INCONCLUSIVE,
            reason=f"{missing} reached the target on fewer than three rungs: no B_crit to compare.",
        )
    ratio, s_ratio = fit_ratio(sgd_fit, mom_fit), fit_ratio(sgd_fit, mom_fit, "s_min")
    text = (
        f"B_crit is {fmt(mom_fit.b_crit)} with {momentum.optimizer} and {fmt(sgd_fit.b_crit)} "
        f"with SGD: ratio {fmt(ratio.value)}, 95% interval {fmt_ci(ratio.ci)}"
    )
    if ratio.above_one:
        verdict, reason = HELD, text + ", above 1."
    elif ratio.below_one:
        verdict, reason = NOT_HELD, text + ", below 1: momentum shrank the critical batch here."
    else:
        verdict, reason = INCONCLUSIVE, text + ", which contains 1."
    return MomentumFinding(
        sgd_study=sgd.name,
        momentum_study=momentum.name,
        sgd=sgd_fit,
        momentum=mom_fit,
        b_crit_ratio=ratio,
        s_min_ratio=s_ratio,
        rungs=rungs,
        verdict=verdict,
        reason=reason,
    )
