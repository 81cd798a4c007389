"""Claim: whatever kills workers, a study runs every planned trial exactly once.

A randomized soak: many small nqm trials (exact curves, so outcomes are deterministic)
on one journal file, several ``batchlab study worker`` processes at once, and a
seeded random schedule of ``kill -9`` on running workers, each replaced by a fresh
one. When the time is up (or the study is done) a last, unmolested worker finishes
whatever is left, as ``batchlab study resume`` would. It prints trials planned,
finished, duplicated (a slot finished twice) and lost (a slot never finished), the
kills (only of live workers holding a trial that was still unfinished when it died;
a worker starting up or between trials is never a victim), the trials whose dead worker was detected and re-run, and whether every
rung's best steps-to-target equals that of a clean one-worker run of the same study.

Exit code 1 if any trial was duplicated or lost, or the results differ.

Run:  python benchmarks/soak.py [--seconds 120] [--workers 3] [--trials-per-rung 128]
      (tests/study/test_soak.py runs a short bounded variant in CI)
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

import batchlab
from batchlab.study import Study, StudyConfig, open_storage, slot_counts
from batchlab.study._liveness import PID_ATTR
from batchlab.study._optuna import reload_trial
from batchlab.study._plan import planned_count

ROOT = Path(__file__).resolve().parents[1]


def soak_config(trials_per_rung: int, rungs: int, seed: int) -> StudyConfig:
    """A study of many small, exact nqm trials, with a fast heartbeat."""
    return StudyConfig.model_validate(
        {
            "name": "soak",
            "optimizer": "momentum",
            "seed": seed,
            "workload": {"name": "nqm", "params": {"dim": 10000}},
            "ladder": {"batch_sizes": [2 ** (2 + 2 * k) for k in range(rungs)]},
            "search": {
                "trials_per_rung": trials_per_rung,
                "space": {
                    "lr": {"low": 1e-2, "high": 2.0},
                    "one_minus_momentum": {"low": 1e-2, "high": 1.0},
                },
            },
            "budget": {"steps": 8000},
            "evaluation": {"every": 10},
            # Every trial runs its whole budget (~50 ms of exact curve), so that kills
            # land in trials as well as in claims and journal writes.
            "stopping": {"at_target": False, "once_beaten": False},
            "workers": {"heartbeat_interval": 0.5, "grace_period": 3.0},
        }
    )


def start_worker(storage_url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "batchlab", "study", "worker", storage_url, "--threads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def trials_held(
    rung_studies: list[optuna.Study], pids: set[int]
) -> dict[int, list[tuple[optuna.Study, FrozenTrial]]]:
    """Pid -> the ``RUNNING`` trials each of the worker processes ``pids`` holds now."""
    held: dict[int, list[tuple[optuna.Study, FrozenTrial]]] = {}
    for study in rung_studies:
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid = trial.system_attrs.get(PID_ATTR)
            if pid in pids:
                held.setdefault(pid, []).append((study, trial))
    return held


def still_held(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Whether a killed worker's trial was unfinished when it died (running, or reaped)."""
    now = reload_trial(study, trial)
    return now.state == TrialState.RUNNING or (
        now.state == TrialState.FAIL and now.user_attrs.get("status") == "worker_died"
    )


def soak(
    directory: Path,
    *,
    seconds: float,
    workers: int,
    trials_per_rung: int,
    rungs: int,
    seed: int,
    mean_kill_interval_s: float,
) -> dict[str, object]:
    """Run the soak; returns its figures (see the module docstring)."""
    shutil.rmtree(directory, ignore_errors=True)
    config = soak_config(trials_per_rung, rungs, seed)
    study = Study(config, directory / "soak")
    study.prepare()
    url = study.storage_url
    rng = random.Random(seed)
    watch = open_storage(url)
    rung_studies = [
        optuna.load_study(study_name=s.study_name, storage=watch)
        for s in optuna.get_all_study_summaries(watch, include_best_trial=False)
    ]
    started = time.monotonic()
    pool = [start_worker(url) for _ in range(workers)]
    kills = end_kills = 0
    next_kill = started + rng.expovariate(1 / mean_kill_interval_s)
    while time.monotonic() - started < seconds:
        alive = [p for p in pool if p.poll() is None]
        if not alive:
            break  # every worker ran out of trials: the study is done
        if time.monotonic() >= next_kill:
            # Only a live worker that holds a trial is a victim (none now: look again soon).
            held = trials_held(rung_studies, {p.pid for p in alive})
            if held:
                pid = rng.choice(sorted(held))  # drawn once, not once per worker compared
                victim = next(p for p in alive if p.pid == pid)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                # Counted if it died mid-trial: a trial it held was still unfinished
                # (not finished between the look and the kill).
                kills += any(still_held(study, t) for study, t in held[victim.pid])
                pool = [p for p in pool if p is not victim] + [start_worker(url)]
                next_kill = time.monotonic() + rng.expovariate(1 / mean_kill_interval_s)
        time.sleep(0.05)
    for process in pool:  # time is up: not counted as kills
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            end_kills += 1
    soaked_s = time.monotonic() - started
    # The last worker: nothing kills it; it re-runs the trials of the dead ones.
    last = start_worker(url)
    if last.wait() != 0:
        raise RuntimeError("the final worker failed")
    counts, retried, planned = [], 0, 0
    storage = open_storage(study.storage_url)
    for summary in optuna.get_all_study_summaries(storage):
        rung_study = optuna.load_study(study_name=summary.study_name, storage=storage)
        counts.append(slot_counts(rung_study))
        planned += planned_count(rung_study)  # every stage: search, refine, confirm
        retried += sum(
            1
            for t in rung_study.get_trials(deepcopy=False)
            if t.user_attrs.get("status") == "worker_died"
        )
    finished = sum(1 for c in counts for n in c.values() if n >= 1)
    duplicated = sum(n - 1 for c in counts for n in c.values() if n > 1)
    lost = planned - finished
    clean = Study(config, directory / "clean").run()
    soaked = study.results()
    return {
        "planned": planned,
        "finished": finished,
        "duplicated": duplicated,
        "lost": lost,
        "kills": kills,
        "workers killed when time was up (not counted)": end_kills,
        "re-run after a dead worker": retried,
        "soak seconds": round(soaked_s, 1),
        "same best steps as a clean run": soaked.steps_to_target == clean.steps_to_target,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--trials-per-rung", type=int, default=128)
    parser.add_argument("--rungs", type=int, default=4)
    parser.add_argument("--mean-kill-interval", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "soak")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"batchlab {batchlab.__version__}, torch {torch.__version__}, optuna {optuna.__version__}, "
        f"python {sys.version.split()[0]}, {platform.platform()}, {os.cpu_count()} cores"
    )
    print(
        f"{args.workers} workers, kill -9 every {args.mean_kill_interval} s on average "
        f"(seed {args.seed}), {args.seconds:.0f} s, {args.rungs} rungs x "
        f"{args.trials_per_rung} nqm trials"
    )
    figures = soak(
        args.out,
        seconds=args.seconds,
        workers=args.workers,
        trials_per_rung=args.trials_per_rung,
        rungs=args.rungs,
        seed=args.seed,
        mean_kill_interval_s=args.mean_kill_interval,
    )
    for name, value in figures.items():
        print(f"{name:>30}: {value}")
    ok = (
        figures["duplicated"] == 0
        and figures["lost"] == 0
        and figures["same best steps as a clean run"]
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
