"""Claim: each built-in workload's default target is reachable across its ladder.

For every batch size of a ladder it trains a grid of learning rates (momentum and the
other hyperparameters at the workload's defaults), records the full validation
curve, and prints, for several candidate targets, the fewest steps to reach each
(minimum over the grid) — the measurement the default targets were chosen from.

Run:  python benchmarks/workload_targets.py mnist1d-cnn --targets 0.8 0.85 0.88
      python benchmarks/workload_targets.py shakespeare-char --batch-sizes 16 64 256
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from batchlab import get_workload
from batchlab.study import RunSpec, run_training
from batchlab.training import EnsembleUnsupported, run_ensemble
from batchlab.workloads import Target


def curves_for(workload, batch_size: int, lrs: list[float], steps: int, every: int, seed: int):
    hparams = dict(workload.default_hparams)
    optimizer = hparams.pop("optimizer")
    specs = [
        RunSpec(
            batch_size=batch_size,
            optimizer=optimizer,
            hparams={**hparams, "lr": lr},
            max_steps=steps,
            eval_every=every,
            seed=seed,
        )
        for lr in lrs
    ]
    never = Target(
        workload.target.metric,
        1e9 if workload.target.direction == "max" else -1e9,
        workload.target.direction,
    )
    if batch_size * len(specs) <= 2048:
        try:
            return run_ensemble(workload, specs, never)
        except EnsembleUnsupported:
            pass
    return [run_training(workload, spec, never) for spec in specs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512, 1024, 2048]
    )
    parser.add_argument(
        "--lrs",
        type=float,
        nargs="+",
        default=None,
        help="default: 8 log-spaced around the workload's",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="step budget (default: the workload's)"
    )
    parser.add_argument(
        "--examples", type=int, default=None, help="cap the budget at examples / batch size"
    )
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--targets", type=float, nargs="+", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    workload = get_workload(args.workload)
    base_lr = workload.default_hparams["lr"]
    lrs = args.lrs or list(np.geomspace(base_lr / 10, base_lr * 10, 8))
    steps = args.steps or workload.default_steps
    targets = args.targets or [workload.target.value]
    metric = workload.target.metric
    print(
        f"{workload.name}: {metric} ({workload.target.direction}), lrs {[f'{x:.3g}' for x in lrs]}, {steps} steps"
    )
    header = "".join(f"{t:>10g}" for t in targets)
    print(
        f"{'batch':>6} {'best ' + metric:>14} {'time':>7} |{header}   (fewest steps to each target; lr)"
    )
    for batch_size in args.batch_sizes:
        started = time.perf_counter()
        budget = (
            steps
            if args.examples is None
            else min(steps, max(10 * args.every, args.examples // batch_size))
        )
        results = curves_for(workload, batch_size, lrs, budget, args.every, args.seed)
        elapsed = time.perf_counter() - started
        pick = max if workload.target.direction == "max" else min
        best_value = pick(v for r in results for v in r.metrics[metric])
        cells = []
        for value in targets:
            goal = Target(metric, value, workload.target.direction)
            hits = [
                (step, lr)
                for r, lr in zip(results, lrs, strict=True)
                for step, v in zip(r.steps, r.metrics[metric], strict=True)
                if goal.reached(v)
            ]
            first = {}
            for step, lr in hits:
                first.setdefault(lr, step)
            cells.append(
                f"{min(first.values()):>5} ({min(first, key=first.get):.2g})"
                if first
                else f"{'—':>10}"
            )
        print(
            f"{batch_size:>6} {best_value:>14.4f} {elapsed:>6.1f}s |"
            + "".join(f"{c:>10}" for c in cells),
            flush=True,
        )


if __name__ == "__main__":
    main()
