"""The three scaling regimes of a steps-to-target curve, read two ways.

Shallue et al. 2018 describe S(B) as falling like 1/B (perfect scaling), then more
slowly (diminishing returns), then not at all (maximal data parallelism). batchlab
makes this operational with the fitted S(B) = S_min (1 + B_crit / B) and a tolerance
(DESIGN.md, "Regimes, operationally"), and checks it against a reading of the
measured points alone, so a user sees when the fitted curve and the data disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._checks import AnalysisError, check_ladder, plain, rung
from ._fit import ScalingFit, fit_scaling

#: Order of the regimes along the batch-size axis.
REGIMES = ("perfect", "diminishing", "maximal")

#: Relative slack in the regime comparisons, so that a rung exactly on a bend
#: (e.g. a hand-typed exact curve) is classified the same despite round-off.
_REL_EPS = 1e-9


@dataclass(frozen=True)
class RegimeBoundaries:
    """Where the fitted model's regimes meet.

    Attributes:
        perfect_end: tol·B_crit; perfect scaling for B ≤ this (E(B) ≤ (1+tol)·E_min).
        maximal_start: B_crit/tol; maximal data parallelism for B ≥ this
            (S(B) ≤ (1+tol)·S_min).
    """

    perfect_end: float
    maximal_start: float

    def to_dict(self) -> dict[str, float | None]:
        """JSON-safe form."""
        return {"perfect_end": plain(self.perfect_end), "maximal_start": plain(self.maximal_start)}


@dataclass(frozen=True)
class PairReading:
    """Model-free reading of two consecutive reached rungs (see :func:`scaling_regimes`).

    Attributes:
        lower, upper: the two batch sizes (B_i < B_j).
        batch_ratio: B_j / B_i.
        step_ratio: S(B_i) / S(B_j), the factor by which steps fell.
        slope: log(step_ratio) / log(batch_ratio); 1 is perfect scaling, 0 no gain.
        regime: the regime this slope reads as.
        fitted: the fitted model's regimes of (lower, upper).
        agrees: whether ``regime`` lies between the two fitted regimes (inclusive),
            which it always does on an exact S_min (1 + B_crit / B) curve.
    """

    lower: int | float
    upper: int | float
    batch_ratio: float
    step_ratio: float
    slope: float
    regime: str
    fitted: tuple[str, str]
    agrees: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "lower": self.lower,
            "upper": self.upper,
            "batch_ratio": plain(self.batch_ratio),
            "step_ratio": plain(self.step_ratio),
            "slope": plain(self.slope),
            "regime": self.regime,
            "fitted": list(self.fitted),
            "agrees": bool(self.agrees),
        }


@dataclass(frozen=True)
class ScalingRegimes:
    """Rungs by scaling regime, under the fitted model and from the data alone.

    Attributes:
        perfect: reached rungs with B ≤ tol·B_crit (fitted E(B) ≤ (1+tol)·E_min).
        diminishing: reached rungs between the two bends.
        maximal: reached rungs with B ≥ B_crit/tol (fitted S(B) ≤ (1+tol)·S_min).
        unreached: rungs that never reached the target (not classified).
        ideal_batch_size: largest rung in perfect scaling (``None`` if there is none).
        boundaries: the bends of the fitted model.
        model_free: one :class:`PairReading` per pair of consecutive reached rungs.
        disagreements: rungs of the pairs whose model-free reading contradicts the
            fitted regimes (empty when the model describes the data).
        tol: the tolerance.
        fit: the fit the regimes come from (not repeated in :meth:`to_dict`).
    """

    perfect: list[int | float]
    diminishing: list[int | float]
    maximal: list[int | float]
    unreached: list[int | float]
    ideal_batch_size: int | float | None
    boundaries: RegimeBoundaries
    model_free: list[PairReading]
    disagreements: list[int | float]
    tol: float
    fit: ScalingFit = field(repr=False)

    def regime_of(self, batch_size: float) -> str | None:
        """The fitted regime of a rung (``None`` for an unreached or unknown rung)."""
        for name in REGIMES:
            if batch_size in getattr(self, name):
                return name
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the fit has its own ``to_dict``)."""
        return {
            "tol": float(self.tol),
            "perfect": list(self.perfect),
            "diminishing": list(self.diminishing),
            "maximal": list(self.maximal),
            "unreached": list(self.unreached),
            "ideal_batch_size": self.ideal_batch_size,
            "boundaries": self.boundaries.to_dict(),
            "model_free": [reading.to_dict() for reading in self.model_free],
            "disagreements": list(self.disagreements),
        }


def check_tol(tol: Any) -> float:
    """A regime tolerance in (0, 1)."""
    if isinstance(tol, bool) or not isinstance(tol, int | float | np.floating):
        raise AnalysisError(f"tol must be a number in (0, 1), got {tol!r}")
    if not 0 < tol < 1:
        raise AnalysisError(
            f"tol must be in (0, 1), got {tol!r}: tol <= 0 leaves no rung in perfect scaling "
            "or maximal data parallelism, and tol >= 1 makes the two overlap "
            "(tol·B_crit >= B_crit/tol)"
        )
    return float(tol)


def slope_regime(slope: float, tol: float) -> str:
    """The regime a local log-log slope |d log S / d log B| reads as.

    Under S = S_min (1 + B_crit/B) the slope is B_crit/(B + B_crit): 1/(1+tol) at the
    end of perfect scaling (B = tol·B_crit) and tol/(1+tol) at the start of maximal
    data parallelism (B = B_crit/tol).
    """
    if slope >= (1.0 - _REL_EPS) / (1.0 + tol):
        return "perfect"
    if slope <= (1.0 + _REL_EPS) * tol / (1.0 + tol):
        return "maximal"
    return "diminishing"


def scaling_regimes(
    batch_sizes: Sequence[float],
    steps: Sequence[float | None],
    tol: float = 0.25,
    *,
    fit: ScalingFit | None = None,
) -> ScalingRegimes:
    """Classify the rungs of a ladder into the three scaling regimes.

    **Fitted model.** With S_min, B_crit and E_min = S_min·B_crit from
    :func:`fit_scaling`, a reached rung is in *perfect scaling* if the fitted
    E(B) ≤ (1+tol)·E_min, i.e. B ≤ tol·B_crit; in *maximal data parallelism* if the
    fitted S(B) ≤ (1+tol)·S_min, i.e. B ≥ B_crit/tol; in *diminishing returns*
    otherwise. Rungs that never reached the target are listed in ``unreached``.

    **Model-free reading.** Each pair of consecutive reached rungs B_i < B_j (an
    unreached rung between them is skipped) has a secant slope
    σ = log(S_i/S_j) / log(B_j/B_i): steps fell by the factor S_i/S_j = (B_j/B_i)^σ.
    The pair reads as *perfect* if σ ≥ 1/(1+tol), *maximal* if σ ≤ tol/(1+tol), and
    *diminishing* otherwise. These thresholds are the fitted model's own slope at
    its bends, so for a doubling (B_j/B_i = 2, tol = 0.25) steps must fall by at
    least 2^0.8 ≈ 1.74 to read as perfect (close to 2/(1+tol) = 1.6) and by at most
    2^0.2 ≈ 1.15 to read as maximal (close to 1+tol = 1.25). Because the model's
    slope B_crit/(B + B_crit) decreases with B, on an exact model curve every
    secant slope lies between the slopes at its two ends, so the pair's reading
    lies between the fitted regimes of its two rungs (perfect < diminishing <
    maximal), for any spacing of the ladder. A pair whose reading falls outside
    that range contradicts the fitted model; its rungs are listed in
    ``disagreements``. With noisy data an isolated disagreement next to a bend can
    be noise; one far from the bends, or several, mean the curve does not have the
    fitted shape (check ``fit.residuals``).

    References:
        Shallue et al. 2018, "Measuring the Effects of Data Parallelism on Neural
        Network Training", JMLR 20(112), Sec. 4 (the three regimes); McCandlish et
        al. 2018, "An Empirical Model of Large-Batch Training", eq. 2.11.

    Args:
        batch_sizes: batch size per rung, positive and strictly increasing.
        steps: steps-to-target per rung (``None``/``nan``/``inf``: never reached).
        tol: tolerance in (0, 1); default 0.25 puts the bends at B_crit/4 and 4·B_crit.
        fit: a fit of the same ladder, to avoid fitting again (by default
            :func:`fit_scaling` with its defaults).

    Returns:
        A :class:`ScalingRegimes`.

    Raises:
        AnalysisError (a ValueError): the checks of :func:`fit_scaling`, a ``tol``
            outside (0, 1), or a ``fit`` of other rungs.
        TypeError: ``fit`` is not a :class:`ScalingFit`.
    """
    tol = check_tol(tol)
    ladder = check_ladder(batch_sizes, steps)
    if fit is None:
        fit = fit_scaling(batch_sizes, steps)
    elif not isinstance(fit, ScalingFit):
        raise TypeError(f"fit must be a ScalingFit (from fit_scaling), got {type(fit).__name__}")
    sizes = ladder.batch_sizes[ladder.reached]
    if tuple(rung(b) for b in sizes) != tuple(fit.batch_sizes):
        raise AnalysisError(
            f"fit was made on rungs {list(fit.batch_sizes)}, but the reached rungs here are "
            f"{[rung(b) for b in sizes]}"
        )
    counts = ladder.steps[ladder.reached]
    boundaries = RegimeBoundaries(perfect_end=tol * fit.b_crit, maximal_start=fit.b_crit / tol)

    labels = [_fitted_regime(b, boundaries) for b in sizes]
    groups: dict[str, list[int | float]] = {name: [] for name in REGIMES}
    for b, label in zip(sizes, labels, strict=True):
        groups[label].append(rung(b))

    readings = []
    flagged: set[int | float] = set()
    for i in range(sizes.size - 1):
        batch_ratio = float(sizes[i + 1] / sizes[i])
        step_ratio = float(counts[i] / counts[i + 1])
        slope = math.log(step_ratio) / math.log(batch_ratio)
        regime = slope_regime(slope, tol)
        order = REGIMES.index(regime)
        agrees = REGIMES.index(labels[i]) <= order <= REGIMES.index(labels[i + 1])
        if not agrees:
            flagged.update((rung(sizes[i]), rung(sizes[i + 1])))
        readings.append(
            PairReading(
                lower=rung(sizes[i]),
                upper=rung(sizes[i + 1]),
                batch_ratio=batch_ratio,
                step_ratio=step_ratio,
                slope=slope,
                regime=regime,
                fitted=(labels[i], labels[i + 1]),
                agrees=agrees,
            )
        )

    perfect = groups["perfect"]
    return ScalingRegimes(
        perfect=perfect,
        diminishing=groups["diminishing"],
        maximal=groups["maximal"],
        unreached=[rung(b) for b in ladder.batch_sizes[~ladder.reached]],
        ideal_batch_size=perfect[-1] if perfect else None,
        boundaries=boundaries,
        model_free=readings,
        disagreements=sorted(flagged),
        tol=tol,
        fit=fit,
    )


def _fitted_regime(batch_size: float, boundaries: RegimeBoundaries) -> str:
    if batch_size <= boundaries.perfect_end * (1.0 + _REL_EPS):
        return "perfect"
    if batch_size >= boundaries.maximal_start * (1.0 - _REL_EPS):
        return "maximal"
    return "diminishing"
