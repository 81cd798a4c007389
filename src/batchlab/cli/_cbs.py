"""``batchlab cbs``: the critical batch size over training, measured by branching."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._io import atomic_write_json
from ..cbs import OPTIMIZER_STATES, CriticalBatchResult, load_checkpoints, measure_critical_batch
from ..optim import check_optimizer_name
from ..workloads import get_workload
from ._common import (
    DeviceOption,
    JsonOption,
    PrecisionOption,
    WorkloadPathOption,
    cli_errors,
    device_options,
    fmt_interval,
    fmt_number,
    human_console,
    parse_params,
    print_json,
)

CBS_JSON = "cbs.json"


def _number_list(text: str, option: str, kind: type[int] | type[float]) -> list[Any]:
    """``"8,16,32"`` -> ``[8, 16, 32]`` (of ``kind``), or an error naming the option."""
    what = "integer" if kind is int else "number"
    try:
        values = [kind(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise ValueError(f"{option} expects comma-separated {what}s, got {text!r}") from None
    if not values:
        raise ValueError(f"{option} expects at least one {what}, got {text!r}")
    return values


def _tables(result: CriticalBatchResult) -> tuple[Table, Table]:
    """B_crit beside B_simple per checkpoint, and the steps-to-target S(B) behind them."""
    exact = any(c.exact_fit is not None for c in result.checkpoints)
    metric = result.settings.get("metric", "metric")
    where = result.settings.get("device")
    summary = Table(
        title=f"Critical batch size over training: {result.workload}, {result.optimizer}, "
        f"target = {metric} at the checkpoint improved by a fixed amount"
        + (f" (on {where} in {result.settings.get('precision', 'fp32')})" if where else "")
    )
    columns = ["step", "target", "B_crit", "95% CI"] + (["exact B_crit"] if exact else [])
    columns += ["S_min", "B_simple", "95% CI", "B_simple / B_crit"]
    for column in columns:
        summary.add_column(column, justify="left" if column == "target" else "right")
    for c in result.checkpoints:
        fit, noise, pred = c.fit, c.noise, c.prediction
        row = [
            str(c.step),
            f"{'≥' if c.target.direction == 'max' else '≤'} {c.target.value:.4g}",
            fmt_number(fit.b_crit if fit else None),
            fmt_interval(fit.b_crit_ci if fit else None),
        ]
        if exact:
            row.append(fmt_number(c.exact_fit.b_crit if c.exact_fit else None))
        row += [
            fmt_number(fit.s_min if fit else None),
            fmt_number(noise.b_simple if noise else None),
            fmt_interval(noise.b_simple_ci if noise else None),
            "-" if pred is None else f"{fmt_number(pred.ratio)} {fmt_interval(pred.ratio_ci)}",
        ]
        summary.add_row(*row)
    ladder = Table(title="Steps to the target, S(B)" + (" (exact expected curve)" if exact else ""))
    ladder.add_column("batch size", justify="right")
    for c in result.checkpoints:
        ladder.add_column(f"step {c.step}", justify="right")
    sizes = sorted({r.batch_size for c in result.checkpoints for r in c.rungs})
    for size in sizes:
        cells = []
        for c in result.checkpoints:
            rung = next((r for r in c.rungs if r.batch_size == size), None)
            if rung is None:
                cells.append("")
                continue
            text = fmt_number(rung.steps_to_target)
            if exact:
                text += f" ({fmt_number(rung.exact_steps_to_target)})"
            cells.append(text)
        ladder.add_row(str(size), *cells)
    return summary, ladder


def cbs_command(
    workload: Annotated[
        str, typer.Option(help="Built-in name or module:function.")
    ] = "mnist1d-cnn",
    checkpoints: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated steps of the base run to branch from, e.g. 0,200,1000 "
            "(with --checkpoint-dir: which of its checkpoints; default all)."
        ),
    ] = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            help="Branch from the step_*.pt checkpoints in this directory (saved by "
            "batchlab.cbs.CheckpointSaver or a previous --save-checkpoints) instead of "
            "training a base run."
        ),
    ] = None,
    batch_sizes: Annotated[
        str, typer.Option(help="Comma-separated branch batch sizes (at least 3).")
    ] = "16,32,64,128,256,512",
    optimizer: Annotated[
        str | None,
        typer.Option(help="Optimizer of the base run and branches; default: the workload's."),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Base learning rate; default: the workload's.")
    ] = None,
    base_batch_size: Annotated[
        int, typer.Option(help="Batch size of the base run (the LR rule's reference).")
    ] = 32,
    lr_rule: Annotated[
        str, typer.Option(help="LR at each branch batch size: linear, sqrt or none.")
    ] = "sqrt",
    lr_multipliers: Annotated[
        str,
        typer.Option(help="Sweep around the rule's LR, e.g. 0.5,1,2 (best per batch size)."),
    ] = "1",
    metric: Annotated[
        str | None, typer.Option(help="Metric to improve; default: the target metric or loss.")
    ] = None,
    improvement: Annotated[
        float | None,
        typer.Option(help="Relative improvement of the metric, in (0, 1) \\[default: 0.2]."),
    ] = None,
    improvement_delta: Annotated[
        float | None, typer.Option(help="Absolute improvement instead of --improvement.")
    ] = None,
    max_steps: Annotated[int, typer.Option(help="Step budget of every branch.")] = 1000,
    eval_resolution: Annotated[
        float, typer.Option(help="Relative spacing of evaluations (0 = every step).")
    ] = 0.05,
    repeats: Annotated[
        int, typer.Option(help="Branches per (batch size, LR), curves averaged.")
    ] = 1,
    optimizer_state: Annotated[
        str, typer.Option(help="resume the checkpoint's optimizer state, or reset it.")
    ] = "resume",
    noise_batch_size: Annotated[
        int | None,
        typer.Option(
            help="Big batch of the noise-scale measurement \\[default: largest branch B]; 0 skips it."
        ),
    ] = None,
    noise_batches: Annotated[int, typer.Option(help="Batches averaged for B_simple.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the base run, branches and noise scale.")] = 0,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Workload parameter KEY=VALUE.")
    ] = None,
    workload_path: WorkloadPathOption = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for cbs.json (and the report).")
    ] = Path("runs/cbs"),
    save_checkpoints: Annotated[
        bool, typer.Option(help="Save the base run's checkpoints in OUT/checkpoints.")
    ] = False,
    report: Annotated[bool, typer.Option(help="Also write OUT/report.html.")] = False,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    schedule: Annotated[
        str,
        typer.Option(
            help="LR schedule the measurement assumes: constant, or wsd (warmup-stable-decay: "
            "checkpoints in the stable phase, S(B) read after --cooldown-fraction)."
        ),
    ] = "constant",
    warmup_steps: Annotated[
        int, typer.Option(help="wsd: warmup steps of the base run (no checkpoint before).")
    ] = 0,
    total_steps: Annotated[
        int | None,
        typer.Option(
            help="wsd: planned length of the base run (refuses checkpoints in its decay)."
        ),
    ] = None,
    decay_fraction: Annotated[
        float, typer.Option(help="wsd: share of --total-steps the base run's decay takes.")
    ] = 0.2,
    cooldown_fraction: Annotated[
        float | None,
        typer.Option(help="wsd: each branch cools down over this share of its steps, in (0, 1)."),
    ] = None,
    cooldown_examples: Annotated[
        int | None, typer.Option(help="wsd: or over this many examples.")
    ] = None,
    cooldown_decay: Annotated[
        str, typer.Option(help="wsd: cooldown shape: linear, cosine or sqrt.")
    ] = "linear",
    as_json: JsonOption = False,
) -> None:
    """Measure the critical batch size at checkpoints of one run, beside the noise scale.

    From each checkpoint, short branches at every --batch-sizes (LR from --lr-rule,
    or the best of --lr-multipliers around it) train until the metric improves by
    --improvement; their steps give S(B), fitted by S_min (1 + B_crit / B) per
    checkpoint (Merrill et al. 2025; McCandlish et al. 2018). B_simple is measured at
    the same parameters, so OUT/cbs.json shows how far the noise scale is from the
    measured B_crit (it misses under Adam). `batchlab report OUT` draws it. With
    --json, stdout gets what OUT/cbs.json holds (no tables); progress goes to stderr.

    Examples:

      batchlab cbs --workload linreg -p dim=64 -p decay=0.5 --optimizer sgd --lr 0.05 --base-batch-size 16 --checkpoints 30,200 --batch-sizes 4,8,16,32,64,128,256,512,1024 --lr-multipliers 0.5,1,2 --improvement 0.8 --repeats 4 --eval-resolution 0 --out runs/cbs-linreg --report

      batchlab cbs --workload linreg -p dim=64 --optimizer sgd --lr 0.05 --base-batch-size 16 --checkpoints 100,300 --batch-sizes 4,16,64,256 --schedule wsd --warmup-steps 50 --cooldown-fraction 0.2

      batchlab cbs --workload mnist1d-cnn --optimizer adam --lr 0.003 --checkpoints 0,300,1500 --batch-sizes 16,32,64,128,256,512 --out runs/cbs-adam
    """
    with cli_errors():
        target_device, precision = device_options(device, precision)
        work = get_workload(workload, parse_params(param), workload_path or ())
        sizes = _number_list(batch_sizes, "--batch-sizes", int)
        multipliers = _number_list(lr_multipliers, "--lr-multipliers", float)
        if optimizer is not None:
            check_optimizer_name(optimizer)
        if optimizer_state not in OPTIMIZER_STATES:
            raise ValueError(
                f"--optimizer-state must be one of {', '.join(OPTIMIZER_STATES)}, got {optimizer_state!r}"
            )
        if improvement is not None and improvement_delta is not None:
            raise ValueError("give --improvement or --improvement-delta, not both")
        if checkpoint_dir is not None:
            if save_checkpoints:
                raise ValueError("--save-checkpoints applies to a base run, not --checkpoint-dir")
            steps = None if checkpoints is None else _number_list(checkpoints, "--checkpoints", int)
            points: list = load_checkpoints(checkpoint_dir, steps)
            if points[0].workload not in (None, work.name):
                raise ValueError(
                    f"the checkpoints in {checkpoint_dir} are of workload {points[0].workload!r}, "
                    f"not {work.name!r}; pass --workload {points[0].workload}"
                )
        elif checkpoints is None:
            raise ValueError("give --checkpoints (steps of a base run) or --checkpoint-dir")
        else:
            points = _number_list(checkpoints, "--checkpoints", int)
        hparams = None
        if lr is not None and not isinstance(points[0], int):
            hparams = {**points[0].hparams, "lr": lr}
        elif lr is not None:
            defaults = dict(work.default_hparams)
            default_optimizer = defaults.pop("optimizer")
            # The workload's other defaults (momentum, ...) only fit its own optimizer.
            keep = optimizer is None or optimizer == default_optimizer
            hparams = {**(defaults if keep else {}), "lr": lr}
        elif isinstance(points[0], int) and optimizer not in (
            None,
            work.default_hparams.get("optimizer"),
        ):
            raise ValueError(
                f"--optimizer {optimizer} needs --lr (the workload's default LR is for "
                f"{work.default_hparams.get('optimizer')})"
            )
        shown = human_console(as_json)
        shown.print(
            f"Critical batch size of [bold]{escape(work.name)}[/] at checkpoints "
            f"{', '.join(str(p if isinstance(p, int) else p.step) for p in points)}, "
            f"branch batch sizes {', '.join(map(str, sizes))}, on {target_device} in {precision}"
        )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=shown,
        ) as progress:
            task = progress.add_task("branches", total=None)

            def on_progress(done: int, total: int, description: str) -> None:
                progress.update(task, completed=done, total=total, description=description)

            result = measure_critical_batch(
                work,
                points,
                sizes,
                optimizer=optimizer,
                hparams=hparams,
                base_batch_size=base_batch_size,
                lr_rule=lr_rule,
                lr_multipliers=multipliers,
                metric=metric,
                improvement_fraction=improvement,
                improvement_delta=improvement_delta,
                max_steps=max_steps,
                eval_resolution=eval_resolution,
                repeats=repeats,
                optimizer_state=optimizer_state,  # type: ignore[arg-type]
                noise_batch_size=noise_batch_size,
                noise_batches=noise_batches,
                seed=seed,
                checkpoint_dir=out / "checkpoints" if save_checkpoints else None,
                on_progress=on_progress,
                device=target_device,
                precision=precision,
                schedule=schedule,
                warmup_steps=warmup_steps,
                total_steps=total_steps,
                decay_fraction=decay_fraction,
                cooldown_fraction=cooldown_fraction,
                cooldown_examples=cooldown_examples,
                cooldown_decay=cooldown_decay,
            )
        shown.print(f"Schedule: {escape(result.describe_schedule())}", highlight=False)
        if not as_json:
            summary, ladder = _tables(result)
            shown.print(ladder)
            shown.print(summary)
        for c in result.checkpoints:
            if c.note:
                shown.print(f"[yellow]step {c.step}:[/] {escape(c.note)}", highlight=False)
        payload = result.to_dict()
        path = atomic_write_json(out / CBS_JSON, payload)
        shown.print(f"Saved {path}")
        if report:
            from ..report import build_report

            written = build_report(out).write()
            shown.print(f"Report: {written}")
        if as_json:
            print_json(payload)
