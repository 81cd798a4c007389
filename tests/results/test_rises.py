"""Rungs that rise above a smaller rung even at its chosen point leave the fit
(``batchlab.results.rising_after_recheck``, issue [answer])."""

from __future__ import annotations

import math

from batchlab.report._summary import recheck_notes
from batchlab.results import StudyData, recheck_stalled, rising_after_recheck, seeds_of

from .rungs import rung


def test_a_recheck_that_rises_too_leaves_the_rung_out_of_the_fit():
    rungs = [
        rung(256, [190, 200, 210]),
        rung(512, [244, 213, 217]),
        rung(2048, [384, 360, 468], recheck=(512, 0.05, [372, 286, 420])),
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
    rungs = [
        rung(512, [244, 213, 217]),
        rung(2048, [384, 360, 468], recheck=(512, 0.05, [372, 240, 420])),
    ]
    assert rising_after_recheck(rungs) == [None, None]
    # Without a recheck nothing is left out, however far the rung rises.
    assert rising_after_recheck([rung(512, [244, 213, 217]), rung(2048, [900] * 3)]) == [None] * 2


def test_a_recheck_that_never_reaches_rises_above_a_reached_source():
    rungs = [
        rung(512, [244, 213, 217]),
        rung(2048, [None] * 3, recheck=(512, 0.05, [None, None, None])),
    ]
    assert "(never, never, never steps against" in rising_after_recheck(rungs)[1]
    assert seeds_of(rungs[1]) == [math.inf] * 3


def test_a_recheck_that_mostly_never_reaches_counts_no_rise_and_keeps_a_reached_rung():
    # protocol-2d, study seed 0: B = 256's point stalled at B = 1024 and 2048 on two of
    # three seeds, while those rungs' own candidates reached the target on all three.
    source = rung(256, [159, 174, 192])
    stalled = [
        rung(1024, [224, 232, 220], recheck=(256, 0.05, [None, None, 1416])),
        rung(2048, [201, 236, 216], recheck=(256, 0.05, [306, None, None])),
    ]
    assert rising_after_recheck([source, *stalled]) == [None] * 3
    # Two of three recheck seeds counted steps, all above the smaller rung's: a rise.
    counted = rung(1024, [240, 274, 264], recheck=(256, 0.05, [240, 432, None]))
    reasons = rising_after_recheck([rung(256, [212, 220, 224]), counted])
    assert reasons[1] is not None and "(240, 432, never steps against" in reasons[1]


def test_a_stalled_recheck_leaves_out_a_rung_that_reached_nowhere():
    # The rung's own median never reached the target either: nothing reached it here.
    rungs = [
        rung(256, [159, 174, 192]),
        rung(2048, [None, None, 300], recheck=(256, 0.05, [306, None, None])),
    ]
    assert rungs[1].steps_to_target is None
    assert rising_after_recheck(rungs)[1] is not None


def test_the_report_says_a_stalled_recheck_measured_no_rise():
    rungs = (
        rung(256, [159, 174, 192]),
        rung(1024, [224, 232, 220], recheck=(256, 0.05, [None, None, 1416])),
        rung(2048, [384, 360, 468], recheck=(256, 0.05, [372, 286, 420])),
    )
    assert [recheck_stalled(r) for r in rungs] == [False, True, False]
    study = StudyData("s", None, {}, {}, {}, rungs, {}, None, None)
    stalled, counted = recheck_notes(study)
    assert stalled == (
        "Recheck: B = 1024 needed more steps than a smaller batch size on every seed, so "
        "it also ran B = 256's chosen point (3 seeds: never, never, 1416 steps); its own "
        "candidate stayed the faster. That point never reached the target here on most "
        "seeds: it counted no steps, so it measured no rise, and the rung stays in the "
        "fit at its own count."
    )
    assert counted.endswith("its own candidate stayed the faster.")
