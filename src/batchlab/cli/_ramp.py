"""``batchlab ramp``: one run under the closed-loop batch ramp, branches counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .._io import atomic_write_json
from ..training import CalibrationPoint, RampResult, ramp_training
from ..workloads import get_workload, on_device, workload_device
from ._common import (
    DeviceOption,
    JsonOption,
    WorkloadPathOption,
    cli_errors,
    device_options,
    fmt_interval,
    fmt_number,
    human_console,
    parse_params,
    print_json,
    run_hparams,
    step_progress,
)


def _changes_table(result: RampResult) -> Table:
    table = Table(title="Batch-size changes")
    for column in ("step", "examples seen", "batch size", "B_simple", "B_crit = r̂·B_simple", "lr"):
        table.add_column(column, justify="right")
    for c in result.changes:
        table.add_row(str(c.step), f"{c.examples_seen:,}", str(c.batch_size),
                      fmt_number(c.b_simple), fmt_number(c.b_crit), f"{c.lr:.4g}")  # fmt: skip
    return table


def _calibrations_table(result: RampResult) -> Table:
    table = Table(title="Calibrations (branches from the run)")
    for column in ("step", "B_simple", "branches: B steps/run", "B_crit [95%]", "cost (steps)"):
        table.add_column(column, justify="right")
    for c in result.calibrations:
        branches = ", ".join(
            f"{b.batch_size}: {fmt_number(b.steps_to_target)}/{b.steps_run}" for b in c.branches
        )
        point = (
            "no fit"
            if c.point is None
            else f"{fmt_number(c.point.b_crit)} {fmt_interval(c.point.b_crit_ci)}"
        )
        table.add_row(str(c.step), fmt_number(c.b_simple), branches, point, str(c.steps))
    return table


def read_carried(path: Path) -> list[CalibrationPoint]:
    """The calibration points of an earlier ``batchlab ramp --out`` (its carried ones too)."""
    try:
        data = json.loads(path.read_text())
        raw = [*data.get("carried", []), *(c["point"] for c in data["calibrations"] if c["point"])]
        points = [CalibrationPoint.from_dict(p) for p in raw]
    except FileNotFoundError:
        raise ValueError(f"--carry-from: no file {path}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"--carry-from: {path} is not the output of `batchlab ramp --out` ({error})"
        ) from None
    if not points:
        raise ValueError(
            f"--carry-from: {path} holds no calibration point (its calibrations gave no fit)"
        )
    return points


def ramp_command(
    workload: Annotated[
        str, typer.Option(help="Built-in name or module:function.")
    ] = "shakespeare-char",
    micro_batch_size: Annotated[
        int, typer.Option(help="Examples per micro-batch; the run starts at 2 of them.")
    ] = 16,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Cap of the ramp \\[default: none].")
    ] = None,
    fraction: Annotated[
        float, typer.Option(help="Grow the batch to this fraction of the calibrated B_crit.")
    ] = 0.5,
    optimizer: Annotated[
        str | None, typer.Option(help="Optimizer name \\[default: the workload's].")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(help="Learning rate at the starting batch \\[default: the workload's]."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Step budget \\[default: the workload's].")
    ] = None,
    eval_every: Annotated[int, typer.Option(help="Evaluate every this many steps.")] = 10,
    max_calibrations: Annotated[
        int, typer.Option(help="Calibrations by branching at most (0: follow --prior-ratio).")
    ] = 3,
    prior_ratio: Annotated[
        float,
        typer.Option(help="B_crit / B_simple before any calibration (e.g. a carried r̂)."),
    ] = 1.0,
    carry_from: Annotated[
        Path | None,
        typer.Option(
            help="Start from the calibration points of an earlier run's --out file "
            "(same model and optimizer): r̂ with its interval."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the run as JSON to this file.")
    ] = None,
    branch_improvement: Annotated[
        float, typer.Option(help="Improvement every branch must reach (relative for a loss).")
    ] = 0.1,
    branch_max_steps: Annotated[int, typer.Option(help="Step budget of every branch.")] = 200,
    seed: Annotated[int, typer.Option(help="Model, data and branch seed.")] = 0,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Workload parameter KEY=VALUE.")
    ] = None,
    workload_path: WorkloadPathOption = None,
    device: DeviceOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Train one run while the batch grows with the measured critical batch size.

    The noise scale B_simple is tracked every step and calibrated against B_crit
    measured by short branches from the run (at most --max-calibrations times); the
    batch grows to --fraction of r̂ · B_simple, the LR, β2 and weight decay moving by
    the transfer rules on every change (bl.BatchRamp; docs/cbs.md). Prints the
    steps and examples to the target with and without the branches, every change,
    every calibration, and r̂ with how to carry it to later runs.

    Examples:

      batchlab ramp --workload shakespeare-char --micro-batch-size 8 --out runs/ramp.json

      batchlab ramp --workload shakespeare-char --micro-batch-size 8 --carry-from runs/ramp.json --max-calibrations 0 --seed 1
    """
    console = human_console(as_json)
    with cli_errors():
        carried = [] if carry_from is None else read_carried(carry_from)
        target_device, _ = device_options(device, "fp32")
        work = get_workload(workload, parse_params(param), workload_path or ())
        name, hparams = run_hparams(work.default_hparams, optimizer, lr)
        budget = steps if steps is not None else work.default_steps
        if max_batch_size is None and work.train_size is not None:
            max_batch_size = work.train_size
        work = on_device(work, target_device)
        console.print(
            f"Ramp on [bold]{work.name}[/] with {name} {hparams}, from batch "
            f"{2 * micro_batch_size}, target {work.target.describe()}, "
            f"on {workload_device(work)}"
        )
        with step_progress(console) as progress:
            task = progress.add_task("training", total=budget)

            def on_eval(step: int, batch_size: int, value: float) -> None:
                progress.update(
                    task,
                    completed=step,
                    description=f"batch {batch_size}, {work.target.metric}={value:.4g}",
                )

            result = ramp_training(
                work, optimizer=name, hparams=hparams, micro_batch_size=micro_batch_size,
                max_batch_size=max_batch_size, fraction=fraction, max_steps=budget,
                eval_every=eval_every, max_calibrations=max_calibrations,
                prior_ratio=prior_ratio, carried=carried, branch_improvement=branch_improvement,
                branch_max_steps=branch_max_steps, seed=seed, on_eval=on_eval,
            )  # fmt: skip
        data = result.to_dict()
        if out is not None:
            atomic_write_json(out, data)
        if as_json:
            print_json(data)
            return
        if result.changes:
            console.print(_changes_table(result))
        if result.calibrations:
            console.print(_calibrations_table(result))
        _print_outcome(console, result, work.target.describe())
        _print_ratio(console, result, out)


def _print_outcome(out: Console, result: RampResult, target: str) -> None:
    if result.steps_to_target is None:
        out.print(f"[yellow]{target} not reached ({result.status}) in {result.steps} steps[/]")
        return
    out.print(
        f"[green]Reached {target} at step {result.steps_to_target}[/] "
        f"({result.examples_to_target:,} examples); with the branches "
        f"{result.total_steps_to_target} steps and {result.total_examples_to_target:,} examples "
        f"({result.wall_time_s:.0f} s)"
    )


#: An r̂ interval wider than this factor (high / low) is flagged before it is carried.
WIDE_RATIO = 4.0


def _print_ratio(out: Console, result: RampResult, path: Path | None) -> None:
    ratio = result.ratio
    if not ratio.n:
        out.print(f"r̂ = B_crit / B_simple = {ratio.ratio:.3g} (no calibration point: the prior)")
        return
    low, high = ratio.ratio_ci
    carried = f", {len(result.carried)} of them carried in" if result.carried else ""
    carry = (
        f"--carry-from {path} (r̂ with its interval)"
        if path is not None
        else f"--prior-ratio {ratio.ratio:.3g} (or save this run with --out FILE and add "
        "--carry-from FILE, to keep its interval)"
    )
    out.print(
        f"r̂ = B_crit / B_simple = {ratio.ratio:.3g} (95% interval {fmt_number(low)} to {fmt_number(high)}, "
        f"from {ratio.n} calibration point(s){carried}). Later runs of this model and "
        f"optimizer can start from it and branch no more: add {carry} "
        "--max-calibrations 0 to this command."
    )
    if not low > 0 or high / low > WIDE_RATIO:
        out.print(
            f"[yellow]The interval spans more than a factor of {WIDE_RATIO:g}: --prior-ratio "
            "would drop it and --carry-from would carry it, so calibrate again (more "
            "--max-calibrations, or a larger --branch-max-steps) before relying on it.[/]"
        )
