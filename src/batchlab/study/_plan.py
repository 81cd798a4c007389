"""Planning a study: rungs, their budgets, and the quasi-random trials of each rung.

Shallue et al. 2018 (Sec. 3.4) tune every batch size separately with quasi-random
search: a fixed number of points of a scrambled Sobol sequence over the search
space. The points come from SciPy's ``qmc.Sobol`` (seeded, scrambled) and every
rung searches the same points, so differences between rungs are not differences
between candidate sets. They are enqueued into each rung's Optuna study before any
trial runs. (Optuna's own ``QMCSampler`` samples its first trial at random and
numbers its points with a counter that concurrent workers can race on; planning up
front keeps the trial set identical for any number of workers.)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import qmc

from .._seeding import seed_for
from ._config import StudyConfig
from ._space import ONE_MINUS, from_unit

PLANNED_ATTR = "batchlab:planned"
CONFIRMS_ATTR = "batchlab:confirms_planned"
REFINES_ATTR = "batchlab:refines_planned"
RULES_ATTR = "batchlab:rules_planned"
NEIGHBOURS_ATTR = "batchlab:neighbours_planned"
RESERVES_ATTR = "batchlab:reserves_planned"
RECHECKS_ATTR = "batchlab:rechecks_planned"
SPREADS_ATTR = "batchlab:spreads_planned"
#: How many candidates a rung's confirmations (reserve confirmations) were planned
#: for: trial ``i`` confirms candidate ``i % n`` (:func:`_rank_layout`).
CONFIRM_TOP_ATTR = "batchlab:confirm_top"
RESERVE_TOP_ATTR = "batchlab:confirm_reserve"
#: Confirmation trials (the best candidates re-run on fresh seeds) and refinement trials
#: (a window around the search's best) take slots from here on, so that raising
#: ``trials_per_rung`` on resume never collides with them.
CONFIRM_SLOT_BASE = 1_000_000
REFINE_SLOT_BASE = 2_000_000
#: Trials run by a transfer rule (``[transfer]``) instead of tuned.
RULE_SLOT_BASE = 3_000_000
#: Trials that start from the neighbouring rungs' best points (``[search] neighbours``).
NEIGHBOUR_SLOT_BASE = 4_000_000
#: Confirmations of the candidates held in reserve (``[search] confirm_reserve``).
RESERVE_SLOT_BASE = 5_000_000
#: A rising rung's recheck: a smaller rung's chosen point run here (``[search] recheck``).
RECHECK_SLOT_BASE = 6_000_000
#: More seeds of a chosen candidate whose seeds disagree (``[search] spread_seeds``).
SPREAD_SLOT_BASE = 7_000_000
#: The status of a reserve trial that was not needed (never trained; a final outcome).
SKIPPED = "skipped"
CONFIG_ATTR = "batchlab:config"
RUNG_ATTR = "batchlab:rung"


@dataclass(frozen=True)
class Rung:
    """One batch size of the ladder, with its step budget and evaluation interval."""

    index: int
    batch_size: int
    budget_steps: int
    eval_every: int
    study_name: str


def rung_study_name(study: str, batch_size: int) -> str:
    """Optuna study name of a rung; zero-padded so dashboards sort rungs by batch size."""
    return f"{study}/bs{batch_size:06d}"


def plan_rungs(config: StudyConfig) -> list[Rung]:
    """The ladder's rungs, smallest batch size first: budget, evaluation interval, name.

    Each rung's step budget comes from ``budget`` (fixed steps, or an example budget
    divided by the batch size), its evaluation interval from ``evaluation``; the rung
    index (its position on the ladder) seeds its trials (:func:`slot_seed`).
    """
    rungs = []
    for index, batch_size in enumerate(config.batch_sizes()):
        budget = config.budget.steps_for(batch_size)
        rungs.append(
            Rung(
                index=index,
                batch_size=batch_size,
                budget_steps=budget,
                eval_every=config.evaluation.every_for(budget),
                study_name=rung_study_name(config.name, batch_size),
            )
        )
    return rungs


def sample_points(config: StudyConfig, count: int, stream: int = 0) -> list[dict[str, float]]:
    """The first ``count`` search points (Sobol or uniform random), seeded by the study seed.

    Taking more points later extends the same sequence (its first ``count`` points do
    not change), so a study's trials per rung can be raised on resume. ``stream`` 1
    is an independent sequence: the refinement stage's points (before they are mapped
    into their window).
    """
    space = config.search_space()
    names = sorted(space)
    seed = config.seed if stream == 0 else [config.seed, stream]
    if config.search.sampler == "sobol":
        sampler = qmc.Sobol(d=len(names), scramble=True, seed=np.random.default_rng(seed))
        with warnings.catch_warnings():
            # SciPy warns that non-power-of-two counts lose Sobol's balance properties;
            # Shallue et al. used arbitrary trial counts too.
            warnings.simplefilter("ignore", UserWarning)
            units = sampler.random(count)
    else:
        units = np.random.default_rng(seed).random((count, len(names)))
    return [
        {name: from_unit(float(u), space[name]) for name, u in zip(names, row, strict=True)}
        for row in units
    ]


def to_hparams(
    config: StudyConfig, params: dict[str, float], budget_steps: int
) -> dict[str, float]:
    """Optimizer hyperparameters from searched values: 1 − x undone, warmup in steps."""
    hparams: dict[str, float] = {}
    for name, value in {**config.search.fixed, **params}.items():
        if name in ONE_MINUS:
            hparams[ONE_MINUS[name]] = 1.0 - value
        elif name == "warmup_fraction":
            hparams["warmup_steps"] = float(round(value * budget_steps))
        else:
            hparams[name] = value
    return hparams


def slot_seed(config: StudyConfig, rung: Rung, slot: int) -> int:
    """The seed of one trial, from (study seed, rung index, slot): independent of workers."""
    return seed_for(config.seed, rung.index, slot)


def enqueue_slots(
    study: optuna.Study, config: StudyConfig, rung: Rung, start: int, stop: int
) -> None:
    """Enqueue the trials ``start`` ... ``stop - 1`` of a rung."""
    points = sample_points(config, stop) if config.search.sampler != "tpe" else [{}] * stop
    for slot in range(start, stop):
        study.enqueue_trial(
            points[slot],
            user_attrs={"slot": slot, "seed": slot_seed(config, rung, slot)},
            skip_if_exists=False,
        )


def enqueue_confirmations(
    study: optuna.Study, config: StudyConfig, rung: Rung, start: int, stop: int
) -> None:
    """Enqueue the confirmation trials ``start`` ... ``stop - 1`` of a rung.

    Confirmation ``i`` re-runs the rung's candidate of rank ``i % confirm_top`` (0:
    the search's best; :func:`_rank_layout`) on a fresh seed; which point that is is
    known only once the search is over, so it is resolved when a worker claims the
    trial (:func:`batchlab.study._claims.claim`).
    """
    rank = _rank_layout(study, config, CONFIRMS_ATTR, CONFIRM_TOP_ATTR, "confirm_top")
    _enqueue_unresolved(
        study,
        config,
        rung,
        CONFIRM_SLOT_BASE,
        range(start, stop),
        lambda index: {"confirm_rank": rank(index)},
    )


def enqueue_reserves(
    study: optuna.Study, config: StudyConfig, rung: Rung, start: int, stop: int
) -> None:
    """Enqueue the reserve confirmation trials ``start`` ... ``stop - 1`` of a rung.

    Reserve trial ``i`` re-runs the candidate of rank ``confirm_top + i %
    confirm_reserve`` (:func:`_rank_layout`) on a fresh seed, if the rung needs it:
    whether it does is known only once the confirmations are over, so it is decided
    when a worker claims the trial (:func:`batchlab.study._claims.claim`), which
    otherwise skips it.
    """
    rank = _rank_layout(study, config, RESERVES_ATTR, RESERVE_TOP_ATTR, "confirm_reserve")
    _enqueue_unresolved(
        study,
        config,
        rung,
        RESERVE_SLOT_BASE,
        range(start, stop),
        lambda index: {"confirm_rank": config.search.confirm_top + rank(index), "reserve": True},
    )


def _rank_layout(
    study: optuna.Study, config: StudyConfig, count_attr: str, top_attr: str, field: str
) -> Callable[[int], int]:
    """Which candidate (rank within its stage) confirmation trial ``i`` of a stage re-runs.

    Seed-major: trial ``i`` confirms candidate ``i % n`` (``n`` = ``confirm_top``, or
    ``confirm_reserve`` for the reserve), so raising ``confirm_seeds`` on resume appends
    whole rounds of one more seed per candidate and every planned trial keeps its
    candidate. ``n`` is recorded in the rung's study when the stage is first planned
    and may not change afterwards (:func:`confirmation_growth_error`). Stages planned
    before ``n`` was recorded keep their layout, ``i // confirm_seeds``.
    """
    if top_attr not in study.user_attrs and int(study.user_attrs.get(count_attr, 0)) == 0:
        study.set_user_attr(top_attr, getattr(config.search, field))
    top = study.user_attrs.get(top_attr)
    if top is None:  # planned by an older batchlab
        return lambda index: index // config.search.confirm_seeds
    return lambda index: index % top


def confirmation_growth_error(study: optuna.Study, config: StudyConfig) -> str | None:
    """Why ``config`` cannot grow a planned rung's confirmations (``None``: it can).

    More seeds per candidate may be added on resume; more candidates may not, once a
    stage's trials are planned (:func:`_rank_layout`): they would move planned trials
    to other candidates.
    """
    stages = (
        (CONFIRMS_ATTR, CONFIRM_TOP_ATTR, "confirm_top", confirmations_wanted(config)),
        (RESERVES_ATTR, RESERVE_TOP_ATTR, "confirm_reserve", reserves_wanted(config)),
    )
    for count_attr, top_attr, field, wanted in stages:
        planned = int(study.user_attrs.get(count_attr, 0))
        if planned == 0 or wanted <= planned:
            continue
        top = study.user_attrs.get(top_attr)
        if top is None:
            return (
                f"search.{field} / search.confirm_seeds: {study.study_name}'s confirmations "
                "were planned by an older batchlab and cannot grow; run the changed config in "
                "a new --out directory"
            )
        if top != getattr(config.search, field):
            return (
                f"search.{field}: {study.study_name}'s confirmations were planned for {top} "
                f"candidates, the config asks for {getattr(config.search, field)}; more seeds "
                "per candidate (search.confirm_seeds) may be added on resume, more candidates "
                "may not: run the changed config in a new --out directory"
            )
    return None


def enqueue_refinements(
    study: optuna.Study, config: StudyConfig, rung: Rung, start: int, stop: int
) -> None:
    """Enqueue the refinement trials ``start`` ... ``stop - 1`` of a rung.

    Each carries a quasi-random point of the whole space (:func:`sample_points`,
    stream 1); a worker maps it into the window around the rung's best search point
    when it claims the trial, once the search is over.
    """
    _enqueue_mapped(study, config, rung, REFINE_SLOT_BASE, range(start, stop), "refine")


def neighbours_wanted(config: StudyConfig, rung: Rung) -> int:
    """Trials of a rung that start from its neighbours' best points (``[search] neighbours``).

    None for TPE (it proposes its own points), on a one-rung ladder, or under
    ``warm_start`` for the smallest rung (warm-started rungs wait for the rung below
    to finish, so only smaller rungs may be neighbours, and it has none).
    """
    if config.search.sampler == "tpe" or len(config.batch_sizes()) < 2:
        return 0
    if config.search.warm_start and rung.index == 0:
        return 0
    return config.search.neighbours


def neighbour_rungs(config: StudyConfig, rung: Rung, rungs: list[Rung]) -> list[Rung]:
    """The rungs a rung's neighbour trials start from, in order: trial ``i`` starts from
    ``neighbour_rungs(...)[i % len]``.

    The nearest first, the smaller of two equally near first (index − 1, + 1, − 2, ...),
    as many as the rung has neighbour trials; under ``warm_start`` smaller rungs only.
    """
    others = [r for r in rungs if r.index != rung.index]
    if config.search.warm_start:
        others = [r for r in others if r.index < rung.index]
    others.sort(key=lambda r: (abs(r.index - rung.index), r.index))
    return others[: neighbours_wanted(config, rung)]


def enqueue_neighbours(
    study: optuna.Study, config: StudyConfig, rung: Rung, start: int, stop: int
) -> None:
    """Enqueue the neighbour trials ``start`` ... ``stop - 1`` of a rung.

    Each carries a quasi-random point of the whole space (:func:`sample_points`,
    stream 2); a worker maps it to (or into a window around) a neighbouring rung's best
    point when it claims the trial, once that rung's search and refinement are over.
    """
    _enqueue_mapped(study, config, rung, NEIGHBOUR_SLOT_BASE, range(start, stop), "neighbour")


#: The stage of trials whose planned point is mapped at claim time, and its Sobol stream.
MAPPED_STREAMS = {"refine": 1, "neighbour": 2}


def _enqueue_mapped(
    study: optuna.Study,
    config: StudyConfig,
    rung: Rung,
    slot_base: int,
    indices: range,
    stage_attr: str,
) -> None:
    """Enqueue trials carrying a planned point of their own Sobol stream, mapped when claimed.

    The user attribute ``stage_attr`` (``True``) marks their stage (:func:`stage`).
    """
    points = sample_points(config, indices.stop, stream=MAPPED_STREAMS[stage_attr])
    for index in indices:
        slot = slot_base + index
        study.enqueue_trial(
            points[index],
            user_attrs={"slot": slot, "seed": slot_seed(config, rung, slot), stage_attr: True},
            skip_if_exists=False,
        )


def transfer_base(config: StudyConfig) -> int | None:
    """The tuned rung the transfer rules start from (``None`` without rules)."""
    if not config.transfer.rules:
        return None
    return config.transfer.base_batch_size or config.batch_sizes()[0]


def rule_trials_wanted(config: StudyConfig, rung: Rung) -> int:
    """Trials of a rung run by rule: ``seeds`` per rule; none at the base rung."""
    if rung.batch_size == transfer_base(config):
        return 0
    return len(config.transfer.rules) * config.transfer.seeds


def enqueue_rule_trials(
    study: optuna.Study, config: StudyConfig, rung: Rung, start: int, stop: int
) -> None:
    """Enqueue the trials ``start`` ... ``stop - 1`` of a rung run by a transfer rule.

    Trial ``i`` runs rule ``rules[i // seeds]`` on its own seed; its hyperparameters
    (the base rung's tuned ones, moved to this batch size) are known only once the
    base rung is over, so they are resolved when a worker claims it.
    """
    _enqueue_unresolved(
        study,
        config,
        rung,
        RULE_SLOT_BASE,
        range(start, stop),
        lambda index: {"rule": config.transfer.rules[index // config.transfer.seeds]},
    )


def _enqueue_unresolved(
    study: optuna.Study,
    config: StudyConfig,
    rung: Rung,
    slot_base: int,
    indices: range,
    attrs: Callable[[int], dict[str, Any]],
) -> None:
    """Enqueue trials whose point is resolved at claim time: slot, seed and ``attrs(i)``."""
    for index in indices:
        slot = slot_base + index
        study.enqueue_trial(
            {},
            user_attrs={"slot": slot, "seed": slot_seed(config, rung, slot), **attrs(index)},
            skip_if_exists=False,
        )


def refinements_wanted(config: StudyConfig) -> int:
    """Refinement trials per rung: ``refine`` (none for TPE, which proposes its own points)."""
    return 0 if config.search.sampler == "tpe" else config.search.refine


def rechecks_wanted(config: StudyConfig, rung: Rung) -> int:
    """Recheck trials of a rung (``[search] recheck``): none at the smallest rung, which
    has no smaller rung to rise above, nor without confirmation (a rung rises on every
    seed of its confirmed candidate)."""
    if rung.index == 0 or config.search.confirm_top == 0:
        return 0
    return config.search.recheck


def enqueue_rechecks(
    study: optuna.Study, config: StudyConfig, rung: Rung, start: int, stop: int
) -> None:
    """Enqueue the recheck trials ``start`` ... ``stop - 1`` of a rung.

    Whether the rung rises above a smaller one, and so whether they run and from which
    rung's point, is known only once this rung and every smaller one are tuned, so it is
    decided when a worker claims them (:func:`batchlab.study._recheck.recheck_for`);
    they are skipped otherwise. Trial 0 runs the point as a candidate of its own, the
    others re-run it on fresh seeds (their ``confirm_of`` is trial 0's slot), so the
    rung reads it as one more confirmed candidate.
    """
    _enqueue_unresolved(
        study, config, rung, RECHECK_SLOT_BASE, range(start, stop), lambda index: {"recheck": True}
    )


def spreads_wanted(config: StudyConfig, rung: Rung) -> int:
    """More seeds of a rung's chosen candidate, where its seeds disagree: ``[search]
    spread_seeds`` in each of ``spread_rounds`` rounds; none without confirmation (a
    lone search trial has one seed)."""
    if config.search.confirm_top == 0:
        return 0
    return config.search.spread_seeds * config.search.spread_rounds


def spread_round(trial: FrozenTrial) -> int:
    """The round of a spread trial (``[search] spread_rounds``): trials ``r *
    spread_seeds`` ... ``(r + 1) * spread_seeds - 1`` of the stage are round ``r``."""
    return int(trial.user_attrs.get("spread_round", 0))


def enqueue_spreads(
    study: optuna.Study, config: StudyConfig, rung: Rung, start: int, stop: int
) -> None:
    """Enqueue the spread trials ``start`` ... ``stop - 1`` of a rung.

    Which candidate the rung chooses, and whether its seeds disagree enough to need more,
    is known only once its confirmations (and reserve, and the rounds before) are over,
    so it is decided when a worker claims them
    (:func:`batchlab.study._claims.spread_candidate`); they are skipped otherwise. Each
    re-runs the chosen candidate on its own fresh seed; trial ``i`` belongs to round ``i
    // spread_seeds`` (:func:`spread_round`).
    """
    per_round = max(config.search.spread_seeds, 1)
    _enqueue_unresolved(
        study,
        config,
        rung,
        SPREAD_SLOT_BASE,
        range(start, stop),
        lambda index: {"spread": True, "spread_round": index // per_round},
    )


def confirmations_wanted(config: StudyConfig) -> int:
    """Confirmation trials per rung: ``confirm_top`` candidates x ``confirm_seeds`` seeds."""
    return config.search.confirm_top * config.search.confirm_seeds


def reserves_wanted(config: StudyConfig) -> int:
    """Reserve confirmation trials per rung: ``confirm_reserve`` x ``confirm_seeds``
    (none without confirmation)."""
    if config.search.confirm_top == 0:
        return 0
    return config.search.confirm_reserve * config.search.confirm_seeds


def is_confirmation(trial: FrozenTrial) -> bool:
    """Whether a trial re-runs a candidate on a fresh seed (rather than searching)."""
    return "confirm_rank" in trial.user_attrs


def stage(trial: FrozenTrial) -> str:
    """A trial's stage: ``"search"``, then ``"refine"`` (around the best), then
    ``"neighbour"`` (from the neighbouring rungs' best points), then ``"confirm"``;
    ``"reserve"`` (the candidates held in reserve, confirmed only if needed);
    ``"spread"`` (more seeds of the chosen candidate, where its seeds disagree);
    ``"recheck"`` (a smaller rung's chosen point, where this rung rises above it);
    ``"rule"`` for a trial run by a transfer rule instead of tuned."""
    if "rule" in trial.user_attrs:
        return "rule"
    if trial.user_attrs.get("recheck"):
        return "recheck"
    if trial.user_attrs.get("reserve"):
        return "reserve"
    if trial.user_attrs.get("spread"):
        return "spread"
    if is_confirmation(trial):
        return "confirm"
    if trial.user_attrs.get("neighbour"):
        return "neighbour"
    return "refine" if trial.user_attrs.get("refine") else "search"


def open_stages(study: optuna.Study) -> set[str]:
    """The stages (:func:`stage`) with trials still waiting or running."""
    active = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    return {stage(t) for t in active}


@dataclass(frozen=True)
class PlannedStage:
    """One stage of a rung's planned trials: where its count and slots live, how many
    a config wants, and how they are enqueued.

    Attributes:
        attr: the rung study's user attribute holding how many were planned so far.
        slot_base: its trials' slots are ``slot_base + i``.
        wanted: how many trials the config wants at a rung.
        enqueue: enqueues trials ``start`` ... ``stop - 1`` (``(study, config, rung,
            start, stop)``).
    """

    attr: str
    slot_base: int
    wanted: Callable[[StudyConfig, Rung], int]
    enqueue: Callable[[optuna.Study, StudyConfig, Rung, int, int], None]


#: Every stage of a rung's planned trials, in the order they are planned and run.
PLANNED_STAGES = (
    PlannedStage(PLANNED_ATTR, 0, lambda c, r: c.search.trials_per_rung, enqueue_slots),
    PlannedStage(
        REFINES_ATTR, REFINE_SLOT_BASE, lambda c, r: refinements_wanted(c), enqueue_refinements
    ),
    PlannedStage(NEIGHBOURS_ATTR, NEIGHBOUR_SLOT_BASE, neighbours_wanted, enqueue_neighbours),
    PlannedStage(
        CONFIRMS_ATTR,
        CONFIRM_SLOT_BASE,
        lambda c, r: confirmations_wanted(c),
        enqueue_confirmations,
    ),
    PlannedStage(
        RESERVES_ATTR, RESERVE_SLOT_BASE, lambda c, r: reserves_wanted(c), enqueue_reserves
    ),
    PlannedStage(SPREADS_ATTR, SPREAD_SLOT_BASE, spreads_wanted, enqueue_spreads),
    PlannedStage(RECHECKS_ATTR, RECHECK_SLOT_BASE, rechecks_wanted, enqueue_rechecks),
    PlannedStage(RULES_ATTR, RULE_SLOT_BASE, rule_trials_wanted, enqueue_rule_trials),
)


def planned_slots(study: optuna.Study) -> list[int]:
    """Every slot planned so far in a rung, from its stages' planned counts."""
    return [
        planned.slot_base + index
        for planned in PLANNED_STAGES
        for index in range(int(study.user_attrs.get(planned.attr, 0)))
    ]


def enqueue_slot(study: optuna.Study, config: StudyConfig, rung: Rung, slot: int) -> None:
    """Enqueue one planned slot afresh, whichever stage it belongs to (a lost slot)."""
    owner = max((s for s in PLANNED_STAGES if s.slot_base <= slot), key=lambda s: s.slot_base)
    owner.enqueue(study, config, rung, slot - owner.slot_base, slot - owner.slot_base + 1)


def planned_count(study: optuna.Study) -> int:
    """How many trials of a rung have been planned (enqueued) so far, every stage included."""
    return sum(int(study.user_attrs.get(planned.attr, 0)) for planned in PLANNED_STAGES)


def rung_attrs(rung: Rung) -> dict[str, Any]:
    """What a rung's Optuna study records about it (user attribute :data:`RUNG_ATTR`).

    For whoever reads the storage without the config (dashboards, other tools): the
    rung's place on the ladder, its batch size, step budget and evaluation interval.
    """
    return {
        "index": rung.index,
        "batch_size": rung.batch_size,
        "budget_steps": rung.budget_steps,
        "eval_every": rung.eval_every,
    }


def load_rung_studies(storage: Any, config: StudyConfig) -> list[tuple[Rung, optuna.Study]]:
    """Every rung's Optuna study, with the sampler that proposes its TPE trials.

    Sobol and random trials carry their points from planning (the sampler is never
    asked); ``tpe`` trials are planned empty and proposed by a TPE sampler seeded per
    rung when a worker claims them (sequential, model-based: results then depend on
    the order trials finish in, as with any TPE run).
    """
    return [
        (
            rung,
            optuna.load_study(
                study_name=rung.study_name,
                storage=storage,
                sampler=optuna.samplers.TPESampler(seed=seed_for(config.seed, rung.index) % 2**32)
                if config.search.sampler == "tpe"
                else None,
            ),
        )
        for rung in plan_rungs(config)
    ]
