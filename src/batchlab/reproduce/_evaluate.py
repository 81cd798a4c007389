"""The seven findings as pure functions of measured results: numbers and a verdict each.

Every function takes curves (:class:`~batchlab.findings.Curve`) and run records and
returns a frozen record with the measured numbers, the verdict (``"held"``, ``"did not
hold"`` or ``"inconclusive"``), the criterion that decided it, and one sentence saying
why. Nothing here trains, reads files or draws.

References:
    Shallue, Lee, Antognini, Sohl-Dickstein, Frostig, Dahl 2018, "Measuring the Effects
    of Data Parallelism on Neural Network Training", JMLR 20(112) (findings 1-5);
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training",
    arXiv:1812.06162 (finding 6); You, Gitman, Ginsburg 2017 (LARS) and You et al. 2019
    (LAMB) (finding 7); Masters & Luschi 2018, "Revisiting Small Batch Training for Deep
    Neural Networks" (the "batch ≤ 32" advice of finding 5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from scipy.stats import t as student_t

from ..analysis import LR_RULES, AnalysisError, compare_fits, compare_prediction, lr_trend
from ._curves import Curve
from ._fits import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    FitSummary,
    Ratio,
    Verdict,
    fmt,
    fmt_ci,
    fmt_signed,
    summarize_fit,
)

#: Level of every interval in the findings.
CONFIDENCE = 0.95

#: LR-trend readings that single out one rule.
FOLLOWS = ("linear rule", "square-root rule")

#: A B_simple / B_crit interval wider than this factor (high / low) cannot tell a
#: factor-of-2 agreement from a clear miss: the comparison is "unclear".
WIDE_RATIO = 16.0


def _ratio(reference: FitSummary, other: FitSummary, what: str = "b_crit") -> Ratio:
    comparison = compare_fits(reference.fit, other.fit, confidence=CONFIDENCE)
    if what == "b_crit":
        value, ci = comparison.b_crit_ratio, comparison.b_crit_ratio_ci
    else:
        value, ci = comparison.s_min_ratio, comparison.s_min_ratio_ci
    return Ratio(other.study, reference.study, value, ci)


# ----- 1. three regimes, different by model ------------------------------------------


@dataclass(frozen=True)
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
            f"did not hold if every pair's interval lies within [1/{fmt(self.factor)}, "
            f"{fmt(self.factor)}]; inconclusive otherwise (or with fewer than two fitted models)"
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
    pairs = tuple(_ratio(a, b) for a, b in combinations(fits, 2))
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
                f"every pair's B_crit ratio interval lies within [1/{fmt(factor)}, {fmt(factor)}]: "
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
    return RegimesFinding(tuple(fits), tuple(missing), pairs, factor, verdict, reason)


# ----- 2. momentum extends perfect scaling -------------------------------------------


@dataclass(frozen=True)
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
            sgd.name,
            momentum.name,
            sgd_fit,
            mom_fit,
            None,
            None,
            rungs,
            INCONCLUSIVE,
            f"{missing} reached the target on fewer than three rungs: no B_crit to compare.",
        )
    ratio, s_ratio = _ratio(sgd_fit, mom_fit), _ratio(sgd_fit, mom_fit, "s_min")
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
        sgd.name, momentum.name, sgd_fit, mom_fit, ratio, s_ratio, rungs, verdict, reason
    )


# ----- 3. the LR heuristics break ----------------------------------------------------


@dataclass(frozen=True)
class LRRow:
    """One model's tuned learning rate against batch size.

    Attributes:
        batch_sizes, lrs: reached rungs and their tuned LRs.
        exponent, exponent_se: slope of log LR on log B over all of them.
        per_regime: slope within each regime (``None`` with fewer than two rungs there).
        beyond: rungs beyond perfect scaling (diminishing returns and maximal).
        beyond_exponent, beyond_ci: slope over ``beyond`` and its t-interval
            (``None`` with fewer than three such rungs).
        status: ``"neither rule"`` (the interval excludes both exponents),
            ``"linear rule"`` or ``"square-root rule"`` (it holds that exponent only),
            ``"either rule"`` (it holds both), or ``"too few rungs"``.
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


@dataclass(frozen=True)
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
            "hold if every evaluated model's interval singles out a rule; inconclusive otherwise"
        )


def _row(curve: Curve, fit: FitSummary | None) -> LRRow:
    pairs = [(b, curve.lr(b)) for b in curve.reached if curve.lr(b) is not None]
    sizes = tuple(b for b, _ in pairs)
    lrs = tuple(float(lr) for _, lr in pairs if lr is not None)
    empty = LRRow(
        curve.name,
        curve.workload,
        curve.optimizer,
        sizes,
        lrs,
        None,
        None,
        {},
        (),
        None,
        None,
        "too few rungs",
    )
    if len(sizes) < 2:
        return empty
    regimes = None
    if fit is not None:
        regimes = {"perfect": fit.perfect, "diminishing": fit.diminishing, "maximal": fit.maximal}
    trend = lr_trend(sizes, lrs, regimes=regimes)
    beyond = tuple(b for b in sizes if fit is not None and b not in fit.perfect)
    beyond_exponent = beyond_ci = None
    status = "too few rungs"
    if len(beyond) >= 3:
        sub = lr_trend(beyond, [lrs[sizes.index(b)] for b in beyond])
        beyond_exponent = sub.exponent
        half = student_t.ppf(0.5 + CONFIDENCE / 2, len(beyond) - 2) * (sub.exponent_se or 0.0)
        beyond_ci = (sub.exponent - half, sub.exponent + half)
        inside = [name for name, k in LR_RULES.items() if beyond_ci[0] <= k <= beyond_ci[1]]
        status = (
            "neither rule"
            if not inside
            else f"{inside[0]} rule"
            if len(inside) == 1
            else "either rule"
        )
    return LRRow(
        curve.name,
        curve.workload,
        curve.optimizer,
        sizes,
        lrs,
        trend.exponent,
        trend.exponent_se,
        dict(trend.per_regime),
        beyond,
        beyond_exponent,
        beyond_ci,
        status,
    )


def evaluate_lr_rules(curves: Sequence[Curve]) -> LRFinding:
    """Tuned LR against B per model, against the linear and square-root rules."""
    rows = tuple(_row(curve, summarize_fit(curve)) for curve in curves)
    judged = [r for r in rows if r.status != "too few rungs"]
    breaks = [r for r in judged if r.status == "neither rule"]
    follows = [r for r in judged if r.status in FOLLOWS]

    def describe(row: LRRow) -> str:
        return f"{row.study}: k = {fmt(row.beyond_exponent)}, interval {fmt_ci(row.beyond_ci)}"

    if not judged:
        verdict, reason = (
            INCONCLUSIVE,
            ("no model has three or more rungs beyond perfect scaling with a tuned LR."),
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
    return LRFinding(rows, verdict, reason)


# ----- 4. data-set size matters little -----------------------------------------------


@dataclass(frozen=True)
class DatasetSizeFinding:
    """Finding 4: B_crit with a 10x larger training set is within a factor of the small one's."""

    small_study: str
    large_study: str
    small_size: int | None
    large_size: int | None
    small: FitSummary | None
    large: FitSummary | None
    b_crit_ratio: Ratio | None
    s_min_ratio: Ratio | None
    factor: float
    verdict: Verdict
    reason: str

    number = 4
    title = "Data-set size matters little"

    @property
    def criterion(self) -> str:
        f = fmt(self.factor)
        return (
            f"held if the interval of B_crit(large) / B_crit(small) lies within [1/{f}, {f}] "
            f"(one ladder rung); did not hold if it misses [1/{f}, {f}] entirely; "
            "inconclusive otherwise"
        )


def evaluate_dataset_size(small: Curve, large: Curve, factor: float = 2.0) -> DatasetSizeFinding:
    """B_crit and S_min of the same study on a small and a large training set."""
    small_fit, large_fit = summarize_fit(small), summarize_fit(large)
    sizes = (small.train_size, large.train_size)
    if small_fit is None or large_fit is None:
        missing = small.name if small_fit is None else large.name
        return DatasetSizeFinding(
            small.name,
            large.name,
            *sizes,
            small_fit,
            large_fit,
            None,
            None,
            factor,
            INCONCLUSIVE,
            f"{missing} reached the target on fewer than three rungs.",
        )
    ratio, s_ratio = _ratio(small_fit, large_fit), _ratio(small_fit, large_fit, "s_min")
    text = (
        f"with {fmt(large.train_size)} training examples B_crit is {fmt(large_fit.b_crit)}, with "
        f"{fmt(small.train_size)} it is {fmt(small_fit.b_crit)}: ratio {fmt(ratio.value)}, "
        f"95% interval {fmt_ci(ratio.ci)}"
    )
    if ratio.within(factor):
        verdict, reason = HELD, text + f", within [1/{fmt(factor)}, {fmt(factor)}]."
    elif ratio.outside(factor):
        verdict, reason = NOT_HELD, text + f", outside [1/{fmt(factor)}, {fmt(factor)}]."
    else:
        verdict, reason = (
            INCONCLUSIVE,
            text + (f", which reaches past [1/{fmt(factor)}, {fmt(factor)}] without leaving it."),
        )
    return DatasetSizeFinding(
        small.name,
        large.name,
        *sizes,
        small_fit,
        large_fit,
        ratio,
        s_ratio,
        factor,
        verdict,
        reason,
    )


# ----- 5. "batch <= 32" is a fixed-epoch effect --------------------------------------


@dataclass(frozen=True)
class BudgetRow:
    """One rung at both budgets: steps, epochs, the final validation metric and the run's status.

    A final metric is ``None`` when the run diverged (its status says so) or is missing.
    """

    batch_size: int
    fixed_steps: int | None
    fixed_epochs: float | None
    fixed_final: float | None
    tuned_steps: int | None
    tuned_epochs: float | None
    tuned_final: float | None
    fixed_status: str = "missing"
    tuned_status: str = "missing"


@dataclass(frozen=True)
class FixedEpochsFinding:
    """Finding 5: small batches win at a fixed epoch budget, not at a tuned step budget.

    Attributes:
        rows: per rung, both budgets.
        gap_fixed, gap_tuned: best final metric among B ≤ ``small_batch_max`` minus the
            best among larger B, signed so that positive means the small batches did
            better (``None`` when one side has no finished run).
        best_fixed, best_tuned: (batch size, metric) of the best run at each budget.
    """

    study: str
    metric: str
    direction: str
    epochs: float
    small_batch_max: int
    tolerance: float
    rows: tuple[BudgetRow, ...]
    gap_fixed: float | None
    gap_tuned: float | None
    best_fixed: tuple[int, float] | None
    best_tuned: tuple[int, float] | None
    verdict: Verdict
    reason: str

    number = 5
    title = '"Batch ≤ 32" is an effect of fixed-epoch budgets'

    @property
    def criterion(self) -> str:
        b, tol = self.small_batch_max, fmt(self.tolerance)
        return (
            f"gap = best final {self.metric} among B ≤ {b} minus the best among B > {b} "
            "(positive: small batches better). Held if the gap exceeds the tolerance "
            f"{tol} at the fixed epoch budget but not at the tuned step budget; did not hold "
            f"if it exceeds {tol} at the tuned step budget too, or does not at the fixed epoch "
            "budget; inconclusive if a side has no finished run"
        )


def _gap(
    rows: Sequence[BudgetRow], which: str, small_max: int, sign: float
) -> tuple[float | None, tuple[int, float] | None]:
    values = [(r.batch_size, getattr(r, f"{which}_final")) for r in rows]
    values = [(b, v) for b, v in values if v is not None]
    small = [sign * v for b, v in values if b <= small_max]
    large = [sign * v for b, v in values if b > small_max]
    best = max(values, key=lambda bv: (sign * bv[1], -bv[0])) if values else None
    if not small or not large:
        return None, best
    return max(small) - max(large), best


def evaluate_fixed_epochs(
    study: str,
    records: Sequence[Mapping[str, Any]],
    *,
    target: Mapping[str, Any],
    epochs: float,
    small_batch_max: int,
    tolerance: float,
) -> FixedEpochsFinding:
    """Final validation metric at a fixed epoch budget and at each rung's step budget.

    Args:
        study: the study whose tuned rungs were run.
        records: :func:`~batchlab.findings.run_budget_job` records (``batch_size``,
            ``budget``, ``max_steps``, ``epochs``, ``final``).
        target: the study's target (its metric and direction).
        epochs, small_batch_max, tolerance: the finding's settings.
    """
    sign = 1.0 if target["direction"] == "max" else -1.0
    by_rung: dict[int, dict[str, Mapping[str, Any]]] = {}
    for record in records:
        by_rung.setdefault(int(record["batch_size"]), {})[str(record["budget"])] = record
    rows = []
    for batch_size in sorted(by_rung):
        fixed, tuned = (
            by_rung[batch_size].get("fixed_epochs"),
            by_rung[batch_size].get("tuned_steps"),
        )
        rows.append(
            BudgetRow(
                batch_size,
                None if fixed is None else int(fixed["max_steps"]),
                None if fixed is None else float(fixed["epochs"]),
                None if fixed is None else fixed.get("final"),
                None if tuned is None else int(tuned["max_steps"]),
                None if tuned is None else float(tuned["epochs"]),
                None if tuned is None else tuned.get("final"),
                "missing" if fixed is None else str(fixed.get("status", "finished")),
                "missing" if tuned is None else str(tuned.get("status", "finished")),
            )
        )
    gap_fixed, best_fixed = _gap(rows, "fixed", small_batch_max, sign)
    gap_tuned, best_tuned = _gap(rows, "tuned", small_batch_max, sign)
    metric = str(target["metric"])
    text = (
        f"best final {metric}: B = {fmt(best_fixed[0]) if best_fixed else '—'} at "
        f"{fmt(epochs)} epochs, B = {fmt(best_tuned[0]) if best_tuned else '—'} at the tuned "
        f"step budget; gap (B ≤ {small_batch_max} minus larger) {fmt_signed(gap_fixed)} and "
        f"{fmt_signed(gap_tuned)}, tolerance {fmt(tolerance)}"
    )
    if gap_fixed is None or gap_tuned is None:
        verdict, reason = INCONCLUSIVE, text + ": a side has no finished run."
    elif gap_tuned > tolerance:
        verdict, reason = NOT_HELD, text + ": small batches stay better with a tuned step budget."
    elif gap_fixed <= tolerance:
        verdict, reason = (
            NOT_HELD,
            text + (": small batches are not better even at the fixed epoch budget."),
        )
    else:
        verdict, reason = (
            HELD,
            text + (": small batches win only when every batch size gets the same epochs."),
        )
    return FixedEpochsFinding(
        study,
        metric,
        str(target["direction"]),
        float(epochs),
        int(small_batch_max),
        float(tolerance),
        tuple(rows),
        gap_fixed,
        gap_tuned,
        best_fixed,
        best_tuned,
        verdict,
        reason,
    )


# ----- 6. the noise scale predicts the critical batch --------------------------------


@dataclass(frozen=True)
class NoiseCheckpoint:
    """B_simple at one point of the run: step, fraction of the way to the target, metric."""

    step: int
    fraction: float
    metric: float | None
    b_simple: float | None
    b_simple_ci: tuple[float | None, float | None]


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
        f = fmt(self.factor)
        return (
            "per model, B_simple measured when the run reaches the target, divided by the "
            f"fitted B_crit, with a 95% interval: it agrees if the interval overlaps [1/{f}, "
            f"{f}] and is narrower than a factor of {fmt(WIDE_RATIO)}. Held if every model "
            "agrees; did not hold if any model's interval misses the band; inconclusive otherwise"
        )


def _noise_row(record: Mapping[str, Any], fit: FitSummary | None, factor: float) -> NoiseRow:
    job = record["job"]
    checkpoints = tuple(
        NoiseCheckpoint(
            step=int(c["step"]),
            fraction=float(c["fraction"]),
            metric=c.get("metric"),
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
        records: :func:`~batchlab.findings.run_noise_job` records whose checkpoints hold
            ``metrics`` dicts; each checkpoint's ``metric`` becomes the study target's.
        curves: study name -> curve (for the fits and targets).
        factor: the agreement band.
    """
    rows, metrics = [], {}
    for record in records:
        curve = curves[str(record["job"]["study"])]
        name = str(curve.target.get("metric", ""))
        metrics[curve.name] = name
        flat = dict(record)
        flat["checkpoints"] = [
            {**c, "metric": (c.get("metrics") or {}).get(name, c.get("metric"))}
            for c in record["checkpoints"]
        ]
        rows.append(_noise_row(flat, summarize_fit(curve), factor))
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
    return NoiseFinding(tuple(rows), metrics, factor, verdict, reason)


# ----- 7. LARS/LAMB against momentum at the largest rungs ----------------------------


@dataclass(frozen=True)
class LargeBatchRow:
    """Steps-to-target at one shared rung: the reference and every other optimizer."""

    batch_size: int
    resolution: int
    reference: int | None
    others: dict[str, int | None]


@dataclass(frozen=True)
class LargeBatchFinding:
    """Finding 7: LARS/LAMB need fewer steps than momentum at the largest batch sizes.

    Attributes:
        optimizers: study name -> optimizer name (reference first).
        rows: the rungs the other studies ran, ascending.
        decisive: the largest of them where any study reached the target.
    """

    reference: str
    optimizers: dict[str, str]
    rows: tuple[LargeBatchRow, ...]
    decisive: int | None
    verdict: Verdict
    reason: str

    number = 7
    title = "LARS and LAMB against momentum at the largest batch sizes"

    @property
    def criterion(self) -> str:
        return (
            "at the largest compared rung where any optimizer reached the target: held if the "
            "best of the large-batch optimizers needs fewer steps than the reference by more "
            "than one evaluation interval (or only it reaches the target); did not hold "
            "otherwise; inconclusive if nothing reached the target"
        )


def evaluate_large_batch(reference: Curve, others: Sequence[Curve]) -> LargeBatchFinding:
    """Steps-to-target of large-batch optimizers against the reference on shared rungs."""
    rungs = sorted({b for c in others for b in c.batch_sizes} & set(reference.batch_sizes))
    rows = []
    for b in rungs:
        studies = [reference, *[c for c in others if b in c.batch_sizes]]
        resolution = max(c.eval_every_at(b) for c in studies)
        rows.append(
            LargeBatchRow(
                b,
                resolution,
                reference.steps_at(b),
                {c.name: c.steps_at(b) if b in c.batch_sizes else None for c in others},
            )
        )
    optimizers = {reference.name: reference.optimizer, **{c.name: c.optimizer for c in others}}
    decisive_row = next(
        (
            r
            for r in reversed(rows)
            if r.reference is not None or any(v is not None for v in r.others.values())
        ),
        None,
    )
    if decisive_row is None:
        return LargeBatchFinding(
            reference.name,
            optimizers,
            tuple(rows),
            None,
            INCONCLUSIVE,
            "no optimizer reached the target on the compared rungs.",
        )
    reached = {k: v for k, v in decisive_row.others.items() if v is not None}
    best_name = min(reached, key=lambda k: reached[k]) if reached else None
    ref = decisive_row.reference
    b, res = decisive_row.batch_size, decisive_row.resolution
    steps_text = ", ".join(
        f"{optimizers[k]} {fmt(v) if v is not None else 'not reached'}"
        for k, v in [(reference.name, ref), *decisive_row.others.items()]
    )
    text = f"at B = {fmt(b)} steps to target: {steps_text} (evaluation interval {fmt(res)})"
    if best_name is None:
        verdict, reason = NOT_HELD, text + ": only the reference reached the target."
    elif ref is None:
        verdict, reason = HELD, text + f": only {optimizers[best_name]} reached the target."
    elif reached[best_name] < ref - res:
        verdict, reason = HELD, text + f": {optimizers[best_name]} needs fewer steps."
    else:
        verdict, reason = (
            NOT_HELD,
            text
            + (
                f": no large-batch optimizer beats {optimizers[reference.name]} by more than one "
                "evaluation interval."
            ),
        )
    return LargeBatchFinding(reference.name, optimizers, tuple(rows), b, verdict, reason)


# ----- all seven ---------------------------------------------------------------------


@dataclass(frozen=True)
class Findings:
    """The seven findings, in order."""

    regimes: RegimesFinding
    momentum: MomentumFinding
    lr_rules: LRFinding
    dataset_size: DatasetSizeFinding
    fixed_epochs: FixedEpochsFinding
    noise_scale: NoiseFinding
    large_batch: LargeBatchFinding

    @property
    def sections(self) -> tuple[Any, ...]:
        return (
            self.regimes,
            self.momentum,
            self.lr_rules,
            self.dataset_size,
            self.fixed_epochs,
            self.noise_scale,
            self.large_batch,
        )


def evaluate_all(
    settings: Any,
    curves: Mapping[str, Curve],
    fixed_budget: Sequence[Mapping[str, Any]],
    noise: Sequence[Mapping[str, Any]],
) -> Findings:
    """All seven findings from a plan's settings and its measurements."""
    regimes_curves = [curves[name] for name in settings.regimes.studies]
    fixed = settings.fixed_epochs
    return Findings(
        regimes=evaluate_regimes(regimes_curves),
        momentum=evaluate_momentum(
            curves[settings.momentum.sgd], curves[settings.momentum.momentum]
        ),
        lr_rules=evaluate_lr_rules(regimes_curves),
        dataset_size=evaluate_dataset_size(
            curves[settings.dataset_size.small],
            curves[settings.dataset_size.large],
            settings.dataset_size.factor,
        ),
        fixed_epochs=evaluate_fixed_epochs(
            fixed.study,
            fixed_budget,
            target=curves[fixed.study].target,
            epochs=fixed.epochs,
            small_batch_max=fixed.small_batch_max,
            tolerance=fixed.tolerance,
        ),
        noise_scale=evaluate_noise_scale(noise, curves, settings.noise_scale.factor),
        large_batch=evaluate_large_batch(
            curves[settings.large_batch.reference],
            [curves[name] for name in settings.large_batch.others],
        ),
    )


def verdict_counts(findings: Findings) -> dict[str, int]:
    """How many findings held, did not hold, were inconclusive."""
    counts = {HELD: 0, NOT_HELD: 0, INCONCLUSIVE: 0}
    for section in findings.sections:
        counts[section.verdict] += 1
    return counts
