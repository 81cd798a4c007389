"""``batchlab transfer``: move tuned hyperparameters to another batch size, rule by rule."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from ..optim import LR_RULES, OPTIMIZERS, transfer_hparams
from ._common import JsonOption, cli_errors, console, key_table, parse_params, print_json


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def transfer_command(
    from_batch_size: Annotated[
        int, typer.Option("--from", help="Batch size the hyperparameters were tuned at.")
    ],
    to_batch_size: Annotated[int, typer.Option("--to", help="Batch size to move them to.")],
    optimizer: Annotated[str, typer.Option(help=f"One of: {', '.join(OPTIMIZERS)}.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A tuned hyperparameter KEY=VALUE (repeatable)."),
    ] = None,
    lr_rule: Annotated[
        str | None,
        typer.Option(
            help=f"Learning-rate rule: {', '.join(LR_RULES)} (default: sqrt for the Adam "
            "family, linear for the SGD family; surge/saturating with --noise-scale)."
        ),
    ] = None,
    noise_scale: Annotated[
        float | None,
        typer.Option(help="B_noise in examples (e.g. a measured B_simple), for surge/saturating."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Move hyperparameters tuned at one batch size to another, each by a cited rule.

    lr follows --lr-rule; beta2 (Adam family) keeps its half-life in examples; AdamW's
    (and SGD's) weight_decay keeps its timescale 1/(lr·wd) fixed in epochs; the rest
    stay as they are. See docs/transfer.md.

    Example: batchlab transfer --from 64 --to 512 --optimizer adamw -p lr=3e-4
    -p beta2=0.95 -p weight_decay=0.1
    """
    with cli_errors():
        for option, value in (("--from", from_batch_size), ("--to", to_batch_size)):
            if value < 1:
                raise ValueError(f"{option} must be a positive batch size, got {value}")
        hparams = parse_params(param)
        if not hparams:
            raise ValueError(
                "give the tuned hyperparameters with --param KEY=VALUE, e.g. -p lr=3e-4"
            )
        result = transfer_hparams(
            hparams,
            from_batch_size,
            to_batch_size,
            optimizer=optimizer,
            lr_rule=lr_rule,
            noise_scale=noise_scale,
        )
        if as_json:
            print_json(result.to_dict())
            return
        table = key_table(
            f"{optimizer}: batch size {from_batch_size} → {to_batch_size}",
            "hyperparameter",
            list(result.transfers),
            ["from", "to", "factor", "rule"],
        )
        for name, transfer in result.transfers.items():
            factor = transfer.factor
            table.add_row(
                name,
                _number(transfer.before),
                _number(transfer.after),
                "—" if factor is None else f"{factor:.4g}",
                escape(f"{transfer.rule}: {transfer.explanation}"),
            )
        console.print(table)
