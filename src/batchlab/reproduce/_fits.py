"""Shared pieces of the findings: verdicts, number formatting, and a study's fit in brief.

Numbers reach ``findings.md`` only through :func:`fmt` and :func:`fmt_ci`, which the
evaluation (its ``reason`` sentences) and the document template both use, so a number
in a sentence and the same number in a table are the same string.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

from ..analysis import (
    BatchSizeAnswer,
    ScalingFit,
    ScalingRegimes,
    interval_ratio,
    summarize_ladder,
)
from ._curves import Curve

logger = logging.getLogger(__name__)

Verdict = Literal["held", "did not hold", "inconclusive"]
HELD: Verdict = "held"
NOT_HELD: Verdict = "did not hold"
INCONCLUSIVE: Verdict = "inconclusive"

#: Bootstrap seed of every fit, so a document regenerated from the same results is identical.
FIT_SEED = 0


def fmt(value: float | int | None, digits: int = 3) -> str:
    """A number for the document: ``digits`` significant digits, integers as integers."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value != 0 and abs(value) >= 10 ** (digits - 1) and float(value).is_integer():
        return f"{int(value):,}"
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}·10^{int(exponent)}"
    return text


def fmt_ci(ci: tuple[float, float] | None, digits: int = 3) -> str:
    """An interval for the document: ``[low, high]``."""
    if ci is None:
        return "—"
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def fmt_signed(value: float | None, digits: int = 3) -> str:
    """A difference with its sign (``+0.012``, ``−0.004``)."""
    if value is None or math.isnan(value):
        return "—"
    return ("+" if value >= 0 else "−") + fmt(abs(value), digits)


@dataclass(frozen=True)
class FitSummary:
    """One study's B_crit as its answer gives it, its fitted hyperbola and its regimes.

    The numbers are read from ``answer``, ``fit`` and ``regimes`` (what
    :func:`batchlab.analysis.summarize_ladder` computed), not copied. B_crit and its
    interval are the answer's, as the study's CLI, report and results.json give
    them: the hyperbola's S_min (1 + B_crit / B), or a bend of free sharpness where
    that fits the rungs better (``b_crit_model``). S_min, E_min and the regimes are
    the hyperbola's.

    Attributes:
        study, workload, optimizer: what was fitted.
        batch_sizes, steps: the whole ladder (``None``: rung never reached the target).
        tol: the regime tolerance.
        fit: the analysis' fit of the hyperbola.
        regimes: the analysis' regimes.
        answer: the analysis' answer (it identifies B_crit: see :func:`summarize_fit`).
        b_crit, b_crit_ci, b_crit_model: the answer's B_crit, its 95% interval, and
            the curve it is read off.
        s_min, s_min_ci, e_min: the hyperbola's (95% bootstrap intervals).
        at_bound: B_crit is not identified (no bend in the data).
        perfect, diminishing, maximal, unreached: rungs by regime.
        ideal_batch_size: largest rung in perfect scaling.
    """

    study: str
    workload: str
    optimizer: str
    batch_sizes: tuple[int, ...]
    steps: tuple[int | None, ...]
    tol: float
    # The fit follows from the ladder and tol (fixed seed): comparing those compares it.
    fit: ScalingFit = field(repr=False, compare=False)
    regimes: ScalingRegimes = field(repr=False, compare=False)
    answer: BatchSizeAnswer = field(repr=False, compare=False)

    @property
    def b_crit(self) -> float:
        return self.answer.b_crit if self.answer.b_crit is not None else self.fit.b_crit

    @property
    def b_crit_ci(self) -> tuple[float, float]:
        ci = self.answer.b_crit_ci
        return ci if ci is not None else self.fit.b_crit_ci

    @property
    def b_crit_model(self) -> str:
        """``"hyperbola"`` or ``"free bend"``: the curve B_crit is read off."""
        return self.answer.b_crit_model

    def predict_steps(self, batch_size: float) -> float:
        """S(B) on the curve B_crit is read off (the free bend's where the answer took it)."""
        knee = self.answer.free_bend
        if knee is not None:
            return knee.predict_steps(batch_size)
        return self.fit.s_min * (1.0 + self.fit.b_crit / batch_size)

    @property
    def s_min(self) -> float:
        return self.fit.s_min

    @property
    def s_min_ci(self) -> tuple[float, float]:
        return self.fit.s_min_ci

    @property
    def e_min(self) -> float:
        return self.fit.e_min

    @property
    def at_bound(self) -> bool:
        return self.fit.at_bound

    @property
    def perfect(self) -> tuple[int, ...]:
        return tuple(int(b) for b in self.regimes.perfect)

    @property
    def diminishing(self) -> tuple[int, ...]:
        return tuple(int(b) for b in self.regimes.diminishing)

    @property
    def maximal(self) -> tuple[int, ...]:
        return tuple(int(b) for b in self.regimes.maximal)

    @property
    def unreached(self) -> tuple[int, ...]:
        return tuple(int(b) for b in self.regimes.unreached)

    @property
    def ideal_batch_size(self) -> int | None:
        ideal = self.regimes.ideal_batch_size
        return None if ideal is None else int(ideal)

    @property
    def regimes_seen(self) -> tuple[str, ...]:
        """The regimes with at least one rung, in order along B."""
        return tuple(
            name
            for name, rungs in (
                ("perfect scaling", self.perfect),
                ("diminishing returns", self.diminishing),
                ("maximal data parallelism", self.maximal),
            )
            if rungs
        )


def summarize_fit(curve: Curve, tol: float = 0.25) -> FitSummary | None:
    """Fit ``curve`` (``None`` with fewer than three reached rungs or a failed fit)."""
    ladder = summarize_ladder(
        curve.batch_sizes,
        curve.steps,
        budgets=curve.budget_steps or None,
        candidates=curve.candidates or None,
        tol=tol,
        seed=FIT_SEED,
    )
    if ladder.fit is None or ladder.regimes is None:
        if ladder.error is not None:
            logger.warning("%s: no fit: %s", curve.name, ladder.error)
        return None
    return FitSummary(
        study=curve.name,
        workload=curve.workload,
        optimizer=curve.optimizer,
        batch_sizes=curve.batch_sizes,
        steps=curve.steps,
        tol=tol,
        fit=ladder.fit,
        regimes=ladder.regimes,
        answer=ladder.answer,
    )


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator`` of some quantity of two studies, with its interval."""

    numerator: str
    denominator: str
    value: float
    ci: tuple[float, float]

    @property
    def above_one(self) -> bool:
        return self.ci[0] > 1.0

    @property
    def below_one(self) -> bool:
        return self.ci[1] < 1.0

    def within(self, factor: float) -> bool:
        """The whole interval lies in [1/factor, factor]."""
        return self.ci[0] >= 1.0 / factor and self.ci[1] <= factor

    def outside(self, factor: float) -> bool:
        """The interval misses [1/factor, factor] entirely."""
        return self.ci[0] > factor or self.ci[1] < 1.0 / factor


#: Level of every interval in the findings.
CONFIDENCE = 0.95

#: LR-trend readings that single out one rule.
FOLLOWS = ("linear rule", "square-root rule")

#: A B_simple / B_crit interval wider than this factor (high / low) cannot tell a
#: factor-of-2 agreement from a clear miss: the comparison is "unclear".
WIDE_RATIO = 16.0


def fit_ratio(reference: FitSummary, other: FitSummary, what: str = "b_crit") -> Ratio:
    """``other``'s B_crit (or S_min) over ``reference``'s, with its interval.

    The interval is built from the two studies' own intervals
    (:func:`batchlab.analysis.interval_ratio`), the ones the document prints, so it
    carries everything they do: the seed bootstrap, and for B_crit the free bend's
    fit where the answer took it.
    """
    if what == "b_crit":
        parts = (other.b_crit, other.b_crit_ci, reference.b_crit, reference.b_crit_ci)
    else:
        parts = (other.s_min, other.s_min_ci, reference.s_min, reference.s_min_ci)
    value, ci = interval_ratio(*parts)
    return Ratio(other.study, reference.study, value, ci)
