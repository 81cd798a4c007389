"""``batchlab reproduce``: run the findings' studies and write ``findings.md`` and the reports."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import optuna
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..reproduce import StageProgress, default_plan_dir, load_plan, reproduce
from ._common import cli_errors, console


class ReproduceDisplay:
    """Rich progress: one bar over the stages, one for the stage running now."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.overall = self.progress.add_task("stages", total=None)
        self.stage = self.progress.add_task("", total=None, visible=False)
        self._current: str | None = None

    def __call__(self, update: StageProgress) -> None:
        self.progress.update(self.overall, total=update.stages, completed=update.index - 1)
        if update.stage != self._current:
            self._current = update.stage
            self.progress.reset(self.stage, total=update.total, description=f"  {update.stage}")
        self.progress.update(
            self.stage,
            total=update.total,
            completed=update.done,
            visible=True,
            description=f"  {update.stage}" + (" (already done)" if update.skipped else ""),
        )
        if update.done >= update.total:
            self.progress.update(self.overall, completed=update.index)


def _command(
    quick: bool, out: Path | None, doc: Path | None, workers: int, plan: Path | None
) -> str:
    """The command line as typed (defaults left out), for the document."""
    parts = ["batchlab", "reproduce"]
    if quick:
        parts.append("--quick")
    if workers != 1:
        parts += ["--workers", str(workers)]
    for option, value in (("--out", out), ("--doc", doc), ("--plan", plan)):
        if value is not None:
            parts += [option, value.as_posix()]
    return " ".join(parts)


def reproduce_command(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick", help="Small ladders, few trials, short budgets: minutes, not an hour."
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output directory (default: runs/findings, or runs/findings-quick with --quick).",
        ),
    ] = None,
    doc: Annotated[
        Path | None,
        typer.Option(
            help="Findings document to write (default: docs/findings.md, or OUT/findings.md "
            "with --quick); its figures go to the folder of its stem (docs/findings/)."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", "-w", min=1, help="Worker processes (each gets cores/N threads)."
        ),
    ] = 1,
    plan: Annotated[
        Path | None,
        typer.Option(
            help="Plan directory (default: examples/findings/full, or .../quick with --quick)."
        ),
    ] = None,
) -> None:
    """Reproduce seven findings on batch-size scaling and write them up from the measurements.

    Runs every study of the plan (resumable: run it again after a crash and it
    continues), the fixed-epoch and noise-scale runs, then writes the findings
    document with its figures, one HTML report per study, comparisons, and
    OUT/index.html linking them.

    Examples:

      batchlab reproduce --quick --workers 2

      batchlab reproduce --workers 2          # the full run, about 40 minutes on 2 cores
    """
    with cli_errors(
        "Finished studies and trials are kept: free some space, then run the same "
        "`batchlab reproduce` again (it resumes)"
    ):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        variant = "quick" if quick else "full"
        loaded = load_plan(plan if plan is not None else default_plan_dir(variant))
        if loaded.variant != variant:
            raise ValueError(
                f"--plan {plan} is a {loaded.variant!r} plan; "
                + ("pass --quick" if loaded.variant == "quick" else "drop --quick")
            )
        out_dir = (
            out if out is not None else Path("runs") / ("findings-quick" if quick else "findings")
        )
        doc_path = (
            doc
            if doc is not None
            else (out_dir / "findings.md" if quick else Path("docs") / "findings.md")
        )
        console.print(
            f"Reproducing the findings ({variant} plan {escape(str(loaded.directory))}, "
            f"{len(loaded.studies)} studies) into {escape(str(out_dir))}"
        )
        started = time.perf_counter()
        display = ReproduceDisplay()
        with display.progress:
            result = reproduce(
                loaded,
                out_dir,
                doc_path,
                workers=workers,
                command=_command(quick, out, doc, workers, plan),
                on_progress=display,
            )
        table = Table(title="Findings")
        for column in ("#", "claim", "verdict"):
            table.add_column(column)
        for section in result.findings.sections:
            table.add_row(str(section.number), section.title, section.verdict)
        console.print(table)
        console.print(f"Findings: {escape(str(result.doc))}")
        console.print(f"Reports: {escape(str(result.index))}")
        console.print(f"Took {time.perf_counter() - started:.0f} s")
