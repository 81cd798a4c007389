"""The ``batchlab`` command line (typer + rich).

Each command lives in a small ``_cli_*`` module; this file only assembles them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .._version import __version__
from ._cbs import cbs_command
from ._common import console
from ._init import init_command
from ._noise import noise_scale_command
from ._ramp import ramp_command
from ._report import report_command
from ._reproduce import reproduce_command
from ._study import study_app
from ._train import train_command, workloads_command
from ._transfer import transfer_command

app = typer.Typer(
    name="batchlab",
    help=(
        "How large can your batch be? Measure the gradient noise scale, run batch-size "
        "scaling studies with per-batch-size tuning, and report the results."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"batchlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
) -> None:
    """batchlab: batch-size scaling, noise scale and large-batch optimizers for PyTorch."""


app.command("init")(init_command)
app.command("workloads")(workloads_command)
app.command("train")(train_command)
app.command("noise-scale")(noise_scale_command)
app.command("cbs")(cbs_command)
app.command("ramp")(ramp_command)
app.add_typer(study_app, name="study")
app.command("report")(report_command)
app.command("reproduce")(reproduce_command)
app.command("transfer")(transfer_command)


def main() -> None:
    """Entry point of the ``batchlab`` script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
