"""Claim: growing the batch with the noise scale reaches the target in fewer optimizer
steps than the best fixed batch size that uses no more examples.

Result (shared 2-core x86-64 VM, torch 2.13.0 CPU, Python 3.11, one torch thread; full
tables in docs/cbs.md): on shakespeare-char (Adam) the adaptive run needed 12-23% fewer
optimizer steps than the best fixed batch size using no more examples, for fractions
0.5, 1 and 2 and both seeds tried (0, 1): e.g. fraction 1, seed 0: 340 steps / 14,800
examples against B=32's 420 / 13,440. On mnist1d-cnn (Nesterov) it did not, reliably
(2 narrow wins, 6 losses, 1 tie over 3 seeds x 3 fractions): examples-to-target are
flat from B=16 to 64 there, so a fixed B=64 wastes nothing, while the early noise scale
says to stay small. Default run (both workloads, seed 0): about 9 minutes.

Evidence: for each workload (``mnist1d-cnn``: Nesterov momentum, target validation
accuracy >= 0.85; ``shakespeare-char``: Adam, target validation loss <= 2.0):

1. *Fixed batch sizes.* Either a small tuned sweep run here (every batch size of
   ``--batch-sizes`` with ``--lr-grid`` multiples of a rule's learning rate, the
   fewest steps over the grid: Shallue et al. 2018's steps-to-result), or a study's
   ``results.json`` (``--study DIR``, its tuned rungs). Each rung gives steps-to-target
   S(B) and examples E(B) = B·S(B).
2. *Adaptive.* One run that starts at the smallest fixed batch size B₀ (micro-batch
   B₀/2, two micro-batches per step) with the learning rate tuned there, tracks the
   noise scale (:class:`batchlab.NoiseScaleTracker`, EMA), and grows the batch with
   :class:`batchlab.BatchSizeSchedule` (B ≤ fraction · B_simple, powers of two,
   capped at the largest fixed batch size; LR by ``--lr-rule``, its multiplier capped
   at the largest tuned LR of the fixed rungs over the LR at B₀). One run per
   ``--fractions`` value, all reported. Its steps and examples to the target come
   from that same run.
3. *The comparison.* Among the fixed batch sizes that used no more examples than the
   adaptive run, the one with the fewest steps; the claim holds when the adaptive run
   needed fewer steps than it. Both are evaluated every ``--eval-every`` steps.

Run:  python benchmarks/adaptive_batch.py                      # both workloads, ~10 min on 2 cores
      python benchmarks/adaptive_batch.py --workloads mnist1d-cnn --seeds 0 1 2
      python benchmarks/adaptive_batch.py --workloads mnist1d-cnn --study runs/mnist1d
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

import batchlab as bl
from batchlab._seeding import make_generator
from batchlab.optim import build_optimizer, scale_lr
from batchlab.study import RunSpec, run_training
from batchlab.workloads import Target, Workload, get_workload

#: Per workload: batch-size ladder, base LR and the rule to scale it (the sweep's centre).
DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist1d-cnn": {
        "batch_sizes": [16, 32, 64, 128, 256],
        "optimizer": "nesterov",
        "hparams": {"lr": 0.04, "momentum": 0.9},
        "base_batch_size": 16,
        "lr_rule": "sqrt",
        "lr_grid": [0.5, 1.0, 2.0],
        "max_steps": 3000,
        "eval_every": 10,
    },
    "shakespeare-char": {
        "batch_sizes": [8, 16, 32, 64, 128],
        "optimizer": "adam",
        "hparams": {"lr": 2e-3},
        "base_batch_size": 8,
        "lr_rule": "sqrt",
        "lr_grid": [0.5, 1.0, 2.0],
        "max_steps": 1500,
        "eval_every": 10,
    },
}


@dataclass
class Outcome:
    """Steps and examples to the target of one run (``None``: not reached)."""

    label: str
    steps: int | None
    examples: int | None
    lr: float | None = None
    batch_sizes: list[int] = field(default_factory=list)
    wall_s: float = 0.0


def fixed_sweep(work: Workload, cfg: dict[str, Any], seed: int) -> list[Outcome]:
    """Every batch size of the ladder at each LR of the grid; fewest steps per batch size."""
    out = []
    hparams = dict(cfg["hparams"])
    base_lr = hparams.pop("lr")
    for batch_size in cfg["batch_sizes"]:
        started = time.perf_counter()
        center = scale_lr(base_lr, cfg["base_batch_size"], batch_size, cfg["lr_rule"])
        best: tuple[int, float] | None = None
        for multiplier in sorted(cfg["lr_grid"], key=lambda m: abs(math.log(m))):
            lr = center * multiplier
            spec = RunSpec(batch_size=batch_size, optimizer=cfg["optimizer"], hparams={**hparams, "lr": lr},
                           max_steps=cfg["max_steps"], eval_every=cfg["eval_every"], seed=seed)  # fmt: skip
            result = run_training(work, spec, work.target, stop_after=best[0] if best else None)
            if result.steps_to_target is not None and (
                best is None or result.steps_to_target < best[0]
            ):
                best = (result.steps_to_target, lr)
        out.append(
            Outcome(
                f"fixed B={batch_size}",
                best[0] if best else None,
                best[0] * batch_size if best else None,
                best[1] if best else None,
                [batch_size],
                time.perf_counter() - started,
            )
        )
        print(f"  {out[-1].label:<14} steps {_n(out[-1].steps):>6}  examples {_n(out[-1].examples):>9}"
              f"  lr {_n(out[-1].lr)}  ({out[-1].wall_s:.0f} s)", flush=True)  # fmt: skip
    return out


def study_rungs(directory: str, work: Workload) -> tuple[list[Outcome], dict[str, Any]]:
    """The tuned rungs of a study (``results.json``) and the settings for the adaptive run."""
    study = bl.report.load_study(directory)
    if study.workload.get("name") != work.name:
        raise SystemExit(
            f"--study {directory} is a study of {study.workload.get('name')!r}, not {work.name!r}"
        )
    target = Target(study.target["metric"], float(study.target["value"]), study.target["direction"])
    if target != work.target:
        raise SystemExit(f"--study {directory} has target {target.describe()}, the benchmark uses "
                         f"{work.target.describe()}")  # fmt: skip
    rungs = [
        Outcome(
            f"study B={r.batch_size}",
            r.steps_to_target,
            None if r.steps_to_target is None else r.steps_to_target * r.batch_size,
            (r.best_hparams or {}).get("lr"),
            [r.batch_size],
        )  # fmt: skip
        for r in study.rungs
    ]
    reached = [r for r in study.rungs if r.best_hparams]
    if not reached:
        raise SystemExit(f"--study {directory}: no rung reached the target")
    first = reached[0]
    hparams = {k: v for k, v in first.best_hparams.items() if k != "warmup_steps"}
    settings = {
        "optimizer": study.config.get("optimizer"),
        "hparams": hparams,
        "base_batch_size": first.batch_size,
        "batch_sizes": [r.batch_size for r in study.rungs],
        "eval_every": study.rungs[0].eval_every or 10,
        "max_steps": max(r.budget_steps or 0 for r in study.rungs),
    }
    return rungs, settings


def adaptive_run(work: Workload, cfg: dict[str, Any], base_lr: float, max_lr_factor: float,
                 fraction: float, args: argparse.Namespace, seed: int) -> Outcome:  # fmt: skip
    """One run whose batch grows with the tracked noise scale; steps and examples to target."""
    started = time.perf_counter()
    base_batch = cfg["base_batch_size"]
    if base_batch % 2:
        raise SystemExit(f"the smallest batch size {base_batch} must be even (two micro-batches)")
    micro = base_batch // 2
    model = work.build_model(seed)
    model.train()
    hparams = {**cfg["hparams"], "lr": base_lr}
    optimizer = build_optimizer(cfg["optimizer"], model.parameters(), hparams)
    tracker = bl.NoiseScaleTracker(model, micro_batch_size=micro, ema_decay=args.ema_decay)
    schedule = bl.BatchSizeSchedule(
        tracker, micro_batch_size=micro, base_accumulation=2,
        max_batch_size=max(cfg["batch_sizes"]), fraction=fraction,
        lr_rule=args.lr_rule or cfg["lr_rule"], optimizer=optimizer,
        update_every=args.update_every, min_steps=args.min_steps, max_lr_factor=max_lr_factor,
    )  # fmt: skip
    stream = work.train_batches(micro, make_generator(seed))
    steps = examples = None
    for step in range(1, cfg["max_steps"] + 1):
        k = schedule.accumulation_steps
        for _ in range(k):
            (work.loss_fn(model, next(stream)) / k).backward()
        optimizer.step()
        tracker.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % cfg["eval_every"]:
            continue
        value = work.evaluate(model)[work.target.metric]
        if step % (10 * cfg["eval_every"]) == 0:
            print(f"    step {step}: batch {schedule.batch_size}, B_simple {tracker.b_simple:.3g}, "
                  f"{work.target.metric} {value:.4g}", flush=True)  # fmt: skip
        if work.target.reached(value):
            steps, examples = step, schedule.examples_seen
            break
    tracker.remove()
    sizes = [base_batch] + [c.batch_size for c in schedule.history]
    return Outcome(f"adaptive {fraction:g}", steps, examples, base_lr, sizes,
                   time.perf_counter() - started)  # fmt: skip


def _n(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:.3g}"


def compare(fixed: list[Outcome], adaptive: Outcome) -> tuple[Outcome | None, bool | None]:
    """The fixed batch size with the fewest steps among those using <= the adaptive examples."""
    if adaptive.steps is None or adaptive.examples is None:
        return None, None
    eligible = [f for f in fixed if f.steps is not None and f.examples <= adaptive.examples]
    if not eligible:
        return None, True  # every fixed run needed more examples
    best = min(eligible, key=lambda f: f.steps)
    return best, adaptive.steps < best.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(DEFAULTS), choices=list(DEFAULTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--study", default=None, help="take the fixed rungs from this study")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 1.0, 2.0],
                        help="adaptive runs with B <= fraction * B_simple, one per fraction")  # fmt: skip
    parser.add_argument(
        "--lr-rule", default=None, help="LR rule of the schedule (default: the sweep's)"
    )
    parser.add_argument("--ema-decay", type=float, default=0.9, help="of the noise-scale tracker")
    parser.add_argument("--update-every", type=int, default=10)
    parser.add_argument("--min-steps", type=int, default=20)
    parser.add_argument("--max-lr-factor", type=float, default=None,
                        help="cap on the schedule's LR multiplier (default: the largest tuned "
                        "LR of the fixed rungs over the LR at the smallest)")  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: least contention)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batchlab {bl.__version__}, torch {torch.__version__}, Python {sys.version.split()[0]}, "
          f"{platform.machine()} x {os.cpu_count()} CPUs, {args.threads} torch thread(s)")  # fmt: skip
    summary = []
    for name in args.workloads:
        work = get_workload(name)
        cfg = dict(DEFAULTS[name])
        for seed in args.seeds:
            print(f"\n{name}, seed {seed}: target {work.target.describe()}", flush=True)
            if args.study:
                fixed, settings = study_rungs(args.study, work)
                cfg.update({k: v for k, v in settings.items() if v is not None})
                base_lr = float(settings["hparams"]["lr"])
                for f in fixed:
                    print(f"  {f.label:<14} steps {_n(f.steps):>6}  examples {_n(f.examples):>9}")
            else:
                fixed = fixed_sweep(work, cfg, seed)
                base = fixed[0]
                if base.lr is None:
                    raise SystemExit(f"{name}: the smallest batch size never reached the target")
                base_lr = base.lr
            tuned = [f.lr for f in fixed if f.lr is not None]
            cap = args.max_lr_factor or max(1.0, max(tuned) / base_lr)
            print(f"  adaptive: lr0 {base_lr:.3g} at B={cfg['base_batch_size']}, rule "
                  f"{args.lr_rule or cfg['lr_rule']}, LR factor at most {cap:.3g}", flush=True)  # fmt: skip
            for fraction in args.fractions:
                adaptive = adaptive_run(work, cfg, base_lr, cap, fraction, args, seed)
                best, wins = compare(fixed, adaptive)
                print(f"  {adaptive.label:<14} steps {_n(adaptive.steps):>6}  examples "
                      f"{_n(adaptive.examples):>9}  batch sizes {adaptive.batch_sizes}  "
                      f"({adaptive.wall_s:.0f} s)", flush=True)  # fmt: skip
                summary.append((name, seed, adaptive, best, wins, fixed))
    print("\nSummary: adaptive vs the best fixed batch size using no more examples")
    print(f"{'workload':<18}{'seed':>5}{'fraction':>9}{'adaptive steps':>16}{'examples':>11}"
          f"{'best fixed':>12}{'steps':>8}{'examples':>11}  fewer steps?")  # fmt: skip
    for name, seed, adaptive, best, wins, fixed in summary:
        fastest = min(
            (f for f in fixed if f.steps is not None), key=lambda f: f.steps, default=None
        )
        print(f"{name:<18}{seed:>5}{adaptive.label.split()[-1]:>9}{_n(adaptive.steps):>16}"
              f"{_n(adaptive.examples):>11}"
              f"{(best.label.split()[-1] if best else '—'):>12}{_n(best.steps if best else None):>8}"
              f"{_n(best.examples if best else None):>11}  "
              f"{'yes' if wins else 'no' if wins is not None else 'not reached'}"
              + (f"   (fastest fixed: {fastest.label.split()[-1]}, {_n(fastest.steps)} steps, "
                 f"{_n(fastest.examples)} examples)" if fastest else ""))  # fmt: skip


if __name__ == "__main__":
    main()
