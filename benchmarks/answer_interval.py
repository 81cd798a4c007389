"""Claim: the default study's B_crit interval, before and after [answer]'s changes, at what cost.

Result: see the note of the run that added this script (the figures are printed, not
asserted). [answer] asks for an interval upper/lower <= 1.6 at <= 2x the wall time,
and for seeds 0 and 1 to give B_crit values inside each other's interval.

It runs the default study (examples/mnist1d-cnn.toml) as

* ``before``: the coarse evaluation grid, the whole space searched once, and the
  luckiest single trial per rung (``[evaluation] resolution = 0``, ``[search]
  refine = 0``, ``confirm_top = 0``), seed 0;
* ``after``: the defaults (dense evaluation near the target; 8 more trials in a
  window around each rung's best; the best two candidates re-run on two fresh
  seeds, the median deciding, and the next one too where the chosen one missed on a
  seed; unreached rungs as censored bounds in the fit), at seeds 0 and 1;

each into its own temporary directory with ``--workers`` processes, and prints per
run: wall and CPU time, per rung the steps-to-result (and, after, the search's
luckiest count beside the confirmed median), and the answer's B_crit (the headline:
the free bend's where its α's interval excludes 1) with its 95% interval and the
interval's upper/lower ratio, the hyperbola's beside it, what sets the latter
(``analysis.answer.interval_sources``) and, as a diagnostic, the interval the rungs'
own intervals alone would give (``_common.propagated_b_crit_ci``); then the wall-time ratio against
``before`` and whether the two seeds' B_crit lie inside each other's interval.

With ``--results DIR ...`` it runs nothing: it re-analyses finished studies (e.g. the
default study of ``make demo``, ``runs/mnist1d-cnn``) with this version's analysis and
prints the same lines (and, for two or more, the spread between them as ``--seeds``
does). ``--keep DIR`` runs the studies in DIR/<run>-seed<seed> and keeps them, so
they can be re-analysed so. Each fit's interval is the union of the residual bootstrap's and
the seed bootstrap's (``analysis.seed_bootstrap``: each rung's confirmation seeds and
candidate choice resampled); the seed bootstrap's own interval is printed beside it, so
the two sources of width can be told apart.

Run:  python benchmarks/answer_interval.py [--workers 2] [--config examples/mnist1d-cnn.toml]
      (about 10 minutes on 2 cores)
      python benchmarks/answer_interval.py --results runs/mnist1d-cnn   (seconds)
      python benchmarks/answer_interval.py --config benchmarks/protocol-2d.toml --more-seeds 4
      (the study once, then 2 more seeds per confirmed candidate: about 10 minutes)
      python benchmarks/answer_interval.py --seeds 0 1 2 3 4 [--keep DIR]
      (the default study at 5 study seeds: its answers' spread against their intervals;
      about 22 minutes)
      python benchmarks/answer_interval.py --results DIR/*   (re-analyse kept studies)
      python benchmarks/answer_interval.py --config benchmarks/protocol-2d.toml \
          --trials-factor 2 --per-octave 1 --seeds 0 1
      (8 rungs with twice the search each: about 15 minutes; --per-octave 1 alone: the
      8 rungs that file had before its 15)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import cpu_seconds, propagated_b_crit_ci, search_only, study_environment

from batchlab.results import StudyResult, load_study
from batchlab.study import Study, StudyConfig
from batchlab.study._collect import analyse
from batchlab.study._recheck import decide_recheck

ROOT = Path(__file__).resolve().parents[1]


def variant(base: StudyConfig, *, seed: int, before: bool) -> StudyConfig:
    data = (search_only(base) if before else base).to_json_dict()
    data["seed"] = seed
    if before:
        data["evaluation"] = {**data["evaluation"], "resolution": 0.0}
    return StudyConfig.model_validate(data)


def timed(study: Study, workers: int, force: bool = False) -> tuple[float, float, StudyResult]:
    """Run ``study``: its wall and CPU seconds, and its result."""
    started, cpu = time.perf_counter(), cpu_seconds()
    result = study.run(workers=workers, force=force)
    return time.perf_counter() - started, cpu_seconds() - cpu, result


def run(
    config: StudyConfig, workers: int, keep: Path | None = None, label: str = "after"
) -> tuple[float, float, StudyResult]:
    """Run ``config`` in a temporary directory, or in ``keep``/<label>-seed<seed> (kept,
    for ``--results``; a finished one there is only re-read)."""
    if keep is not None:
        directory = keep / f"{label.replace(' ', '-')}-seed{config.seed}"
        return timed(Study(config, directory), workers)
    with tempfile.TemporaryDirectory(prefix="batchlab-answer-") as tmp:
        return timed(Study(config, Path(tmp) / config.name), workers)


def with_search(config: StudyConfig, trials_factor: int, per_octave: int | None) -> StudyConfig:
    """``config`` with ``trials_factor`` times the search and refinement trials per rung,
    and ``per_octave`` rungs per doubling (``None``: as configured)."""
    if trials_factor < 1:
        raise SystemExit(f"--trials-factor must be 1 or more, got {trials_factor}")
    data = config.to_json_dict()
    search = data["search"]
    data["search"] = {
        **search,
        "trials_per_rung": search["trials_per_rung"] * trials_factor,
        "refine": search["refine"] * trials_factor,
    }
    if per_octave is not None:  # a ladder of batch_sizes refuses it (LadderConfig)
        data["ladder"] = {**data["ladder"], "per_octave": per_octave}
    return StudyConfig.model_validate(data)


def hold_each_other(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """Whether two answers (B_crit, low, high) each lie inside the other's interval."""
    return a[1] <= b[0] <= a[2] and b[1] <= a[0] <= b[2]


def with_more_seeds(config: StudyConfig, workers: int, counts: list[int]) -> None:
    """Run ``config``, then raise ``[search] confirm_seeds`` to each of ``counts`` on the
    same study (``--force``: only the new seeds of each confirmed candidate train) and
    print the answer after each: does more replication narrow the interval?"""
    with tempfile.TemporaryDirectory(prefix="batchlab-answer-") as tmp:
        directory = Path(tmp) / config.name
        for count in [config.search.confirm_seeds, *counts]:
            data = config.to_json_dict()
            data["search"] = {**data["search"], "confirm_seeds": count}
            study = Study(StudyConfig.model_validate(data), directory)
            describe(f"confirm_seeds = {count} (this step)", *timed(study, workers, force=True))


def across_seeds(base: StudyConfig, workers: int, seeds: list[int], keep: Path | None) -> None:
    """The default ("after") study at each of ``seeds``: is each answer's interval as
    wide as the answers' spread between study seeds? Prints, per seed, the answer, then
    :func:`compare`."""
    answers: dict[str, tuple[float, float, float]] = {}
    for seed in seeds:
        wall, cpu, result = run(variant(base, seed=seed, before=False), workers, keep)
        describe(f"after seed {seed}", wall, cpu, result)
        if (answer := interval(result)) is not None:
            answers[f"seed {seed}"] = answer
    compare(answers)


def compare(answers: dict[str, tuple[float, float, float]]) -> None:
    """The answers' spread against their intervals: how many intervals hold the median
    of the B_crits and how many pairs hold each other's B_crit."""
    if len(answers) < 2:
        print("\nfewer than two answers: nothing to compare")
        return
    values = sorted(b for b, _, _ in answers.values())
    middle = float(np.median(values))
    holding = sum(low <= middle <= high for _, low, high in answers.values())
    pairs = [(a, b) for a in answers for b in answers if a < b]
    mutual = sum(hold_each_other(answers[a], answers[b]) for a, b in pairs)
    ratios = sorted(high / low for _, low, high in answers.values())
    print(
        f"\n{len(answers)} answers: B_crit {', '.join(f'{v:.1f}' for v in values)} "
        f"(max/min {values[-1] / values[0]:.2f}); interval upper/lower median "
        f"{float(np.median(ratios)):.2f}, largest {ratios[-1]:.2f}; {holding} of "
        f"{len(answers)} intervals hold the median B_crit {middle:.1f}; {mutual} of "
        f"{len(pairs)} pairs hold each other's B_crit"
    )


def interval(result: StudyResult) -> tuple[float, float, float] | None:
    """The answer's B_crit and interval: the headline (the free bend's where the answer
    took it, ``answer.b_crit_model``)."""
    answer = (result.analysis or {}).get("answer") or {}
    if answer.get("b_crit") is None or answer.get("b_crit_ci") is None:
        return None
    low, high = answer["b_crit_ci"]
    return answer["b_crit"], low, high


def span(b: float, low: float, high: float) -> str:
    return f"{b:.1f} [{low:.1f}, {high:.1f}]  upper/lower {high / low:.2f}"


def describe(name: str, wall: float, cpu: float | None, result: StudyResult) -> None:
    spent = f"{wall:.0f} s wall" + ("" if cpu is None else f", {cpu:.0f} s CPU")
    print(f"\n{name}: {spent}", flush=True)
    for rung in result.rungs:
        seeds = ""
        if rung.seed_steps:
            counts = ", ".join("-" if s is None else str(s) for s in rung.seed_steps)
            seeds = f"  (search best {rung.search_steps}; seeds {counts})"
        print(f"  B={rung.batch_size:5d}: {rung.steps_to_target}{seeds}")
    for line in [*spreads(result), *rechecks(result)]:
        print(f"  {line}")
    answer = interval(result)
    if answer is None:
        print("  no B_crit in the answer")
    else:
        model = ((result.analysis or {}).get("answer") or {}).get("b_crit_model", "hyperbola")
        print(f"  B_crit {span(*answer)} ({model})")
    fit = (result.analysis or {}).get("fit")
    if fit is not None:
        print(f"  the hyperbola's: {span(fit['b_crit'], *fit['b_crit_ci'])}")
    seeds = (result.analysis or {}).get("seed_bootstrap")
    if seeds is not None:
        low, high = seeds["b_crit_ci"]
        print(
            f"  of which the seed bootstrap alone: [{low:.1f}, {high:.1f}]  upper/lower "
            f"{high / low:.2f} ({seeds['rungs_resampled']} rungs resampled, "
            f"{seeds['n_fitted']}/{seeds['n_bootstrap']} replicates fitted)"
        )
    sources = ((result.analysis or {}).get("answer") or {}).get("interval_sources")
    if sources:
        print(f"  {sources['sentence']}")
        if sources.get("knee_sentence"):
            print(f"  {sources['knee_sentence']}")
    rung_only = propagated_b_crit_ci(result.analysis)
    if rung_only is not None:
        low, high = rung_only
        print(
            f"  the rungs' own intervals alone, propagated: [{low:.1f}, {high:.1f}]  "
            f"upper/lower {high / low:.2f}"
        )


def rechecks(result: StudyResult) -> list[str]:
    """What each rung's recheck ran (``[search] recheck``); in a study run without it,
    which rungs it would have rechecked (:func:`decide_recheck` on the rungs' tuning)."""
    lines = []
    planned = int((result.config.get("search") or {}).get("recheck", 0))
    for i, rung in enumerate(result.rungs):
        runs = rung.rechecks
        if runs:
            counts = ", ".join(
                "-" if t.steps_to_target is None else str(t.steps_to_target) for t in runs
            )
            lines.append(
                f"recheck at B={rung.batch_size}: B={runs[0].recheck_from}'s point, seeds {counts}"
            )
        elif not planned and i > 0 and (decision := decide_recheck(rung, result.rungs[:i])).runs:
            lines.append(f"recheck off in this study; it would run: {decision.reason}")
    return lines


def spreads(result: StudyResult) -> list[str]:
    """Which rungs ran more seeds of their chosen candidate (``[search] spread_seeds``);
    in a study run without it, whose chosen candidate's seeds spread enough that it
    would have (``spread_ratio`` 2, or a missed seed)."""
    lines = []
    search = result.config.get("search") or {}
    for rung in result.rungs:
        runs = [t for t in rung.trials if t.spread is not None]
        seeds = rung.seed_steps
        if runs:
            lines.append(f"more seeds at B={rung.batch_size} ({len(runs)}): {runs[0].spread}")
        elif not search.get("spread_seeds") and seeds:
            reached = [s for s in seeds if s is not None]
            if len(reached) < len(seeds) or max(reached) >= 2.0 * min(reached):
                counts = ", ".join("-" if s is None else str(s) for s in seeds)
                lines.append(f"spread_seeds off; B={rung.batch_size} would run more ({counts})")
    return lines


def reanalysed(directory: Path) -> StudyResult:
    """A finished study's results with this version's analysis (nothing is run)."""
    data = load_study(directory)
    return StudyResult(
        name=data.name,
        config=data.config,
        workload=data.workload,
        target=data.target,
        rungs=list(data.rungs),
        analysis=analyse(list(data.rungs), data.workload.get("train_size"), data.search_space),
        environment=data.environment,
        wall_time_s=data.wall_time_s or 0.0,
        created=data.created or "",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "mnist1d-cnn.toml")
    parser.add_argument(
        "--results", type=Path, nargs="+", help="re-analyse these finished studies instead"
    )
    parser.add_argument(
        "--more-seeds",
        type=int,
        nargs="+",
        metavar="N",
        help="run --config once, then raise its confirm_seeds to each N on the same study",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="S",
        help="run only the default ('after') study at each of these study seeds and compare",
    )
    parser.add_argument(
        "--trials-factor",
        type=int,
        default=1,
        metavar="F",
        help="multiply --config's [search] trials_per_rung and refine by F (more search per rung)",
    )
    parser.add_argument(
        "--per-octave",
        type=int,
        metavar="N",
        help="N rungs per doubling instead of --config's [ladder] per_octave",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="run the studies in DIR/<run>-seed<seed> and keep them (for --results)",
    )
    args = parser.parse_args()
    if args.results:
        answers = {}
        for directory in args.results:
            data = reanalysed(directory)
            describe(f"{directory} (re-analysed)", data.wall_time_s, None, data)
            if (answer := interval(data)) is not None:
                answers[str(directory)] = answer
        if len(answers) >= 2:
            compare(answers)
        return
    print(study_environment(args.workers, args.config.name), flush=True)
    base = with_search(StudyConfig.from_toml(args.config), args.trials_factor, args.per_octave)
    if args.seeds:
        across_seeds(base, args.workers, args.seeds, args.keep)
        return
    if args.more_seeds:
        with_more_seeds(base, args.workers, args.more_seeds)
        return
    runs: dict[str, tuple[float, float, Any]] = {}
    for name, seed, before in (
        ("before", 0, True),
        ("after", 0, False),
        ("after seed 1", 1, False),
    ):
        runs[name] = run(variant(base, seed=seed, before=before), args.workers, args.keep, name)
        describe(name, *runs[name])
    print()
    wall0 = runs["before"][0]
    for name in ("after", "after seed 1"):
        print(f"wall time {name} / before: {runs[name][0] / wall0:.2f}x")
    a, b = interval(runs["after"][2]), interval(runs["after seed 1"][2])
    if a is not None and b is not None:
        print(
            f"seeds 0 and 1: B_crit {a[0]:.1f} and {b[0]:.1f}, each inside the other's "
            f"interval: {hold_each_other(a, b)}"
        )


if __name__ == "__main__":
    main()
