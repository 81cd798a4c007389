"""What each part of the page shows: plain records built from results and summaries.

The template only lays these out; every number, sentence and table row is decided
here, so the report's content can be tested without parsing HTML. Values stay
plain strings and numbers: escaping is the template's job.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..analysis import PowerLawFit, RungCost
from ..results import RungResult, StudyData, TrialRecord
from ._summary import StudySummary


@dataclass(frozen=True)
class Fact:
    """One headline number: label, value, interval and a short explanation."""

    label: str
    value: Any
    interval: Any = None
    unit: str = ""
    hint: str = ""


@dataclass(frozen=True)
class TrialRow:
    number: int
    status: str
    steps: int | None
    params: list[Any]
    edge: list[bool]
    wall_time_s: float | None
    reason: str | None
    traceback: str | None
    best: bool
    retry_of: int | None


@dataclass(frozen=True)
class RungView:
    batch_size: int
    steps: int | None
    examples: int | None
    budget: int | None
    regime: str
    best: dict[str, float]
    trials_done: int
    trials_planned: int
    trials_running: int
    counts: dict[str, int]
    figure: str | None
    rows: list[TrialRow]
    param_names: list[str]
    edges: list[str]
    #: How the steps were confirmed: "median of 3 seeds (240, 250, 300); search best 200".
    seeds: str | None = None
    #: The rung's cost in the answer (:class:`batchlab.analysis.RungCost`): its steps'
    #: interval, and steps / S_min and examples / E_min with theirs.
    cost: RungCost | None = None

    @property
    def unreached_on_fresh_seeds(self) -> bool:
        """Whether the top of the steps interval is "not reached" (fresh seeds may miss)."""
        return bool(self.cost and self.cost.steps_ci and math.isinf(self.cost.steps_ci[1]))


@dataclass(frozen=True)
class RuleRow:
    """One rung of a hyperparameter's table: the tuned value and each rule's prediction.

    ``predictions`` holds, per rule of the table, (predicted value, measured/predicted
    on the hyperparameter's search scale: η, 1 − β2 or λ).
    """

    batch_size: int | float
    value: float
    predictions: list[tuple[float, float]]


@dataclass(frozen=True)
class RuleSummary:
    """One rule's line under the table: its error over the rungs and its exponent."""

    rule: str
    citation: str
    expected: str
    error_factor: float
    consistent: bool


@dataclass(frozen=True)
class HparamRulesView:
    """One tuned hyperparameter against B with the transfer rules (report section)."""

    name: str
    title: str
    error_scale: str
    rules: list[RuleSummary]
    rows: list[RuleRow]
    exponents: list[str]
    reading: str


@dataclass(frozen=True)
class StudyView:
    """One study's part of every section."""

    index: int
    name: str
    source: str | None
    target_text: str
    workload_name: str
    workload_description: str
    facts: list[Fact]
    regime_text: list[str]
    prediction_text: list[str]
    trend_text: list[str]
    notes: list[str]
    analysis_note: str | None
    answer_text: str
    interval_text: str | None
    edge_messages: list[str]
    rungs: list[RungView]
    best_names: list[str]
    scaling_figure: str
    hyperparameter_figure: str | None
    noise_figure: str | None
    noise_rows: list[tuple[int, float, Any]]
    config_json: str
    workload_params: list[tuple[str, str]]
    environment: list[tuple[str, str]]
    wall_time_s: float | None
    created: str | None
    status_counts: dict[str, int]
    trial_time_s: float | None = None
    figures: list[str] = field(default_factory=list)
    hparam_rules: list[HparamRulesView] = field(default_factory=list)
    hparam_rules_figure: str | None = None
    transfer_text: str = ""
    rule_costs: RuleCostsView | None = None


@dataclass(frozen=True)
class RuleCostsView:
    """Tuned steps against each transfer rule's, per rung: the cost of not tuning.

    ``rows``: (batch size, tuned steps text, one cell per rule); ``medians``: per
    rule, the median cost ratio text.
    """

    rules: list[str]
    rows: list[tuple[int, str, list[str]]]
    medians: list[str]


def rule_costs_view(summary: StudySummary) -> RuleCostsView | None:
    """The report's table of :attr:`StudySummary.rule_costs` (``None``: no rule ran)."""
    costs = summary.rule_costs
    if not costs:
        return None
    sizes = sorted({b for cost in costs.values() for b in cost.batch_sizes})
    rows = []
    for b in sizes:
        tuned = None
        cells = []
        for cost in costs.values():
            if b not in cost.batch_sizes:
                cells.append("—")
                continue
            i = cost.batch_sizes.index(b)
            tuned = cost.tuned[i] if tuned is None else tuned
            seeds = ", ".join("—" if s is None else str(s) for s in cost.seeds[i])
            steps, ratio = cost.steps[i], cost.ratios[i]
            text = "not reached" if steps is None else f"{steps}"
            if ratio is not None:
                text += f" (×{ratio:.2f})"
            cells.append(f"{text} [seeds: {seeds}]")
        rows.append((b, "—" if tuned is None else f"{tuned:g}", cells))
    medians = [
        ("—" if cost.median_ratio is None else f"×{cost.median_ratio:.2f}")
        + (f"; not reached at B = {', '.join(map(str, cost.unreached))}" if cost.unreached else "")
        for cost in costs.values()
    ]
    return RuleCostsView(rules=list(costs), rows=rows, medians=medians)


def target_text(target: dict[str, Any]) -> str:
    """``{"metric": "loss", "direction": "min", "value": 0.5}`` -> ``"loss ≤ 0.5"``."""
    sign = "≥" if target.get("direction") == "max" else "≤"
    return f"{target.get('metric', '?')} {sign} {target.get('value', '?'):g}"


REGIME_LABELS = {
    "perfect": "perfect scaling",
    "diminishing": "diminishing returns",
    "maximal": "maximal data parallelism",
}


def _regime_of(batch_size: int, summary: StudySummary) -> str:
    if summary.regimes is None:
        return ""
    return REGIME_LABELS.get(summary.regimes.regime_of(batch_size) or "", "")


def headline_facts(study: StudyData, summary: StudySummary) -> list[Fact]:
    """The headline numbers: B_crit, S_min, E_min (with intervals) and the two 20% rules."""
    fit, answer = summary.fit, summary.answer
    knee = answer.free_bend if answer is not None else None
    if answer is not None and knee is not None:
        b_crit = Fact(  # the rungs reject the hyperbola's bend (batchlab.analysis.fit_knee)
            "Critical batch size B_crit",
            answer.b_crit,
            answer.b_crit_ci,
            hint=f"S(B) = S_min (1 + (B_crit / B)^α)^(1/α), α = {knee.sharpness:.2g}"
            + ("" if fit is None else f"; the hyperbola's B_crit: {fit.b_crit:.3g}"),
        )
    else:
        b_crit = Fact(
            "Critical batch size B_crit",
            fit.b_crit if fit else None,
            fit.b_crit_ci if fit else None,
            hint="S(B) = S_min (1 + B_crit / B)",
        )
    facts = [
        b_crit,
        Fact(
            "Fewest steps S_min",
            fit.s_min if fit else None,
            fit.s_min_ci if fit else None,
            "steps",
            "steps to target as B → ∞",
        ),
        Fact(
            "Fewest examples E_min",
            fit.e_min if fit else None,
            fit.e_min_ci if fit else None,
            "examples",
            "examples to target as B → 0",
        ),
    ]
    if answer is not None:
        percent = f"{answer.overhead:.0%}"
        facts += [
            Fact(
                "Largest data-efficient batch",
                answer.largest_efficient,
                hint=f"largest rung within {percent} of the fewest examples to target",
            ),
            Fact(
                "Smallest fast batch",
                answer.smallest_fast,
                hint=f"smallest rung within {percent} of the fewest steps to target",
            ),
        ]
    if study.noise_scale is not None:
        b_simple, ci = study.noise_scale.final
        where = study.noise_scale.batch_size
        facts.append(
            Fact(
                "Noise scale B_simple",
                b_simple,
                ci,
                hint="predicted B_crit (McCandlish et al. 2018)"
                + (f", measured at B = {where}" if where else ""),
            )
        )
    return facts


def regime_text(study: StudyData, summary: StudySummary) -> list[str]:
    """Sentences naming the regime boundaries and the rungs in each regime."""
    regimes = summary.regimes
    if regimes is None:
        return []
    lines = []
    if _free_bend(summary) and summary.fit is not None:
        lines.append(
            f"Regimes of the hyperbola S_min (1 + B_crit / B), B_crit = "
            f"{_short(summary.fit.b_crit)}, which the rungs reject (see the answer):"
        )
    bounds = regimes.boundaries
    if _usable(bounds.perfect_end):
        lines.append(f"Perfect scaling up to B ≈ {_short(bounds.perfect_end)}.")
    if _usable(bounds.maximal_start):
        lines.append(f"Maximal data parallelism from B ≈ {_short(bounds.maximal_start)}.")
    for name, label in REGIME_LABELS.items():
        sizes = getattr(regimes, name)
        text = ", ".join(str(b) for b in sizes) if sizes else "no rung"
        lines.append(f"{label.capitalize()}: {text}")
    if regimes.disagreements:
        sizes = ", ".join(str(b) for b in regimes.disagreements)
        lines.append(
            f"The measured points alone read differently from the fitted model at B = {sizes}."
        )
    return lines


def _free_bend(summary: StudySummary) -> bool:
    """Whether the answer's B_crit is the free bend's, not the hyperbola's of ``fit``."""
    return summary.answer is not None and summary.answer.free_bend is not None


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _short(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def prediction_text(study: StudyData, summary: StudySummary) -> list[str]:
    """The noise-scale prediction set against the measured B_crit."""
    noise = study.noise_scale
    if noise is None:
        return []
    b_simple, ci = noise.final
    measured = f"B_simple = {_short(b_simple)}" + (
        f" (95% interval {_short(ci[0])} – {_short(ci[1])})" if ci else ""
    )
    if summary.fit is None:
        return [f"Predicted: {measured}. No measured B_crit to compare it with (no fit)."]
    shape = " (of the hyperbola)" if _free_bend(summary) else ""
    lines = [f"Predicted: {measured}; measured: B_crit = {_short(summary.fit.b_crit)}{shape}."]
    if summary.prediction is not None:
        lines.append(summary.prediction.message)
    return lines


def trend_text(summary: StudySummary) -> list[str]:
    """What the tuned learning rates did, from the analysis' LR trend."""
    trend = summary.lr_trend
    if trend is None:
        return []
    return [
        f"Tuned learning rate grows as B^{trend.exponent:.2f} across the rungs.",
        trend.message,
    ]


#: How each hyperparameter is named in the section, and the scale its error is on.
_HPARAM_TITLES = {
    "lr": ("learning rate η", "η"),
    "beta2": ("Adam's β2", "1 − β2"),
    "weight_decay": ("weight decay λ", "λ"),
}
#: What each rule holds fixed, for the line under the table.
_RULE_MEANING = {
    "linear": "η ∝ B",
    "square-root": "η ∝ √B",
    "half-life": "half-life in examples fixed",
    "timescale": "timescale B/(ηλN) fixed",
}


def hparam_rules(summary: StudySummary) -> list[HparamRulesView]:
    """Per searched hyperparameter: tuned value and each rule's prediction per rung,
    the exponents with their intervals, and which rule the slope reads as."""
    trends = summary.hparam_trends
    if trends is None:
        return []
    views = []
    for name, trend in trends.trends.items():
        title, scale = _HPARAM_TITLES[name]
        rows = [
            RuleRow(
                batch_size=b,
                value=value,
                predictions=[(r.predicted[i], math.exp(r.log_errors[i])) for r in trend.rules],
            )
            for i, (b, value) in enumerate(zip(trend.batch_sizes, trend.values, strict=True))
        ]
        exponents = []
        for fit in trend.exponents:
            text = f"{fit.label} ∝ B^{_two(fit.exponent)}"
            if fit.exponent_ci is not None:
                low, high = fit.exponent_ci
                text += f", {trends.confidence:.0%} interval [{_two(low)}, {_two(high)}]"
            else:
                text += " (two rungs: no interval)"
            exponents.append(text)
        rules = [
            RuleSummary(
                rule=r.rule,
                citation=r.citation,
                expected=_RULE_MEANING.get(r.rule, f"{name} fixed")
                + f" (exponent {r.exponent:g} of {trend.exponent(r.quantity).label})",
                error_factor=r.error_factor,
                consistent=r.consistent,
            )
            for r in trend.rules
        ]
        views.append(HparamRulesView(name, title, scale, rules, rows, exponents, trend.message))
    return views


def _two(value: float) -> str:
    """Two decimals, without a "-0.00" for a rounding error below zero."""
    return f"{round(value, 2) + 0.0:.2f}"


def transfer_text(summary: StudySummary) -> str:
    """``"to go from B=64 to B=512 on this model: lr x2.8 (closest: ...), ..."``."""
    trends = summary.hparam_trends
    return trends.transfer if trends is not None and trends.trends else ""


def _best_values(rung: RungResult, names: Sequence[str]) -> dict[str, float]:
    best = rung.best
    values: dict[str, float] = {}
    for name in names:
        if rung.best_hparams and name in rung.best_hparams:
            values[name] = rung.best_hparams[name]
        elif best is not None and name in best.hparams:
            values[name] = best.hparams[name]
        elif best is not None and name in best.params:
            values[name] = best.params[name]
    return values


def _row(
    trial: TrialRecord, rung: RungResult, names: Sequence[str], edge_params: set[str]
) -> TrialRow:
    best = trial.number == rung.best_trial
    return TrialRow(
        number=trial.number,
        status=trial.status,
        steps=trial.steps_to_target,
        params=[trial.params.get(n, trial.hparams.get(n)) for n in names],
        edge=[best and n in edge_params for n in names],
        wall_time_s=trial.wall_time_s,
        reason=trial.reason,
        traceback=trial.traceback,
        best=best,
        retry_of=trial.retry_of,
    )


def rung_views(
    study: StudyData, summary: StudySummary, figures: dict[int, str | None]
) -> list[RungView]:
    """Per rung: best result, regime, trial table rows and search figure."""
    names = list(study.search_space) or sorted(
        {k for r in study.rungs for t in r.trials for k in t.params}
    )
    best_names = best_hparam_names(study)
    costs = {c.batch_size: c for c in (summary.answer.rungs if summary.answer else ())}
    views = []
    for rung in study.rungs:
        edges = [e for e in summary.edges if e.batch_size == rung.batch_size]
        counts: dict[str, int] = {}
        for trial in rung.trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
        views.append(
            RungView(
                batch_size=rung.batch_size,
                steps=rung.steps_to_target,
                examples=None
                if rung.steps_to_target is None
                else rung.steps_to_target * rung.batch_size,
                budget=rung.budget_steps,
                regime=_regime_of(rung.batch_size, summary),
                best=_best_values(rung, best_names),
                trials_done=rung.trials_done,
                trials_planned=rung.trials_planned,
                trials_running=rung.trials_running,
                counts=counts,
                figure=figures.get(rung.batch_size),
                rows=[
                    _row(t, rung, names, {e.param for e in edges})
                    for t in sorted(rung.trials, key=lambda t: t.number)
                ],
                param_names=names,
                edges=[e.message for e in edges],
                seeds=confirmation_text(rung),
                cost=costs.get(rung.batch_size),
            )
        )
    return views


def confirmation_text(rung: RungResult) -> str | None:
    """How a rung's steps were confirmed on fresh seeds, in words (``None``: they were not)."""
    if not rung.seed_steps:
        return None
    runs = ", ".join("not reached" if s is None else str(s) for s in rung.seed_steps)
    text = f"median of {len(rung.seed_steps)} seeds ({runs})"
    if rung.seed_interval is not None and rung.seed_coverage is not None:
        low, high = rung.seed_interval
        text += (
            f", {rung.seed_coverage:.0%} interval for it [{low}, "
            f"{'not reached' if high is None else high}]"
        )
    return (
        f"{text}; search best {'not reached' if rung.search_steps is None else rung.search_steps}"
    )


def best_hparam_names(study: StudyData) -> list[str]:
    """The optimizer hyperparameters of the best trials (lr first), for the rung table."""
    names: set[str] = set()
    for rung in study.rungs:
        names.update((rung.best_hparams or {}).keys())
    return sorted(names, key=lambda n: (n != "lr", n))


def environment_rows(study: StudyData) -> list[tuple[str, str]]:
    """Versions and machine, in a fixed order (unknown keys last)."""
    order = ("batchlab", "torch", "optuna", "numpy", "python", "platform", "machine",
             "processor", "cpu_count", "torch_threads")  # fmt: skip
    env = study.environment
    keys = [k for k in order if k in env] + sorted(k for k in env if k not in order)
    return [(k, str(env[k])) for k in keys] + trained_on_rows(study)


def trained_on_rows(study: StudyData) -> list[tuple[str, str]]:
    """Where the trials trained and in what precision, with trial counts (none if unrecorded)."""
    counts = Counter(
        (t.device, t.precision or "fp32", " compiled" if t.compiled else "")
        for rung in study.rungs
        for t in rung.trials
        if t.device is not None
    )
    if not counts:
        return []
    parts = [
        f"{device} at {precision}{compiled} ({n} trial{'s' * (n != 1)})"
        for (device, precision, compiled), n in sorted(
            counts.items(), key=lambda kv: (-kv[1], kv[0])
        )
    ]
    sizes = [t.ensemble for rung in study.rungs for t in rung.trials if t.ensemble]
    if sizes and max(sizes) > 1:
        parts.append(f"ensembles of up to {max(sizes)} trials")
    return [("trained on", "; ".join(parts))]


def workload_rows(study: StudyData) -> list[tuple[str, str]]:
    """The workload's parameters as (name, JSON value) pairs."""
    params = study.workload.get("params") or {}
    rows = (
        [(str(k), json.dumps(v)) for k, v in sorted(params.items())]
        if isinstance(params, dict)
        else [("params", json.dumps(params))]
    )
    train_size = study.workload.get("train_size")
    if train_size is not None:
        rows.append(("train_size", str(train_size)))
    parameters = study.workload.get("parameters")
    if parameters is not None:
        rows.append(("trainable parameters", str(parameters)))
    return rows


def noise_rows(study: StudyData, limit: int = 12) -> list[tuple[int, float, Any]]:
    """A few (step, B_simple, interval) rows of the noise-scale history, last included."""
    noise = study.noise_scale
    if noise is None:
        return []
    n = len(noise.steps)
    every = max(1, math.ceil(n / limit))
    picks = sorted(set(range(0, n, every)) | {n - 1})
    return [
        (
            noise.steps[i],
            noise.b_simple[i],
            (noise.ci_low[i], noise.ci_high[i]),
        )
        for i in picks
    ]


def config_json(study: StudyData) -> str:
    """The study config, pretty JSON (what ``batchlab study run`` validated)."""
    return json.dumps(study.config, indent=2, sort_keys=False, ensure_ascii=False)


def power_law_text(fit: PowerLawFit, variable: str = "D") -> str:
    """``B_crit ∝ D^k, k = … [low, high] (95% interval)``: a legend and a sentence.

    Args:
        fit: the fitted law (:func:`batchlab.analysis.fit_power_law`).
        variable: the abscissa's symbol: ``"D"`` (data seen) or ``"N"`` (model size).
    """
    text = f"B_crit ∝ {variable}^k, k = {fit.exponent:.3g}"
    if fit.exponent_ci is not None:
        low, high = fit.exponent_ci
        text += f" [{low:.3g}, {high:.3g}] ({fit.confidence:.0%} interval)"
    return text
