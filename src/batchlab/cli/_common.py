"""Shared pieces of the ``batchlab`` command line: error handling, exit codes, output.

Errors caused by input (bad config, unknown names, invalid values) become one line
per problem on stderr and exit code 2, never a traceback; set ``BATCHLAB_DEBUG=1``
to see the traceback anyway.

Exit codes, the same for every command (docs/cli.md lists them for users):

====  ====================  ==========================================================
code  constant              meaning
====  ====================  ==========================================================
0     ``EXIT_OK``           success
1     ``EXIT_STOPPED``      a study stopped before its end: a trial failed under
                            ``--fail-fast``, or worker processes died with trials
                            left (finished trials are kept: ``batchlab study
                            resume``). Also an unexpected error (a bug), with its
                            traceback.
2     ``EXIT_BAD_INPUT``    bad input: config, option, name, file; one line per
                            problem on stderr, nothing written
130   ``EXIT_INTERRUPTED``  interrupted (Ctrl-C); typer sets it
====  ====================  ==========================================================

With ``--json`` (:data:`JsonOption`) a command prints one JSON document on stdout
(:func:`print_json`) and everything meant for people (progress, notes) on stderr
(:func:`human_console`), so ``batchlab ... --json | python -m json.tool`` works.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pydantic
import tomllib
import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._device import PRECISIONS, check_precision, resolve_device
from .._errors import BatchlabError
from .._secrets import redact_url
from ..optim import check_optimizer_name

console = Console()
err_console = Console(stderr=True)

#: Exit code of success.
EXIT_OK = 0
#: Exit code of a study that stopped before its end (``--fail-fast``, dead workers).
EXIT_STOPPED = 1
#: Exit code for bad input, as for usage errors in click/typer.
EXIT_BAD_INPUT = 2
#: Exit code after Ctrl-C (typer's own; listed so that the table above is complete).
EXIT_INTERRUPTED = 130


def format_validation_error(error: pydantic.ValidationError) -> list[str]:
    """One line per invalid field: ``field.path: message``."""
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        lines.append(f"{location}: {message}")
    return lines


#: What to do after a disk-full stop, by default (commands that keep finished work say so).
AFTER_DISK_FULL = "free some space, then run the command again"
#: ... for the study commands, whose finished trials are in the storage.
AFTER_DISK_FULL_STUDY = (
    "Finished trials are kept: free some space, then run `batchlab study resume DIR`"
)


@contextlib.contextmanager
def cli_errors(after_disk_full: str = AFTER_DISK_FULL) -> Iterator[None]:
    """Turn input errors into a clear message and exit code 2 (URL passwords masked).

    A full disk (ENOSPC) stops the command with exit code 1 and one line naming the
    file, then ``after_disk_full``: what to do once space is freed.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except pydantic.ValidationError as error:
        if os.environ.get("BATCHLAB_DEBUG"):
            raise
        for line in format_validation_error(error):
            err_console.print(
                f"[bold red]error:[/] {redact_url(line)}", highlight=False, markup=True
            )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except PermissionError as error:
        if os.environ.get("BATCHLAB_DEBUG") or not error.filename:
            raise
        where = Path(error.filename)
        err_console.print(
            f"[bold red]error:[/] permission denied: {_escape(str(where))}; the directory "
            f"{_escape(str(where.parent))} is not writable (or the file is not readable)",
            highlight=False,
        )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (BatchlabError, ValueError, FileNotFoundError, tomllib.TOMLDecodeError) as error:
        if os.environ.get("BATCHLAB_DEBUG"):
            raise
        message = str(error) or type(error).__name__
        if isinstance(error, FileNotFoundError) and error.filename:
            message = f"no such file or directory: {error.filename}"
        if isinstance(error, tomllib.TOMLDecodeError):
            message = f"invalid TOML: {error}"
        # The last line of defence for storage passwords: no error shows one.
        err_console.print(f"[bold red]error:[/] {_escape(redact_url(message))}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except OSError as error:
        if error.errno != errno.ENOSPC or os.environ.get("BATCHLAB_DEBUG"):
            raise
        err_console.print(
            f"[bold red]stopped:[/] no space left on device writing "
            f"{_escape(str(error.filename or 'a file'))}; nothing half-written was kept. "
            f"{after_disk_full[:1].upper()}{after_disk_full[1:]}",
            highlight=False,
        )
        raise typer.Exit(EXIT_STOPPED) from None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def parse_value(text: str) -> Any:
    """A TOML literal (``4000``, ``0.1``, ``true``, ``"x"``) or, failing that, the string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def parse_params(items: list[str] | None, *, option: str = "--param") -> dict[str, Any]:
    """``["num_train=4000", "channels=8"]`` -> ``{"num_train": 4000, "channels": 8}``."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} expects KEY=VALUE, got {item!r}")
        params[key.strip()] = parse_value(value.strip())
    return params


#: ``--workload-path DIR`` (repeatable): where a module:function workload is imported from.
WorkloadPathOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--workload-path",
        help="Directory to import a module:function workload from (repeatable; searched "
        "before the config's directory, the current directory and sys.path).",
    ),
]


#: ``--device``: where a command's models train.
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device", help="Where to train: auto (CUDA if seen, else the CPU), cpu, cuda or cuda:N."
    ),
]
#: ``--precision``: the numerics of the forward pass.
PrecisionOption = Annotated[
    str,
    typer.Option(
        "--precision",
        help=f"Forward-pass precision: {', '.join(PRECISIONS)} (bf16: autocast; weights, "
        "gradients and statistics stay fp32).",
    ),
]


def device_options(device: str, precision: str) -> tuple[torch.device, str]:
    """``--device`` and ``--precision`` checked: the device and the precision, or a ``ValueError``.

    Under :func:`cli_errors` a device this machine lacks (``--device cuda`` without
    CUDA) or an unknown precision is exit code 2 with one line saying why.
    """
    return resolve_device(device, name="--device"), check_precision(precision, name="--precision")


#: ``--json``: print machine-readable JSON on stdout instead of a table.
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def key_table(title: str, key: str, keys: list[str], columns: list[str]) -> Table:
    """A table whose first column (``key``, what a user copies) is never cut or wrapped.

    The other columns fold onto more lines when the terminal is narrow (a pipe or CI
    gets 80 columns).
    """
    table = Table(title=title)
    width = max([len(key), *(len(k) for k in keys)])
    table.add_column(key, no_wrap=True, min_width=width, overflow="ignore")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def human_console(as_json: bool) -> Console:
    """Where output meant for people goes: stdout, or stderr under ``--json``.

    Under ``--json`` stdout holds the JSON document alone, so progress bars and
    notes move to stderr (still visible in a terminal, out of a pipe's way).
    """
    return err_console if as_json else console


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout (no colour, no wrapping), for scripts."""
    console.file.write(json.dumps(data, indent=2, allow_nan=False) + "\n")


def run_hparams(
    default_hparams: dict[str, Any], optimizer: str | None, lr: float | None
) -> tuple[str, dict[str, Any]]:
    """The optimizer name and hyperparameters of one run from ``--optimizer`` and ``--lr``.

    A workload's defaults hold for its own optimizer; another optimizer keeps only its
    learning rate (``--lr`` overrides it).
    """
    hparams = dict(default_hparams)
    default = hparams.pop("optimizer", None)
    name = check_optimizer_name(optimizer or default)
    if optimizer and optimizer != default:
        hparams = {"lr": hparams["lr"]}
    if lr is not None:
        hparams["lr"] = lr
    return name, hparams


def step_progress(out: Console) -> Progress:
    """A progress bar over a run's steps, its description set by the caller."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("step {task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=out,
    )


def fmt_number(value: float | None) -> str:
    """A number for a table: 3 significant digits, thousands whole with separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "∞"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def fmt_interval(ci: tuple[float, float] | None) -> str:
    """``[low, high]`` by :func:`fmt_number`, ``-`` without an interval."""
    return "-" if ci is None else f"[{fmt_number(ci[0])}, {fmt_number(ci[1])}]"
