"""Assertions shared by the study tests."""

from __future__ import annotations


def final_trials_per_slot(storage_url: str) -> dict[str, dict[int, int]]:
    """Per rung study: how many final (completed or errored) trials each slot has."""
    import optuna

    from batchlab.study import open_storage, slot_counts

    storage = open_storage(storage_url)
    return {
        summary.study_name: slot_counts(
            optuna.load_study(study_name=summary.study_name, storage=storage)
        )
        for summary in optuna.get_all_study_summaries(storage)
    }


def assert_each_slot_once(storage_url: str, trials_per_rung: int) -> None:
    """Every planned slot of every rung finished exactly once."""
    for name, counts in final_trials_per_slot(storage_url).items():
        assert counts == dict.fromkeys(range(trials_per_rung), 1), (name, counts)


def trial_outcomes(result) -> list[tuple]:
    """(batch size, slot, status, steps-to-target) of every trial, for comparing runs."""
    return [
        (r.batch_size, t.slot, t.status, t.steps_to_target) for r in result.rungs for t in r.trials
    ]


def assert_same_results(a, b) -> None:
    """Two runs of one study (e.g. 4 workers and 1) measured the same thing.

    Every rung has the same best steps-to-target, and every trial the same outcome,
    except where stop-once-beaten cut a trial short in one run: which trials have
    finished when another is evaluated depends on the workers' timing, so a trial
    may be ``beaten`` in one run and run on to a result in the other. That result
    then cannot beat the rung's best.
    """
    assert a.steps_to_target == b.steps_to_target
    best = a.steps_to_target
    outcomes_a, outcomes_b = trial_outcomes(a), trial_outcomes(b)
    assert [o[:2] for o in outcomes_a] == [o[:2] for o in outcomes_b]
    for x, y in zip(outcomes_a, outcomes_b, strict=True):
        if "beaten" in (x[2], y[2]):
            other = y if x[2] == "beaten" else x
            assert other[3] is None or other[3] >= best[x[0]], (x, y)
        else:
            assert x == y
