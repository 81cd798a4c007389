"""Claim: where B_crit's interval is wide because the rungs bend more sharply than
S_min (1 + B_crit / B), a bend of free sharpness (:func:`batchlab.analysis.fit_knee`,
S_min (1 + (B_crit / B)^α)^(1/α): the same asymptotes, the same B_crit = E_min / S_min)
fits the rungs and pins B_crit down; on the closed-form curves, where the theory
holds, it returns α ≈ 1 and the hyperbola's B_crit.

Result: see the note of the run that added this script (the figures are printed, not
asserted; tests/analysis/test_knee.py checks the closed forms and the coverage).

Two parts:

* ``--exact`` (default on): the exact steps-to-target S*(B) of the NQM and of linreg
  (``benchmarks/calibration.py``'s ``exact_curve``: the best of ``--grid`` learning
  rates per rung, from the closed forms) on calibration.py's ladder, fitted both ways.
* ``--results DIR ...``: finished studies (e.g. ``runs/mnist1d-cnn`` of ``make
  demo``), re-analysed with this version: per study the hyperbola's B_crit with its
  interval (residual and seed bootstrap, as the answer reports it) and the free fit's
  α and B_crit with theirs (the same two sources), the rms log residual of each, and
  across studies whether each fit's B_crit values lie inside each other's intervals.

* ``--synthetic N``: N ladders (B = 16 ... 2048, the default study's) drawn from
  S_min (1 + (B_crit / B)^α)^(1/α) with S_min = 200, B_crit = 80, α = 3 (a sharp
  bend) and α = 1 (the hyperbola), and log-normal scatter of 8% and 15% per rung: how
  often the free bend's interval covers the true B_crit, how wide it is, how often
  α's interval excludes 1, and the coverage among those draws alone (after that
  selection); then what the answer does (``summarize_ladder``, which chooses between
  the two curves): how often it took the free bend, and how often its interval covers
  the true B_crit (on the hyperbola both curves' B_crit is 80).

Run:  python benchmarks/knee_shape.py [--grid 400]                      (~30 s)
      python benchmarks/knee_shape.py --no-exact --results runs/a runs/b  (seconds each)
      python benchmarks/knee_shape.py --no-exact --synthetic 300          (~10 min)
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import numpy as np
from calibration import LADDER, exact_curve

from batchlab.analysis import fit_knee, fit_scaling, summarize_ladder
from batchlab.results import load_study


def rms(residuals) -> float:
    return math.sqrt(float(np.mean(np.square(residuals))))


def span(b: float, ci) -> str:
    low, high = ci
    return f"{b:7.1f} [{low:6.1f}, {high:6.1f}]  upper/lower {high / low:4.2f}"


def exact_part(grid: int) -> None:
    print(f"Closed-form S*(B) (best of {grid} LRs per rung), ladder {LADDER[0]}..{LADDER[-1]}:")
    for workload in ("nqm", "linreg"):
        steps = exact_curve(grid, workload=workload)
        hyperbola = fit_scaling(LADDER, steps, n_bootstrap=0)
        free = fit_knee(LADDER, steps, n_bootstrap=0)
        print(
            f"  {workload:6s}: hyperbola B_crit {hyperbola.b_crit:7.2f} (rms {rms(hyperbola.residuals):.3f});"
            f" free bend α {free.sharpness:.2f}, B_crit {free.b_crit:7.2f} (rms {free.rms:.3f});"
            f" ratio {free.b_crit / hyperbola.b_crit:.3f}"
        )


def results_part(directories: list[Path]) -> None:
    fits = []
    for directory in directories:
        data = load_study(directory)
        rungs = list(data.rungs)
        sizes = [r.batch_size for r in rungs]
        steps = [r.steps_to_target for r in rungs]
        budgets = [r.budget_steps for r in rungs]
        candidates = [r.candidates for r in rungs]
        summary = summarize_ladder(sizes, steps, budgets=budgets, candidates=candidates)
        free = fit_knee(sizes, steps, budgets=budgets, candidates=candidates)
        print(f"\n{directory} ({data.name}): steps {dict(zip(sizes, steps, strict=True))}")
        if summary.fit is None:
            print(f"  no fit: {summary.note}")
            continue
        fit = summary.fit
        print(
            f"  hyperbola: B_crit {span(fit.b_crit, fit.b_crit_ci)}  rms {rms(fit.residuals):.3f}"
        )
        print(
            f"  free bend: B_crit {span(free.b_crit, free.b_crit_ci)}  rms {free.rms:.3f}; "
            f"α {free.sharpness:.2f} [{free.sharpness_ci[0]:.2f}, {free.sharpness_ci[1]:.2f}]"
            f"{' (excludes 1)' if free.unlike_hyperbola else ''}"
        )
        print(f"    of which the rungs' scatter alone [{free.residuals_ci[0]:.1f}, {free.residuals_ci[1]:.1f}]"
              + ("" if free.seeds_ci is None
                 else f", fresh seeds alone [{free.seeds_ci[0]:.1f}, {free.seeds_ci[1]:.1f}]"))  # fmt: skip
        sources = summary.answer.interval_sources
        print(
            f"  the answer adds the free bend: {sources is not None and sources.knee is not None}"
        )
        fits.append((directory, fit, free))
    for (a, fit_a, free_a), (b, fit_b, free_b) in itertools.combinations(fits, 2):
        for name, x, y in (("hyperbola", fit_a, fit_b), ("free bend", free_a, free_b)):
            inside = (
                y.b_crit_ci[0] <= x.b_crit <= y.b_crit_ci[1]
                and x.b_crit_ci[0] <= y.b_crit <= x.b_crit_ci[1]
            )
            print(f"\n{a} vs {b}, {name}: {x.b_crit:.1f} and {y.b_crit:.1f} inside each "
                  f"other's interval: {inside}")  # fmt: skip


def synthetic_part(draws: int) -> None:
    ladder = np.array([16, 32, 64, 128, 256, 512, 1024, 2048], dtype=float)
    s_min, b_crit = 200.0, 80.0
    for alpha, sigma in itertools.product((3.0, 1.0), (0.08, 0.15)):
        truth = s_min * (1 + (b_crit / ladder) ** alpha) ** (1 / alpha)
        rng = np.random.default_rng(0)
        free_rows, answer_rows = [], []  # (covered, upper/lower, free bend chosen)
        for draw in range(draws):
            steps = truth * np.exp(rng.normal(0.0, sigma, ladder.size))
            free = fit_knee(ladder, steps, seed=draw)
            low, high = free.b_crit_ci
            free_rows.append((low <= b_crit <= high, high / low, free.unlike_hyperbola))
            answer = summarize_ladder(ladder, steps, seed=draw).answer
            low, high = answer.b_crit_ci or (math.nan, math.nan)
            answer_rows.append(
                (low <= b_crit <= high, high / low, answer.b_crit_model == "free bend")
            )
        chosen = [r for r in free_rows if r[2]]
        print(
            f"\nSynthetic ladders: S_min {s_min:g}, B_crit {b_crit:g}, α {alpha:g}, "
            f"scatter {sigma:.0%}, {draws} draws"
        )
        print(
            f"  free bend: covers {sum(r[0] for r in free_rows)}/{draws}, median upper/lower "
            f"{float(np.median([r[1] for r in free_rows])):.2f}; α's interval excludes 1 "
            f"in {len(chosen)}, of which covered {sum(r[0] for r in chosen)}"
            + (
                f" (median upper/lower {float(np.median([r[1] for r in chosen])):.2f})"
                if chosen
                else ""
            )
        )
        print(
            f"  the answer (summarize_ladder): took the free bend in "
            f"{sum(r[2] for r in answer_rows)}/{draws}; its interval covers {b_crit:g} in "
            f"{sum(r[0] for r in answer_rows)}/{draws}, median upper/lower "
            f"{float(np.median([r[1] for r in answer_rows])):.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=400, help="LRs per rung of the exact curves")
    parser.add_argument("--exact", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--results", type=Path, nargs="*", default=[])
    parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="draws per scatter")
    args = parser.parse_args()
    if args.exact:
        exact_part(args.grid)
    if args.synthetic:
        synthetic_part(args.synthetic)
    if args.results:
        results_part(args.results)


if __name__ == "__main__":
    main()
