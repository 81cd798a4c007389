"""Claim: dense evaluation near the target resolves steps-to-target to <= 2% on every rung.

Result: see the report of the run that added this script (the figures are printed,
not asserted). On the coarse grid alone (``[evaluation] per_run = 60``) a rung's best
steps-to-target is rounded up to the next of 60 evaluations per budget: 17-20% of
the count on the fast rungs of the default study. With ``resolution = 0.02`` a trial
predicted to reach the target within two coarse intervals is evaluated every
``max(1, floor(0.02 * step))`` steps (``batchlab.training._evaluation``).

It runs the default study (examples/mnist1d-cnn.toml) twice, with ``[evaluation]
resolution = 0`` (the coarse grid) and ``0.02``, each into its own temporary
directory with ``--workers`` processes, and prints per rung: the coarse interval, the
best steps-to-target of each run, the best trial's ``resolution_steps`` over its
steps (how finely the count is known: the crossing lies within that many steps
before it), how many of the trials that reached the target were resolved to 2%
(the others: crossings the prediction missed), and the evaluations made. Then each
run's wall and CPU time, and the dense run's ratio against the coarse one in the
same invocation (the machine may be shared: the CPU-time ratio is the steadier one).

Run:  python benchmarks/resolution.py [--workers 2] [--config examples/mnist1d-cnn.toml]
      (about 4-5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import cpu_seconds, study_environment
from optuna.trial import TrialState

from batchlab.study import Study, StudyConfig, open_storage
from batchlab.study._plan import load_rung_studies

ROOT = Path(__file__).resolve().parents[1]


def with_resolution(config: StudyConfig, resolution: float) -> StudyConfig:
    data = config.to_json_dict()
    data["evaluation"] = {**data["evaluation"], "resolution": resolution}
    return StudyConfig.model_validate(data)


def rung_figures(study: Study, config: StudyConfig) -> dict[int, dict[str, Any]]:
    """Per batch size: coarse interval, best trial's steps and resolution, misses, evaluations."""
    figures = {}
    for rung, rung_study in load_rung_studies(open_storage(study.storage_url), config):
        trials = rung_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        reached = [t for t in trials if t.user_attrs.get("steps_to_target") is not None]
        best = min(
            reached,
            key=lambda t: (t.user_attrs["steps_to_target"], t.user_attrs.get("slot", 0)),
            default=None,
        )
        fine = [
            t
            for t in reached
            if t.user_attrs["resolution_steps"]
            <= max(1, config.evaluation.resolution * t.user_attrs["steps_to_target"])
        ]
        figures[rung.batch_size] = {
            "every": rung.eval_every,
            "steps": best.user_attrs["steps_to_target"] if best else None,
            "resolution": best.user_attrs["resolution_steps"] if best else None,
            "reached": len(reached),
            "fine": len(fine),
            "evaluations": sum(
                len((t.user_attrs.get("curve") or {}).get("steps", [])) for t in trials
            ),
        }
    return figures


def run(
    config: StudyConfig, workers: int
) -> tuple[float, float, dict[int, dict[str, Any]], dict[str, Any] | None]:
    """Wall and CPU seconds, the per-rung figures, and the analysis's fit block."""
    with tempfile.TemporaryDirectory(prefix="batchlab-resolution-") as tmp:
        study = Study(config, Path(tmp) / config.name)
        started, cpu = time.perf_counter(), cpu_seconds()
        result = study.run(workers=workers)
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        fit = (result.analysis or {}).get("fit")
        return wall, cpu, rung_figures(study, config), fit


def fraction(figure: dict[str, Any]) -> str:
    if figure["steps"] is None:
        return "-"
    return (
        f"{figure['resolution']}/{figure['steps']} = {figure['resolution'] / figure['steps']:.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "mnist1d-cnn.toml")
    parser.add_argument("--resolution", type=float, default=0.02)
    args = parser.parse_args()

    print(study_environment(args.workers, args.config.name), flush=True)
    base = StudyConfig.from_toml(args.config)
    runs = {}
    for resolution in (0.0, args.resolution):
        wall, cpu, figures, fit = run(with_resolution(base, resolution), args.workers)
        runs[resolution] = (wall, cpu, figures)
        print(f"resolution {resolution:g}: {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
        if fit is not None:
            low, high = fit["b_crit_ci"]
            print(
                f"  B_crit {fit['b_crit']:.1f} [{low:.1f}, {high:.1f}] "
                f"(upper/lower {high / low:.2f})",
                flush=True,
            )

    coarse, dense = runs[0.0][2], runs[args.resolution][2]
    print()
    print(
        f"{'B':>5} {'every':>5} | {'best steps':>10} {'resolution (coarse)':>22} | "
        f"{'best steps':>10} {'resolution (dense)':>22} {'fine/reached':>12} | "
        f"{'evaluations':>17}"
    )
    worst = 0.0
    for batch_size in coarse:
        c, d = coarse[batch_size], dense[batch_size]
        if d["steps"] is not None:
            worst = max(worst, d["resolution"] / d["steps"])
        print(
            f"{batch_size:5d} {c['every']:5d} | {str(c['steps']):>10} {fraction(c):>22} | "
            f"{str(d['steps']):>10} {fraction(d):>22} {d['fine']:>5}/{d['reached']:<6} | "
            f"{c['evaluations']:>7} -> {d['evaluations']:<7}"
        )
    reached = sum(d["reached"] for d in dense.values())
    fine = sum(d["fine"] for d in dense.values())
    (wall0, cpu0, _), (wall1, cpu1, _) = runs[0.0], runs[args.resolution]
    print()
    print(f"worst best-trial resolution with dense evaluation: {worst:.1%} of the count")
    print(
        f"trials that reached the target resolved to {args.resolution:g}: {fine}/{reached} "
        f"({reached - fine} crossings missed by the prediction)"
    )
    print(
        f"wall time: {wall0:.0f} s -> {wall1:.0f} s ({wall1 / wall0:.2f}x); "
        f"CPU time: {cpu0:.0f} s -> {cpu1:.0f} s ({cpu1 / cpu0:.2f}x)"
    )


if __name__ == "__main__":
    main()
