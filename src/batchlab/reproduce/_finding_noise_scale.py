"""Finding 6: the gradient noise scale predicts the critical batch size.

A pure function of measured curves and run records: the numbers, a verdict and the
criterion that decided it (see :mod:`batchlab.reproduce`). Nothing here trains,
reads files or draws.

References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
    Training", arXiv:1812.06162, Sec. 2-3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..analysis import AnalysisError, compare_prediction
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


@dataclass(frozen=True, kw_only=True)
class NoiseRow:
    """One model: B_simple over its run against its fitted B_crit.

    Attributes:
        ratio, ratio_ci: B_simple (at the target) / B_crit with interval.
        status: ``"agrees"`` (interval overlaps [1/factor, factor] and is narrower than
            a factor of 16), ``"disagrees"`` (misses it), ``"unclear"`` (wider), or
            ``"no measurement"`` (no positive B_simple or no fit).
    """

    study: str
    workload: str
    train_batch_size: int
    measure_batch_size: int
    micro_batch_size: int
    checkpoints: tuple[NoiseCheckpoint, ...]
    b_crit: float | None
    b_crit_ci: tuple[float, float] | None
    ratio: float | None
    ratio_ci: tuple[float, float] | None
    status: str

    @property
    def at_target(self) -> NoiseCheckpoint:
        return self.checkpoints[-1]


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
            "per model, B_simple measured when the run reaches the target, divided by the "
            "fitted B_crit, with a 95% interval: it agrees if the interval overlaps "
            f"{fmt_band(self.factor)} and is narrower than a factor of {fmt(WIDE_RATIO)}. "
            "Held if every model agrees; did not hold if any model's interval misses the band; "
            "inconclusive otherwise"
        )


def _noise_row(
    record: Mapping[str, Any], metric: str, fit: FitSummary | None, factor: float
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
    ratio = ratio_ci = None
    status = "no measurement"
    if fit is not None and final is not None and final.b_simple is not None and final.b_simple > 0:
        try:
            comparison = compare_prediction(
                fit.fit, final.b_simple, final.b_simple_ci, factor=factor
            )
        except AnalysisError:
            comparison = compare_prediction(fit.fit, final.b_simple, None, factor=factor)
            ratio, ratio_ci, status = comparison.ratio, None, "unclear"
        else:
            ratio, ratio_ci = comparison.ratio, comparison.ratio_ci
            wide = ratio_ci[1] / ratio_ci[0] > WIDE_RATIO if ratio_ci[0] > 0 else True
            status = "disagrees" if not comparison.agrees else "unclear" if wide else "agrees"
    return NoiseRow(
        study=str(job["study"]),
        workload=str(job["workload"]),
        train_batch_size=int(job["train_batch_size"]),
        measure_batch_size=int(job["batch_size"]),
        micro_batch_size=int(job["micro_batch_size"]),
        checkpoints=checkpoints,
        b_crit=None if fit is None else fit.b_crit,
        b_crit_ci=None if fit is None else fit.b_crit_ci,
        ratio=ratio,
        ratio_ci=ratio_ci,
        status=status,
    )


def evaluate_noise_scale(
    records: Sequence[Mapping[str, Any]],
    curves: Mapping[str, Curve],
    factor: float = 2.0,
) -> NoiseFinding:
    """B_simple at checkpoints of a run to the target against each model's fitted B_crit.

    Args:
        records: :func:`~batchlab.reproduce.run_noise_job` records whose checkpoints hold
            ``metrics`` dicts; each checkpoint's ``metric`` becomes the study target's.
        curves: study name -> curve (for the fits and targets).
        factor: the agreement band.
    """
    rows, metrics = [], {}
    for record in records:
        curve = curves[str(record["job"]["study"])]
        metrics[curve.name] = str(curve.target.get("metric", ""))
        rows.append(_noise_row(record, metrics[curve.name], summarize_fit(curve), factor))
    judged = [r for r in rows if r.status in ("agrees", "disagrees")]

    def describe(row: NoiseRow) -> str:
        return (
            f"{row.study}: B_simple {fmt(row.at_target.b_simple)} vs B_crit {fmt(row.b_crit)}, "
            f"ratio {fmt(row.ratio)} {fmt_ci(row.ratio_ci)}"
        )

    listing = "; ".join(describe(r) for r in rows if r.ratio is not None) or "no ratios"
    if not rows:
        verdict, reason = INCONCLUSIVE, "no noise-scale run finished."
    elif any(r.status == "disagrees" for r in rows):
        verdict, reason = NOT_HELD, f"at least one model misses the band ({listing})."
    elif judged and len(judged) == len(rows):
        verdict, reason = HELD, f"every model agrees within a factor of {fmt(factor)} ({listing})."
    else:
        verdict, reason = INCONCLUSIVE, f"some comparisons are too uncertain ({listing})."
    return NoiseFinding(
        rows=tuple(rows), metric_names=metrics, factor=factor, verdict=verdict, reason=reason
    )
