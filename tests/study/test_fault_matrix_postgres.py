"""Faults of a study shared through PostgreSQL (issue #22, docs/reliability.md).

Several ``batchlab study worker`` processes share a study on a throwaway server; a
fault is injected while they run: one of three workers is killed (``kill -9``) while
it holds a trial, or the server is stopped for 20 s (``BATCHLAB_PG_OUTAGE_S``) and
started again. The bar: every planned slot finished exactly once, none missing; or a
non-zero exit that says what happened and how to go on, after which the study
completes with nothing lost or doubled.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from batchlab.study import Study, StudyConfig, open_storage
from batchlab.study._liveness import PID_ATTR

from .checks import assert_each_slot_once, final_trials_per_slot
from .conftest import LINREG_STUDY
from .postgres import Server, postgres_server, start_server, stop_server

RUNGS = 3  # LINREG_STUDY's ladder
OUTAGE_S = float(os.environ.get("BATCHLAB_PG_OUTAGE_S", "20"))


@pytest.fixture
def server():
    """A throwaway server (trust authentication) with an empty database ``studies``."""
    with postgres_server() as server:  # skips without PostgreSQL
        import psycopg

        with psycopg.connect(
            host=str(server.data), port=server.port, user="batchlab", dbname="postgres"
        ) as connection:
            connection.autocommit = True
            connection.execute("CREATE DATABASE studies")
        yield server


def url_of(server: Server) -> str:
    return f"postgresql+psycopg://batchlab@127.0.0.1:{server.port}/studies"


def planned_study(directory: Path, url: str, trials: int, steps: int) -> Study:
    """A linreg study in ``url``, planned (trials one at a time, ~``steps`` each)."""
    config = copy.deepcopy(LINREG_STUDY)
    config["storage"] = url
    config["search"]["trials_per_rung"] = trials
    config["budget"]["steps"] = steps
    config["performance"] = {"ensemble_size": 1}  # one trial per claim: kills hit one
    study = Study(StudyConfig.model_validate(config), directory)
    study.prepare()
    return study


def start_worker(url: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "batchlab", "study", "worker", url, "--threads", "1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
        )


def trials(url: str, states: tuple[TrialState, ...]) -> list[tuple[str, optuna.trial.FrozenTrial]]:
    """(rung study, trial) of every trial of the study in one of ``states``."""
    storage = open_storage(url, create=False)
    found = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        found += [(summary.study_name, t) for t in study.get_trials(states=states)]
    return found


def wait_all(processes: list[subprocess.Popen], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"workers still running after {timeout:.0f} s")
    return [p.returncode for p in processes]


def wait_for(condition, workers, logs, what: str, timeout: float = 180):
    """Poll ``condition()`` until it is truthy (returned), while every worker stays alive."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, what
        assert all(w.poll() is None for w in workers), [log.read_text() for log in logs]
        time.sleep(0.05)
    return value


@pytest.mark.slow
def test_kill_9_one_of_three_workers(tmp_path, server):
    url = url_of(server)
    per_rung = 8
    study = planned_study(tmp_path / "study", url, per_rung, steps=3000)
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [start_worker(url, log) for log in logs]
    by_pid = {w.pid: w for w in workers}
    # Wait until a worker holds a RUNNING trial, then kill -9 exactly that worker.
    held = wait_for(
        lambda: [
            (n, t)
            for n, t in trials(url, (TrialState.RUNNING,))
            if t.system_attrs.get(PID_ATTR) in by_pid
        ],
        workers,
        logs,
        "no worker ever held a trial",
    )
    name, trial = held[0]
    victim = by_pid[trial.system_attrs[PID_ATTR]]
    victim.send_signal(signal.SIGKILL)
    victim.wait()  # reaped: no zombie, so its peers see at once that the pid is gone
    killed = [(n, t) for n, t in held if t.system_attrs[PID_ATTR] == victim.pid]
    survivors = [w for w in workers if w is not victim]
    codes = wait_all(survivors, timeout=300)
    outputs = [logs[workers.index(w)].read_text() for w in survivors]
    assert codes == [0, 0], outputs
    assert all("No trials left" in out and "Traceback" not in out for out in outputs), outputs
    assert victim.returncode == -signal.SIGKILL

    # Nothing lost, nothing finished twice; the killed trials' slots were run again.
    assert_each_slot_once(url, per_rung)
    counts = final_trials_per_slot(url)
    assert sum(sum(c.values()) for c in counts.values()) == RUNGS * per_rung  # planned
    assert study.unfinished() == {}
    print(f"\nkilled pid {victim.pid} holding trial(s) {[(n, t.number) for n, t in killed]}")
    finished = trials(url, (TrialState.COMPLETE, TrialState.FAIL))
    for rung, dead in killed:
        after = {t.number: t for n, t in finished if n == rung}
        assert after[dead.number].state == TrialState.FAIL
        assert after[dead.number].user_attrs.get("status") == "worker_died"
        slot = dead.user_attrs["slot"]
        rerun = [
            t for t in after.values() if t.user_attrs.get("slot") == slot and t.number > dead.number
        ]
        assert [t.state for t in rerun] == [TrialState.COMPLETE], rerun


@pytest.mark.slow
def test_server_stopped_and_restarted_mid_study(tmp_path, server):
    url = url_of(server)
    per_rung = 10
    study = planned_study(tmp_path / "study", url, per_rung, steps=2000)
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [start_worker(url, log) for log in logs]
    # Mid-study: some trials done, most not.
    wait_for(
        lambda: len(trials(url, (TrialState.COMPLETE,))) >= 2, workers, logs, "no trial finished"
    )
    running = len(trials(url, (TrialState.RUNNING,)))
    stop_server(server, mode="fast")
    stopped = time.monotonic()
    # The workers stop, each saying the storage became unreachable and how to go on.
    codes = wait_all(workers, timeout=120)
    outputs = [log.read_text() for log in logs]
    assert codes == [1, 1], outputs
    for out in outputs:
        text = " ".join(out.split())
        assert "became unreachable" in text and "batchlab study resume" in text, out
        assert "Traceback" not in out, out
    exited_s = time.monotonic() - stopped
    time.sleep(max(0.0, OUTAGE_S - exited_s))
    start_server(server)
    outage_s = time.monotonic() - stopped

    # Resumed where it was started: the study completes, each slot once.
    resume = [sys.executable, "-m", "batchlab", "study", "resume", str(study.directory)]
    try:
        done = subprocess.run(
            [*resume, "--workers", "2"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired as hung:  # say what it waited on
        held = [(n, t.number, t.system_attrs) for n, t in trials(url, (TrialState.RUNNING,))]
        pytest.fail(f"resume still running after 300 s; running trials: {held}\n{hung.stdout}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert_each_slot_once(url, per_rung)
    counts = final_trials_per_slot(url)
    assert sum(sum(c.values()) for c in counts.values()) == RUNGS * per_rung
    assert study.unfinished() == {}
    reruns = [
        t for _, t in trials(url, (TrialState.FAIL,)) if t.user_attrs.get("status") == "worker_died"
    ]
    print(
        f"\nrunning at the stop: {running}; workers exited {exited_s:.1f} s after it, "
        f"codes {codes}; outage {outage_s:.1f} s; failed as worker_died and re-run: "
        f"{len(reruns)}; finished {sum(sum(c.values()) for c in counts.values())} of "
        f"{RUNGS * per_rung}\n{outputs[0]}"
    )


def _prepare_at_once(url: str, directory: str, barrier) -> None:
    """One process of the planning race below: wait for the others, then plan.

    Enqueueing a rung's slots is slowed by 0.5 s, which widens the window between
    reading how many slots are planned and recording the new count: without the
    storage's lock, every process reads "none planned" and enqueues them all.
    """
    from dataclasses import replace

    from batchlab.study import _study

    search, *later = _study.PLANNED_STAGES  # the search stage's slots come first

    def slow_enqueue(*args, **kwargs):
        time.sleep(0.5)
        search.enqueue(*args, **kwargs)

    _study.PLANNED_STAGES = (replace(search, enqueue=slow_enqueue), *later)
    config = copy.deepcopy(LINREG_STUDY)
    config["storage"] = url
    study = Study(StudyConfig.model_validate(config), directory)
    study._storage()  # opened (tables created) before the race, as by a running peer
    barrier.wait()
    study.prepare()


@pytest.mark.slow
def test_four_machines_planning_one_study_at_once_plan_each_slot_once(tmp_path, server):
    """Four processes, each with its own study directory (as on four machines), plan
    the same study in one database at the same moment: the storage's advisory lock
    lets one plan it and the others find it planned."""
    import multiprocessing

    url = url_of(server)
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(4)
    planners = [
        spawn.Process(target=_prepare_at_once, args=(url, str(tmp_path / f"machine{i}"), barrier))
        for i in range(4)
    ]
    for p in planners:
        p.start()
    for p in planners:
        p.join(timeout=120)
    assert [p.exitcode for p in planners] == [0, 0, 0, 0]
    waiting = trials(url, (TrialState.WAITING,))
    per_rung: dict[str, list[int]] = {}
    for name, trial in waiting:
        per_rung.setdefault(name, []).append(trial.user_attrs["slot"])
    trials_per_rung = LINREG_STUDY["search"]["trials_per_rung"]
    assert len(per_rung) == RUNGS
    assert all(sorted(s) == list(range(trials_per_rung)) for s in per_rung.values()), per_rung


def _open_at_once(url: str, barrier) -> None:
    barrier.wait()
    open_storage(url)


@pytest.mark.slow
def test_four_machines_opening_a_fresh_database_at_once_all_open_it(server):
    """Optuna creates its tables in a fresh database; four processes doing so at once
    made PostgreSQL refuse all but one (``CREATE TYPE``: duplicate key) before the
    table-creation lock."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(4)
    openers = [
        spawn.Process(target=_open_at_once, args=(url_of(server), barrier)) for _ in range(4)
    ]
    for p in openers:
        p.start()
    for p in openers:
        p.join(timeout=120)
    assert [p.exitcode for p in openers] == [0, 0, 0, 0]


@pytest.mark.slow
def test_the_storage_lock_is_a_postgresql_advisory_lock(tmp_path, server):
    """Held by one connection, refused to another, released at the end of the block."""
    import psycopg

    from batchlab.study._locks import advisory_key, storage_lock

    study = planned_study(tmp_path / "study", url_of(server), trials=2, steps=10)
    key = advisory_key("batchlab:plan:linreg-test")

    def free() -> bool:
        with psycopg.connect(
            host=str(server.data), port=server.port, user="batchlab", dbname="studies"
        ) as other:
            return other.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0]

    with storage_lock(study._storage(), "plan", "linreg-test"):
        assert not free()
    assert free()
