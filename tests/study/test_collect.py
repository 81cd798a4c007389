"""collect_rung: a rung's records built from its Optuna trials, and the best chosen once."""

from __future__ import annotations

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from batchlab.results import RungResult, TrialRecord
from batchlab.study._collect import collect_rung
from batchlab.study._plan import PLANNED_ATTR, Rung

RUNG = Rung(index=0, batch_size=32, budget_steps=1000, eval_every=50, study_name="s/bs000032")


def _trial(slot: int, steps: int | None, *, state=TrialState.COMPLETE, status="reached"):
    lr = 0.01 * (slot + 1)
    return create_trial(
        state=state,
        value=None if state != TrialState.COMPLETE else float(steps or 1000),
        params={"lr": lr},
        distributions={"lr": FloatDistribution(1e-3, 1.0, log=True)},
        user_attrs={
            "slot": slot,
            "seed": 100 + slot,
            "hparams": {"lr": lr},
            "status": status,
            "steps_to_target": steps,
        },
    )


def _study(*trials) -> optuna.Study:
    study = optuna.create_study()
    study.set_user_attr(PLANNED_ATTR, 4)
    for trial in trials:
        study.add_trial(trial)
    return study


def test_the_fewest_steps_set_the_rung_and_ties_go_to_the_lowest_slot():
    # Added out of slot order: slots 2 and 1 tie at 300 steps; slot 1 must win.
    study = _study(
        _trial(2, 300), _trial(0, 500), _trial(1, 300), _trial(3, None, status="not_reached")
    )
    rung = collect_rung(RUNG, study)
    assert isinstance(rung, RungResult) and all(isinstance(t, TrialRecord) for t in rung.trials)
    assert [t.slot for t in rung.trials] == [0, 1, 2, 3]
    assert rung.steps_to_target == 300
    assert rung.best is not None and rung.best.slot == 1
    assert rung.best_hparams == {"lr": 0.02}
    assert (rung.trials_planned, rung.trials_done, rung.trials_running) == (4, 4, 0)


def test_a_rung_no_trial_reached_has_no_best():
    study = _study(_trial(0, None, status="not_reached"), _trial(1, None, status="diverged"))
    rung = collect_rung(RUNG, study)
    assert rung.steps_to_target is None and rung.best is None and rung.best_hparams is None


def test_a_slot_finished_twice_counts_once_and_a_dead_workers_trial_not_at_all(caplog):
    failed = _trial(1, None, state=TrialState.FAIL, status=None)  # its worker died: no outcome
    study = _study(_trial(0, 400), _trial(0, 200), failed)
    rung = collect_rung(RUNG, study)
    assert [(t.slot, t.steps_to_target) for t in rung.trials] == [(0, 400)]
    assert rung.steps_to_target == 400
    assert "slot 0 finished twice" in caplog.text
