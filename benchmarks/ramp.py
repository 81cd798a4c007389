"""Claim (issue #25, item 1): the closed-loop batch ramp (:class:`batchlab.BatchRamp`,
batch grown to a fraction of B_crit, the noise scale calibrated by short branches)
reaches the target in >= 25% fewer optimizer steps than the best fixed batch size
that uses no more examples, branch cost included, on both workloads.

Result (reduced run, ``--seeds 0 1 2 --lr-grid 1``, 9 min on a shared 2-core x86-64 VM,
torch 2.13.0 CPU, one torch thread; table in docs/cbs.md): the goal is NOT met with
branch cost included — ramp steps / best fixed steps 1.90, 1.10, 1.77 (mnist1d-cnn)
and 1.85, 2.51, 2.23 (shakespeare-char), the branches costing as many examples as the
training on shakespeare-char. Without the branches, on shakespeare-char (Adam, where
the branches find B_crit ~ 2.1-2.5 x B_simple) the ramp needs 25%, 31%, 37% fewer
steps than the best fixed batch at no more training examples; on mnist1d-cnn it
does not (B_crit ~ 0.5 x B_simple keeps the batch small: fewest examples, most steps).
With ``--carry-ratio`` (10.5 min, same machine): on shakespeare-char the two seeds that
start from seed 0's ratio (2.53) and branch no more take 0.63 and 0.59 x the best
fixed batch's steps at no more examples (goal met on those runs; seed 0, which pays
the calibration, 1.85); on mnist1d-cnn 1.06 and 1.35 (fraction 0.5), 0.97 and 1.09
(``--fraction 1``), 0.70 and 1.18 (``--fraction 2``): not met.

Evidence: for each workload (``mnist1d-cnn``: Nesterov momentum, target validation
accuracy >= 0.85; ``shakespeare-char``: Adam, validation loss <= 2.0) and each seed:

1. *Fixed batch sizes*, tuned: every batch size of the ladder at ``--lr-grid``
   multiples of a rule's LR, the fewest steps over the grid (Shallue et al. 2018's
   steps-to-result; :func:`adaptive_batch.fixed_sweep`, reused).
2. *B_simple-only schedule*: :class:`batchlab.BatchSizeSchedule`, B <= fraction ·
   B_simple (:func:`adaptive_batch.adaptive_run`, reused).
3. *Closed-loop ramp*: :func:`batchlab.training.ramp_training`, B <= fraction ·
   r̂ · B_simple with r̂ = B_crit/B_simple from branches, hyperparameters moved by
   :func:`batchlab.optim.transfer_hparams` on every change. Its steps and examples
   are reported without and with the branches (``total``: every branch step counted
   as if run one after the other on the same hardware; examples always summed).

The comparison per seed: among the fixed batch sizes using no more examples than the
ramp (branches included), the one with the fewest steps; the summary gives the mean
over seeds of steps and examples with a 95% t-interval (Student's t, n-1 dof) and the
mean step ratio ramp/best-fixed.

With ``--carry-ratio`` the ramp calibrates on the first seed only; later seeds start
from that run's ratio r̂ and branch no more (``prior_ratio``): a ratio measured once for
a model and optimizer, reused by its later runs. Their "branches included" rows then
hold no branches; the first seed's row holds the calibration's whole cost.

Run:  python benchmarks/ramp.py                        # both workloads, seeds 0 1 2
      python benchmarks/ramp.py --workloads shakespeare-char --optimizer adamw \
          --weight-decay 0.1 --carry-ratio              # AdamW: decay moves with B too
      python benchmarks/ramp.py --carry-ratio           # calibrate once, reuse the ratio
      python benchmarks/ramp.py --workloads mnist1d-cnn --seeds 0 --lr-grid 1
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from typing import Any

import torch
from adaptive_batch import DEFAULTS, Outcome, _n, adaptive_run, compare, fixed_sweep
from scipy import stats

import batchlab as bl
from batchlab.training import RampResult, ramp_training
from batchlab.workloads import get_workload


def ramp_run(work: Any, cfg: dict[str, Any], base_lr: float, max_lr_factor: float,
             args: argparse.Namespace, seed: int,
             carried: float | None = None) -> tuple[Outcome, Outcome, RampResult]:  # fmt: skip
    """The closed-loop ramp; (training only, branches included, the full result).

    With ``carried`` (r̂ = B_crit/B_simple from an earlier run of the same workload and
    optimizer), the ramp starts from that ratio and branches no more (``prior_ratio``,
    ``max_calibrations = 0``): the calibration's cost was paid once, in that run.
    """
    started = time.perf_counter()
    micro = cfg["base_batch_size"] // 2
    hparams = {**cfg["hparams"], "lr": base_lr}
    result = ramp_training(
        work, optimizer=cfg["optimizer"], hparams=hparams, micro_batch_size=micro,
        max_batch_size=max(cfg["batch_sizes"]), fraction=args.fraction,
        lr_rule=args.lr_rule or cfg["lr_rule"], max_lr_factor=max_lr_factor,
        max_steps=cfg["max_steps"], eval_every=cfg["eval_every"], update_every=args.update_every,
        min_steps=args.min_steps, ema_decay=args.ema_decay,
        max_calibrations=args.max_calibrations if carried is None else 0,
        prior_ratio=1.0 if carried is None else carried,
        calibration_gap=args.calibration_gap, branch_factors=args.branch_factors,
        branch_improvement=args.branch_improvement, branch_max_steps=args.branch_max_steps,
        seed=seed,
    )  # fmt: skip
    wall = time.perf_counter() - started
    sizes = [cfg["base_batch_size"]] + result.batch_sizes
    train = Outcome("ramp (train)", result.steps_to_target, result.examples_to_target,
                    base_lr, sizes, wall)  # fmt: skip
    total = Outcome("ramp (total)", result.total_steps_to_target,
                    result.total_examples_to_target, base_lr, sizes, wall)  # fmt: skip
    return train, total, result


def interval(values: list[float]) -> str:
    """Mean and 95% t-interval over seeds (just the value for one seed)."""
    if not values:
        return "—"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:,.0f}"
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:,.0f} [{mean - half:,.0f}, {mean + half:,.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=list(DEFAULTS), choices=list(DEFAULTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fraction", type=float, default=0.5,
                        help="B <= fraction * B_crit (ramp) or * B_simple (schedule)")  # fmt: skip
    parser.add_argument("--lr-grid", type=float, nargs="+", default=None,
                        help="LR multiples of the fixed sweep (default: the workload's)")  # fmt: skip
    parser.add_argument("--lr-rule", default=None, help="LR rule (default: the sweep's)")
    parser.add_argument("--ema-decay", type=float, default=0.9, help="of the noise-scale tracker")
    parser.add_argument("--update-every", type=int, default=10)
    parser.add_argument("--min-steps", type=int, default=20)
    parser.add_argument("--max-calibrations", type=int, default=3)
    parser.add_argument("--calibration-gap", type=int, default=100)
    parser.add_argument("--branch-factors", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--branch-improvement", type=float, default=0.05)
    parser.add_argument("--branch-max-steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--optimizer", default=None,
                        help="instead of the workload's (e.g. adamw on shakespeare-char)")  # fmt: skip
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="with --optimizer adamw: its weight decay (moved with the batch)")  # fmt: skip
    parser.add_argument("--carry-ratio", action="store_true",
                        help="calibrate on the first seed only; later seeds start from its "
                             "ratio B_crit/B_simple and branch no more")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"batchlab {bl.__version__}, torch {torch.__version__}, Python {sys.version.split()[0]}, "
          f"{platform.machine()} x {os.cpu_count()} CPUs, {args.threads} torch thread(s)")  # fmt: skip
    print("command: python " + " ".join(sys.argv))
    rows: list[tuple[str, int, Outcome, Outcome, Outcome, Outcome | None, RampResult]] = []
    for name in args.workloads:
        work = get_workload(name)
        cfg = dict(DEFAULTS[name])
        if args.lr_grid:
            cfg["lr_grid"] = args.lr_grid
        if args.optimizer:
            cfg["optimizer"] = args.optimizer
        if args.weight_decay is not None:
            cfg["hparams"] = {**cfg["hparams"], "weight_decay": args.weight_decay}
        print(f"\n{name}: {cfg['optimizer']} {cfg['hparams']}")
        carried: float | None = None
        for seed in args.seeds:
            print(f"\n{name}, seed {seed}: target {work.target.describe()}", flush=True)
            cfg = {**cfg, "base_batch_size": DEFAULTS[name]["base_batch_size"]}
            fixed = fixed_sweep(work, cfg, seed)
            # Both growing runs start at the smallest rung that reached the target, with
            # the LR tuned there (a rung that never got there has no tuned LR).
            first = next((f for f in fixed if f.lr is not None), None)
            if first is None:
                raise SystemExit(f"{name}: no fixed batch size reached the target")
            cfg = {**cfg, "base_batch_size": first.batch_sizes[0]}
            base_lr = first.lr
            tuned = [f.lr for f in fixed if f.lr is not None]
            cap = max(1.0, max(tuned) / base_lr)
            schedule_args = argparse.Namespace(
                ema_decay=args.ema_decay, lr_rule=args.lr_rule, update_every=args.update_every,
                min_steps=args.min_steps,
            )  # fmt: skip
            schedule = adaptive_run(work, cfg, base_lr, cap, args.fraction, schedule_args, seed)
            schedule.label = "B_simple-only"
            train, total, result = ramp_run(work, cfg, base_lr, cap, args, seed, carried)
            if carried is not None:
                print(f"    ratio carried from seed {args.seeds[0]}: {carried:.3g} (no branches)")
            elif args.carry_ratio and result.ratio.n:
                carried = result.ratio.ratio
            for o in (schedule, train, total):
                print(f"  {o.label:<14} steps {_n(o.steps):>6}  examples {_n(o.examples):>9}"
                      f"  batch sizes {o.batch_sizes}  ({o.wall_s:.0f} s)", flush=True)  # fmt: skip
            for c in result.calibrations:
                point = c.point
                print(f"    calibration at step {c.step}: B_simple {c.b_simple:.3g}, branches "
                      + ", ".join(f"B={b.batch_size}:{_n(b.steps_to_target)}/{b.steps_run}"
                                  for b in c.branches)
                      + (f" -> B_crit {point.b_crit:.3g} [{point.b_crit_ci[0]:.3g}, "
                         f"{point.b_crit_ci[1]:.3g}]" if point else " -> no fit"))  # fmt: skip
            ratio = result.ratio
            print(f"    r = B_crit/B_simple: {ratio.ratio:.3g} [{ratio.ratio_ci[0]:.3g}, "
                  f"{ratio.ratio_ci[1]:.3g}] from {ratio.n} point(s)")  # fmt: skip
            best, _ = compare(fixed, total)
            rows.append((name, seed, schedule, train, total, best, result))

    print(f"\nSummary (fraction {args.fraction:g}): mean over seeds [95% t-interval]")
    for name in args.workloads:
        mine = [r for r in rows if r[0] == name]
        print(f"\n{name} ({len(mine)} seed(s))")
        print(f"  {'run':<30}{'steps-to-target':>34}{'examples-to-target':>36}")

        def line(label: str, outcomes: list[Outcome | None]) -> None:
            got = [o for o in outcomes if o is not None and o.steps is not None]
            missing = len(outcomes) - len(got)
            note = f"  ({missing} not reached)" if missing else ""
            print(f"  {label:<30}{interval([o.steps for o in got]):>34}"
                  f"{interval([o.examples for o in got]):>36}{note}")  # fmt: skip

        line("best fixed, <= ramp examples", [r[5] for r in mine])
        line("B_simple-only schedule", [r[2] for r in mine])
        line("ramp, training only", [r[3] for r in mine])
        line("ramp, branches included", [r[4] for r in mine])
        ratios = [r[4].steps / r[5].steps for r in mine
                  if r[4].steps is not None and r[5] is not None and r[5].steps]  # fmt: skip
        if ratios:
            print(f"  ramp (total) steps / best fixed steps, per seed: "
                  f"{', '.join(f'{x:.2f}' for x in ratios)}; goal <= 0.75: "
                  f"{'met' if max(ratios) <= 0.75 else 'NOT met'}")  # fmt: skip
        for r in mine:
            if r[5] is None and r[4].steps is not None:
                print(f"  seed {r[1]}: every fixed batch size needed more examples than the ramp")


if __name__ == "__main__":
    main()
