"""``batchlab study run|resume|worker|status``: run and inspect scaling studies."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import optuna
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._device import resolve_device
from .._errors import ConfigError
from .._secrets import redact_url
from ..results import RESULTS_JSON
from ..study import (
    FailFast,
    RungStatus,
    StorageUnreachable,
    Study,
    StudyConfig,
    StudyIncomplete,
    StudyResult,
    TrialEvent,
    WorkersDied,
    describe_unfinished,
    find_study_config,
    is_storage_outage,
    storage_unreachable,
    unfinished_trials,
    work,
)
from ._common import (
    AFTER_DISK_FULL_STUDY,
    EXIT_STOPPED,
    JsonOption,
    WorkloadPathOption,
    cli_errors,
    console,
    err_console,
    human_console,
    key_table,
    print_json,
)

study_app = typer.Typer(
    help="Run a batch-size scaling study: a ladder of batch sizes, each tuned separately.",
    no_args_is_help=True,
)


class StudyDisplay:
    """Rich progress: one bar per rung (trials done), one for the running trial."""

    def __init__(self, study: Study, output: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=output,
        )
        self.rung_tasks: dict[int, Any] = {}
        for status in study.status():
            self.rung_tasks[status.batch_size] = self.progress.add_task(
                f"batch size {status.batch_size:>6}",
                total=status.planned,
                completed=status.done,
                info=_best_text(status.best_steps),
            )
        self.trial_task = self.progress.add_task("trial", total=1, info="", visible=False)

    def on_event(self, event: TrialEvent) -> None:
        rung_task = self.rung_tasks[event.rung.batch_size]
        if event.kind == "start":
            self.progress.update(
                self.trial_task,
                description=f"  trial {event.trial_number} (B={event.rung.batch_size})",
                total=event.rung.budget_steps,
                completed=0,
                info="",
                visible=True,
            )
        elif event.kind == "eval" and event.metrics is not None:
            info = " ".join(f"{k}={v:.4g}" for k, v in event.metrics.items())
            self.progress.update(self.trial_task, completed=event.step, info=info)
        elif event.kind == "finish":
            self.progress.update(rung_task, advance=1)
            if event.steps_to_target is not None:
                best = self.progress.tasks[rung_task].fields.get("best")
                if best is None or event.steps_to_target < best:
                    self.progress.update(
                        rung_task,
                        best=event.steps_to_target,
                        info=_best_text(event.steps_to_target),
                    )

    def on_poll(self, statuses: list[RungStatus]) -> None:
        for status in statuses:
            self.progress.update(
                self.rung_tasks[status.batch_size],
                completed=status.done,
                info=_best_text(status.best_steps)
                + (f", {status.running} running" if status.running else ""),
            )


def _best_text(steps: int | None) -> str:
    return f"best {steps} steps" if steps is not None else ""


def print_summary(result: StudyResult) -> None:
    """The rungs, the fit and the answer (what to train with), at the end of a study."""
    analysis = result.analysis or {}
    answer = _answer(result)
    costs = {row["batch_size"]: row for row in answer["rungs"]}
    table = Table(
        title=f"Study {result.name}: steps to {result.target['metric']} "
        f"{'>=' if result.target['direction'] == 'max' else '<='} {result.target['value']:g}"
    )
    columns = (
        "batch size",
        "trials",
        "steps to target",
        "examples",
        "steps / S_min",
        "examples / E_min",
        "best hyperparameters",
    )
    for column in columns:
        table.add_column(column, justify="right" if column != "best hyperparameters" else "left")
    for rung in result.rungs:
        steps = rung.steps_to_target
        cost = costs.get(rung.batch_size, {})
        table.add_row(
            str(rung.batch_size),
            f"{rung.trials_done}/{rung.trials_planned}",
            ("—" if steps is None else str(steps))
            + (f" (median of {len(rung.seed_steps)})" if rung.seed_steps else ""),
            "—" if steps is None else f"{steps * rung.batch_size:,}",
            _ratio(cost.get("steps_ratio"), cost.get("steps_ratio_ci")),
            _ratio(cost.get("examples_ratio"), cost.get("examples_ratio_ci")),
            ", ".join(f"{k}={v:.3g}" for k, v in (rung.best_hparams or {}).items()),
        )
    console.print(table)
    if "fit" in analysis:
        fit = analysis["fit"]
        console.print(
            f"S(B) = S_min (1 + B_crit / B): S_min = {fit['s_min']:.4g} steps, "
            f"E_min = {fit['e_min']:.4g} examples, B_crit = {fit['b_crit']:.4g}"
        )
    elif "error" in analysis:
        console.print(f"[yellow]analysis skipped: {analysis['error']}[/]")
    _print_rule_costs(result)
    trends = analysis.get("hparam_trends") or {}
    if trends.get("hparams"):
        console.print(f"[bold]Hyperparameters:[/] {escape(trends['transfer'])}", highlight=False)
    for edge in result.edges:
        console.print(
            f"[yellow]search space too narrow?[/] {escape(edge.message)}", highlight=False
        )
    console.print(f"[bold]Answer:[/] {answer['headline']}", highlight=False)
    sources = answer.get("interval_sources")
    if sources:
        console.print(escape(sources["sentence"]), highlight=False)
        if sources.get("knee_sentence"):
            console.print(f"[bold]Free bend:[/] {escape(sources['knee_sentence'])}",
                          highlight=False)  # fmt: skip


def _print_rule_costs(result: StudyResult) -> None:
    """Tuned steps against each transfer rule's (``[transfer]``), with the cost ratio."""
    from ..analysis import rule_costs

    costs = rule_costs(
        [r.batch_size for r in result.rungs],
        [r.steps_to_target for r in result.rungs],
        [r.rule_steps for r in result.rungs],
    )
    if not costs:
        return
    base = result.config.get("transfer", {}).get("base_batch_size") or result.rungs[0].batch_size
    table = Table(title=f"Tuned vs by rule (from the tuned batch size {base}): steps, x cost")
    table.add_column("batch size", justify="right")
    table.add_column("tuned", justify="right")
    for rule in costs:
        table.add_column(rule, justify="right")
    for rung in result.rungs:
        if rung.batch_size == base:
            continue
        cells = []
        for cost in costs.values():
            if rung.batch_size not in cost.batch_sizes:
                cells.append("—")
                continue
            i = cost.batch_sizes.index(rung.batch_size)
            steps, ratio = cost.steps[i], cost.ratios[i]
            cells.append(
                "not reached"
                if steps is None
                else f"{steps}" + ("" if ratio is None else f" (x{ratio:.2f})")
            )
        tuned = "—" if rung.steps_to_target is None else str(rung.steps_to_target)
        table.add_row(str(rung.batch_size), tuned, *cells)
    console.print(table)
    summary = "; ".join(_rule_cost_text(rule, cost) for rule, cost in costs.items())
    console.print(
        f"[bold]Cost of following a rule instead of tuning:[/] {summary}", highlight=False
    )


def _rule_cost_text(rule: str, cost: Any) -> str:
    """``"sqrt: median x1.29"``, with the rungs where the rule never reached the target."""
    text = f"{rule}: " + (
        "no rung to compare" if cost.median_ratio is None else f"median x{cost.median_ratio:.2f}"
    )
    if cost.unreached:
        text += f", not reached at B = {', '.join(map(str, cost.unreached))}"
    return text


def _ratio(value: float | None, interval: list[float | None] | None = None) -> str:
    """A cost ratio with its interval (``[1.8, 2.6]``; ``>`` when fresh seeds may miss)."""
    if value is None:
        return "—"
    if not interval or interval[0] is None:
        return f"{value:.2f}"
    high = "∞" if interval[1] is None else f"{interval[1]:.2f}"
    return f"{value:.2f} [{interval[0]:.2f}, {high}]"


def _answer(result: StudyResult) -> dict[str, Any]:
    """The study's answer (what to train with): the analysis's, or, without a fit, one
    that says why and what to run."""
    answer = (result.analysis or {}).get("answer")
    return answer if answer is not None else _answer_without_fit(result)


def _answer_without_fit(result: StudyResult) -> dict[str, Any]:
    """The answer's sentence for a study that has no fit (it says why and what to run)."""
    from ..analysis import batch_size_answer

    sizes = [r.batch_size for r in result.rungs]
    steps = [r.steps_to_target for r in result.rungs]
    return batch_size_answer(sizes, steps, None).to_dict()


def summary_json(study: Study, result: StudyResult) -> dict[str, Any]:
    """What the summary shows, for ``--json``: the study, where its results are, the answer.

    ``result`` is the finished study exactly as ``results.json`` holds it
    (:meth:`StudyResult.to_dict`: rungs, trials, analysis, ``edges``); ``answer`` is
    the one the summary prints, present even when the analysis has no fit.
    """
    return {
        "study": result.name,
        "directory": str(study.directory),
        "results": str(study.directory / RESULTS_JSON),
        "answer": _answer(result),
        "result": result.to_dict(),
    }


def _run(
    study: Study,
    workers: int | None,
    threads: int | None,
    force: bool,
    fail_fast: bool,
    as_json: bool = False,
    device: str | None = None,
) -> StudyResult:
    """Run ``study`` with a progress display, then print its summary (or its JSON).

    A study that stops early (``--fail-fast``, dead workers) exits with
    :data:`EXIT_STOPPED`; its finished trials are kept for ``study resume``.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    resolve_device(device or study.config.performance.device)  # before anything is written
    study.prepare(force=force)
    display = StudyDisplay(study, human_console(as_json))
    try:
        with display.progress:
            result = study.run(
                workers=workers,
                device=device,
                threads=threads,
                force=force,
                fail_fast=fail_fast,
                on_event=display.on_event,
                on_poll=display.on_poll,
            )
            display.on_poll(study.status())  # final counts: skipped reserve trials too
    except FailFast as error:
        err_console.print(
            f"[bold red]stopped (--fail-fast):[/] {escape(redact_url(str(error)))}\n"
            f"The failure and its traceback are in the study; fix it, then "
            f"`batchlab study resume {study.directory}`.",
            highlight=False,
        )
        raise typer.Exit(EXIT_STOPPED) from None
    except (WorkersDied, StudyIncomplete, StorageUnreachable) as error:
        _stopped(error)
    except Exception as error:
        if is_storage_outage(error):  # read by this process, between its workers' runs
            _stopped(storage_unreachable(study.storage_url, error))
        raise
    if as_json:
        print_json(summary_json(study, result))
        return result
    print_summary(result)
    console.print(f"Results: {study.directory / RESULTS_JSON}")
    return result


WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        min=1,
        help="Local worker processes (each gets cores/N threads) "
        "\\[default: one per GPU on CUDA, else 1].",
    ),
]
#: ``--device`` of the study commands: unset means the config's ``performance.device``.
StudyDeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="Where trials train: auto (CUDA if seen), cpu, cuda (workers spread over "
        "the GPUs) or cuda:N \\[default: the config's performance.device, auto].",
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="torch threads per worker \\[default: this process's with 1 worker, cores/N with N].",
    ),
]
ForceOption = Annotated[
    bool, typer.Option(help="Accept config changes that cannot invalidate finished trials.")
]
FailFastOption = Annotated[bool, typer.Option(help="Stop at the first trial that raises.")]


@study_app.command("run")
def run_command(
    config: Annotated[Path, typer.Argument(help="Study config (TOML); see examples/.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Study directory \\[default: runs/<name>].")
    ] = None,
    workers: WorkersOption = None,
    device: StudyDeviceOption = None,
    threads: ThreadsOption = None,
    force: ForceOption = False,
    fail_fast: FailFastOption = False,
    workload_path: WorkloadPathOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a study (or continue it, if OUT already holds the same study).

    With --json, stdout gets one JSON document (the study, its directory, the
    results.json path, the answer and the results) and the progress goes to stderr.

    Example: batchlab study run examples/mnist1d-cnn.toml --out runs/mnist1d --workers 2
    """
    with cli_errors(AFTER_DISK_FULL_STUDY):
        study = Study.from_config(config, out)
        study.config = study.config.with_workload_path(workload_path or [])
        _run(study, workers, threads, force, fail_fast, as_json, device)


@study_app.command("resume")
def resume_command(
    directory: Annotated[Path, typer.Argument(help="Study directory from an earlier run.")],
    workers: WorkersOption = None,
    device: StudyDeviceOption = None,
    threads: ThreadsOption = None,
    fail_fast: FailFastOption = False,
    as_json: JsonOption = False,
) -> None:
    """Continue a study where it stopped; finished trials are never re-run.

    With --json, stdout gets the same JSON document as `study run --json`.

    Example: batchlab study resume runs/mnist1d --json
    """
    with cli_errors(AFTER_DISK_FULL_STUDY):
        _run(Study.load(directory), workers, threads, False, fail_fast, as_json, device)


@study_app.command("status")
def status_command(
    directory: Annotated[Path, typer.Argument(help="Study directory.")],
    lr_at: Annotated[
        list[float] | None,
        typer.Option(
            "--lr-at",
            metavar="BATCH_SIZE",
            help="Also print the learning rate to use at this batch size, interpolated "
            "(log-log) between the tuned rungs around it, with their LRs as its bracket "
            "(repeatable; never extrapolated beyond the tuned rungs).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show each rung's progress: trials done/total, best steps-to-target, ETA.

    Example: batchlab study status runs/mnist1d --lr-at 384 --json
    """
    with cli_errors():
        study = Study.load(directory)
        statuses = study.status()
        learning_rates = _learning_rates_at(study, lr_at or [])
        if as_json:
            print_json(
                {
                    "study": study.config.name,
                    "rungs": [asdict(s) for s in statuses],
                    **({"lr_at": [lr.to_dict() for lr in learning_rates]} if lr_at else {}),
                }
            )
            return
        table = key_table(
            f"Study {study.config.name} ({directory})",
            "batch size",
            [str(s.batch_size) for s in statuses],
            ["done/total", "running", "best steps", "mean trial", "remaining"]
            + (["lost slots"] if any(s.missing for s in statuses) else []),
        )
        remaining_total = 0.0
        for s in statuses:
            left = s.planned - s.done
            eta = left * s.mean_trial_s if s.mean_trial_s is not None else None
            remaining_total += eta or 0.0
            table.add_row(
                str(s.batch_size),
                f"{s.done}/{s.planned}",
                str(s.running),
                "—" if s.best_steps is None else str(s.best_steps),
                "—" if s.mean_trial_s is None else f"{s.mean_trial_s:.1f} s",
                "—" if eta is None else f"{eta:.0f} s",
                *(
                    [", ".join(map(str, s.missing)) or "—"]
                    if any(x.missing for x in statuses)
                    else []
                ),
            )
        console.print(table)
        if any(s.missing for s in statuses):
            console.print(
                "[yellow]Lost slots[/] have no trial left to run: `batchlab study resume "
                f"{directory}` enqueues them again."
            )
        console.print(f"Estimated remaining trial time (one worker): {remaining_total:.0f} s")
        for lr in learning_rates:
            low, high = lr.bracket
            b0, b1 = lr.neighbours
            where = f"the tuned LR of rung {b0}" if b0 == b1 else f"between rungs {b0} and {b1}"
            console.print(
                f"Learning rate at batch size {lr.batch_size:g}: {lr.lr:.4g} ({where}, "
                f"whose tuned LRs bracket it: {low:.4g} to {high:.4g})",
                highlight=False,
            )


def _learning_rates_at(study: Study, batch_sizes: list[float]) -> list[Any]:
    """:func:`batchlab.analysis.lr_at` at each of ``batch_sizes``, from the tuned rungs."""
    if not batch_sizes:
        return []
    from ..analysis import lr_at

    rungs = study.results(analysis=False).rungs
    sizes = [r.batch_size for r in rungs]
    lrs = [
        (r.best_hparams or {}).get("lr") if r.steps_to_target is not None else None for r in rungs
    ]
    return [lr_at(sizes, lrs, b) for b in batch_sizes]


@study_app.command("worker")
def worker_command(
    storage: Annotated[
        str, typer.Argument(help="Storage URL, e.g. postgresql://user@host/db or journal:///path.")
    ],
    name: Annotated[
        str | None, typer.Option("--study", help="Study name, if the storage holds several.")
    ] = None,
    allow_workload: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-workload",
            metavar="MODULE:FUNCTION",
            help="Allow this worker to import and run this module:function workload "
            "(repeatable). The storage names the workload; built-ins need no consent.",
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The study's config file (TOML, or a study's config.json): allows its "
            "workload and imports it from the config's directory.",
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch threads for this worker.")
    ] = None,
    device: StudyDeviceOption = None,
    fail_fast: FailFastOption = False,
    workload_path: WorkloadPathOption = None,
) -> None:
    """Join a study from another process or machine and run its trials until none are left.

    Start the study first with `batchlab study run` (it plans the trials), then run
    this on any machine that can reach the storage. The storage names the workload: a
    module:function one runs only if you allow it here (--allow-workload or --config).
    A password left out of the URL comes from PGPASSWORD or ~/.pgpass.

    Examples:

      batchlab study worker postgresql+psycopg://batchlab@db-host/studies

      batchlab study worker postgresql+psycopg://batchlab@db-host/studies --allow-workload my_wl:make

      batchlab study worker journal:///runs/own/optuna.journal --config my_study.toml
    """
    with cli_errors(
        "Finished trials are kept: free some space, then start this worker again (or run "
        "`batchlab study resume DIR` where the study was started)"
    ):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        allowed = list(allow_workload or [])
        local = _local_config(config_file) if config_file is not None else None
        config = find_study_config(storage, name or (local.name if local else None))
        paths = list(workload_path or [])
        if local is not None:
            if local.workload.name != config.workload.name:
                raise ConfigError(
                    f"--config {config_file}: its workload is {local.workload.name!r}, but "
                    f"study {config.name!r} in the storage runs {config.workload.name!r}; "
                    "pass the study's own config"
                )
            allowed.append(local.workload.name)
            paths += [Path(p) for p in local.workload.path]
        # Import only from directories named here: the storage's are another machine's,
        # and another writer's choice.
        workload = config.workload.model_copy(update={"path": []})
        config = config.model_copy(update={"workload": workload}).with_workload_path(paths)
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        console.print(
            f"Joining study [bold]{escape(config.name)}[/] on {escape(redact_url(storage))}",
            highlight=False,
        )
        try:
            ran = work(
                config, storage, fail_fast=fail_fast, allowed_workloads=allowed, device=device
            )
            unfinished = unfinished_trials(config, storage)
        except StorageUnreachable as error:
            _stopped(error)
        except Exception as error:
            if is_storage_outage(error):
                _stopped(storage_unreachable(storage, error))
            raise
        if unfinished:
            err_console.print(
                f"[bold red]incomplete:[/] this worker ran {ran} trials and none is left to "
                f"run, but planned trials never finished ({escape(describe_unfinished(unfinished))}); "
                "`batchlab study resume DIR` on the machine that started the study runs them again",
                highlight=False,
            )
            raise typer.Exit(EXIT_STOPPED)
        console.print(f"No trials left: this worker ran {ran}.")


def _stopped(error: Exception) -> NoReturn:
    """Say why a study or worker stopped before its end (one line, no traceback); exit 1."""
    err_console.print(f"[bold red]stopped:[/] {escape(redact_url(str(error)))}", highlight=False)
    raise typer.Exit(EXIT_STOPPED) from None


def _local_config(path: Path) -> StudyConfig:
    """A study config from a TOML file or a study directory's ``config.json``."""
    if path.suffix == ".json":
        return StudyConfig.model_validate_json(path.read_text())
    return StudyConfig.from_toml(path)
