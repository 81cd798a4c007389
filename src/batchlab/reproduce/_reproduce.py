"""``reproduce``: run a plan, evaluate the seven findings, write the document and reports.

Data flow, one way: plan -> studies and runs (``_run``) -> curves and records ->
findings (``_finding_*``, pure, gathered by ``_evaluate``) -> figures and ``findings.md``
(``_document``) and the combined HTML report (``_reports``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .._io import atomic_write_json
from ._document import RunInfo, describe_environment, write_document
from ._evaluate import Findings, evaluate_all
from ._plan import Plan
from ._reports import comparison_sets, write_index, write_reports
from ._run import Measurements, ProgressCallback, read_json, run_plan

logger = logging.getLogger(__name__)

TIMINGS_JSON = "timings.json"
VERDICTS_JSON = "findings.json"
REPORT_STAGE = "evaluation and reports"


@dataclass(frozen=True, kw_only=True)
class Reproduction:
    """What a reproduction wrote.

    Attributes:
        findings: the seven evaluated findings.
        doc: the findings document.
        figures: finding number -> its PNG.
        index: the combined report's index page.
        reports: report name -> HTML file (one per study, and the comparisons).
        measurements: the curves and run records behind the findings.
        run: how the measurements were made (command, versions, timings).
    """

    findings: Findings
    doc: Path
    figures: dict[int, Path]
    index: Path
    reports: dict[str, Path]
    measurements: Measurements
    run: RunInfo


def _timings(out: Path, new: dict[str, float]) -> dict[str, float]:
    """Stage wall times, kept across resumed runs (a stage's time is its latest full run)."""
    path = out / TIMINGS_JSON
    old = read_json(path)
    if not isinstance(old, dict):
        old = {}
    merged = {str(k): float(v) for k, v in old.items() if isinstance(v, int | float)}
    merged.update(new)
    atomic_write_json(path, merged)
    return merged


def _display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def reproduce(
    plan: Plan,
    out: str | Path,
    doc: str | Path,
    *,
    workers: int = 1,
    command: str = "batchlab reproduce",
    on_progress: ProgressCallback | None = None,
) -> Reproduction:
    """Run every study and measurement of ``plan``, then write the findings and reports.

    Resumable: finished studies and runs in ``out`` are reused, unfinished ones continue.

    Args:
        plan: the validated plan (:func:`~batchlab.reproduce.load_plan`).
        out: output directory (one sub-directory per study, ``index.html``, ...).
        doc: the findings document to write (its figures go to ``<doc stem>/``).
        workers: worker processes for studies and runs.
        command: the command line recorded in the document.
        on_progress: progress callback (see :class:`~batchlab.reproduce.StageProgress`).
    """
    out, doc = Path(out), Path(doc)
    measurements = run_plan(plan, out, workers=workers, on_progress=on_progress)
    started = time.perf_counter()
    findings = evaluate_all(
        plan.settings,
        measurements.curves,
        list(measurements.fixed_budget.values()),
        list(measurements.noise.values()),
    )
    reports = write_reports(out, list(plan.studies), comparison_sets(plan.settings))
    timings = _timings(
        out, {**measurements.stage_seconds, REPORT_STAGE: time.perf_counter() - started}
    )
    run = RunInfo(
        command=command,
        variant=plan.variant,
        plan_dir=_display(plan.directory),
        out_dir=_display(out),
        versions={k: str(v) for k, v in describe_environment().items()},
        cpu_count=os.cpu_count() or 1,
        workers=workers,
        stage_seconds=timings,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    )
    trial_seconds = {name: curve.wall_time_s for name, curve in measurements.curves.items()}
    doc_path, figures = write_document(findings, plan.studies, run, doc, trial_seconds)
    title = f"batchlab findings ({plan.variant} run)"
    index = write_index(out, findings, reports, doc_path, title)
    atomic_write_json(
        out / VERDICTS_JSON,
        {
            str(s.number): {
                "title": s.title,
                "verdict": s.verdict,
                "reason": s.reason,
                "criterion": s.criterion,
            }
            for s in findings.sections
        },
    )
    logger.info("findings written to %s, reports indexed in %s", doc_path, index)
    return Reproduction(
        findings=findings,
        doc=doc_path,
        figures=figures,
        index=index,
        reports=reports,
        measurements=measurements,
        run=run,
    )
