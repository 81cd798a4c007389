"""``batchlab report``: one self-contained HTML report from one or more study directories."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..report import build_report
from ._common import cli_errors, console


def report_command(
    directories: Annotated[
        list[Path],
        typer.Argument(
            help="Study directories (or results.json files); several give overlaid curves."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="HTML file to write [default: DIR/report.html for one study, else ./report.html].",
        ),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Page title.")] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the report in the default browser.")
    ] = False,
) -> None:
    """Write an HTML report: fit, regimes, tuned hyperparameters, every trial, noise scale.

    The file is self-contained (images embedded, no network): send it as an attachment.

    Examples:

      batchlab report runs/mnist1d

      batchlab report runs/sgd runs/nesterov --out compare.html
    """
    with cli_errors():
        report = build_report(directories, title=title)
        path = report.write(out)
        for warning in report.warnings:
            console.print(f"[yellow]note:[/] {escape(warning)}", highlight=False)
        console.print(f"Report: {path}")
    if open_browser:
        webbrowser.open(path.resolve().as_uri())
