"""``findings.md``: the evaluated findings rendered with Jinja2, figures beside it.

The document is a pure function of the evaluated findings, the study configs and a
:class:`RunInfo` (command, versions, machine, wall time): no number is typed into it.
Figures go to ``<doc stem>/`` next to the document (``docs/findings.md`` ->
``docs/findings/*.png``) and are linked relatively, so the pair can be committed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from .._io import atomic_write_text
from ..analysis import LR_RULES
from ..study import StudyConfig
from ._evaluate import Findings
from ._figures import write_figures
from ._finding_large_batch import LargeBatchFinding
from ._fits import fmt, fmt_ci, fmt_signed
from ._template import TEMPLATE

#: The regime tolerance the fits use (``scaling_regimes``' default).
TOL = 0.25


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """How and where the measurements were made.

    Attributes:
        command: the exact command line, e.g. ``batchlab reproduce --quick``.
        variant: ``"full"`` or ``"quick"``.
        plan_dir, out_dir: where the plan was read from and the results written to.
        versions: package/interpreter -> version (and the platform).
        cpu_count: CPU cores of the machine.
        workers: worker processes used.
        stage_seconds: wall time per stage that ran.
        generated: when the document was made (ISO date).
    """

    command: str
    variant: str
    plan_dir: str
    out_dir: str
    versions: dict[str, str]
    cpu_count: int
    workers: int
    stage_seconds: dict[str, float] = field(default_factory=dict)
    generated: str = ""

    @property
    def wall_minutes(self) -> float:
        return sum(self.stage_seconds.values()) / 60.0


@dataclass(frozen=True, kw_only=True)
class StudyFacts:
    """A study config in words and numbers, for the document's tables."""

    name: str
    workload: str
    params: str
    optimizer: str
    ladder: tuple[int, ...]
    trials: str
    seeds: str
    resolution: str
    space: str
    fixed_text: str
    budget: str
    target: str
    trial_minutes: float


def study_facts(config: StudyConfig, trial_seconds: float = 0.0) -> StudyFacts:
    """The facts of one study config (numbers formatted with :func:`fmt`)."""
    space = "; ".join(
        f"{name} in [{fmt(r.low)}, {fmt(r.high)}]{' (log)' if r.scale == 'log' else ''}"
        for name, r in sorted(config.search_space().items())
    )
    fixed = ", ".join(f"{k} = {fmt(v)}" for k, v in sorted(config.search.fixed.items()))
    budget = config.budget
    if budget.steps is not None:
        budget_text = f"{fmt(budget.steps)} steps"
    else:
        budget_text = f"{fmt(budget.examples)} examples / B, in [{fmt(budget.min_steps)}, " + (
            f"{fmt(budget.max_steps)}] steps" if budget.max_steps is not None else "∞) steps"
        )
    target = config.target
    params = ", ".join(f"{k}={v}" for k, v in sorted(config.workload.params.items()))
    search = config.search
    seeds = "1 (best single seed)"
    if search.confirm_top and search.confirm_seeds:
        seeds = (
            f"1; the best {fmt(search.confirm_top)}: {fmt(1 + search.confirm_seeds)} "
            "(median decides)"
        )
        if search.spread_seeds:
            rounds = "" if search.spread_rounds == 1 else f", up to {search.spread_rounds} rounds"
            seeds += (
                f"; the chosen one {fmt(1 + search.confirm_seeds + search.spread_seeds)} "
                f"where its seeds disagree {fmt(search.spread_ratio)}× or miss{rounds}"
            )
        if search.recheck:
            seeds += f"; a rising rung's recheck: {fmt(search.recheck)}"
    trials = f"{fmt(search.trials_per_rung)}" + (
        f" + {fmt(search.refine)} refined" if search.refine and search.sampler != "tpe" else ""
    )
    resolution = config.evaluation.resolution
    every = config.evaluation.every
    grid = f"every {fmt(every)} steps" if every else f"{fmt(config.evaluation.per_run)} per run"
    resolution_text = (
        f"≤ {fmt(100 * resolution)}% of the count near the target (grid: {grid})"
        if resolution
        else f"the evaluation grid ({grid})"
    )
    return StudyFacts(
        name=config.name,
        workload=config.workload.name,
        params=f"({params})" if params else "",
        optimizer=config.optimizer,
        ladder=tuple(config.batch_sizes()),
        trials=trials,
        seeds=seeds,
        resolution=resolution_text,
        space=space or "—",
        fixed_text=fixed or "—",
        budget=budget_text,
        target=(
            "workload default"
            if target is None
            else f"{target.metric} {'≥' if target.direction == 'max' else '≤'} {fmt(target.value)}"
        ),
        trial_minutes=trial_seconds / 60.0,
    )


def anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _rungs(values: Sequence[int] | None) -> str:
    return ", ".join(fmt(int(v)) for v in values) if values else "—"


def _numbers(values: Sequence[float] | None) -> str:
    return ", ".join(fmt(float(v)) for v in values) if values else "—"


def _capfirst(text: str) -> str:
    return text[:1].upper() + text[1:]


def _table(rows: Sequence[Sequence[str]]) -> str:
    """A markdown table: the first row is the header."""
    if not rows:
        return ""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def _steps(value: int | None) -> str:
    """Steps-to-target, or that the target was not reached within the budget."""
    return fmt(value) if value is not None else "not reached"


def large_batch_table(finding: LargeBatchFinding) -> list[list[str]]:
    """Finding 7's table: one column per optimizer, one row per compared rung."""
    names = list(finding.optimizers)
    header = ["B", "evaluation interval"] + [f"{finding.optimizers[n]} ({n})" for n in names]
    return [header] + [
        [fmt(row.batch_size), fmt(row.resolution)] + [_steps(finding.steps(row, n)) for n in names]
        for row in finding.rows
    ]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # markdown, not HTML; study names are validated identifiers
    )
    env.filters.update(
        fmt=fmt,
        fmt_ci=fmt_ci,
        fmt_signed=fmt_signed,
        rungs=_rungs,
        numbers=_numbers,
        steps=_steps,
        capfirst=_capfirst,
    )
    return env


def render_document(
    findings: Findings,
    configs: Mapping[str, StudyConfig],
    run: RunInfo,
    figures: Mapping[int, str] | None = None,
    trial_seconds: Mapping[str, float] | None = None,
) -> str:
    """The markdown text of the findings document.

    Args:
        findings: the evaluated findings.
        configs: every study config of the plan, by name.
        run: how the measurements were made.
        figures: finding number -> image path relative to the document.
        trial_seconds: study name -> summed trial time (for the studies table).
    """
    figures = dict(figures or {})

    def final(value: float | None, status: str) -> str:
        """A run's final metric, or why it has none (``diverged``, ``missing``)."""
        return fmt(value) if value is not None else status

    def figure(number: int, caption: str) -> str:
        if number not in figures:
            return "*(No figure: too little data for this finding.)*"
        return f"![{caption}]({figures[number]})\n\n*{caption}*"

    studies = {
        name: study_facts(config, (trial_seconds or {}).get(name, 0.0))
        for name, config in configs.items()
    }
    text = (
        _environment()
        .from_string(TEMPLATE)
        .render(
            findings=findings,
            run=run,
            studies=studies,
            figure=figure,
            final=final,
            table=_table,
            large_batch_table=large_batch_table(findings.large_batch),
            anchors={s.number: anchor(f"{s.number}. {s.title}") for s in findings.sections},
            rules=LR_RULES,
            tol=TOL,
        )
    )
    # Collapse the blank lines that skipped blocks leave behind.
    return re.sub(r"\n{3,}", "\n\n", text)


def figures_dir(doc: Path) -> Path:
    """Where a document's figures go: ``docs/findings.md`` -> ``docs/findings/``."""
    return doc.with_suffix("")


def write_document(
    findings: Findings,
    configs: Mapping[str, StudyConfig],
    run: RunInfo,
    doc: str | Path,
    trial_seconds: Mapping[str, float] | None = None,
) -> tuple[Path, dict[int, Path]]:
    """Draw the figures next to ``doc`` and write the document (atomically).

    Returns:
        The document's path and finding number -> figure path.
    """
    doc = Path(doc)
    paths = write_figures(findings, figures_dir(doc))
    relative = {
        number: Path(os.path.relpath(path, doc.parent)).as_posix() for number, path in paths.items()
    }
    text = render_document(findings, configs, run, relative, trial_seconds)
    return atomic_write_text(doc, text), paths


def describe_environment() -> dict[str, Any]:
    """Versions and platform for :class:`RunInfo` (from the running interpreter)."""
    import platform
    import sys

    import numpy
    import optuna
    import torch

    from .._version import __version__

    return {
        "batchlab": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "optuna": optuna.__version__,
        "platform": platform.platform(),
    }
