"""Running a plan, resumably: its studies, then the measurements built on their results.

Every study runs through the ordinary :class:`~batchlab.study.Study` engine into
``OUT/<study name>/`` (resumable trial by trial; a study whose ``results.json`` is
complete for the same config is not touched again). The extra runs of findings 5 and
6 are jobs whose results are written atomically to ``OUT/measurements/<stage>/<key>.json``
as each finishes; a job whose file exists for the same inputs is not run again. So a
killed reproduction, started again, picks up where it stopped.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._checks import check_positive_int
from .._io import atomic_write_json
from ..study import RungStatus, Study, StudyConfig, TrialEvent
from ._curves import RESULTS_JSON, Curve, load_curve
from ._fixed_budget import BudgetJob, budget_jobs, run_budget_job
from ._noise_runs import NoiseJob, noise_job, run_noise_job
from ._plan import Plan
from ._retrace import Job

logger = logging.getLogger(__name__)

MEASUREMENTS_DIR = "measurements"
FIXED_BUDGET_STAGE = "fixed-budget"
NOISE_STAGE = "noise-scale"
NOISE_SCALE_JSON = "noise_scale.json"


@dataclass(frozen=True, kw_only=True)
class StageProgress:
    """Where a reproduction stands, for a progress display.

    Attributes:
        stage: what runs now (``"study mnist1d-nesterov"``, ``"fixed-budget runs"``, ...).
        index: 1-based number of the stage.
        stages: number of stages.
        done: units finished in this stage (trials, or runs).
        total: units in this stage.
        skipped: the stage was already complete (nothing ran).
    """

    stage: str
    index: int
    stages: int
    done: int
    total: int
    skipped: bool = False


ProgressCallback = Callable[[StageProgress], None]


@dataclass(frozen=True, kw_only=True)
class Measurements:
    """Everything a reproduction measured, read back from its output directory.

    Attributes:
        curves: study name -> its steps-to-target curve.
        fixed_budget: finding 5's runs (``run_budget_job`` records), by key.
        noise: finding 6's runs (``run_noise_job`` records), by study name.
        stage_seconds: wall time of each stage run in this process (empty on reload).
    """

    curves: dict[str, Curve]
    fixed_budget: dict[str, dict[str, Any]]
    noise: dict[str, dict[str, Any]]
    stage_seconds: dict[str, float]


def read_json(path: Path) -> Any:
    """The JSON in ``path``; ``None`` if it is missing or unreadable (e.g. cut short)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def study_is_finished(directory: Path, config: StudyConfig) -> bool:
    """Whether ``directory`` holds complete results of exactly this config."""
    data = read_json(directory / RESULTS_JSON)
    if not isinstance(data, dict) or data.get("config") != config.to_json_dict():
        return False
    return all(r["trials_done"] >= r["trials_planned"] > 0 for r in data.get("rungs", []))


def _trials(config: StudyConfig) -> int:
    return len(config.batch_sizes()) * config.search.trials_per_rung


def _run_study(
    config: StudyConfig,
    directory: Path,
    workers: int,
    report: Callable[[int, int], None],
) -> None:
    study = Study(config, directory)
    total = _trials(config)
    done = 0

    def on_event(event: TrialEvent) -> None:
        nonlocal done
        if event.kind == "finish":
            done += 1
            report(done, total)

    def on_poll(statuses: list[RungStatus]) -> None:
        report(sum(s.done for s in statuses), total)

    study.run(workers=workers, on_event=on_event, on_poll=on_poll)
    report(total, total)


def _init_worker(threads: int) -> None:
    import optuna
    import torch

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _job_file(out: Path, stage: str, key: str) -> Path:
    return out / MEASUREMENTS_DIR / stage / f"{key}.json"


def _job_done(path: Path, job: Job) -> bool:
    data = read_json(path)
    return isinstance(data, dict) and data.get("job") == job.describe()


def run_jobs(
    jobs: Sequence[Job],
    function: Callable[[Any], dict[str, Any]],
    out: Path,
    stage: str,
    *,
    workers: int,
    report: Callable[[int, int], None],
) -> int:
    """Run the jobs not done yet (``workers`` processes), writing each result as it finishes.

    Returns:
        How many jobs ran (0 when every job was already done).
    """
    todo = [job for job in jobs if not _job_done(_job_file(out, stage, job.key), job)]
    done = len(jobs) - len(todo)
    report(done, len(jobs))
    if not todo:
        return 0
    if workers == 1 or len(todo) == 1:
        for job in todo:
            atomic_write_json(_job_file(out, stage, job.key), function(job))
            done += 1
            report(done, len(jobs))
        return len(todo)
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    # Longest first: the pool then ends with the short runs and no worker idles long.
    todo.sort(key=lambda job: -job.spec.max_steps * job.spec.batch_size)
    with ProcessPoolExecutor(
        max_workers=min(workers, len(todo)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(threads,),
    ) as pool:
        pending: dict[Future[dict[str, Any]], Job] = {
            pool.submit(function, job): job for job in todo
        }
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = pending.pop(future)
                    atomic_write_json(_job_file(out, stage, job.key), future.result())
                    done += 1
                    report(done, len(jobs))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return len(todo)


def _read_jobs(out: Path, stage: str, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {
        key: json.loads(_job_file(out, stage, key).read_text())
        for key in keys
        if _job_file(out, stage, key).is_file()
    }


def plan_budget_jobs(plan: Plan, curves: dict[str, Curve]) -> list[BudgetJob]:
    """Finding 5's jobs, from the fixed-epochs study's tuned rungs."""
    settings = plan.settings.fixed_epochs
    config = plan.study(settings.study)
    return budget_jobs(
        curves[settings.study],
        epochs=settings.epochs,
        evaluations=settings.evaluations,
        decay=config.schedule.decay,
    )


def plan_noise_jobs(plan: Plan, curves: dict[str, Curve]) -> list[NoiseJob]:
    """Finding 6's jobs, one per configured study that reached the target somewhere."""
    jobs = []
    for run in plan.settings.noise_scale.runs:
        job = noise_job(
            curves[run.study],
            checkpoints=plan.settings.noise_scale.checkpoints,
            batch_size=run.batch_size,
            micro_batch_size=run.micro_batch_size,
            batches=run.batches,
            decay=plan.study(run.study).schedule.decay,
        )
        if job is None:
            logger.warning("%s: no rung reached the target; no noise-scale run", run.study)
        else:
            jobs.append(job)
    return jobs


def write_noise_for_report(directory: Path, record: dict[str, Any]) -> None:
    """Put a noise-scale run into a study directory as ``noise_scale.json`` for its report.

    The report sets the last measurement (at the target) against the fitted B_crit.
    """
    job = record["job"]
    atomic_write_json(
        directory / NOISE_SCALE_JSON,
        {
            "workload": job["workload"],
            "params": job["workload_params"],
            "mode": "checkpoints",
            "seed": job["seed"],
            "batch_size": job["batch_size"],
            "micro_batch_size": job["micro_batch_size"],
            "steps": job["batches"],
            "hparams": job["hparams"],
            "train_batch_size": job["train_batch_size"],
            "history": [
                {"step": c["step"], "b_simple": c["b_simple"], "b_simple_ci": c["b_simple_ci"]}
                for c in record["checkpoints"]
            ],
        },
    )


def run_plan(
    plan: Plan,
    out: str | Path,
    *,
    workers: int = 1,
    on_progress: ProgressCallback | None = None,
) -> Measurements:
    """Run (or resume) every study of the plan, then findings 5 and 6's measurements.

    Args:
        plan: the validated plan.
        out: output directory; each study goes to ``out/<study name>``.
        workers: worker processes for each study and for the measurement runs.
        on_progress: called as stages start, advance and end.

    Returns:
        The :class:`Measurements`, read back from ``out``.
    """
    check_positive_int(workers, "workers")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(plan.studies)
    stages = len(names) + 2
    seconds: dict[str, float] = {}

    def reporter(stage: str, index: int, skipped: bool = False) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if on_progress is not None:
                progress = StageProgress(
                    stage=stage, index=index, stages=stages, done=done, total=total, skipped=skipped
                )
                on_progress(progress)

        return report

    for index, name in enumerate(names, start=1):
        config = plan.studies[name]
        directory = out / name
        stage = f"study {name}"
        if study_is_finished(directory, config):
            reporter(stage, index, skipped=True)(_trials(config), _trials(config))
            continue
        started = time.perf_counter()
        _run_study(config, directory, workers, reporter(stage, index))
        seconds[stage] = time.perf_counter() - started
        logger.info("%s finished in %.0f s", stage, seconds[stage])

    curves = {name: load_curve(out / name) for name in names}
    records = {}
    for index, (stage, title, plan_jobs, function) in enumerate(
        (
            (
                FIXED_BUDGET_STAGE,
                "fixed-epoch and tuned-step runs",
                plan_budget_jobs,
                run_budget_job,
            ),
            (NOISE_STAGE, "noise scale during training", plan_noise_jobs, run_noise_job),
        ),
        start=len(names) + 1,
    ):
        started = time.perf_counter()
        jobs = plan_jobs(plan, curves)
        # A stage whose jobs were all done keeps the time of the run that did them.
        if run_jobs(jobs, function, out, stage, workers=workers, report=reporter(title, index)):
            seconds[title] = time.perf_counter() - started
        records[stage] = _read_jobs(out, stage, [job.key for job in jobs])
    measurements = Measurements(
        curves=curves,
        fixed_budget=records[FIXED_BUDGET_STAGE],
        noise=records[NOISE_STAGE],
        stage_seconds=seconds,
    )
    for name, record in measurements.noise.items():
        write_noise_for_report(out / name, record)
    return measurements
