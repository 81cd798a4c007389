"""Rungs that rise above a smaller rung even at its chosen point leave the fit
(``batchlab.results.rising_after_recheck``, issue [answer])."""

from __future__ import annotations

import math

from batchlab.results import RungResult, TrialRecord, rising_after_recheck, seeds_of
from batchlab.study._plan import CONFIRM_SLOT_BASE, RECHECK_SLOT_BASE


def record(slot: int, steps: int | None, lr: float, confirm_of=None, recheck_from=None):
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


def rung(b: int, seeds: list[int | None], recheck: tuple[int, list[int | None]] | None = None):
    """A rung whose chosen candidate ran ``seeds``, and a recheck from ``recheck[0]``."""
    trials = [record(0, seeds[0], 0.1)] + [
        record(CONFIRM_SLOT_BASE + i, s, 0.1, confirm_of=0) for i, s in enumerate(seeds[1:])
    ]
    if recheck is not None:
        source, runs = recheck
        trials += [
            record(
                RECHECK_SLOT_BASE + i,
                s,
                0.05,
                confirm_of=None if i == 0 else RECHECK_SLOT_BASE,
                recheck_from=source,
            )
            for i, s in enumerate(runs)
        ]
    return RungResult(
        batch_size=b,
        budget_steps=1000,
        eval_every=10,
        trials_planned=len(trials),
        trials_done=len(trials),
        trials_running=0,
        steps_to_target=None if None in seeds else sorted(seeds)[1],
        best_hparams={"lr": 0.1},
        best_trial=0,
        trials=trials,
        seed_steps=list(seeds),
    )


def test_a_recheck_that_rises_too_leaves_the_rung_out_of_the_fit():
    rungs = [
        rung(256, [190, 200, 210]),
        rung(512, [244, 213, 217]),
        rung(2048, [384, 360, 468], recheck=(512, [372, 286, 420])),
    ]
    reasons = rising_after_recheck(rungs)
    assert reasons[:2] == [None, None]
    assert reasons[2] is not None
    assert reasons[2].startswith(
        "B = 2048 needs more steps than B = 512 even at B = 512's chosen point "
        "(372, 286, 420 steps against 244, 213, 217 steps)"
    )
    assert reasons[2].endswith("so the fit leaves it out.")


def test_a_recheck_that_does_not_rise_keeps_the_rung():
    # One recheck seed (240) is as fast as a seed of the smaller rung's (244): no rise.
    rungs = [rung(512, [244, 213, 217]), rung(2048, [384, 360, 468], (512, [372, 240, 420]))]
    assert rising_after_recheck(rungs) == [None, None]
    # Without a recheck nothing is left out, however far the rung rises.
    assert rising_after_recheck([rung(512, [244, 213, 217]), rung(2048, [900] * 3)]) == [None] * 2


def test_a_recheck_that_never_reaches_rises_above_a_reached_source():
    rungs = [rung(512, [244, 213, 217]), rung(2048, [None] * 3, (512, [None, None, None]))]
    assert "(never, never, never steps against" in rising_after_recheck(rungs)[1]
    assert seeds_of(rungs[1]) == [math.inf] * 3
