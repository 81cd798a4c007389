"""Claim: 2 workers on 2 cores give >= 1.8x the trial throughput of 1 worker.

Result (shared 2-core x86-64 VM, torch 2.13.0 CPU, Python 3.11, one run of this
script, defaults): 1 worker, 1 thread 92.9 s and 79.7 s; 1 worker, 2 threads 68.4 s
and 62.3 s; 2 workers 49.5 s and 41.9 s: 2 workers give 1.89x the throughput of one
worker on one core and 1.43x that of one worker on both cores (torch's threads). Before
idle workers looked for the study's end every 0.25 s (they slept the 5 s heartbeat
interval), workers left without the interpreter's teardown and the package imported
matplotlib and SciPy's fits lazily, the same script (with 8 trials per rung) gave 1.17x.

One fixed amount of work, run in the same run of this script (machines are noisy;
the arms rotate, in reverse order every other round, to cancel drift):
the default mnist1d-cnn study's model, optimizer and search space on a few rungs,
with stop-at-target and stop-once-beaten OFF, so every trial trains its whole budget
and the work does not depend on which worker finishes first. Everything else is
batchlab's defaults (vmapped ensembles). Three arms:

- ``1 worker, 1 thread``: one process on one core — the unit a worker is;
- ``1 worker, N threads``: one process with torch's intra-op threads on all N cores
  (what ``batchlab study run`` does without ``--workers``);
- ``N workers``: N processes of ``cores // N`` threads each (``--workers N``).

Throughput = trials / wall time of the whole study, worker start-up included. The
claim is the ratio of the third arm to the first (do workers scale, or do they
contend for the storage or the cores?); the ratio to the second says what worker
processes add over torch's own threads.

Run:  python benchmarks/worker_scaling.py [--workers 2] [--repeats 2] [--out runs/bench-workers]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import optuna
import torch

import batchlab
from batchlab.study import Study, StudyConfig

ROOT = Path(__file__).resolve().parents[1]


def fixed_work_config(batch_sizes: list[int], trials: int, steps: int) -> StudyConfig:
    """The default study's workload and search, on ``batch_sizes``, every trial to ``steps``."""
    base = StudyConfig.from_toml(ROOT / "examples" / "mnist1d-cnn.toml").to_json_dict()
    base.update(
        name="worker-scaling",
        ladder={"batch_sizes": batch_sizes},
        budget={"steps": steps},
        evaluation={"per_run": 10},
        stopping={"at_target": False, "once_beaten": False},
        storage=None,
    )
    base["search"]["trials_per_rung"] = trials
    return StudyConfig.model_validate(base)


def timed_run(config: StudyConfig, directory: Path, workers: int, threads: int | None) -> float:
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    result = Study(config, directory).run(workers=workers, threads=threads)
    elapsed = time.perf_counter() - started
    done = sum(r.trials_done for r in result.rungs)
    planned = sum(r.trials_planned for r in result.rungs)
    if done != planned:
        raise RuntimeError(f"{done} of {planned} trials finished")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the three arms")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--trials", type=int, default=16, help="trials per rung")
    parser.add_argument("--steps", type=int, default=400, help="steps per trial")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-workers")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"batchlab {batchlab.__version__}, torch {torch.__version__}, python "
        f"{sys.version.split()[0]}, {platform.platform()}, {os.cpu_count()} cores"
    )
    config = fixed_work_config(args.batch_sizes, args.trials, args.steps)
    trials = args.trials * len(args.batch_sizes)
    print(
        f"{trials} trials (batch sizes {args.batch_sizes}, {args.steps} steps each, "
        "no early stopping) per study"
    )
    cores = os.cpu_count() or 1
    # (label, workers, torch threads per worker)
    arms = [
        ("1 worker, 1 thread", 1, 1),
        (f"1 worker, {cores} threads", 1, cores),
        (f"{args.workers} workers", args.workers, None),
    ]
    times: dict[str, list[float]] = {label: [] for label, _, _ in arms}
    for repeat in range(args.repeats):
        for label, workers, threads in arms if repeat % 2 == 0 else arms[::-1]:
            directory = args.out / f"w{workers}-t{threads or 0}-{repeat}"
            elapsed = timed_run(config, directory, workers, threads)
            times[label].append(elapsed)
            print(f"  {label:>20}: {elapsed:6.1f} s  {trials / elapsed:5.2f} trials/s", flush=True)
    medians = {label: statistics.median(t) for label, t in times.items()}
    many = medians[arms[2][0]]
    for label, _, _ in arms[:2]:
        print(
            f"throughput, {arms[2][0]} vs {label} (median wall times {many:.1f} s vs "
            f"{medians[label]:.1f} s): {medians[label] / many:.2f}x"
        )


if __name__ == "__main__":
    main()
