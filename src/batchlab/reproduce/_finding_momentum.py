"""Finding 2: momentum extends perfect scaling to larger batches than plain SGD.

A pure function of measured curves and run records: the numbers, a verdict and the
criterion that decided it (see :mod:`batchlab.reproduce`). Nothing here trains,
reads files or draws.

References:
    Shallue et al. 2018, JMLR 20(112), Sec. 4.4 (Fig. 4).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._compare import fit_pair
from ._curves import Curve
from ._fits import HELD, INCONCLUSIVE, NOT_HELD, FitSummary, Ratio, Verdict, fmt, fmt_ci


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
    pair = fit_pair(sgd, momentum)
    shared = sorted(set(sgd.batch_sizes) & set(momentum.batch_sizes))
    ratio = pair.b_crit_ratio
    if pair.reference is None or pair.other is None or ratio is None:
        verdict, reason = (
            INCONCLUSIVE,
            f"{pair.missing} reached the target on fewer than three rungs: no B_crit to compare.",
        )
    else:
        text = (
            f"B_crit is {fmt(pair.other.b_crit)} with {momentum.optimizer} and "
            f"{fmt(pair.reference.b_crit)} with SGD: ratio {fmt(ratio.value)}, "
            f"95% interval {fmt_ci(ratio.ci)}"
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
        sgd=pair.reference,
        momentum=pair.other,
        b_crit_ratio=ratio,
        s_min_ratio=pair.s_min_ratio,
        rungs=tuple((b, sgd.steps_at(b), momentum.steps_at(b)) for b in shared),
        verdict=verdict,
        reason=reason,
    )
