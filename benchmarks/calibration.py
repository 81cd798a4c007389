"""Claim: the study's 95% B_crit interval covers the exact B_crit of the NQM in >= 85% of studies.

Result: see the note of the run that added this script (the figures are printed, not
asserted; ``tests/study/test_calibration.py`` checks a smaller version).

Plain SGD on the noisy quadratic model has a closed-form expected loss (Zhang et al.
2019; ``batchlab.workloads.nqm``), so its exact steps-to-target S*(B) at the best
constant learning rate is known: a scan of ``--grid`` log-spaced learning rates over
the searched range per batch size, each crossing found by bisection on the closed
form p_t = (1 − ηh)^(2t) (p₀ − p*) + p*. The exact B_crit is the fit of
S(B) = S_min (1 + B_crit / B) to S*(B) on the study's own ladder (the NQM is not
exactly that hyperbola, so "exact" means: what a study with a perfect search would
report).

Each of ``--studies`` studies differs only in its seed, which scrambles the Sobol
points every rung searches: the spread of their B_crit is the search's sampling
noise. It prints per study the fitted B_crit with its interval and whether it covers
the exact value, then the coverage, the median interval ratio upper/lower, and per
rung how far the study's best steps lie above S*(B) (the search's bias: the best of
N sampled learning rates is never better than the best one), and how often each
rung's interval in the answer (``answer.rungs[].steps_ci``: fresh seeds and the
evaluation resolution) covers S*(B).

``--edge-extension X`` sets ``[search] edge_extension`` (refinement beyond the edge a
rung's best is on); each study then also prints how many rungs are flagged on an edge.

Run:  python benchmarks/calibration.py [--studies 20] [--trials 16] [--grid 4000]
          [--edge-extension 0.125]
      (about a minute on 2 cores)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from batchlab import get_workload
from batchlab.analysis import fit_scaling
from batchlab.study import Study, StudyConfig
from batchlab.workloads.nqm import sgd_steps_to_target

LADDER = [2**k for k in range(0, 12)]  # 1 ... 2048
LR_RANGE = (1e-3, 2.0)
TARGET = 0.5


def study_config(seed: int, trials: int, ladder: list[int] = LADDER, **search: Any) -> StudyConfig:
    """The study of one seed: SGD on the NQM over ``ladder``; ``search`` overrides
    (e.g. ``refine=0``) go into its ``[search]`` table."""
    return StudyConfig.model_validate(
        {
            "name": f"nqm-sgd-{seed}",
            "optimizer": "sgd",
            "seed": seed,
            "workload": {"name": "nqm", "params": {"dim": 1000}},
            "ladder": {"batch_sizes": ladder},
            "search": {
                "trials_per_rung": trials,
                "space": {"lr": {"low": LR_RANGE[0], "high": LR_RANGE[1]}},
                **search,
            },
            "target": {"metric": "loss", "value": TARGET, "direction": "min"},
            "budget": {"steps": 20_000},
            "evaluation": {"every": 10},
        }
    )


def exact_curve(grid: int, ladder: list[int] = LADDER) -> list[float]:
    """S*(B): the fewest steps over ``grid`` log-spaced LRs of the searched range, per rung."""
    w = get_workload("nqm", {"dim": 1000})
    lrs = np.geomspace(*LR_RANGE, grid)
    return [
        float(
            sgd_steps_to_target(
                w.curvature, w.noise, w.w0, lrs=lrs, batch_size=b, target=TARGET
            ).min()
        )
        for b in ladder
    ]


def run_study(seed: int, trials: int, edge_extension: float = 0.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="batchlab-calibration-") as tmp:
        config = study_config(seed, trials, edge_extension=edge_extension)
        result = Study(config, Path(tmp) / "s").run()
    fit = (result.analysis or {}).get("fit") or {}
    rungs = ((result.analysis or {}).get("answer") or {}).get("rungs") or []
    return {
        "steps": result.steps_to_target,
        "b_crit": fit.get("b_crit"),
        "ci": fit.get("b_crit_ci"),
        "edges": len(result.edges),
        "rung_ci": {row["batch_size"]: row.get("steps_ci") for row in rungs},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--grid", type=int, default=4000)
    parser.add_argument("--edge-extension", type=float, default=0.0)
    args = parser.parse_args()

    exact = exact_curve(args.grid)
    truth = fit_scaling(LADDER, exact, n_bootstrap=0).b_crit
    print(f"exact S*(B): {dict(zip(LADDER, (int(s) for s in exact), strict=True))}")
    print(f"exact B_crit (fit of S* on the ladder): {truth:.2f}\n", flush=True)

    covered, ratios, excess = 0, [], {b: [] for b in LADDER}
    rung_hits = {b: [] for b in LADDER}
    for seed in range(args.studies):
        study = run_study(seed, args.trials, args.edge_extension)
        for b, s in zip(LADDER, exact, strict=True):
            if study["steps"][b] is not None:
                excess[b].append(study["steps"][b] / s - 1.0)
            ci = study["rung_ci"].get(b)
            if ci is not None:
                rung_hits[b].append(ci[0] <= s and (ci[1] is None or s <= ci[1]))
        if study["ci"] is None:
            print(f"seed {seed:2d}: no fit")
            continue
        low, high = study["ci"]
        hit = low <= truth <= high
        covered += hit
        ratios.append(high / low)
        print(
            f"seed {seed:2d}: B_crit {study['b_crit']:6.2f} [{low:6.2f}, {high:6.2f}]"
            f"  {'covers' if hit else 'MISSES'}; {study['edges']} rung(s) on an edge",
            flush=True,
        )
    n = args.studies
    se = math.sqrt(max(covered / n * (1 - covered / n), 1e-12) / n)
    print(f"\ncoverage of the exact B_crit: {covered}/{n} = {covered / n:.0%} (± {se:.0%} s.e.)")
    print(f"median interval upper/lower: {statistics.median(ratios):.2f}")
    print("per rung, best study steps / S*(B) - 1 (median over studies): ", end="")
    print(", ".join(f"{b}: {statistics.median(v):+.1%}" for b, v in excess.items() if v))
    hits = [h for v in rung_hits.values() for h in v]
    print(
        f"per-rung intervals (answer.rungs[].steps_ci) covering S*(B): "
        f"{sum(hits)}/{len(hits)} = {sum(hits) / max(len(hits), 1):.0%}; per rung: "
        + ", ".join(f"{b}: {sum(v)}/{len(v)}" for b, v in rung_hits.items() if v)
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
