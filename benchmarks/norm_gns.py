"""Claim (issue #25, item 2): B_simple of the LayerNorm parameters alone tracks the whole
model's on shakespeare-char, within a stated factor, at <= 1% overhead.

Result (2-core shared x86-64 VM, torch 2.13.0 CPU, Python 3.11, --threads 1, seed 0):
agreement met with a factor, not 1:1; overhead goal not met on CPU.

* Ratio LN-only / full B_simple per window: default run (300 steps, windows of 50)
  median 0.488, min 0.422, max 0.659 (the first window), log-ratio SD 0.138;
  ``--steps 1200 --every 100``: median 0.572, min 0.479, max 0.615, log-ratio SD
  0.081, while B_simple itself grew from 36 to 203. Drift: log-ratio slope -0.68 per
  1000 steps over 300 steps (the first window), +0.09 per 1000 steps over 1200; first-
  vs last-third median 0.526 -> 0.588. So the LN-only proxy reads 0.4-0.7x the full
  value, steady within ~25% over training; tests/noise/test_norm_layers.py states
  the factor as 1/3 < ratio < 1. Gray et al. 2024 report closer agreement in larger
  Transformers; this 2-layer, width-64 model is far smaller.
* Overhead (CPU time per step, 4 micro-batches of 16): LN-only +3.8% to +8.2% over
  three runs (1.5-3 ms on ~37 ms), the full tracker +4.4% to +6.2% in the same runs;
  at ``--width 256`` LN-only +5.8%, full +1.6%. The per-example sums (Σ_t g ⊙ y and
  Σ_t g per LayerNorm call) are memory-bound passes over each LayerNorm's output,
  about as costly as the LayerNorm's own backward, so on a CPU their share does not
  fall with width; on a GPU they are small elementwise kernels (not measured here).

Evidence, two parts in one process:

1. Agreement. One shakespeare-char model (batch 64 = 4 micro-batches of 16, loss / 4,
   its default Adam) trains for ``--steps`` steps with both trackers attached:
   ``NoiseScaleTracker`` (every parameter; B_small = 16, B_big = 64) and
   ``NormLayerNoiseTracker`` (the five LayerNorms' weights and biases only; per-example
   gradients, B_small = 1, B_big = 64; Gray et al. 2024). Every ``--every`` steps each
   tracker's B_simple over that window alone (its |G|² and tr(Σ) averaged separately
   over the window's steps, McCandlish et al. 2018 App. A) is recorded, with Fieller's
   95% interval. Printed: the LN/full ratio per window, its median, min and max, and
   its drift: the slope of log(ratio) against the step (per 1000 steps) and the
   first-third vs last-third median ratio.
2. Overhead. As benchmarks/gns_overhead.py: three identical models (plain, LN-tracked,
   full-tracked) run the same ``--block`` steps in alternating blocks (the order
   rotates) for ``--repeats`` rounds after a warm-up; medians of the per-step wall and
   this thread's CPU time (one torch thread by default, which makes CPU time exact
   and robust to other processes), and their ratios to the plain arm.

Run:  python benchmarks/norm_gns.py [--steps 300] [--every 50] [--block 20]
          [--repeats 9] [--threads 1] [--seed 0] [--width 64] [--skip-agreement]
(default about 1.5 min on a 2-core machine; --steps 3000 for a longer run.)
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

import numpy as np
import torch
from gns_overhead import MICRO_BATCHES, make_arm, run_block

import batchlab
from batchlab.noise import (
    NoiseScaleRecord,
    NoiseScaleStatistics,
    NoiseScaleTracker,
    NormLayerNoiseTracker,
    split_batch,
)
from batchlab.workloads import get_workload

BATCH = 64


def window_estimate(records: list[NoiseScaleRecord]) -> tuple[float, tuple[float, float]]:
    """B_simple and its interval over these steps alone (a fresh average)."""
    stats = NoiseScaleStatistics()
    for r in records:
        stats.update(r.sq_norm_small, r.sq_norm_big, r.b_small, r.b_big)
    return stats.b_simple, stats.b_simple_ci


def agreement(steps: int, every: int, seed: int, width: int) -> list[dict[str, Any]]:
    """Train with both trackers; per window: the step, both B_simple (and intervals)."""
    workload = get_workload("shakespeare-char", {"width": width})
    stream = workload.train_batches(BATCH, torch.Generator().manual_seed(seed))
    model, optimizer = make_arm(workload)
    full, norm = NoiseScaleTracker(model), NormLayerNoiseTracker(model)
    for _ in range(steps):
        batch = next(stream)
        parts = split_batch(batch, BATCH // MICRO_BATCHES)
        for part in parts:
            (workload.loss_fn(model, part) / len(parts)).backward()
        optimizer.step()
        full.step()
        norm.step()
        optimizer.zero_grad(set_to_none=True)
    full.remove()
    norm.remove()
    rows = []
    hist_full, hist_norm = full.history, norm.history
    for start in range(0, steps - every + 1, every):
        b_full, ci_full = window_estimate(hist_full[start : start + every])
        b_norm, ci_norm = window_estimate(hist_norm[start : start + every])
        rows.append(
            {
                "step": start + every,
                "full": b_full,
                "full_ci": ci_full,
                "norm": b_norm,
                "norm_ci": ci_norm,
                "ratio": b_norm / b_full,
            }
        )
    return rows


def overhead(block: int, repeats: int, seed: int, width: int) -> dict[str, dict[str, float]]:
    """Median per-step wall and CPU ms of the plain, LN-tracked and full-tracked arms."""
    workload = get_workload("shakespeare-char", {"width": width})
    stream = workload.train_batches(BATCH, torch.Generator().manual_seed(seed))
    batches = [next(stream) for _ in range(block)]
    arms: dict[str, tuple[Any, Any, Any]] = {}
    for key in ("plain", "norm", "full"):
        model, optimizer = make_arm(workload)
        tracker = {"plain": None, "norm": NormLayerNoiseTracker, "full": NoiseScaleTracker}[key]
        arms[key] = (model, optimizer, tracker(model) if tracker else None)
    for arm in arms.values():  # warm-up
        run_block(workload, arm[0], arm[1], batches, arm[2])
    wall: dict[str, list[float]] = {key: [] for key in arms}
    cpu: dict[str, list[float]] = {key: [] for key in arms}
    keys = list(arms)
    for round_ in range(repeats):
        order = keys[round_ % 3 :] + keys[: round_ % 3]
        for key in order:
            w, c, _ = run_block(workload, arms[key][0], arms[key][1], batches, arms[key][2])
            wall[key].append(w)
            cpu[key].append(c)
    median = statistics.median
    out = {}
    for key in keys:
        out[key] = {
            "wall_ms": 1e3 * median(wall[key]),
            "cpu_ms": 1e3 * median(cpu[key]),
            "wall_ratio": median(wall[key]) / median(wall["plain"]),
            "cpu_ratio": median(cpu[key]) / median(cpu["plain"]),
            "paired": median(a / b for a, b in zip(cpu[key], cpu["plain"], strict=True)),
        }
    return out


def report_agreement(rows: list[dict[str, Any]], start: float) -> None:
    print(f"{'step':>6}{'B full':>9}{'95% CI full':>20}{'B LN':>9}{'95% CI LN':>20}{'LN/full':>9}")
    for r in rows:
        ci_f, ci_n = r["full_ci"], r["norm_ci"]
        print(
            f"{r['step']:>6}{r['full']:>9.1f}  [{ci_f[0]:>7.1f}, {ci_f[1]:>7.1f}]"
            f"{r['norm']:>9.1f}  [{ci_n[0]:>7.1f}, {ci_n[1]:>7.1f}]{r['ratio']:>9.3f}"
        )
    ratios = np.array([r["ratio"] for r in rows])
    steps = np.array([r["step"] for r in rows], dtype=float)
    finite = np.isfinite(ratios) & (ratios > 0)
    if finite.sum() >= 2:
        slope = np.polyfit(steps[finite], np.log(ratios[finite]), 1)[0] * 1000
    else:
        slope = math.nan
    third = max(1, len(ratios) // 3)
    print(
        f"\nLN/full ratio: median {np.median(ratios):.3f}, min {ratios.min():.3f}, max "
        f"{ratios.max():.3f}; log-ratio SD over windows {np.std(np.log(ratios[finite])):.3f}"
    )
    print(
        f"drift: log(ratio) slope {slope:+.3f} per 1000 steps; median ratio first third "
        f"{np.median(ratios[:third]):.3f}, last third {np.median(ratios[-third:]):.3f}"
        f"  ({time.perf_counter() - start:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps (agreement)")
    parser.add_argument("--every", type=int, default=50, help="steps per window")
    parser.add_argument("--block", type=int, default=20, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=9, help="alternating timing rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=64, help="model width (default 64)")
    parser.add_argument("--skip-agreement", action="store_true", help="overhead only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"batchlab {batchlab.__version__}, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {platform.platform()}; {os.cpu_count()} logical cores, "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"shakespeare-char (width {args.width}), batch {BATCH} = {MICRO_BATCHES} x "
        f"{BATCH // MICRO_BATCHES}, {args.steps} steps, windows of {args.every}, seed {args.seed}\n"
    )
    start = time.perf_counter()
    if not args.skip_agreement:
        report_agreement(agreement(args.steps, args.every, args.seed, args.width), start)
    result = overhead(args.block, args.repeats, args.seed, args.width)
    sys.stdout.flush()
    print(
        f"\nOverhead, per step ({MICRO_BATCHES} micro-batches), medians over {args.repeats} "
        f"rounds of {args.block} steps:"
    )
    print(f"{'arm':<8}{'wall ms':>9}{'CPU ms':>9}{'wall ratio':>12}{'CPU ratio':>11}{'paired':>9}")
    for key, r in result.items():
        print(
            f"{key:<8}{r['wall_ms']:>9.2f}{r['cpu_ms']:>9.2f}{r['wall_ratio']:>12.4f}"
            f"{r['cpu_ratio']:>11.4f}{r['paired']:>9.4f}"
        )
    print(
        "CPU = this thread's CPU time (exact with --threads 1); paired = median of the "
        "per-round CPU ratios."
    )


if __name__ == "__main__":
    main()
