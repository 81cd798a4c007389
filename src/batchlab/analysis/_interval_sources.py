"""Why B_crit's interval is as wide as it is, and what would narrow it.

The fit's interval (:func:`summarize_ladder`) is the union of two: the residual
bootstrap's (:func:`fit_scaling`: how far the rungs scatter about the fitted
S(B) = S_min (1 + B_crit / B), McCandlish et al. 2018 eq. 2.11) and the seed
bootstrap's (:func:`seed_bootstrap`: how far fresh seeds move each rung's count). They
call for different remedies, so the answer says which one sets the width:

* **fresh seeds**: more confirmation seeds per candidate narrow it;
* **the scatter about the curve, within the rungs' own intervals**: the scatter is
  measurement noise, and more seeds (or more rungs) narrow it;
* **the scatter about the curve, beyond the rungs' own intervals**: more rungs'
  intervals (fresh seeds, resolution and search floor, :func:`rung_steps_interval`)
  exclude the fitted curve than their coverage explains. The measured S(B) then bends
  unlike the model (e.g. more sharply), the width is the model's misfit, and more seeds
  will not narrow it: B_crit is the best such curve's, and its interval says how little
  the ladder pins it down. The test is binomial: each rung's interval misses the truth
  with probability :data:`RUNG_MISS_RATE` (benchmarks/calibration.py measures the
  per-rung coverage at 91% on the NQM and on linreg), independently across rungs.
  Where an off-curve rung's interval holds no search term (no search floor), a search
  that missed its optimum explains the miss as well, and the sentence says so.

With five reached rungs or more, :func:`summarize_ladder` also fits a bend of free
sharpness, S_min (1 + (B_crit / B)^α)^(1/α) (:func:`fit_knee`: the same asymptotes,
the same B_crit = E_min / S_min). When α's interval excludes 1 (the rungs' scatter
rejects the hyperbola's bend, whether or not the binomial test above does: it is the
more powerful test where the rungs' own intervals are wide) and that curve moves B_crit
by 10% or more (:data:`batchlab.analysis._knee.MATERIAL_FACTOR`), a second sentence
(:attr:`IntervalSources.knee_sentence`) gives its B_crit and interval, which the answer
then gives (``BatchSizeAnswer.b_crit_model`` ``"free bend"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

from ._checks import AnalysisError, check_batch_sizes, check_per_rung, plain_pair, rung
from ._fit import ScalingFit
from ._knee import SHARPNESS_RANGE, KneeFit

#: How often a rung's own interval misses its true count (1 − the per-rung coverage
#: measured by benchmarks/calibration.py: 219/240 on the NQM, 218/240 on linreg).
RUNG_MISS_RATE = 0.1

#: Level of the binomial test "more rungs off the curve than their intervals explain".
SHAPE_TEST_LEVEL = 0.05

SOURCES = ("residuals", "seeds")

#: A rung that needs more steps than a smaller one (:func:`rising_rungs`):
#: (B, the smaller B, B's interval of steps, the smaller rung's interval).
Rise = tuple[int | float, int | float, tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class IntervalSources:
    """Where the B_crit interval's width comes from.

    Attributes:
        residuals_ci: B_crit's interval from the rungs' scatter about the curve alone.
        seeds_ci: B_crit's interval from fresh seeds alone (``None``: no confirmation).
        widest: ``"residuals"`` or ``"seeds"``: the wider of the two in log units.
        off_curve: the rungs whose own interval excludes the fitted curve.
        rungs_checked: the reached rungs that have an interval.
        p_value: the binomial probability of at least ``len(off_curve)`` of
            ``rungs_checked`` intervals missing by chance (:data:`RUNG_MISS_RATE`).
        unbounded_search: the rungs of ``off_curve`` whose interval holds no search
            term (no search floor: the best point is not bracketed along the LR alone,
            e.g. in a two-dimensional space), where a search that missed the optimum
            explains the miss as well as the curve's shape.
        knee: the fit of a bend of free sharpness (:func:`fit_knee`), given when the
            rungs bend unlike S_min (1 + B_crit / B) (α's interval excludes 1) and its
            B_crit differs by 10% or more; ``None`` otherwise.
        rising: per rung that needs more steps than a smaller one beyond both rungs'
            own intervals, ``(B, smaller B, its interval, the smaller's interval)``
            (the smaller rung with the lowest upper end). No curve fitted here rises
            with B, so such a rung's search most likely missed its optimum.
        left_out: per rung the fit left out, ``(B, why)``: it rose above a smaller rung
            even at that rung's own chosen point
            (:func:`batchlab.results.rising_after_recheck`).
    """

    residuals_ci: tuple[float, float]
    seeds_ci: tuple[float, float] | None
    widest: str
    off_curve: tuple[int | float, ...]
    rungs_checked: int
    p_value: float
    unbounded_search: tuple[int | float, ...] = ()
    knee: KneeFit | None = None
    rising: tuple[Rise, ...] = ()
    left_out: tuple[tuple[int | float, str], ...] = ()

    @property
    def shape_limited(self) -> bool:
        """The scatter sets the width and exceeds what the rungs' own intervals allow."""
        return self.widest == "residuals" and self.p_value < SHAPE_TEST_LEVEL

    @property
    def sentence(self) -> str:
        """What sets B_crit's interval and what would narrow it, for the CLI and report;
        then, for each rising rung, that its search likely missed its optimum; then why
        each rung the fit left out is left out."""
        return " ".join(
            [
                self._width_sentence(),
                *(_rise_sentence(r) for r in self.rising),
                *(why for _, why in self.left_out),
            ]
        )

    def _width_sentence(self) -> str:
        scatter = f"the rungs' scatter about the fitted curve ({_span(self.residuals_ci)})"
        seeds = None if self.seeds_ci is None else f"fresh seeds ({_span(self.seeds_ci)})"
        off = len(self.off_curve)
        subject = "The hyperbola's B_crit interval" if self.knee else "B_crit's interval"
        if self.widest == "seeds":
            assert seeds is not None
            return (
                f"{subject} is set by {seeds}, more than by {scatter}: more "
                "confirmation seeds per candidate ([search] confirm_seeds) narrow it."
            )
        head = f"{subject} is set by {scatter}" + (f", more than by {seeds}" if seeds else "")
        if self.shape_limited:
            sizes = ", ".join(f"{b:g}" for b in self.off_curve)
            found = (
                f"{head}. {off} of {self.rungs_checked} rungs' own intervals exclude the "
                f"curve (B = {sizes}), more than their ~{1 - RUNG_MISS_RATE:.0%} coverage "
                f"explains (binomial p = {self.p_value:.2g})"
            )
            if not self.unbounded_search:
                return (
                    f"{found}: the measured S(B) bends unlike S_min (1 + B_crit / B), so "
                    "more seeds will not narrow the interval."
                )
            open_ = ", ".join(f"{b:g}" for b in self.unbounded_search)
            return (
                f"{found}: either the measured S(B) bends unlike S_min (1 + B_crit / B) or "
                f"the search missed the optimum at B = {open_}, whose intervals hold no "
                "search term. More seeds will not narrow the interval; more rungs per "
                "doubling ([ladder] per_octave), whose fit averages each rung's search "
                "noise out, do, and more trials per rung ([search] trials_per_rung, "
                "refine, neighbours) would tell which."
            )
        if self.knee is not None:
            return (
                f"{head}; {off} of {self.rungs_checked} rungs' own intervals exclude the "
                "curve, as their coverage allows, but a bend of free sharpness fits the "
                "rungs better than S_min (1 + B_crit / B) does (its α's interval excludes 1)."
            )
        remedy = (
            "more confirmation seeds ([search] confirm_seeds) or more rungs ([ladder] "
            "per_octave) narrow it"
            if seeds
            else "confirming the best candidates on fresh seeds ([search] confirm_top, "
            "confirm_seeds) measures that noise, and more rungs ([ladder] per_octave) "
            "narrow it"
        )
        return (
            f"{head}; {off} of {self.rungs_checked} rungs' own intervals exclude the curve, "
            f"as their coverage allows, so the scatter is measurement noise: {remedy}."
        )

    @property
    def knee_sentence(self) -> str | None:
        """The free-sharpness fit's B_crit, for the CLI and report (``None``: no such fit)."""
        knee = self.knee
        if knee is None:
            return None
        kind = "sharper" if knee.sharpness > 1 else "softer"
        high = knee.sharpness_ci[1]
        top = f"{high:.2g}" + (" or more" if high >= 0.999 * SHARPNESS_RANGE[1] else "")
        return (
            f"A {kind} bend fits the rungs: S_min (1 + (B_crit / B)^α)^(1/α) with α = "
            f"{knee.sharpness:.2g} ({knee.sharpness_ci[0]:.2g} to {top}; α = 1 is "
            "S_min (1 + B_crit / B)) has the same asymptotes and puts B_crit = E_min / S_min, "
            "where they cross, at "
            f"{knee.b_crit:.3g} ({knee.confidence:.0%} interval {knee.b_crit_ci[0]:.3g} to "
            f"{knee.b_crit_ci[1]:.3g}): the answer's B_crit."
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, with the sentence."""
        return {
            "residuals_ci": plain_pair(self.residuals_ci),
            "seeds_ci": plain_pair(self.seeds_ci),
            "widest": self.widest,
            "off_curve": list(self.off_curve),
            "rungs_checked": self.rungs_checked,
            "p_value": float(self.p_value),
            "unbounded_search": list(self.unbounded_search),
            "rising": [
                {
                    "batch_size": b,
                    "smaller": a,
                    "steps_ci": plain_pair(ci),
                    "smaller_steps_ci": plain_pair(ca),
                }
                for b, a, ci, ca in self.rising
            ],
            "left_out": [{"batch_size": b, "reason": why} for b, why in self.left_out],
            "shape_limited": self.shape_limited,
            "knee": None if self.knee is None else self.knee.to_dict(),
            "sentence": self.sentence,
            "knee_sentence": self.knee_sentence,
        }


def explain_interval(
    fit: ScalingFit,
    residuals_ci: tuple[float, float],
    seeds_ci: tuple[float, float] | None,
    batch_sizes: Sequence[float],
    steps_cis: Sequence[tuple[float, float] | None],
    search_bounded: Sequence[bool] | None = None,
) -> IntervalSources:
    """Which source sets B_crit's interval, and whether the curve fits the rungs.

    Args:
        fit: the ladder's fit (its point estimates give the curve S_min (1 + B_crit / B)).
        residuals_ci: B_crit's interval from the residual bootstrap alone.
        seeds_ci: B_crit's interval from the seed bootstrap alone, or ``None``.
        batch_sizes: the rungs.
        steps_cis: per rung, its own interval of steps-to-target
            (``RungCost.steps_ci``; ``None`` for an unreached rung or one without an
            interval, which is not checked; ``high`` may be ``inf``).
        search_bounded: per rung, whether its interval reaches down to a search floor
            (:func:`batchlab.results.search_floor`); ``None``: every one does.

    Returns:
        An :class:`IntervalSources`.

    Raises:
        AnalysisError: mismatched lengths, or an interval that is not (low, high)
            with 0 < low <= high.
    """
    sizes = check_batch_sizes(batch_sizes)
    check_per_rung(steps_cis, "steps_cis", sizes, "intervals (low, high) or None")
    if search_bounded is not None:
        check_per_rung(search_bounded, "search_bounded", sizes, "booleans")
    bounded = [True] * len(batch_sizes) if search_bounded is None else list(search_bounded)
    widths = {"residuals": _log_width(residuals_ci, "residuals_ci")}
    if seeds_ci is not None:
        widths["seeds"] = _log_width(seeds_ci, "seeds_ci")
    widest = max(SOURCES, key=lambda s: widths.get(s, -math.inf))
    off_curve, unbounded, checked = [], [], 0
    for b, ci, has_floor in zip(sizes, steps_cis, bounded, strict=True):
        if ci is None:
            continue
        _log_width(ci, f"steps_cis at B = {b:g}")
        checked += 1
        predicted = fit.s_min * (1.0 + fit.b_crit / b)
        if not ci[0] <= predicted <= ci[1]:
            off_curve.append(rung(b))
            if not has_floor:
                unbounded.append(rung(b))
    p_value = float(stats.binom.sf(len(off_curve) - 1, checked, RUNG_MISS_RATE))
    return IntervalSources(
        rising=rising_rungs(sizes, steps_cis),
        residuals_ci=(float(residuals_ci[0]), float(residuals_ci[1])),
        seeds_ci=None if seeds_ci is None else (float(seeds_ci[0]), float(seeds_ci[1])),
        widest=widest,
        off_curve=tuple(off_curve),
        rungs_checked=checked,
        p_value=p_value,
        unbounded_search=tuple(unbounded),
    )


def rising_rungs(
    batch_sizes: Sequence[float], steps_cis: Sequence[tuple[float, float] | None]
) -> tuple[Rise, ...]:
    """The rungs that need more steps than a smaller rung beyond both rungs' intervals.

    S(B) does not rise with B on any curve fitted here (McCandlish et al. 2018,
    eq. 2.11, and the free bend, :func:`fit_knee`): at its best settings a larger batch
    needs no more steps. A rung whose interval lies wholly above a smaller rung's is
    therefore most likely one whose search missed its optimum. Each such rung is
    paired with the smaller rung whose interval ends lowest.

    Args:
        batch_sizes: the rungs, increasing.
        steps_cis: per rung, its interval of steps-to-target (``None``: not checked).

    Returns:
        ``(B, smaller B, its interval, the smaller's interval)`` per rising rung.
    """
    rises: list[Rise] = []
    lowest: tuple[float, tuple[float, float]] | None = None  # (B, interval) ending lowest
    for b, ci in zip(batch_sizes, steps_cis, strict=True):
        if ci is None:
            continue
        interval = (float(ci[0]), float(ci[1]))
        if lowest is not None and interval[0] > lowest[1][1]:
            rises.append((rung(b), rung(lowest[0]), interval, lowest[1]))
        if lowest is None or interval[1] < lowest[1][1]:
            lowest = (b, interval)
    return tuple(rises)


def _rise_sentence(rise: Rise) -> str:
    b, smaller, (low, high), (s_low, s_high) = rise
    return (
        f"B = {b:g} needs more steps than B = {smaller:g}, beyond both rungs' intervals "
        f"({low:.3g} to {_end(high)} against {s_low:.3g} to {_end(s_high)}); a larger batch "
        "at its best settings needs no more steps, so its search most likely missed its "
        "optimum; more trials there ([search] recheck, trials_per_rung, refine, neighbours) would "
        "show whether."
    )


def _end(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.3g}"


def _log_width(ci: tuple[float, float], name: str) -> float:
    try:
        low, high = float(ci[0]), float(ci[1])
    except (TypeError, ValueError, IndexError):
        raise AnalysisError(f"{name} must be an interval (low, high), got {ci!r}") from None
    if not 0 < low <= high:
        raise AnalysisError(f"{name} must satisfy 0 < low <= high, got ({low:g}, {high:g})")
    return math.log(high / low)


def _span(ci: tuple[float, float]) -> str:
    if ci[0] == ci[1]:
        return f"which leave it at {ci[0]:.3g}"
    return f"alone {ci[0]:.3g} to {ci[1]:.3g}"
