"""Claim: batchlab runs the default scaling study >= 10x faster than the naive way.

Result (shared 2-core x86-64 VM, torch 2.13.0 CPU, Python 3.11, one run of this
script): naive 1,849 s, batchlab 128 s and 111 s: 15.5x (14.5-16.7x); an earlier run
12.8x. Best steps per rung, B = 16...2048: naive 1600 900 450 300 300 240 240 240,
batchlab 1350 750 400 300 250 240 264 312 (TPE and Sobol find different learning
rates). The same planned trials alone, one thread: 1250 750 400 300 350 240 264 312
(equal to batchlab's on every rung trained one trial at a time, B >= 512); two
threads: 1250 850 450 300 200 288 264 300. Float rounding alone moves a rung's best by
up to 20-40% here: near the edge of stability a training curve is chaotic.

Both ways run the same study — the default mnist1d-cnn config (examples/mnist1d-cnn.toml):
same ladder, trials per rung, search space, step budgets, evaluation schedule and
target — on the same machine, in one run of this script:

(a) naive: Optuna's TPE sampler, a ``DataLoader`` over a ``TensorDataset``, every trial
    trained for its full budget, one process (steps-to-target read off the curve
    afterwards);
(b) batchlab's defaults: scaled Sobol points planned per rung, tensor-resident data,
    vmapped trial ensembles, stop at target and once beaten (smallest rungs first,
    each rung's trials nearest its neighbour's best first), ``--workers`` processes.
    Timed ``--repeats`` times (before and after the naive run: the machine drifts);

and a check that (b)'s shortcuts do not change what it measures:

(c) same trials: (b)'s planned trials (same points, seeds and batches), each trained
    alone in one process until it reaches the target or its budget ends: no
    ensembles, no stop-once-beaten. (a) and (b) differ in their samplers too (TPE vs
    Sobol points), so their curves differ by the luck of a 16-trial search; (c)
    against (b) isolates the engine. (c) runs at the workers' thread count (on the
    rungs that batchlab trains one trial at a time, the same float arithmetic: the
    best steps must be equal there) and at all cores. Near the edge of stability a
    trial's curve is chaotic: float rounding alone (threads, vmap's batched kernels)
    moves its steps-to-target, so the two (c) columns show the measurement's own
    noise floor.

It prints the wall times, their ratios, the steps-to-target curves and their fits
S(B) = S_min (1 + B_crit/B) with 95% intervals. The nqm
study (examples/nqm.toml, 10 rungs) is timed too.

(d) own workloads: the same plan through the same CNN and tensors written as a user
    would (benchmarks/own_workloads.py): built with ``bl.workloads.from_tensors``, and
    against the Workload protocol only (a generator over ``torch.randperm``, evaluation
    with ``.item()``). Their wall and CPU times are printed as ratios to batchlab's
    built-in run, and as speed-ups over the naive run. Measured (``--skip-naive
    --skip-same-trials``, same machine, nothing else running): built-in 122.4 s and
    137.5 s, from_tensors 125.1 s (0.96x the built-in's mean wall time, 0.99x its CPU
    time, the same best steps at every rung), protocol-only 123.8 s (0.95x, 0.97x;
    its own batches, so other steps). The protocol-only workload is vmapped as well:
    only its evaluation runs member by member, cheap with 1,000 validation examples.
    Its speed-up over the naive run is therefore the built-in's divided by these
    ratios (a ratio <= 1.5 is the [own-model] criterion "within 1.5x").

Run:  python benchmarks/study_speed.py [--workers 2] [--repeats 2] [--skip-naive]
      [--skip-same-trials] [--skip-own] [--out runs/bench]   (about an hour on 2 cores)
Hardware/versions are printed with the figures. Besides wall time it prints CPU time
(this process and its worker processes, user + system): on a machine that other work
shares, the CPU-time ratio is the steadier figure, the wall-time ratio the claimed one.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import optuna
import torch
from _common import cpu_seconds, search_only
from torch.utils.data import DataLoader, TensorDataset

import batchlab
from batchlab._threads import torch_threads
from batchlab.analysis import fit_scaling
from batchlab.optim import build_optimizer
from batchlab.study import Study, StudyConfig
from batchlab.study._config import resolve_target
from batchlab.study._plan import plan_rungs, sample_points, slot_seed, to_hparams
from batchlab.training import RunSpec, run_training
from batchlab.workloads import get_workload

ROOT = Path(__file__).resolve().parents[1]


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


def run_same_trials(config: StudyConfig, threads: int) -> tuple[float, dict[int, int | None]]:
    """(c): batchlab's planned trials one by one, each until its target or budget."""
    with torch_threads(threads):
        return _same_trials(config, threads)


def _same_trials(config: StudyConfig, threads: int) -> tuple[float, dict[int, int | None]]:
    workload = get_workload(config.workload.name, config.workload.params)
    target = resolve_target(config, workload)
    points = sample_points(config, config.search.trials_per_rung)
    best: dict[int, int | None] = {}
    started = time.perf_counter()
    for rung in plan_rungs(config):
        reached = []
        for slot, point in enumerate(points):
            spec = RunSpec(
                batch_size=rung.batch_size,
                optimizer=config.optimizer,
                hparams=to_hparams(config, point, rung.budget_steps),
                max_steps=rung.budget_steps,
                eval_every=rung.eval_every,
                seed=slot_seed(config, rung, slot),
                decay=config.schedule.decay,
                resolution=config.evaluation.resolution,
            )
            steps = run_training(workload, spec, target, stop_at_target=True).steps_to_target
            if steps is not None:
                reached.append(steps)
        best[rung.batch_size] = min(reached) if reached else None
        print(
            f"  same trials, {threads} thread(s)  B={rung.batch_size:5d}: "
            f"best {best[rung.batch_size]}  "
            f"({time.perf_counter() - started:.0f} s so far)",
            flush=True,
        )
    return time.perf_counter() - started, best


def run_batchlab(
    config: StudyConfig, directory: Path, workers: int
) -> tuple[float, float, dict[int, int | None]]:
    shutil.rmtree(directory, ignore_errors=True)
    started, cpu = time.perf_counter(), cpu_seconds()
    result = Study(config, directory).run(workers=workers)
    return time.perf_counter() - started, cpu_seconds() - cpu, result.steps_to_target


def own_config(config: StudyConfig, factory: str) -> StudyConfig:
    """``config`` with its workload replaced by ``own_workloads:<factory>`` (same params)."""
    data = config.to_json_dict()
    data["workload"] = {
        **data["workload"],
        "name": f"own_workloads:{factory}",
        "path": [str(Path(__file__).resolve().parent)],
    }
    return StudyConfig.model_validate(data)


def relative(a: int | None, b: int | None) -> str:
    return "" if a is None or b is None else f"{(b - a) / a:+.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="timings of batchlab's run")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-same-trials", action="store_true")
    parser.add_argument(
        "--skip-own",
        action="store_true",
        help="skip the user-written workloads (from_tensors, protocol-only)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-study-speed")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"batchlab {batchlab.__version__}, torch {torch.__version__}, python {sys.version.split()[0]}, "
        f"{platform.platform()}, {os.cpu_count()} cores"
    )
    # The search alone, as the naive way runs it: no refinement window, no confirmation
    # seeds (their cost and effect: benchmarks/answer_interval.py).
    config = search_only(StudyConfig.from_toml(ROOT / "examples" / "mnist1d-cnn.toml"))

    nqm_time, _, _ = run_batchlab(
        StudyConfig.from_toml(ROOT / "examples" / "nqm.toml"), args.out / "nqm", 1
    )
    print(f"nqm study (10 rungs x 32 trials, 1 worker): {nqm_time:.1f} s")

    times: list[tuple[float, float]] = []

    def time_batchlab() -> dict[int, int | None]:
        wall, cpu, best = run_batchlab(config, args.out / "batchlab", args.workers)
        times.append((wall, cpu))
        print(f"batchlab defaults ({args.workers} workers): {wall:.1f} s, CPU {cpu:.1f} s")
        return best

    fast = time_batchlab()
    for _ in range(args.repeats - 1 if args.skip_naive else (args.repeats - 1) // 2):
        fast = time_batchlab()
    if not args.skip_naive:
        naive_time, naive_cpu, naive = run_naive(config)
        print(
            f"naive (TPE, DataLoader, full budgets, 1 process): {naive_time:.1f} s, "
            f"CPU {naive_cpu:.1f} s"
        )
        while len(times) < args.repeats:
            fast = time_batchlab()
        walls, cpus = sorted(t[0] for t in times), sorted(t[1] for t in times)
        mean_wall, mean_cpu = sum(walls) / len(walls), sum(cpus) / len(cpus)
        print(
            f"speed-up: {naive_time / mean_wall:.1f}x wall time (batchlab's mean of "
            f"{len(walls)}; {naive_time / walls[-1]:.1f}x to {naive_time / walls[0]:.1f}x), "
            f"{naive_cpu / mean_cpu:.1f}x CPU time"
        )
    # The same plan through the same model and tensors written as a user would: with
    # from_tensors, and against the protocol only (benchmarks/own_workloads.py).
    own: dict[str, tuple[float, float, dict[int, int | None]]] = {}
    if not args.skip_own:
        for factory in ("tensors", "protocol"):
            own[factory] = run_batchlab(
                own_config(config, factory), args.out / f"own-{factory}", args.workers
            )
            wall, cpu, _ = own[factory]
            print(
                f"own workload '{factory}' ({args.workers} workers): {wall:.1f} s, CPU {cpu:.1f} s"
            )
        walls = [t[0] for t in times]
        cpus = [t[1] for t in times]
        builtin_wall, builtin_cpu = sum(walls) / len(walls), sum(cpus) / len(cpus)
        for factory, (wall, cpu, _) in own.items():
            line = (
                f"own workload '{factory}': {wall / builtin_wall:.2f}x the built-in's wall time, "
                f"{cpu / builtin_cpu:.2f}x its CPU time"
            )
            if not args.skip_naive:
                line += (
                    f"; speed-up over naive {naive_time / wall:.1f}x (built-in "
                    f"{naive_time / builtin_wall:.1f}x)"
                )
            print(line)
    # (c) at the thread count of batchlab's workers (the same float arithmetic where a
    # rung trains its trials one by one), and at all cores (only float rounding differs).
    same: dict[int, dict[int, int | None]] = {}
    if not args.skip_same_trials:
        for threads in sorted({max(1, (os.cpu_count() or 1) // args.workers), os.cpu_count() or 1}):
            wall, same[threads] = run_same_trials(config, threads)
            print(f"same trials one by one, {threads} torch thread(s): {wall:.1f} s")
    header = "".join(f" {f'same, {t} thr':>12}" for t in same)
    header += "".join(f" {f'own {f}':>12}" for f in own)
    print(f"{'batch':>6} {'naive':>8} {'batchlab':>9} {'rel. diff':>9}{header}")
    for b, c in fast.items():
        a = None if args.skip_naive else naive.get(b)
        cells = [f"{s[b]} ({relative(c, s[b]) or '-'})" for s in same.values()]
        cells += [f"{o[2].get(b)} ({relative(c, o[2].get(b)) or '-'})" for o in own.values()]
        row = "".join(f" {cell:>12}" for cell in cells)
        print(f"{b:>6} {a!s:>8} {c!s:>9} {relative(a, c):>9}{row}")
    curves = {"batchlab": fast, **({} if args.skip_naive else {"naive": naive})}
    curves.update({f"same, {t} thr": s for t, s in same.items()})
    curves.update({f"own {f}": o[2] for f, o in own.items()})
    for name, curve in curves.items():
        reached = {b: steps for b, steps in curve.items() if steps is not None}
        if len(reached) >= 3:
            fit = fit_scaling(list(reached), list(reached.values()))
            print(
                f"fit {name:>12}: B_crit {fit.b_crit:.1f} [{fit.b_crit_ci[0]:.1f}, "
                f"{fit.b_crit_ci[1]:.1f}], S_min {fit.s_min:.1f} [{fit.s_min_ci[0]:.1f}, "
                f"{fit.s_min_ci[1]:.1f}]"
            )
    if same:
        print(
            "same, N thr: the best steps of batchlab's own planned trials, each trained alone\n"
            "with N torch threads (relative to batchlab's); batchlab's workers used "
            f"{max(1, (os.cpu_count() or 1) // args.workers)}."
        )


if __name__ == "__main__":
    main()
