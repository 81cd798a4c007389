"""``batchlab workloads`` and ``batchlab train``: list workloads, train one run."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from ..training import RunSpec, run_training
from ..workloads import (
    Target,
    check_batch_size,
    get_workload,
    list_workloads,
    on_device,
    workload_device,
)
from ._common import (
    DeviceOption,
    JsonOption,
    PrecisionOption,
    WorkloadPathOption,
    cli_errors,
    console,
    device_options,
    key_table,
    parse_params,
    print_json,
    run_hparams,
    step_progress,
)


def workloads_command(as_json: JsonOption = False) -> None:
    """List the built-in workloads: parameters, default target and step budget.

    Your own workload works anywhere a name does, as ``module:function`` (a function
    returning an object with the Workload protocol's methods).

    Example: batchlab workloads --json
    """
    with cli_errors():
        infos = list_workloads()
        if as_json:
            print_json(
                [
                    {
                        "name": i.name,
                        "description": i.description,
                        "parameters": i.parameters,
                        "target": {
                            "metric": i.target.metric,
                            "value": i.target.value,
                            "direction": i.target.direction,
                        },
                        "default_steps": i.default_steps,
                    }
                    for i in infos
                ]
            )
            return
        table = key_table(
            "Built-in workloads",
            "name",
            [i.name for i in infos],
            ["description", "parameters", "default target", "default steps"],
        )
        for info in infos:
            params = ", ".join(f"{k}={v!r}" for k, v in info.parameters.items())
            table.add_row(
                info.name, info.description, params, info.target.describe(), str(info.default_steps)
            )
        console.print(table)


def train_command(
    workload: Annotated[
        str, typer.Option(help="Built-in name or module:function.")
    ] = "mnist1d-cnn",
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 128,
    steps: Annotated[
        int | None, typer.Option(help="Step budget \\[default: the workload's].")
    ] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="Optimizer name \\[default: the workload's].")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate \\[default: the workload's].")
    ] = None,
    momentum: Annotated[
        float | None, typer.Option(help="Momentum (momentum methods, LARS).")
    ] = None,
    eval_every: Annotated[int, typer.Option(help="Evaluate every this many steps.")] = 100,
    seed: Annotated[int, typer.Option(help="Initialisation and data-order seed.")] = 0,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Workload parameter KEY=VALUE.")
    ] = None,
    workload_path: WorkloadPathOption = None,
    full: Annotated[
        bool, typer.Option(help="Train the whole budget, not just to the target.")
    ] = False,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
) -> None:
    """Train one run of a workload and print its metrics and steps-to-target.

    The run trains on --device (its data moved there once) with its forward passes in
    --precision.

    Example: batchlab train --workload mnist1d-cnn --batch-size 128 --lr 0.05
    """
    with cli_errors():
        target_device, precision = device_options(device, precision)
        work = get_workload(workload, parse_params(param), workload_path or ())
        opt_name, hparams = run_hparams(work.default_hparams, optimizer, lr)
        if momentum is not None:
            hparams["momentum"] = momentum
        budget = steps if steps is not None else work.default_steps
        if budget <= 0:
            raise ValueError(f"--steps must be positive, got {budget}")
        if eval_every <= 0:
            raise ValueError(f"--eval-every must be positive, got {eval_every}")
        check_batch_size(batch_size, work.train_size, name="--batch-size")
        spec = RunSpec(
            batch_size=batch_size,
            optimizer=opt_name,
            hparams=hparams,
            max_steps=budget,
            eval_every=min(eval_every, budget),
            seed=seed,
            precision=precision,
        )
        work = on_device(work, target_device)
        target: Target = work.target
        console.print(
            f"Training [bold]{work.name}[/] at batch size {batch_size} with {opt_name} "
            f"{hparams}, target {target.describe()}, on {workload_device(work)} in {precision}"
        )
        start = time.perf_counter()
        with step_progress(console) as progress:
            task = progress.add_task("training", total=budget)

            def on_eval(step: int, metrics: dict[str, float]) -> None:
                shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
                progress.update(task, completed=step, description=shown)

            result = run_training(work, spec, target, stop_at_target=not full, on_eval=on_eval)
        elapsed = time.perf_counter() - start
        table = Table(title=f"{work.name}, batch size {batch_size}")
        table.add_column("step", justify="right")
        for name in work.metrics:
            table.add_column(name, justify="right")
        for index, step in enumerate(result.steps):
            table.add_row(str(step), *(f"{result.metrics[m][index]:.4f}" for m in work.metrics))
        console.print(table)
        if result.steps_to_target is not None:
            console.print(
                f"[green]Reached {target.describe()} at step {result.steps_to_target}[/] "
                f"({elapsed:.1f} s)"
            )
        else:
            console.print(f"[yellow]{result.reason}[/] ({elapsed:.1f} s)")
