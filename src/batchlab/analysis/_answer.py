"""The answer a user acts on: which batch size, at what cost, and what learning rate.

"Ideal batch size" (the largest rung inside perfect scaling) is a regime boundary,
not a recommendation. What a practitioner asks is: where is the knee, how much does
each batch size cost in steps and in examples, which batch is the largest that wastes
little data, which is the smallest that is nearly as fast as any, and what learning
rate to use at the batch size they have in mind. This module answers those from a
ladder of steps-to-target and its fit, and says in one sentence why when the ladder
cannot answer (and what to run next).

References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
    Training", arXiv:1812.06162, eq. 2.11: (S/S_min − 1)(E/E_min − 1) = 1, so at
    B = B_crit a run takes 2·S_min steps and 2·E_min examples (the knee).
    Zhang, Nado, ..., Kakade et al. 2024/2025, "How Does Critical Batch Size Scale in
    Pre-training?", arXiv:2410.21676, Sec. 2: the critical batch size as the largest
    batch whose cost exceeds the best by at most a fixed overhead (20%).

B_crit is E_min / S_min, where the two asymptotes of S(B) cross (McCandlish et al.'s
definition). It is read off the hyperbola S_min (1 + B_crit / B), unless the rungs
reject that bend: then off a bend of free sharpness with the same asymptotes
(:func:`batchlab.analysis.fit_knee`; ``BatchSizeAnswer.b_crit_model`` says which).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._checks import (
    MIN_FIT_POINTS,
    AnalysisError,
    check_ladder,
    check_positive,
    plain,
    plain_pair,
    rung,
)
from ._fit import ScalingFit
from ._interval_sources import IntervalSources
from ._knee import KneeFit

#: Default overhead of Zhang et al.'s critical-batch definition (20% more than the best).
DEFAULT_OVERHEAD = 0.2

#: Where the answer's B_crit comes from: the hyperbola S_min (1 + B_crit / B)
#: (:func:`fit_scaling`), or a bend of free sharpness (:func:`fit_knee`) where the
#: rungs reject the hyperbola's.
B_CRIT_MODELS = ("hyperbola", "free bend")


@dataclass(frozen=True)
class RungCost:
    """One rung's cost relative to the fitted ideal.

    Attributes:
        batch_size: B.
        steps: measured steps-to-target (``None``: never reached).
        examples: B · steps (``None``: never reached).
        steps_ratio: steps / S_min (the fit's fewest steps), 1 = as fast as any batch.
        examples_ratio: examples / E_min (the fit's fewest examples), 1 = no data wasted.
        lr: the rung's tuned learning rate, when known.
        steps_ci: an interval of the rung's steps-to-target (:func:`rung_steps_interval`):
            what fresh seeds would give, and where between two evaluations the
            target was crossed; ``high`` is ``inf`` when fresh seeds may not reach it.
        steps_ratio_ci, examples_ratio_ci: intervals of the two ratios: ``steps_ci``
            (times B) over the fit's S_min (E_min) interval, by interval arithmetic
            (conservative: a rung's count and S_min move together).
    """

    batch_size: int | float
    steps: float | None
    examples: float | None
    steps_ratio: float | None
    examples_ratio: float | None
    lr: float | None = None
    steps_ci: tuple[float, float] | None = None
    steps_ratio_ci: tuple[float, float] | None = None
    examples_ratio_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (an ``inf`` bound is ``None``)."""
        return {
            "batch_size": self.batch_size,
            "steps": plain(self.steps),
            "examples": plain(self.examples),
            "steps_ratio": plain(self.steps_ratio),
            "examples_ratio": plain(self.examples_ratio),
            "lr": plain(self.lr),
            "steps_ci": plain_pair(self.steps_ci),
            "steps_ratio_ci": plain_pair(self.steps_ratio_ci),
            "examples_ratio_ci": plain_pair(self.examples_ratio_ci),
        }


def rung_steps_interval(
    steps: float,
    seeds_ci: tuple[float, float] | None,
    resolution: float | None,
    floor: float | None = None,
) -> tuple[float, float]:
    """An interval of one rung's steps-to-target, from its three sources of error.

    Fresh seeds: ``seeds_ci``, the seed bootstrap's interval of the rung's count
    (:class:`SeedBootstrap`; ``None`` for a rung measured on one seed). Evaluation:
    the target was crossed after the evaluated step before the count, so the exact
    crossing lies in ``(steps − resolution, steps]`` (Shallue et al. 2018 count the
    first evaluated step past the target, which always rounds up). Search: the best
    of the sampled learning rates is never better than the best of the range, whose
    count lies above ``floor`` (``RungResult``'s search floor,
    :func:`batchlab.analysis.search_gap`; ``None``: unknown).
    """
    low, high = seeds_ci if seeds_ci is not None else (steps, steps)
    low, high = min(low, steps), max(high, steps)
    if resolution:
        low = max(low - resolution, 1.0)
    if floor is not None:
        low = max(min(low, floor), 1.0)
    return float(low), float(high)


@dataclass(frozen=True)
class BatchSizeAnswer:
    """What to train with, read off a study's ladder and its fit.

    Attributes:
        b_crit, b_crit_ci: E_min / S_min, where the asymptotes cross, and its interval;
            ``None`` when the fit does not identify it. On the hyperbola it is the knee
            (2·S_min steps at 2·E_min examples).
        b_crit_model: which curve gives ``b_crit`` (:data:`B_CRIT_MODELS`):
            ``"hyperbola"``, or ``"free bend"`` where a bend of free sharpness fits
            the rungs with α's interval excluding 1 and moves B_crit by 10% or more
            (``interval_sources.knee``; :func:`summarize_ladder`).
        largest_efficient: the largest rung whose examples-to-target are at most
            ``(1 + overhead)`` times the fewest any rung needed (Zhang et al.'s
            critical batch size, measured on the ladder); ``None`` if none.
        smallest_fast: the smallest rung whose steps-to-target are at most
            ``(1 + overhead)`` times the fewest any rung needed; ``None`` if none.
        overhead: the tolerance of the two rules above (0.2 = 20%).
        rungs: the cost of every rung (reached or not).
        reason: when the ladder cannot place the knee, one sentence on why and what
            to run next; ``None`` when it can.
        interval_sources: what sets B_crit's interval and what would narrow it
            (:func:`explain_interval`; set by :func:`summarize_ladder`, ``None`` without
            an identified B_crit).
    """

    b_crit: float | None
    b_crit_ci: tuple[float, float] | None
    largest_efficient: int | float | None
    smallest_fast: int | float | None
    overhead: float
    rungs: tuple[RungCost, ...] = field(default=())
    reason: str | None = None
    interval_sources: IntervalSources | None = None
    b_crit_model: str = "hyperbola"

    def __post_init__(self) -> None:
        if self.b_crit_model not in B_CRIT_MODELS:
            raise AnalysisError(
                f"b_crit_model must be one of {B_CRIT_MODELS}, got {self.b_crit_model!r}"
            )

    @property
    def free_bend(self) -> KneeFit | None:
        """The fit ``b_crit`` comes from when it is the free bend's (``None``: the hyperbola's)."""
        if self.b_crit_model != "free bend" or self.interval_sources is None:
            return None
        return self.interval_sources.knee

    @property
    def headline(self) -> str:
        """One line for the end of a CLI run or the top of a report."""
        parts = []
        if self.b_crit is not None and self.b_crit_ci is not None:
            low, high = self.b_crit_ci
            knee = self.free_bend
            model = "" if knee is None else f"; a free bend, α = {knee.sharpness:.2g}"
            parts.append(
                f"B_crit = {self.b_crit:.3g} (95% interval {low:.3g} to {high:.3g}{model})"
            )
        percent = f"{self.overhead:.0%}"
        if self.largest_efficient is not None:
            parts.append(
                f"largest batch within {percent} of the fewest examples: {self.largest_efficient}"
            )
        if self.smallest_fast is not None:
            parts.append(
                f"smallest batch within {percent} of the fewest steps: {self.smallest_fast}"
            )
        text = "; ".join(parts)
        if self.reason:
            text = f"{text}. {self.reason}" if text else self.reason
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "b_crit": plain(self.b_crit),
            "b_crit_ci": None
            if self.b_crit_ci is None
            else [plain(self.b_crit_ci[0]), plain(self.b_crit_ci[1])],
            "b_crit_model": self.b_crit_model,
            "largest_efficient": self.largest_efficient,
            "smallest_fast": self.smallest_fast,
            "overhead": float(self.overhead),
            "rungs": [r.to_dict() for r in self.rungs],
            "reason": self.reason,
            "headline": self.headline,
            "interval_sources": (
                None if self.interval_sources is None else self.interval_sources.to_dict()
            ),
        }


def _quotient(
    numerator: tuple[float, float], denominator: tuple[float, float]
) -> tuple[float, float]:
    """The interval of x / y for x and y in two positive intervals (``inf``: y may be 0)."""
    low = numerator[0] / denominator[1] if denominator[1] > 0 else math.inf
    high = numerator[1] / denominator[0] if denominator[0] > 0 else math.inf
    return low, high


def _pow2_below(value: float) -> int:
    return 2 ** max(0, math.floor(math.log2(value)))


def _why_no_knee(sizes: np.ndarray, reached: np.ndarray, fit: ScalingFit | None) -> str | None:
    """Why the ladder does not place B_crit, and which rungs to add (``None``: it does)."""
    first, last = float(sizes[0]), float(sizes[-1])
    if fit is None:
        count = int(reached.sum())
        if count >= MIN_FIT_POINTS:
            return (
                f"The fit of S(B) failed on the {count} rungs that reached the target, so "
                "B_crit is not placed; the report shows the measured curve."
            )
        return (
            f"Only {count} rung(s) reached the target, and the fit of S(B) needs "
            f"{MIN_FIT_POINTS}: raise the step budget or lower the target, then resume the study."
        )
    if fit.at_bound and fit.b_crit >= last:
        return (
            f"Every rung is still in perfect scaling (steps fall as 1/B up to B = {rung(last)}): "
            f"B_crit lies above the ladder; add rungs {rung(2 * last)} and {rung(4 * last)}."
        )
    if fit.at_bound:
        return (
            f"Every rung is already past the knee (steps no longer fall from B = {rung(first)} "
            f"on): B_crit lies below the ladder; add rungs {_pow2_below(first / 4)} and "
            f"{_pow2_below(first / 2)}."
        )
    low, high = fit.b_crit_ci
    if high > 4 * last:
        return (
            f"The interval of B_crit reaches past 4x the largest rung ({rung(last)}): add rungs "
            f"{rung(2 * last)} and {rung(4 * last)} to pin down where steps stop falling."
        )
    if low < first / 4:
        return (
            f"The interval of B_crit reaches below a quarter of the smallest rung "
            f"({rung(first)}): add rungs {_pow2_below(first / 4)} and {_pow2_below(first / 2)} "
            "to pin down where perfect scaling ends."
        )
    return None


@dataclass(frozen=True)
class LearningRateAt:
    """The tuned learning rate interpolated at a batch size between two tuned rungs.

    Attributes:
        batch_size: where it is wanted.
        lr: log-log linear interpolation between the neighbouring tuned rungs
            (exactly the rung's LR on a rung).
        bracket: (low, high) of the neighbouring rungs' tuned LRs: the interpolation
            cannot be trusted beyond what those two tuning runs found.
        neighbours: the two rungs interpolated between (the same rung twice on a rung).
    """

    batch_size: float
    lr: float
    bracket: tuple[float, float]
    neighbours: tuple[int | float, int | float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "batch_size": rung(self.batch_size),
            "lr": plain(self.lr),
            "bracket": [plain(self.bracket[0]), plain(self.bracket[1])],
            "neighbours": list(self.neighbours),
        }


def lr_at(
    batch_sizes: Sequence[float], lrs: Sequence[float | None], batch_size: float
) -> LearningRateAt:
    """The learning rate to use at ``batch_size``, from the LRs tuned at the rungs.

    Interpolates log LR linearly in log B between the two tuned rungs around
    ``batch_size``. It does not extrapolate: beyond the ladder, the tuned LR stops
    following any power law (Shallue et al. 2018, Sec. 4.7; Li et al. 2024 find it
    even falls past a peak under Adam), so a batch size outside the tuned rungs is an
    error that says which rung to add.

    Args:
        batch_sizes: the ladder, strictly increasing.
        lrs: tuned LR per rung (``None`` where the rung has none, e.g. never reached).
        batch_size: where the LR is wanted.

    Raises:
        AnalysisError (a ValueError): no tuned rungs on both sides of ``batch_size``.
    """
    size = check_positive(batch_size, "batch_size")
    if len(lrs) != len(batch_sizes):
        raise AnalysisError(
            f"lrs must have one entry per rung ({len(batch_sizes)}), got {len(lrs)}"
        )
    tuned = [
        (float(b), float(lr))
        for b, lr in zip(batch_sizes, lrs, strict=True)
        if lr is not None and math.isfinite(lr) and lr > 0
    ]
    if not tuned:
        raise AnalysisError("lrs: no rung has a tuned learning rate")
    below = [(b, lr) for b, lr in tuned if b <= size]
    above = [(b, lr) for b, lr in tuned if b >= size]
    if not below or not above:
        edge = tuned[0][0] if not below else tuned[-1][0]
        side = "below the smallest" if not below else "above the largest"
        raise AnalysisError(
            f"batch_size {rung(size)} is {side} tuned rung ({rung(edge)}): the tuned learning "
            f"rate is not extrapolated; add a rung at {rung(size)} and tune it"
        )
    (b0, lr0), (b1, lr1) = below[-1], above[0]
    if b0 == b1:
        lr = lr0
    else:
        weight = (math.log(size) - math.log(b0)) / (math.log(b1) - math.log(b0))
        lr = math.exp((1 - weight) * math.log(lr0) + weight * math.log(lr1))
    return LearningRateAt(
        batch_size=size,
        lr=lr,
        bracket=(min(lr0, lr1), max(lr0, lr1)),
        neighbours=(rung(b0), rung(b1)),
    )


def batch_size_answer(
    batch_sizes: Sequence[float],
    steps: Sequence[float | None],
    fit: ScalingFit | None,
    *,
    lrs: Sequence[float | None] | None = None,
    overhead: float = DEFAULT_OVERHEAD,
    seeds_ci: Sequence[tuple[float, float] | None] | None = None,
    resolutions: Sequence[float | None] | None = None,
    floors: Sequence[float | None] | None = None,
) -> BatchSizeAnswer:
    """The batch sizes to train with, from a ladder of steps-to-target and its fit.

    Costs are relative to the fit's S_min and E_min (McCandlish et al. 2018, eq. 2.11),
    so a rung at the knee B_crit shows ratios of 2 and 2. The two ladder rules compare
    measured rungs with each other, not with the fit: ``largest_efficient`` is the
    largest rung with B·S(B) ≤ (1 + overhead)·min_B' B'·S(B') (Zhang et al.'s critical
    batch size), ``smallest_fast`` the smallest with S(B) ≤ (1 + overhead)·min_B' S(B').

    Args:
        batch_sizes: the ladder, strictly increasing.
        steps: steps-to-target per rung (``None``/nan/inf: never reached).
        fit: the ladder's :func:`fit_scaling` (``None`` when it could not be fitted).
        lrs: the tuned learning rate per rung, when known (shown in the table).
        overhead: the tolerance of the two ladder rules (default 0.2 = 20%).
        seeds_ci: per rung, the seed bootstrap's interval of its count
            (:attr:`SeedBootstrap.rung_steps_ci`; ``None`` where not resampled).
        resolutions: per rung, how finely its count is resolved in steps
            (``RungResult.resolution_steps``; ``None``: exact or unknown).
        floors: per rung, a lower bound on the fewest steps any point of its searched
            range takes (:func:`batchlab.results.search_floor`; ``None``: unknown).

    Returns:
        A :class:`BatchSizeAnswer`; its ``reason`` says why and what to run next when
        the ladder cannot place the knee.

    Raises:
        AnalysisError (a ValueError): bad ladder, mismatched ``lrs`` or bad ``overhead``.
    """
    ladder = check_ladder(batch_sizes, steps, min_reached=0)
    overhead = check_positive(overhead, "overhead")
    checked = {"lrs": lrs, "seeds_ci": seeds_ci, "resolutions": resolutions, "floors": floors}
    for name, values in checked.items():
        if values is not None and len(values) != ladder.batch_sizes.size:
            raise AnalysisError(
                f"{name} must have one entry per rung ({ladder.batch_sizes.size}), "
                f"got {len(values)}"
            )
    sizes, counts, reached = ladder.batch_sizes, ladder.steps, ladder.reached
    examples = sizes * counts
    rows = []
    for i, size in enumerate(sizes):
        done = bool(reached[i])
        steps_ci = ratio_ci = examples_ci = None
        if done:
            steps_ci = rung_steps_interval(
                float(counts[i]),
                None if seeds_ci is None else seeds_ci[i],
                None if resolutions is None else resolutions[i],
                None if floors is None else floors[i],
            )
        if steps_ci is not None and fit is not None:
            ratio_ci = _quotient(steps_ci, fit.s_min_ci)
            examples_ci = _quotient((size * steps_ci[0], size * steps_ci[1]), fit.e_min_ci)
        rows.append(
            RungCost(
                batch_size=rung(size),
                steps=float(counts[i]) if done else None,
                examples=float(examples[i]) if done else None,
                steps_ratio=float(counts[i] / fit.s_min) if done and fit else None,
                examples_ratio=float(examples[i] / fit.e_min) if done and fit else None,
                lr=None if lrs is None or lrs[i] is None else float(lrs[i]),
                steps_ci=steps_ci,
                steps_ratio_ci=ratio_ci,
                examples_ratio_ci=examples_ci,
            )
        )
    largest_efficient = smallest_fast = None
    if reached.any():
        fewest_examples = examples[reached].min()
        fewest_steps = counts[reached].min()
        efficient = reached & (examples <= (1 + overhead) * fewest_examples)
        fast = reached & (counts <= (1 + overhead) * fewest_steps)
        largest_efficient = rung(sizes[efficient][-1])
        smallest_fast = rung(sizes[fast][0])
    reason = _why_no_knee(sizes, reached, fit)
    identified = fit is not None and not fit.at_bound
    return BatchSizeAnswer(
        b_crit=fit.b_crit if identified else None,
        b_crit_ci=tuple(fit.b_crit_ci) if identified else None,
        largest_efficient=largest_efficient,
        smallest_fast=smallest_fast,
        overhead=overhead,
        rungs=tuple(rows),
        reason=reason,
    )
