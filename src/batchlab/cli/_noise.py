"""``batchlab noise-scale``: measure a workload's gradient noise scale B_simple."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._device import autocast, matmul_precision
from .._io import atomic_write_json
from .._seeding import make_generator
from ..noise import (
    NoiseScaleResult,
    NoiseScaleTracker,
    check_micro_batch_size,
    measure_noise_scale,
    split_batch,
)
from ..optim import check_optimizer_name, optimizer_for
from ..workloads import Workload, check_batch_size, get_workload, on_device, workload_device
from ._common import (
    DeviceOption,
    JsonOption,
    PrecisionOption,
    WorkloadPathOption,
    cli_errors,
    device_options,
    human_console,
    parse_params,
    print_json,
)


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.4g}"


def _interval(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{_number(ci[0])}, {_number(ci[1])}]"


def _train(
    work: Workload,
    model: Any,
    stream: Iterator[Any],
    *,
    steps: int,
    micro_batch_size: int,
    hparams: dict[str, Any],
    every: int,
    ema_decay: float | None,
    precision: str,
    progress: Progress,
) -> NoiseScaleResult:
    """Train with gradient accumulation over micro-batches; the tracker measures as it goes.

    On the workload's device, each micro-batch's forward pass and loss under
    ``precision``'s autocast; backward, the step and the tracker's norms outside it.
    The tracker reads its statistics (a host sync on a GPU) only at the progress lines.
    """
    opt_name = check_optimizer_name(hparams.pop("optimizer"))
    optimizer = optimizer_for(model, opt_name, hparams)
    task = progress.add_task("training", total=steps)
    device = workload_device(work)
    model.train()
    with NoiseScaleTracker(
        model, micro_batch_size=micro_batch_size, ema_decay=ema_decay
    ) as tracker:
        for step in range(1, steps + 1):
            parts = split_batch(next(stream), micro_batch_size)
            for part in parts:
                with autocast(precision, device):
                    loss = work.loss_fn(model, part) / len(parts)
                loss.backward()
            optimizer.step()
            tracker.step()
            optimizer.zero_grad(set_to_none=True)
            progress.advance(task)
            if step % every == 0 or step == steps:
                progress.console.print(
                    f"step {step}: B_simple = {_number(tracker.b_simple)} "
                    f"95% CI {_interval(tracker.b_simple_ci)}",
                    highlight=False,
                )
    return tracker.result()


def _tables(title: str, result: NoiseScaleResult) -> tuple[Table, Table]:
    summary = Table(title=title)
    summary.add_column("quantity")
    summary.add_column("value", justify="right")
    summary.add_row("B_simple = tr(Σ)/|G|²", _number(result.b_simple))
    summary.add_row(f"{result.confidence:.0%} interval", _interval(result.b_simple_ci))
    summary.add_row("|G|²", f"{_number(result.grad_sq_norm)} ± {_number(result.grad_sq_norm_se)}")
    summary.add_row("tr(Σ)", f"{_number(result.trace_cov)} ± {_number(result.trace_cov_se)}")
    if result.b_noise is not None:
        summary.add_row("B_noise = tr(HΣ)/GᵀHG", _number(result.b_noise))
        summary.add_row(f"{result.confidence:.0%} interval (B_noise)", _interval(result.b_noise_ci))
    summary.add_row("steps averaged", str(result.n))
    if result.skipped:
        summary.add_row("steps skipped (NaN/inf)", str(result.skipped))
    modules = Table(title="Per module (its own parameters)")
    for column in ("module", "B_simple", "interval", "|G|²", "tr(Σ)", "share of tr(Σ)"):
        modules.add_column(column, justify="left" if column == "module" else "right")
    for name, est in result.per_module.items():
        share = est.trace_cov / result.trace_cov if result.trace_cov else math.nan
        modules.add_row(
            name,
            _number(est.b_simple),
            _interval(est.b_simple_ci),
            _number(est.grad_sq_norm),
            _number(est.trace_cov),
            "-" if math.isnan(share) else f"{share:.1%}",
        )
    return summary, modules


def _payload(
    work: Workload,
    result: NoiseScaleResult,
    *,
    train: bool,
    seed: int,
    batch_size: int,
    micro_batch_size: int,
    steps: int,
    hparams: dict[str, Any],
    precision: str,
) -> dict[str, Any]:
    """What ``--out`` saves and ``--json`` prints: the settings, the result, its history."""
    data = result.to_dict()
    return {
        "workload": work.name,
        "params": dict(work.params),
        "mode": "train" if train else "measure",
        "device": str(workload_device(work)),
        "precision": precision,
        "seed": seed,
        "batch_size": batch_size,
        "micro_batch_size": micro_batch_size,
        "steps": steps,
        "hparams": hparams if train else None,
        "history": data.pop("history"),
        "result": data,
    }


def noise_scale_command(
    workload: Annotated[
        str, typer.Option(help="Built-in name or module:function.")
    ] = "mnist1d-cnn",
    batch_size: Annotated[int, typer.Option(help="Examples per batch (the big batch).")] = 256,
    micro_batch_size: Annotated[
        int | None,
        typer.Option(help="Examples per micro-batch (the small batch); default: batch / 4."),
    ] = None,
    steps: Annotated[int, typer.Option(help="Batches to average over (training steps).")] = 50,
    train: Annotated[
        bool, typer.Option(help="Train while measuring, with the workload's optimizer.")
    ] = False,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate with --train; default: the workload's.")
    ] = None,
    every: Annotated[
        int | None, typer.Option(help="With --train, report B_simple every this many steps.")
    ] = None,
    ema_decay: Annotated[
        float | None,
        typer.Option(help="With --train, an EMA of this decay instead of a plain average."),
    ] = None,
    b_noise: Annotated[
        bool, typer.Option(help="Also estimate B_noise (Hessian-vector products; no --train).")
    ] = False,
    seed: Annotated[int, typer.Option(help="Initialisation and data-order seed.")] = 0,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Workload parameter KEY=VALUE.")
    ] = None,
    workload_path: WorkloadPathOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Save the result and its history as JSON here.")
    ] = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    as_json: JsonOption = False,
) -> None:
    """Measure the gradient noise scale B_simple (McCandlish et al. 2018) of a workload.

    Each batch is split into micro-batches; their gradients (small batch) and the
    batch's gradient (big batch) give unbiased |G|² and tr(Σ), averaged over --steps
    batches. Without --train it measures at the initial parameters; with --train it
    measures while training (gradient accumulation over the micro-batches). --device
    and --precision choose where and in what precision the forward passes run; the
    statistics are float32/float64 either way. With --json, stdout gets what --out
    saves (no tables) and the progress goes to stderr.

    Example: batchlab noise-scale --workload mnist1d-cnn --batch-size 256 --out gns.json
    """
    with cli_errors():
        target_device, precision = device_options(device, precision)
        work = get_workload(workload, parse_params(param), workload_path or ())
        check_batch_size(batch_size, work.train_size, name="--batch-size")
        micro_batch_size = check_micro_batch_size(
            micro_batch_size, batch_size, name="--micro-batch-size", batch_name="--batch-size"
        )
        if steps <= 0:
            raise ValueError(f"--steps must be positive, got {steps}")
        if not train:
            for name, value in (("--lr", lr), ("--every", every), ("--ema-decay", ema_decay)):
                if value is not None:
                    raise ValueError(f"{name} only applies with --train")
        elif b_noise:
            raise ValueError(
                "--b-noise measures at fixed parameters; it does not apply with --train"
            )
        if every is not None and every <= 0:
            raise ValueError(f"--every must be positive, got {every}")
        if ema_decay is not None and not 0 <= ema_decay < 1:
            raise ValueError(f"--ema-decay must be in [0, 1), got {ema_decay}")
        if b_noise and steps < 2:
            raise ValueError(f"--b-noise needs --steps of at least 2, got {steps}")
        hparams = dict(work.default_hparams)
        if lr is not None:
            hparams["lr"] = lr
        work = on_device(work, target_device)
        model = work.build_model(seed).to(workload_device(work))
        stream = work.train_batches(batch_size, make_generator(seed))
        shown = human_console(as_json)
        shown.print(
            f"Noise scale of [bold]{work.name}[/] with batches of {batch_size} in micro-batches "
            f"of {micro_batch_size}, {'while training with ' + str(hparams) if train else 'at initialisation'}, "
            f"on {workload_device(work)} in {precision}"
        )
        with (
            matmul_precision(precision),
            Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=shown,
            ) as progress,
        ):
            if train:
                result = _train(
                    work,
                    model,
                    stream,
                    steps=steps,
                    micro_batch_size=micro_batch_size,
                    hparams=dict(hparams),
                    every=every or max(1, steps // 10),
                    ema_decay=ema_decay,
                    precision=precision,
                    progress=progress,
                )
            else:
                task = progress.add_task("measuring", total=steps)

                def advancing(batches: Iterable[Any]) -> Iterator[Any]:
                    for index, batch in enumerate(batches):
                        if index == steps:
                            return
                        yield batch
                        progress.advance(task)

                result = measure_noise_scale(
                    model,
                    work.loss_fn,
                    advancing(stream),
                    micro_batch_size,
                    b_noise=b_noise,
                    precision=precision,
                )
        if not as_json:
            where = "during training" if train else "at initialisation"
            for table in _tables(
                f"{work.name}, batch {batch_size} / micro {micro_batch_size}, {where}", result
            ):
                shown.print(table)
        if not result.grad_sq_norm > 0:
            shown.print(
                "[yellow]The |G|² average is not positive: the gradient is lost in the noise "
                "at this batch size. Use more --steps or a larger --batch-size.[/]"
            )
        payload = _payload(
            work,
            result,
            train=train,
            seed=seed,
            batch_size=batch_size,
            micro_batch_size=micro_batch_size,
            steps=steps,
            hparams=hparams,
            precision=precision,
        )
        if out is not None:
            atomic_write_json(out, payload)
            shown.print(f"Saved the history to {out}")
        if as_json:
            print_json(payload)
