"""Claim: batchlab runs the default scaling study >= 10x faster than the naive way.

Both ways run the same study — the default mnist1d-cnn config (examples/mnist1d-cnn.toml):
same ladder, trials per rung, search space, step budgets, evaluation schedule and
target — on the same machine, in one run of this script:

(a) naive: Optuna's TPE sampler, a ``DataLoader`` over a ``TensorDataset``, every trial
    trained for its full budget, one process (steps-to-target read off the curve
    afterwards);
(b) batchlab's defaults: scaled Sobol points planned per rung, tensor-resident data,
    vmapped trial ensembles, stop at target and once beaten, ``--workers`` processes.

It prints both wall times, their ratio, and both steps-to-target curves. The nqm
study (examples/nqm.toml, 10 rungs) is timed too.

Run:  python benchmarks/study_speed.py [--workers 2] [--skip-naive] [--out runs/bench]
Hardware/versions are printed with the figures. Besides wall time it prints CPU time
(this process and its worker processes, user + system): on a machine that other work
shares, the CPU-time ratio is the steadier figure, the wall-time ratio the claimed one.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import optuna
import torch
from torch.utils.data import DataLoader, TensorDataset

import batchlab
from batchlab.optim import build_optimizer
from batchlab.study import Study, StudyConfig
from batchlab.study._config import resolve_target
from batchlab.study._plan import plan_rungs, to_hparams
from batchlab.workloads import get_workload

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def naive_trial(workload, config, rung, hparams, seed, target) -> int | None:
    """Train one trial for its whole budget the plain way; steps-to-target from its curve."""
    torch.manual_seed(seed)
    model = workload.build_model(seed)
    optimizer = build_optimizer(
        config.optimizer,
        model.parameters(),
        {k: v for k, v in hparams.items() if k != "warmup_steps"},
    )
    loader = DataLoader(
        TensorDataset(workload.x_train, workload.y_train),
        batch_size=rung.batch_size,
        shuffle=True,
        drop_last=True,
    )
    first_hit, step = None, 0
    while step < rung.budget_steps:
        for x, y in loader:
            step += 1
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % rung.eval_every == 0 or step == rung.budget_steps:
                model.eval()
                with torch.no_grad():
                    value = workload.evaluate(model)[target.metric]
                model.train()
                if first_hit is None and target.reached(value):
                    first_hit = step
            if step >= rung.budget_steps:
                break
    return first_hit


def run_naive(config: StudyConfig) -> tuple[float, float, dict[int, int | None]]:
    workload = get_workload(config.workload.name, config.workload.params)
    target = resolve_target(config, workload)
    space = config.search_space()
    best: dict[int, int | None] = {}
    started, cpu = time.perf_counter(), cpu_seconds()
    for rung in plan_rungs(config):
        study = optuna.create_study(
            sampler=optuna.samplers.TPESampler(seed=config.seed), direction="minimize"
        )
        for index in range(config.search.trials_per_rung):
            trial = study.ask()
            params = {
                n: trial.suggest_float(n, r.low, r.high, log=r.scale == "log")
                for n, r in space.items()
            }
            steps = naive_trial(
                workload, config, rung, to_hparams(config, params, rung.budget_steps), index, target
            )
            study.tell(trial, math.inf if steps is None else float(steps))
        values = [t.value for t in study.trials if t.value is not None and math.isfinite(t.value)]
        best[rung.batch_size] = int(min(values)) if values else None
        print(
            f"  naive  B={rung.batch_size:5d}: best {best[rung.batch_size]}  ({time.perf_counter() - started:.0f} s so far)",
            flush=True,
        )
    return time.perf_counter() - started, cpu_seconds() - cpu, best


def run_batchlab(
    config: StudyConfig, directory: Path, workers: int
) -> tuple[float, float, dict[int, int | None]]:
    shutil.rmtree(directory, ignore_errors=True)
    started, cpu = time.perf_counter(), cpu_seconds()
    result = Study(config, directory).run(workers=workers)
    return time.perf_counter() - started, cpu_seconds() - cpu, result.steps_to_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-study-speed")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"batchlab {batchlab.__version__}, torch {torch.__version__}, python {sys.version.split()[0]}, "
        f"{platform.platform()}, {os.cpu_count()} cores"
    )
    config = StudyConfig.from_toml(ROOT / "examples" / "mnist1d-cnn.toml")

    nqm_time, _, _ = run_batchlab(
        StudyConfig.from_toml(ROOT / "examples" / "nqm.toml"), args.out / "nqm", 1
    )
    print(f"nqm study (10 rungs x 32 trials, 1 worker): {nqm_time:.1f} s")

    fast_time, fast_cpu, fast = run_batchlab(config, args.out / "batchlab", args.workers)
    print(f"batchlab defaults ({args.workers} workers): {fast_time:.1f} s, CPU {fast_cpu:.1f} s")
    if args.skip_naive:
        for b, s in fast.items():
            print(f"  B={b:5d}  batchlab {s}")
        return
    naive_time, naive_cpu, naive = run_naive(config)
    print(
        f"naive (TPE, DataLoader, full budgets, 1 process): {naive_time:.1f} s, "
        f"CPU {naive_cpu:.1f} s"
    )
    print(f"speed-up: {naive_time / fast_time:.1f}x wall time, {naive_cpu / fast_cpu:.1f}x CPU time")
    print(f"{'batch':>6} {'naive':>8} {'batchlab':>9} {'rel. diff':>9}")
    for b in fast:
        a, c = naive.get(b), fast[b]
        diff = "" if a is None or c is None else f"{(c - a) / a:+.0%}"
        print(f"{b:>6} {a!s:>8} {c!s:>9} {diff:>9}")


if __name__ == "__main__":
    main()
