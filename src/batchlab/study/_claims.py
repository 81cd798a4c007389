"""Claiming planned trials, and writing what became of them back into Optuna.

A worker claims a rung's ``WAITING`` trials (exactly the planned ones, never new
ones), resolves each to the :class:`~batchlab.training.RunSpec` it trains, and when
it has run records its result, or its failure with the traceback, in the trial's
user attributes. A trial whose worker was declared dead meanwhile (its slot runs
again elsewhere) is not written twice: its late result is dropped.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from ..optim import transfer_hparams
from ..results import SearchRange, edge_side, range_position
from ..training import RunResult, RunSpec
from ..workloads import Target
from . import _optuna
from ._config import StudyConfig
from ._liveness import mark_claimed, reaping, requeue
from ._order import TransferBase, WarmStart
from ._plan import (
    NEIGHBOUR_SLOT_BASE,
    RECHECK_SLOT_BASE,
    SKIPPED,
    Rung,
    neighbour_rungs,
    open_stages,
    spread_round,
    stage,
    to_hparams,
)
from ._recheck import TUNING_STAGES, Recheck
from ._space import ParamRange, extended_windows, point_in_window, warm_start_point

logger = logging.getLogger(__name__)


def claim_waiting_trial(
    study: optuna.Study,
    order: Callable[[FrozenTrial], float] | None = None,
    eligible: Callable[[FrozenTrial], bool] | None = None,
) -> optuna.Trial | None:
    """Claim the next ``WAITING`` trial, or ``None`` if there is none.

    Unlike ``Study.ask`` this never creates a new trial when the queue is empty: a
    study's trials are exactly the planned ones. The storage arbitrates a race for
    the same trial (only one ``RUNNING`` transition succeeds). ``order`` ranks the
    waiting trials (lowest first; ties keep the queue's order); ``eligible`` leaves
    out those that may not run yet.
    """
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if eligible is not None:
        waiting = [t for t in waiting if eligible(t)]
    if order is not None:
        waiting = sorted(waiting, key=order)
    for frozen in waiting:
        trial = _optuna.start_trial(study, frozen)
        if trial is not None:
            mark_claimed(study, trial)
            return trial
    return None


@dataclass
class Claimed:
    """A trial this worker holds: the Optuna trial, its slot, and what it trains.

    ``confirm_of``: for a confirmation trial, the slot of the search trial whose
    point it re-runs on a fresh seed; ``rule``: for a trial run by a transfer rule,
    the rule; ``recheck``: a rising rung's recheck (:mod:`batchlab.study._recheck`).
    These run to the target or the budget: neither stop-once-beaten nor pruning
    applies to them.
    """

    trial: optuna.Trial
    slot: int
    spec: RunSpec
    confirm_of: int | None = None
    rule: str | None = None
    recheck: bool = False

    @property
    def measures_alone(self) -> bool:
        """Whether the trial measures its point to the end, not whether it beats others."""
        return self.confirm_of is not None or self.rule is not None or self.recheck


#: The stages whose best trials a refinement or confirmation trial starts from.
STAGES_BEFORE = {
    "refine": ("search",),
    "confirm": ("search", "refine", "neighbour"),
    "reserve": ("search", "refine", "neighbour"),
}


def candidates(
    study: optuna.Study, target: Target, stages: tuple[str, ...] = ("search", "refine")
) -> list[FrozenTrial]:
    """A finished search's trials, best first: the points refinement centres on (the
    best of stage ``search``), neighbour trials of other rungs start from (of ``search``
    and ``refine``) and confirmation trials re-run (of every stage before them).

    First those that reached the target, by fewest steps-to-target (then lowest slot);
    then the others (stopped once beaten, or out of budget) by the best target-metric
    value of their curve: with stop-once-beaten on, the runner-up of a rung has often
    not reached the target because it was stopped at the winner's count, and the one
    that got closest is the next candidate (in a rung where none got there: are its
    best points unlucky, or is the target out of reach?).
    """
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if stage(t) in stages and t.user_attrs.get("params") is not None
    ]
    sign = -1.0 if target.direction == "max" else 1.0

    def rank(t: FrozenTrial) -> tuple[int, float, int]:
        steps = t.user_attrs.get("steps_to_target")
        if steps is not None:
            return (0, float(steps), int(t.user_attrs["slot"]))
        values = (t.user_attrs.get("curve") or {}).get(target.metric) or []
        finite = [sign * v for v in values if v is not None and math.isfinite(v)]
        return (1, min(finite) if finite else math.inf, int(t.user_attrs["slot"]))

    return sorted(done, key=rank)


def neighbour_starts(
    config: StudyConfig,
    rung: Rung,
    rung_studies: list[tuple[Rung, optuna.Study]],
    target: Target,
) -> list[WarmStart] | None:
    """Where a rung's neighbour trials start (``[search] neighbours``); ``None`` to wait.

    Per neighbouring rung (:func:`~batchlab.study._plan.neighbour_rungs`), once its
    search and refinement are over: its best point (:func:`candidates`), the learning
    rate moved from its batch size to this one by the optimizer's default rule
    (:func:`batchlab.optim.transfer_hparams`: linear for the SGD family, square root
    for the Adam family; a starting point that brackets the optimum with the other
    neighbour's, not a prediction). A neighbour without a finished trial is left out.
    """
    studies = {r.index: s for r, s in rung_studies}
    starts = []
    for other in neighbour_rungs(config, rung, [r for r, _ in rung_studies]):
        study = studies[other.index]
        if open_stages(study) & {"search", "refine"}:
            return None
        best = candidates(study, target, ("search", "refine"))
        if not best:
            continue
        center = dict(best[0].user_attrs["params"])
        if "lr" in center:
            moved = transfer_hparams(
                {"lr": center["lr"]}, other.batch_size, rung.batch_size, optimizer=config.optimizer
            )
            center["lr"] = float(moved.hparams["lr"])
        starts.append(WarmStart(other.batch_size, center, config.search.refine_width))
    return starts


def claim(
    study: optuna.Study,
    config: StudyConfig,
    rung: Rung,
    count: int,
    warm: WarmStart | None = None,
    order: Callable[[FrozenTrial], float] | None = None,
    target: Target | None = None,
    base: TransferBase | None = None,
    neighbours: Callable[[], list[WarmStart] | None] | None = None,
    recheck: Callable[[], Recheck | None] | None = None,
) -> list[Claimed]:
    """Claim up to ``count`` waiting trials of a rung and resolve their hyperparameters.

    The trial's Optuna params are its planned point; the searched values it runs
    with (different under warm start) are its ``params`` user attribute. ``order``
    ranks the waiting trials (see :func:`~batchlab.study._order.nearest_first`).
    Refinement trials wait until the rung's search is over, then search a window of
    ``refine_width`` around its best point; neighbour trials wait for both and for
    ``neighbours()`` (:func:`neighbour_starts`, asked only then; ``None`` while a
    neighbouring rung is still searching), then trial ``i`` runs exactly at start
    ``i`` of ``n``, or for ``i >= n`` in a ``refine_width`` window around start
    ``i % n`` (clamped to the searched range); confirmation trials wait for all three,
    then each takes the point of its candidate (:func:`candidates`, ranked by ``target``);
    reserve trials wait for all four, then confirm the next candidates where the rung
    needs it (:func:`reserve_not_needed`) and are skipped otherwise; spread trials wait
    for all five (and for their rounds before), then re-run the chosen candidate where
    its seeds disagree (:func:`spread_candidate`) and are skipped otherwise. Trials run by a
    transfer rule wait for all six and for ``base`` (the tuned rung the rule starts
    from, ``None`` until it is over). Recheck trials wait for all six and for
    ``recheck()`` (:func:`~batchlab.study._recheck.recheck_for`, asked only then;
    ``None`` while a smaller rung is still tuning), then run its point or are skipped.
    A claim therefore holds the trials of one stage.
    """
    claimed: list[Claimed] = []
    space = config.search_space()
    # A rung runs in stages: search, then refine (a window around the search's best),
    # then confirm (the best candidates on fresh seeds); a stage waits for the ones
    # before it. Without a target (tests that claim by hand) only the search runs.
    busy = open_stages(study) if target is not None else {"search", "refine"}
    starts = None
    if "neighbour" in busy and not busy & {"search", "refine"} and neighbours is not None:
        starts = neighbours()
    spread, spread_now = None, 0
    if "spread" in busy and not busy & (TUNING_STAGES - {"spread"}) and target is not None:
        spread_now = open_spread_round(study)  # a round waits for the rounds before it
        spread = spread_candidate(study, config.search.spread_ratio, spread_now)
    rechecked = None
    if "recheck" in busy and not busy & TUNING_STAGES and recheck is not None:
        rechecked = recheck()
    ready = {
        "search": True,
        "refine": "search" not in busy,
        "neighbour": starts is not None,
        "confirm": not busy & {"search", "refine", "neighbour"},
        "reserve": not busy & {"search", "refine", "neighbour", "confirm"},
        "spread": spread is not None,
        "rule": base is not None and not busy & TUNING_STAGES,
        "recheck": rechecked is not None,
    }
    ranked: dict[str, list[FrozenTrial]] = {}  # per stage, read once: its stages before are over
    while len(claimed) < count:
        trial = claim_waiting_trial(
            study,
            order,
            eligible=lambda t: (
                ready[stage(t)] and (stage(t) != "spread" or spread_round(t) == spread_now)
            ),
        )
        if trial is None:
            break
        confirm_of = None
        try:
            kind = stage(trial)
            if kind == "rule":
                assert base is not None  # (see ``ready`` above)
                if base.hparams is None or base.params is None:
                    _end_unrun(
                        study,
                        trial,
                        "error",
                        f"nothing to transfer: batch size {base.batch_size} never reached "
                        "the target",
                    )
                    continue
                spec = _by_rule(trial, config, rung, base)
                claimed.append(
                    Claimed(
                        trial, int(trial.user_attrs["slot"]), spec, rule=trial.user_attrs["rule"]
                    )
                )
                continue
            if kind == "recheck":
                assert rechecked is not None  # (see ``ready`` above)
                if rechecked.params is None:
                    _end_unrun(study, trial, SKIPPED, f"recheck not run: {rechecked.reason}")
                    continue
                slot = int(trial.user_attrs["slot"])
                first = None if slot == RECHECK_SLOT_BASE else RECHECK_SLOT_BASE
                spec = _recheck(trial, config, rung, rechecked, first)
                claimed.append(Claimed(trial, slot, spec, first, recheck=True))
                continue
            if kind == "spread":
                assert spread is not None  # (see ``ready`` above)
                if spread.candidate is None:
                    _end_unrun(study, trial, SKIPPED, f"spread not run: {spread.reason}")
                    continue
                trial.set_user_attr("spread_reason", spread.reason)
                spec = _confirm(trial, config, rung, spread.candidate)
                confirm_of = int(spread.candidate.user_attrs["slot"])
                claimed.append(Claimed(trial, int(trial.user_attrs["slot"]), spec, confirm_of))
                continue
            if kind == "neighbour":
                assert starts is not None  # (see ``ready`` above)
                if not starts:
                    _end_unrun(
                        study,
                        trial,
                        "error",
                        "nothing to start from: no neighbouring rung finished a trial",
                    )
                    continue
                index = int(trial.user_attrs["slot"]) - NEIGHBOUR_SLOT_BASE
                start = starts[index % len(starts)]
                width = 0.0 if index < len(starts) else start.width
                window = WarmStart(start.from_batch_size, start.center, width)
                spec = _resolve(trial, config, rung, space, window)
                claimed.append(Claimed(trial, int(trial.user_attrs["slot"]), spec))
                continue
            if kind != "search" and kind not in ranked:
                assert target is not None  # (see ``ready`` above)
                ranked[kind] = candidates(study, target, STAGES_BEFORE[kind])
            best = ranked.get(kind, [])
            if kind == "reserve":
                rank = int(trial.user_attrs["confirm_rank"])
                skip = reserve_not_needed(study)
                if skip is None and rank >= len(best):
                    skip = f"no candidate of rank {rank} to confirm ({len(best)} finished)"
                if skip is not None:
                    _end_unrun(study, trial, SKIPPED, f"reserve not run: {skip}")
                    continue
            if kind != "search" and not best:
                _end_unrun(study, trial, "error", f"nothing to {kind}: no search trial finished")
                continue
            if kind in ("confirm", "reserve"):
                candidate = best[int(trial.user_attrs["confirm_rank"]) % len(best)]
                confirm_of = int(candidate.user_attrs["slot"])
                spec = _confirm(trial, config, rung, candidate)
            elif kind == "refine":
                center = dict(best[0].user_attrs["params"])
                window = WarmStart(rung.batch_size, center, config.search.refine_width)
                extend = extended_windows(
                    center,
                    space,
                    config.search.refine_width,
                    best_on_edge(center, [dict(t.user_attrs["params"]) for t in best[1:]], space),
                    config.search.edge_extension,
                )
                spec = _resolve(trial, config, rung, space, window, extend)
            else:
                spec = _resolve(trial, config, rung, space, warm)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Declared dead by a peer before its first heartbeat (an overloaded machine):
            # its slot was re-enqueued and runs again, so this claim is dropped.
            logger.warning(
                "trial %d was declared dead by another worker while being claimed; skipping it",
                trial.number,
            )
            continue
        claimed.append(Claimed(trial, int(trial.user_attrs["slot"]), spec, confirm_of))
    return claimed


def _end_unrun(study: optuna.Study, trial: optuna.Trial, status: str, reason: str) -> None:
    """End a claimed trial without training it: ``FAIL`` with its ``status`` (``SKIPPED``:
    not needed, a final outcome; ``"error"``: nothing to run) and ``reason``."""
    trial.set_user_attr("status", status)
    trial.set_user_attr("reason", reason)
    study.tell(trial, state=TrialState.FAIL)


def confirmed_runs(
    study: optuna.Study, counted: Callable[[FrozenTrial], bool]
) -> tuple[list[FrozenTrial], list[list[int | None]]]:
    """A rung's confirmed candidates so far, as the results list them: per candidate
    (rank order), its search trial and its steps-to-target on every seed, search trial
    first, counting the confirmation runs that are ``counted`` alone."""
    done = sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
        key=lambda t: int(t.user_attrs.get("slot", -1)),
    )  # slot order: the candidates in rank order, as the results list them
    runs: dict[int, list[int | None]] = {}
    for trial in done:
        if counted(trial) and trial.user_attrs.get("confirm_of") is not None:
            runs.setdefault(int(trial.user_attrs["confirm_of"]), []).append(
                trial.user_attrs.get("steps_to_target")
            )
    first = {int(t.user_attrs["slot"]): t for t in done if stage(t) in STAGES_BEFORE["confirm"]}
    slots = [slot for slot in runs if slot in first]
    return (
        [first[slot] for slot in slots],
        [[first[slot].user_attrs.get("steps_to_target"), *runs[slot]] for slot in slots],
    )


def reserve_not_needed(study: optuna.Study) -> str | None:
    """Why a rung's reserve candidates need no confirmation; ``None``: they do.

    Decided from the rung's finished confirmations alone (every one is over once a
    reserve trial may be claimed), so every worker decides alike: the candidate the
    rung would choose (:func:`batchlab.analysis.confirmed_candidate`, the fewest
    median steps over seeds) reached the target on every seed it ran. Otherwise (no
    candidate's median reached it, or the chosen one missed on some seed: a point at
    the edge of stability, fast on one seed and never on another) the next
    candidates are confirmed too.
    """
    # analysis pulls in SciPy's fits, which a worker need not load for the rest.
    from ..analysis import confirmed_candidate

    searched, per_candidate = confirmed_runs(study, lambda t: stage(t) == "confirm")
    chosen = confirmed_candidate(per_candidate) if per_candidate else None
    if chosen is None or None in per_candidate[chosen]:
        return None
    return (
        f"the confirmed candidate of slot {searched[chosen].user_attrs['slot']} reached the "
        f"target on all {len(per_candidate[chosen])} of its seeds"
    )


@dataclass(frozen=True)
class Spread:
    """What a rung's spread trials do (``[search] spread_seeds``): re-run its chosen
    candidate on more seeds, or nothing.

    Attributes:
        candidate: the chosen candidate's search trial; ``None``: they are skipped.
        reason: why, in one sentence (recorded on each of them: ``reason`` where
            skipped, ``spread_reason`` where run).
    """

    candidate: FrozenTrial | None
    reason: str


def open_spread_round(study: optuna.Study) -> int:
    """The first round (:func:`~batchlab.study._plan.spread_round`) of a rung's spread
    trials that has some still waiting or running: the one that may be claimed."""
    active = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    return min((spread_round(t) for t in active if stage(t) == "spread"), default=0)


def spread_candidate(study: optuna.Study, ratio: float, round_: int = 0) -> Spread:
    """Whether a rung's chosen candidate needs more seeds in spread round ``round_``:
    its seeds disagree.

    Decided from the rung's finished confirmations, reserve and spread trials of the
    rounds before alone (every one is over once a trial of this round may be claimed),
    so every worker decides alike. The candidate the rung would choose
    (:func:`batchlab.analysis.confirmed_candidate`) needs more seeds where its most
    steps over its fewest is ``ratio`` or more, or where it missed the target on a seed:
    near the edge of stability one point is fast on one seed and slow or unstable on the
    next, and the median of three is then whichever seed fell in the middle. A later
    round runs only where the rounds before changed the choice to a candidate that had
    no spread seeds yet: its fewer seeds won over another's more.
    """
    from ..analysis import confirmed_candidate

    def counted(trial: FrozenTrial) -> bool:
        kind = stage(trial)
        return kind in ("confirm", "reserve") or (kind == "spread" and spread_round(trial) < round_)

    searched, per_candidate = confirmed_runs(study, counted)
    chosen = confirmed_candidate(per_candidate) if per_candidate else None
    if chosen is None:
        return Spread(None, "no confirmed candidate reached the target on half its seeds")
    steps = per_candidate[chosen]
    slot = searched[chosen].user_attrs["slot"]
    spread_before = {
        int(t.user_attrs["confirm_of"])
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if stage(t) == "spread" and counted(t) and t.user_attrs.get("confirm_of") is not None
    }
    if slot in spread_before:
        seeds = ", ".join("never" if s is None else str(s) for s in steps)
        return Spread(
            None, f"the chosen candidate (slot {slot}: {seeds} steps) ran its spread seeds"
        )
    reached = [s for s in steps if s is not None]
    if len(reached) < len(steps):
        return Spread(
            searched[chosen],
            f"the chosen candidate (slot {slot}) missed the target on "
            f"{len(steps) - len(reached)} of its {len(steps)} seeds",
        )
    spread = max(reached) / max(min(reached), 1)
    seeds = f"the chosen candidate's seeds (slot {slot}: {', '.join(map(str, steps))} steps)"
    if spread < ratio:
        return Spread(None, f"{seeds} agree within {spread:.2f}x, under spread_ratio {ratio:g}")
    return Spread(searched[chosen], f"{seeds} spread {spread:.2f}x, spread_ratio {ratio:g} or more")


def _confirm(
    trial: optuna.Trial, config: StudyConfig, rung: Rung, candidate: FrozenTrial
) -> RunSpec:
    """A confirmation trial: its candidate's point and hyperparameters, its own seed."""
    params, hparams = candidate.user_attrs["params"], candidate.user_attrs["hparams"]
    trial.set_user_attr("params", params)
    trial.set_user_attr("hparams", hparams)
    trial.set_user_attr("confirm_of", int(candidate.user_attrs["slot"]))
    trial.set_user_attr("budget_steps", rung.budget_steps)
    return _spec(config, rung, hparams, int(trial.user_attrs["seed"]))


def _recheck(
    trial: optuna.Trial, config: StudyConfig, rung: Rung, recheck: Recheck, first: int | None
) -> RunSpec:
    """A recheck trial: the smaller rung's chosen point, at this rung's budget and on the
    trial's own seed. Trial 0 is the candidate's first run (``first`` ``None``); the
    others re-run it (``first``: trial 0's slot, recorded as their ``confirm_of``), so
    the rung reads one more confirmed candidate."""
    assert recheck.params is not None and recheck.from_batch_size is not None
    params = dict(recheck.params)
    hparams = to_hparams(config, params, rung.budget_steps)
    if first is not None:
        trial.set_user_attr("confirm_of", first)
    trial.set_user_attr("params", params)
    trial.set_user_attr("hparams", hparams)
    trial.set_user_attr("recheck_from", recheck.from_batch_size)
    trial.set_user_attr("budget_steps", rung.budget_steps)
    return _spec(config, rung, hparams, int(trial.user_attrs["seed"]))


def _by_rule(trial: optuna.Trial, config: StudyConfig, rung: Rung, base: TransferBase) -> RunSpec:
    """A trial run by a transfer rule: the base rung's tuned point, moved to this rung.

    The searched values are the base's (schedule fractions become steps of this
    rung's budget); then :func:`batchlab.optim.transfer_hparams` moves the learning
    rate by the trial's rule, and β2 and weight decay by theirs.
    """
    assert base.params is not None
    rule = str(trial.user_attrs["rule"])
    hparams = to_hparams(config, dict(base.params), rung.budget_steps)
    moved = transfer_hparams(
        hparams,
        base.batch_size,
        rung.batch_size,
        optimizer=config.optimizer,
        lr_rule=rule,
        noise_scale=config.transfer.noise_scale,
    ).hparams
    hparams = {key: float(value) for key, value in moved.items()}
    trial.set_user_attr("params", dict(base.params))
    trial.set_user_attr("hparams", hparams)
    trial.set_user_attr("rule_from", base.batch_size)
    trial.set_user_attr("budget_steps", rung.budget_steps)
    return _spec(config, rung, hparams, int(trial.user_attrs["seed"]))


def _spec(config: StudyConfig, rung: Rung, hparams: dict[str, float], seed: int) -> RunSpec:
    return RunSpec(
        batch_size=rung.batch_size,
        optimizer=config.optimizer,
        hparams=hparams,
        max_steps=rung.budget_steps,
        eval_every=rung.eval_every,
        seed=seed,
        decay=config.schedule.decay,
        resolution=config.evaluation.resolution,
        precision=config.performance.precision,
        compile=config.performance.compile,
    )


def best_on_edge(
    best: dict[str, float], others: list[dict[str, float]], space: dict[str, ParamRange]
) -> dict[str, str]:
    """The dimensions in which a rung's best search point is on an edge of the
    configured range, and which (``"low"``/``"high"``), as the results flag it
    (:func:`batchlab.results.edge_side`; ``others``: the rung's other search points)."""
    edges = {}
    for name, r in space.items():
        searched = SearchRange(r.low, r.high, r.scale)
        side = edge_side(
            range_position(best[name], searched),
            [range_position(p[name], searched) for p in others if name in p],
        )
        if side is not None:
            edges[name] = side
    return edges


def _resolve(
    trial: optuna.Trial,
    config: StudyConfig,
    rung: Rung,
    space: dict[str, ParamRange],
    warm: WarmStart | None,
    extend: dict[str, tuple[float, float]] | None = None,
) -> RunSpec:
    """A claimed trial's searched values and hyperparameters, recorded; the spec it trains.

    ``extend``: the dimensions whose window reaches beyond the configured range
    (:func:`~batchlab.study._space.extended_windows`), recorded as ``extended``.
    """
    planned = {
        name: trial.suggest_float(name, r.low, r.high, log=r.scale == "log")
        for name, r in space.items()
    }
    params = planned
    if warm is not None:
        if warm.center is not None:
            params = warm_start_point(params, warm.center, space, warm.width)
        trial.set_user_attr("warm_start", warm.to_dict())
    if extend:
        for name, window in extend.items():
            params[name] = point_in_window(planned[name], space[name], window)
        trial.set_user_attr("extended", {name: list(w) for name, w in extend.items()})
    trial.set_user_attr("params", params)
    hparams = to_hparams(config, params, rung.budget_steps)
    trial.set_user_attr("hparams", hparams)
    trial.set_user_attr("budget_steps", rung.budget_steps)
    return _spec(config, rung, hparams, int(trial.user_attrs["seed"]))


def release_interrupted(study: optuna.Study, claimed: list[Claimed]) -> None:
    """Give back the unfinished trials of an interrupted worker (Ctrl-C): re-enqueue them.

    Under the storage's ``reap`` lock, as a reaper would: a peer reaping the same
    trial at that moment (a late heartbeat) re-enqueues it, and this does not.
    """
    with reaping(study):
        for c in claimed:
            if _optuna.reload_trial(study, c.trial).state.is_finished():
                continue
            try:
                c.trial.set_user_attr("status", "interrupted")
                study.tell(c.trial, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # reaped by a peer just now, which re-enqueued it
            requeue(study, _optuna.reload_trial(study, c.trial))


def _warn_reaped(claimed: Claimed) -> None:
    # A heartbeat starved for longer than the grace period (an overloaded machine)
    # makes a peer fail the trial and re-enqueue its slot; the slot runs again and
    # is recorded there, so this copy's result is dropped, not written twice.
    logger.warning(
        "trial %d was declared dead by another worker (late heartbeat) and its slot "
        "re-enqueued; dropping this run's result, the slot runs again",
        claimed.trial.number,
    )


def record(
    study: optuna.Study,
    claimed: Claimed,
    result: RunResult,
    wall_time: float,
    ensemble: int,
    device: str = "cpu",
) -> bool:
    """Write a finished trial's result; ``False`` if the trial was reaped meanwhile.

    ``device`` is where it trained (its precision is in its spec): both are recorded.
    """
    trial = claimed.trial
    try:
        for key, value in {
            "status": result.status,
            "steps_to_target": result.steps_to_target,
            "resolution_steps": result.resolution_steps,
            "reason": result.reason,
            "wall_time_s": wall_time,
            "ensemble": ensemble,
            "threads": torch.get_num_threads(),
            "device": device,
            "precision": claimed.spec.precision,
            "compiled": claimed.spec.compile,
            "curve": {"steps": result.steps, **result.to_dict()["metrics"]},
        }.items():
            trial.set_user_attr(key, value)
        steps = result.steps_to_target
        study.tell(trial, float(steps) if steps is not None else math.inf)
    except optuna.exceptions.UpdateFinishedTrialError:
        _warn_reaped(claimed)
        return False
    return True


def record_failure(
    study: optuna.Study, claimed: Claimed, error: BaseException, wall_time: float
) -> str | None:
    """Write a failed trial's reason and traceback; ``None`` if it was reaped meanwhile."""
    reason = describe_failure(error)
    trial = claimed.trial
    try:
        trial.set_user_attr("status", "error")
        trial.set_user_attr("reason", reason)
        trial.set_user_attr("traceback", traceback.format_exc())
        trial.set_user_attr("wall_time_s", wall_time)
        study.tell(trial, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        _warn_reaped(claimed)
        return None
    return reason


def describe_failure(error: BaseException) -> str:
    """A failed trial's reason in one line (out-of-memory errors say so first)."""
    if isinstance(error, MemoryError) or "out of memory" in str(error).lower():
        return f"out of memory: {error}"
    return f"{type(error).__name__}: {error}"
