"""Hand-built rung records for tests of what is read from a rung's confirmed candidates."""

from __future__ import annotations

from batchlab.analysis import median_steps
from batchlab.results import RungResult, TrialRecord
from batchlab.study._plan import CONFIRM_SLOT_BASE, RECHECK_SLOT_BASE


def record(
    slot: int,
    steps: int | None,
    lr: float,
    confirm_of: int | None = None,
    recheck_from: int | None = None,
) -> TrialRecord:
    """A finished trial at ``lr`` (numbered by its slot) that took ``steps``."""
    return TrialRecord(
        number=slot,
        slot=slot,
        seed=slot,
        params={"lr": lr},
        hparams={"lr": lr},
        status="reached" if steps is not None else "budget",
        steps_to_target=steps,
        reason=None,
        wall_time_s=1.0,
        curve=None,
        confirm_of=confirm_of,
        recheck_from=recheck_from,
    )


def rung(
    batch_size: int,
    seeds: list[int | None],
    lr: float = 0.1,
    recheck: tuple[int, float, list[int | None]] | None = None,
) -> RungResult:
    """A tuned rung whose one confirmed candidate (search slot 0, at ``lr``) ran ``seeds``,
    and, with ``recheck = (smaller B, its lr, steps per seed)``, a recheck of that point."""
    trials = [record(0, seeds[0], lr)] + [
        record(CONFIRM_SLOT_BASE + i, s, lr, confirm_of=0) for i, s in enumerate(seeds[1:])
    ]
    if recheck is not None:
        source, source_lr, runs = recheck
        trials += [
            record(
                RECHECK_SLOT_BASE + i,
                s,
                source_lr,
                confirm_of=None if i == 0 else RECHECK_SLOT_BASE,
                recheck_from=source,
            )
            for i, s in enumerate(runs)
        ]
    median = median_steps(seeds)
    return RungResult(
        batch_size=batch_size,
        budget_steps=1000,
        eval_every=10,
        trials_planned=len(trials),
        trials_done=len(trials),
        trials_running=0,
        steps_to_target=median,
        best_hparams=None if median is None else {"lr": lr},
        best_trial=None if median is None else 0,
        trials=trials,
        search_steps=seeds[0],
        seed_steps=list(seeds),
    )
