"""Finding 3: the linear and square-root LR rules break beyond perfect scaling.

A pure function of measured curves and run records: the numbers, a verdict and the
criterion that decided it (see :mod:`batchlab.reproduce`). Nothing here trains,
reads files or draws.

References:
    Shallue et al. 2018, JMLR 20(112), Sec. 4.7; Goyal et al. 2017 (linear rule);
    Hoffer et al. 2017 (square-root rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import t as student_t

from ..analysis import LR_RULES, lr_trend
from ._curves import Curve
from ._fits import (
    CONFIDENCE,
    FOLLOWS,
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    FitSummary,
    Verdict,
    fmt,
    fmt_ci,
    summarize_fit,
)

#: The status of a row whose slope rests on a tuned LR at the edge of the searched range.
EDGE = "LR on the edge"


@dataclass(frozen=True, kw_only=True)
class LRRow:
    """One model's tuned learning rate against batch size.

    Attributes:
        batch_sizes, lrs: reached rungs and their tuned LRs.
        exponent, exponent_se: slope of log LR on log B over all of them.
        per_regime: slope within each regime (``None`` with fewer than two rungs there).
        beyond: rungs beyond perfect scaling (diminishing returns and maximal).
        beyond_exponent, beyond_ci: slope over ``beyond`` and its t-interval
            (``None`` with fewer than three such rungs).
        edges: rungs of ``beyond`` whose tuned LR is on the edge of the searched range.
        status: ``"neither rule"`` (the interval excludes both exponents),
            ``"linear rule"`` or ``"square-root rule"`` (it holds that exponent only),
            ``"either rule"`` (it holds both), ``"too few rungs"``, or ``"LR on the
            edge"`` (a rung beyond perfect scaling has its tuned LR on the edge of the
            searched range, so its optimum, and the slope, are not measured: not judged).
    """

    study: str
    workload: str
    optimizer: str
    batch_sizes: tuple[int, ...]
    lrs: tuple[float, ...]
    exponent: float | None
    exponent_se: float | None
    per_regime: dict[str, float | None]
    beyond: tuple[int, ...]
    beyond_exponent: float | None
    beyond_ci: tuple[float, float] | None
    status: str
    edges: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LRFinding:
    """Finding 3: beyond perfect scaling the tuned LR follows neither the linear nor the √ rule."""

    rows: tuple[LRRow, ...]
    verdict: Verdict
    reason: str

    number = 3
    title = "The linear and square-root LR rules break beyond perfect scaling"

    @property
    def criterion(self) -> str:
        return (
            "per model, the slope k of log LR on log B over the rungs beyond perfect scaling "
            "(diminishing returns and maximal data parallelism, at least three rungs) with its "
            f"95% t-interval: the rules are k = {fmt(LR_RULES['linear'])} (linear) and "
            f"k = {fmt(LR_RULES['square-root'])} (square root). Held if the interval excludes both "
            "rules for at least one model and no model's interval singles out a rule; did not "
            "hold if every evaluated model's interval singles out a rule; inconclusive otherwise. "
            "A model with a rung beyond perfect scaling whose tuned LR is on the edge of the "
            "searched range is not evaluated (its optimum lies at or beyond the edge)"
        )


def _beyond(
    sizes: Sequence[int], lrs: Sequence[float], fit: FitSummary | None
) -> tuple[tuple[int, ...], float | None, tuple[float, float] | None, str]:
    """The rungs beyond perfect scaling, the LR slope over them with its t-interval, the reading."""
    beyond = tuple(b for b in sizes if fit is not None and b not in fit.perfect)
    if len(beyond) < 3:
        return beyond, None, None, "too few rungs"
    sub = lr_trend(beyond, [lrs[sizes.index(b)] for b in beyond])
    half = student_t.ppf(0.5 + CONFIDENCE / 2, len(beyond) - 2) * (sub.exponent_se or 0.0)
    ci = (sub.exponent - half, sub.exponent + half)
    inside = [name for name, k in LR_RULES.items() if ci[0] <= k <= ci[1]]
    status = (
        "neither rule" if not inside else f"{inside[0]} rule" if len(inside) == 1 else "either rule"
    )
    return beyond, sub.exponent, ci, status


def _row(curve: Curve, fit: FitSummary | None) -> LRRow:
    pairs = [(b, curve.lr(b)) for b in curve.reached if curve.lr(b) is not None]
    sizes = tuple(b for b, _ in pairs)
    lrs = tuple(float(lr) for _, lr in pairs if lr is not None)
    trend, beyond, beyond_exponent, beyond_ci, status = None, (), None, None, "too few rungs"
    if len(sizes) >= 2:
        regimes = None
        if fit is not None:
            regimes = {
                "perfect": fit.perfect,
                "diminishing": fit.diminishing,
                "maximal": fit.maximal,
            }
        trend = lr_trend(sizes, lrs, regimes=regimes)
        beyond, beyond_exponent, beyond_ci, status = _beyond(sizes, lrs, fit)
    edges = tuple(b for b in beyond if b in curve.lr_edges)
    if edges and status != "too few rungs":
        status = EDGE
    return LRRow(
        study=curve.name,
        workload=curve.workload,
        optimizer=curve.optimizer,
        batch_sizes=sizes,
        lrs=lrs,
        exponent=None if trend is None else trend.exponent,
        exponent_se=None if trend is None else trend.exponent_se,
        per_regime={} if trend is None else dict(trend.per_regime),
        beyond=beyond,
        beyond_exponent=beyond_exponent,
        beyond_ci=beyond_ci,
        status=status,
        edges=edges,
    )


def evaluate_lr_rules(curves: Sequence[Curve]) -> LRFinding:
    """Tuned LR against B per model, against the linear and square-root rules."""
    rows = tuple(_row(curve, summarize_fit(curve)) for curve in curves)
    judged = [r for r in rows if r.status not in ("too few rungs", EDGE)]
    on_edge = [r for r in rows if r.status == EDGE]
    breaks = [r for r in judged if r.status == "neither rule"]
    follows = [r for r in judged if r.status in FOLLOWS]

    def describe(row: LRRow) -> str:
        return f"{row.study}: k = {fmt(row.beyond_exponent)}, interval {fmt_ci(row.beyond_ci)}"

    if not judged:
        verdict, reason = (
            INCONCLUSIVE,
            (
                "no model has three or more rungs beyond perfect scaling with a tuned LR "
                "inside its searched range."
            ),
        )
    elif breaks and not follows:
        verdict, reason = (
            HELD,
            (
                "beyond perfect scaling the tuned LR follows neither rule ("
                + "; ".join(describe(r) for r in breaks)
                + ")."
            ),
        )
    elif follows and len(follows) == len(judged):
        verdict, reason = (
            NOT_HELD,
            (
                "beyond perfect scaling the tuned LR is consistent with a rule ("
                + "; ".join(f"{describe(r)}: {r.status}" for r in follows)
                + ")."
            ),
        )
    else:
        verdict, reason = (
            INCONCLUSIVE,
            (
                "the models disagree or their intervals are too wide ("
                + "; ".join(f"{describe(r)}: {r.status}" for r in judged)
                + ")."
            ),
        )
    if on_edge:
        reason += " Not judged, a tuned LR on the edge of the searched range: " + "; ".join(
            f"{r.study} at B = {', '.join(str(b) for b in r.edges)}" for r in on_edge
        )
        reason += " (widen the LR range to measure them)."
    return LRFinding(rows=rows, verdict=verdict, reason=reason)
