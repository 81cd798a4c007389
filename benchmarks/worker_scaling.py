"""Claim: 2 workers on 2 cores give >= 1.8x the trial throughput of 1 worker.

One fixed amount of work, run alternately with 1 and with N worker processes in the
same run of this script (machines are noisy; the order 1, N, N, 1, ... cancels drift):
the default mnist1d-cnn study's model, optimizer and search space on a few rungs,
with stop-at-target and stop-once-beaten OFF, so every trial trains its whole budget
and the work does not depend on which worker finishes first. Everything else is
batchlab's defaults (vmapped ensembles, ``cpu_count // workers`` torch threads per
worker). Throughput = trials / wall time of the whole study, worker start-up included.

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


def timed_run(config: StudyConfig, directory: Path, workers: int) -> float:
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    result = Study(config, directory).run(workers=workers)
    elapsed = time.perf_counter() - started
    done = sum(r.trials_done for r in result.rungs)
    planned = sum(r.trials_planned for r in result.rungs)
    if done != planned:
        raise RuntimeError(f"{done} of {planned} trials finished")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="pairs of (1 worker, N workers)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--trials", type=int, default=8, help="trials per rung")
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
    times: dict[int, list[float]] = {1: [], args.workers: []}
    for repeat in range(args.repeats):
        order = (1, args.workers) if repeat % 2 == 0 else (args.workers, 1)
        for workers in order:
            elapsed = timed_run(config, args.out / f"w{workers}-{repeat}", workers)
            times[workers].append(elapsed)
            print(
                f"  {workers} worker(s): {elapsed:6.1f} s  {trials / elapsed:5.2f} trials/s",
                flush=True,
            )
    one, many = statistics.median(times[1]), statistics.median(times[args.workers])
    print(
        f"throughput, {args.workers} workers vs 1 (median wall times {many:.1f} s vs {one:.1f} s): "
        f"{one / many:.2f}x"
    )


if __name__ == "__main__":
    main()
