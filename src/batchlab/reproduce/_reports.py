"""The combined HTML report: one report per study, comparisons, and an index linking them.

Each study gets the ordinary ``batchlab report`` page (``OUT/<study>/report.html``);
the findings that set one workload's studies side by side (2, 4, 7) get an overlay report
(``OUT/compare-*.html``); ``OUT/index.html`` lists the verdicts and links them all
and the findings document.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._io import atomic_write_text
from ..report import write_report
from ._evaluate import Findings
from ._plan import PlanSettings

logger = logging.getLogger(__name__)

INDEX_HTML = "index.html"


def comparison_sets(settings: PlanSettings) -> dict[str, list[str]]:
    """Report file stem -> the studies it overlays (reference first)."""
    return {
        "compare-momentum": [settings.momentum.sgd, settings.momentum.momentum],
        "compare-dataset-size": [settings.dataset_size.small, settings.dataset_size.large],
        "compare-large-batch": [settings.large_batch.reference, *settings.large_batch.others],
    }


def write_reports(
    out: Path, studies: Sequence[str], comparisons: Mapping[str, Sequence[str]]
) -> dict[str, Path]:
    """Write every study's report and every comparison; name -> path."""
    paths = {}
    for name in studies:
        paths[name] = write_report(out / name)
    for stem, names in comparisons.items():
        paths[stem] = write_report(
            [out / n for n in names], out / f"{stem}.html", title=f"{stem}: {' vs '.join(names)}"
        )
    return paths


def _link(path: Path, base: Path, text: str) -> str:
    href = Path(os.path.relpath(path, base)).as_posix()
    return f'<a href="{html.escape(href, quote=True)}">{html.escape(text)}</a>'


def write_index(
    out: Path,
    findings: Findings,
    reports: Mapping[str, Path],
    doc: Path,
    title: str,
) -> Path:
    """``OUT/index.html``: the verdicts, the findings document, every report."""
    rows = "\n".join(
        f"<tr><td>{s.number}</td><td>{html.escape(s.title)}</td>"
        f"<td><b>{html.escape(s.verdict)}</b></td><td>{html.escape(s.reason)}</td></tr>"
        for s in findings.sections
    )
    links = "\n".join(
        f"<li>{_link(path, out, name)}</li>" for name, path in sorted(reports.items())
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto;line-height:1.4}}
td,th{{border-bottom:1px solid #ddd;padding:.3em .6em;vertical-align:top;text-align:left}}
table{{border-collapse:collapse}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>The findings document: {_link(doc, out, doc.name)} (with its figures).</p>
<table><tr><th>#</th><th>claim</th><th>verdict</th><th>measured</th></tr>
{rows}
</table>
<h2>Reports</h2>
<ul>
{links}
</ul>
</body></html>
"""
    return atomic_write_text(out / INDEX_HTML, page)
