"""Finding 6: the gradient noise scale predicts the critical batch size.

A pure function of measured curves and run records: the numbers, a verdict and the
criterion that decided it (see :mod:`batchlab.reproduce`). Nothing here trains,
reads files or draws.

B_simple grows as training proceeds, and B_crit is a property of the whole run to
the target, so the verdict compares B_crit with B_simple averaged over the run (the
geometric mean of its evenly spaced checkpoints); the value at the target is shown
beside it. The tolerance is McCandlish et al.'s own claim, order-of-magnitude
agreement (``factor = 10`` in the findings plan). Their derivation is for SGD: runs
with an adaptive optimizer (Adam, AdamW, LAMB) are shown, read the same way, but
left out of the verdict.

References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
    Training", arXiv:1812.06162, Sec. 2-3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..analysis import AnalysisError, interval_ratio
from ._compare import fmt_band
from ._curves import Curve
from ._fits import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    WIDE_RATIO,
    FitSummary,
    Verdict,
    fmt,
    fmt_ci,
    summarize_fit,
)


@dataclass(frozen=True, kw_only=True)
class NoiseCheckpoint:
    """B_simple at one point of the run: step, fraction of the way to the target, metric."""

    step: int
    fraction: float
    metric: float | None
    b_simple: float | None
    b_simple_ci: tuple[float | None, float | None]


#: Optimizers outside the SGD theory of McCandlish et al. 2018 (shown, not judged).
ADAPTIVE_OPTIMIZERS = ("adam", "adamw", "lamb")

_Z95 = 1.959963984540054


@dataclass(frozen=True, kw_only=True)
class NoiseRow:
    """One model: B_simple over its run against its B_crit (the study's answer).

    Attributes:
        optimizer: the study's optimizer; ``judged`` is False for an adaptive one.
        average, average_ci: B_simple averaged over the run (geometric mean of the
            checkpoints with a positive estimate; the interval combines theirs, which
            are independent measurements, in log space).
        average_ratio, average_ratio_ci: ``average`` / B_crit with interval.
        ratio, ratio_ci: B_simple at the target / B_crit with interval.
        status: the reading of ``average_ratio`` (the one the verdict uses):
            ``"agrees"`` (interval overlaps [1/factor, factor] and is narrower than a
            factor of 16), ``"disagrees"`` (misses it), ``"unclear"`` (wider), or
            ``"no measurement"`` (no positive B_simple or no fit).
        endpoint_status: the same reading of ``ratio``.
    """

    study: str
    workload: str
    optimizer: str
    train_batch_size: int
    measure_batch_size: int
    micro_batch_size: int
    checkpoints: tuple[NoiseCheckpoint, ...]
    b_crit: float | None
    b_crit_ci: tuple[float, float] | None
    average: float | None
    average_ci: tuple[float, float] | None
    average_ratio: float | None
    average_ratio_ci: tuple[float, float] | None
    ratio: float | None
    ratio_ci: tuple[float, float] | None
    status: str
    endpoint_status: str

    @property
    def at_target(self) -> NoiseCheckpoint:
        return self.checkpoints[-1]

    @property
    def judged(self) -> bool:
        """Whether the row counts for the verdict (an SGD-family optimizer)."""
        return self.optimizer not in ADAPTIVE_OPTIMIZERS


@dataclass(frozen=True, kw_only=True)
class NoiseFinding:
    """Finding 6: B_simple measured during training predicts the measured B_crit."""

    rows: tuple[NoiseRow, ...]
    metric_names: dict[str, str]
    factor: float
    verdict: Verdict
    reason: str

    number = 6
    title = "The noise scale predicts the critical batch size"

    @property
    def criterion(self) -> str:
        return (
            "per model trained with an SGD-family optimizer, B_simple averaged over the run "
            "to the target (geometric mean of its checkpoints), divided by the study's "
            "B_crit (its answer's: the hyperbola's, or a free bend's where that fits the "
            "rungs better), with a 95% interval: it agrees if the interval overlaps "
            f"{fmt_band(self.factor)} and is narrower than a factor of {fmt(WIDE_RATIO)}. "
            "The band is McCandlish et al.'s own claim, agreement to within an order of "
            "magnitude. Held if every such model agrees; did not hold if any model's "
            "interval misses the band; inconclusive otherwise. Models trained with an "
            "adaptive optimizer (Adam, AdamW, LAMB) are outside the SGD theory: shown, "
            "not judged"
        )


def trajectory_average(
    checkpoints: Sequence[NoiseCheckpoint],
) -> tuple[float | None, tuple[float, float] | None]:
    """Geometric mean of the positive B_simple estimates along a run, with a 95% interval.

    Each checkpoint is measured on its own batches, so the estimates are independent:
    with s_i = (log high_i − log low_i)/(2·1.96) the standard error of the mean log is
    √(Σ s_i²)/k. The interval is ``None`` when a checkpoint used has no finite,
    positive interval.
    """
    usable = [c for c in checkpoints if c.b_simple is not None and c.b_simple > 0]
    if not usable:
        return None, None
    mean_log = sum(math.log(c.b_simple) for c in usable) / len(usable)  # type: ignore[arg-type]
    spreads = []
    for c in usable:
        low, high = c.b_simple_ci
        if low is None or high is None or not 0 < low <= high < math.inf:
            return math.exp(mean_log), None
        spreads.append((math.log(high) - math.log(low)) / (2 * _Z95))
    half = _Z95 * math.sqrt(sum(x * x for x in spreads)) / len(usable)
    return math.exp(mean_log), (math.exp(mean_log - half), math.exp(mean_log + half))


def _reading(
    fit: FitSummary, b_simple: float, ci: tuple[Any, Any] | None, factor: float
) -> tuple[float, tuple[float, float] | None, str]:
    """B_simple / B_crit, its interval and its reading (see :class:`NoiseRow`).

    B_crit is the study's answer (:attr:`FitSummary.b_crit`); the interval combines
    its interval with B_simple's (:func:`batchlab.analysis.interval_ratio`). An end of
    B_simple's interval that is ``None`` is open (0 or ∞); without an interval (a
    checkpoint without one), the reading is ``"unclear"``.
    """
    ratio = b_simple / fit.b_crit
    if ci is None:
        return ratio, None, "unclear"
    try:
        ratio, ratio_ci = interval_ratio(b_simple, ci, fit.b_crit, fit.b_crit_ci)
    except AnalysisError:
        return ratio, None, "unclear"
    agrees = ratio_ci[0] <= factor and ratio_ci[1] >= 1.0 / factor
    wide = ratio_ci[1] / ratio_ci[0] > WIDE_RATIO if ratio_ci[0] > 0 else True
    status = "disagrees" if not agrees else "unclear" if wide else "agrees"
    return ratio, ratio_ci, status


def _noise_row(
    record: Mapping[str, Any],
    metric: str,
    fit: FitSummary | None,
    factor: float,
    optimizer: str,
) -> NoiseRow:
    """One record's row; each checkpoint's metric is ``metric`` from its ``metrics`` dict."""
    job = record["job"]
    checkpoints = tuple(
        NoiseCheckpoint(
            step=int(c["step"]),
            fraction=float(c["fraction"]),
            metric=(c.get("metrics") or {}).get(metric, c.get("metric")),
            b_simple=c.get("b_simple"),
            b_simple_ci=tuple(c.get("b_simple_ci") or (None, None)),  # type: ignore[arg-type]
        )
        for c in record["checkpoints"]
    )
    final = checkpoints[-1] if checkpoints else None
    average, average_ci = trajectory_average(checkpoints)
    ratio = ratio_ci = average_ratio = average_ratio_ci = None
    status = endpoint_status = "no measurement"
    if fit is not None and final is not None and final.b_simple is not None and final.b_simple > 0:
        ratio, ratio_ci, endpoint_status = _reading(fit, final.b_simple, final.b_simple_ci, factor)
    if fit is not None and average is not None:
        average_ratio, average_ratio_ci, status = _reading(fit, average, average_ci, factor)
    return NoiseRow(
        study=str(job["study"]),
        workload=str(job["workload"]),
        optimizer=optimizer,
        train_batch_size=int(job["train_batch_size"]),
        measure_batch_size=int(job["batch_size"]),
        micro_batch_size=int(job["micro_batch_size"]),
        checkpoints=checkpoints,
        b_crit=None if fit is None else fit.b_crit,
        b_crit_ci=None if fit is None else fit.b_crit_ci,
        average=average,
        average_ci=average_ci,
        average_ratio=average_ratio,
        average_ratio_ci=average_ratio_ci,
        ratio=ratio,
        ratio_ci=ratio_ci,
        status=status,
        endpoint_status=endpoint_status,
    )


def evaluate_noise_scale(
    records: Sequence[Mapping[str, Any]],
    curves: Mapping[str, Curve],
    factor: float = 10.0,
) -> NoiseFinding:
    """B_simple at checkpoints of a run to the target against each model's B_crit (its study's answer).

    Args:
        records: :func:`~batchlab.reproduce.run_noise_job` records whose checkpoints hold
            ``metrics`` dicts; each checkpoint's ``metric`` becomes the study target's.
        curves: study name -> curve (for the fits and targets).
        factor: the agreement band (10 in the findings plan: McCandlish et al.'s
            order-of-magnitude claim).
    """
    rows, metrics = [], {}
    for record in records:
        curve = curves[str(record["job"]["study"])]
        metrics[curve.name] = str(curve.target.get("metric", ""))
        fit = summarize_fit(curve)
        rows.append(_noise_row(record, metrics[curve.name], fit, factor, curve.optimizer))
    sgd = [r for r in rows if r.judged]

    def describe(row: NoiseRow) -> str:
        return (
            f"{row.study}: B_simple averaged over the run {fmt(row.average)} vs B_crit "
            f"{fmt(row.b_crit)}, ratio {fmt(row.average_ratio)} {fmt_ci(row.average_ratio_ci)}"
        )

    listing = "; ".join(describe(r) for r in sgd if r.average_ratio is not None) or "no ratios"
    adaptive = [r.study for r in rows if not r.judged]
    aside = f" Not judged (adaptive optimizer): {', '.join(adaptive)}." if adaptive else ""
    if not sgd:
        verdict, reason = INCONCLUSIVE, "no noise-scale run of an SGD-family model finished."
    elif any(r.status == "disagrees" for r in sgd):
        verdict, reason = NOT_HELD, f"at least one model misses the band ({listing})."
    elif all(r.status == "agrees" for r in sgd):
        verdict, reason = HELD, f"every model agrees within a factor of {fmt(factor)} ({listing})."
    else:
        verdict, reason = INCONCLUSIVE, f"some comparisons are too uncertain ({listing})."
    return NoiseFinding(
        rows=tuple(rows),
        metric_names=metrics,
        factor=factor,
        verdict=verdict,
        reason=reason + aside,
    )
