"""A study's analysis from its rungs: the one place rung records become the analysis' inputs.

The study writes the ``analysis`` block of ``results.json`` with :func:`summarize_rungs`,
and the report recomputes its numbers with the same call, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ._rises import rising_after_recheck
from ._schema import RungResult
from ._space import SearchRange, search_floor

if TYPE_CHECKING:
    from ..analysis import LadderSummary


def rung_lrs(rungs: Sequence[RungResult]) -> list[float | None]:
    """The tuned learning rate of each rung (``None`` where it has none or never reached)."""
    lrs: list[float | None] = []
    for rung in rungs:
        lr = (rung.best_hparams or {}).get("lr")
        if lr is None and rung.best is not None:
            lr = rung.best.hparams.get("lr", rung.best.params.get("lr"))
        lrs.append(lr if rung.steps_to_target is not None and lr is not None and lr > 0 else None)
    return lrs


def rung_hparams(rungs: Sequence[RungResult]) -> list[dict[str, float] | None]:
    """The tuned hyperparameters of each rung (``None`` where it has none or never reached)."""
    tuned: list[dict[str, float] | None] = []
    for rung in rungs:
        hparams = rung.best_hparams or (rung.best.hparams if rung.best is not None else None)
        tuned.append(dict(hparams) if rung.steps_to_target is not None and hparams else None)
    return tuned


def summarize_rungs(
    rungs: Sequence[RungResult],
    *,
    search_space: Mapping[str, SearchRange] | None = None,
    train_size: int | None = None,
    tol: float = 0.25,
) -> LadderSummary:
    """:func:`batchlab.analysis.summarize_ladder` of a study's rungs.

    Args:
        rungs: the study's rungs, ascending.
        search_space: the configured ranges; with them each rung's interval reaches
            down to its search floor (:func:`batchlab.results.search_floor`).
        train_size: the workload's training examples (weight-decay timescales in epochs).
        tol: the regime tolerance.
    """
    # analysis pulls in SciPy's fits, which worker processes never need: import on use.
    from ..analysis import summarize_ladder

    return summarize_ladder(
        [r.batch_size for r in rungs],
        [r.steps_to_target for r in rungs],
        rung_lrs(rungs),
        budgets=[r.budget_steps if r.complete else None for r in rungs],
        candidates=[r.candidates for r in rungs],
        hparams=rung_hparams(rungs),
        train_size=train_size,
        rule_runs=[r.rule_steps for r in rungs],
        resolutions=[r.resolution_steps for r in rungs],
        floors=[search_floor(r, search_space) if search_space else None for r in rungs],
        left_out=rising_after_recheck(rungs),
        tol=tol,
    )
