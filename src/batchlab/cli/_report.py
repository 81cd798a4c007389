"""``batchlab report``: one self-contained HTML report from one or more study directories."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..report import build_report
from ._common import JsonOption, cli_errors, console, print_json


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
            help="HTML file to write \\[default: DIR/report.html for one study, else ./report.html].",
        ),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Page title.")] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the report in the default browser.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Write an HTML report: fit, regimes, tuned hyperparameters, every trial, noise scale.

    The file is self-contained (images embedded, no network): send it as an attachment.
    With --json, stdout gets {"report": PATH, "warnings": [...]} and nothing else.

    Examples:

      batchlab report runs/mnist1d

      batchlab report runs/sgd runs/nesterov --out compare.html

      batchlab report runs/mnist1d --json
    """
    with cli_errors():
        report = build_report(directories, title=title)
        path = report.write(out)
        if as_json:
            print_json({"report": str(path), "warnings": list(report.warnings)})
        else:
            for warning in report.warnings:
                console.print(f"[yellow]note:[/] {escape(warning)}", highlight=False)
            console.print(f"Report: {path}")
    if open_browser:
        webbrowser.open(path.resolve().as_uri())
