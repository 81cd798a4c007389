"""The findings document: every section rendered, no placeholders, the evaluated numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchlab.reproduce import (
    RunInfo,
    evaluate_all,
    fmt,
    fmt_ci,
    fmt_signed,
    load_plan,
    render_document,
    write_document,
)

from .synthetic import LADDER, exact_steps, make_curve, noisy_steps, sharp_bend_steps
from .test_evaluate import budget_records, noise_record

PLAN = Path(__file__).resolve().parents[2] / "examples" / "findings" / "quick"


@pytest.fixture(scope="module")
def plan():
    return load_plan(PLAN)


#: Study -> (S_min, B_crit, seed) of its noisy synthetic curve, and make_curve's options.
NOISY = {
    "mnist1d-nesterov": (220, 70, 1, {"lrs": [0.02 * min(b, 64) ** 0.9 for b in LADDER]}),
    "digits-nesterov": (60, 300, 2, {"workload": "digits-mlp"}),
    "shakespeare-adam": (130, 60, 3, {"workload": "shakespeare-char", "optimizer": "adam"}),
    "mnist1d-sgd": (400, 30, 4, {"optimizer": "sgd"}),
}


@pytest.fixture(scope="module")
def findings(plan):
    curves = {
        name: make_curve(name, noisy_steps(LADDER, s_min, b_crit, 0.05, seed), **options)
        for name, (s_min, b_crit, seed, options) in NOISY.items()
    }
    # The 40k study bends sharply: its answer, and so the findings, read the free bend.
    curves["mnist1d-nesterov-40k"] = make_curve(
        "mnist1d-nesterov-40k", sharp_bend_steps(LADDER, 200, 80, 4.0, 0.02, 5), train_size=40000
    )
    top = (512, 1024, 2048)
    curves["mnist1d-lars"] = make_curve(
        "mnist1d-lars", [400, 300, None], batch_sizes=top, optimizer="lars"
    )
    curves["mnist1d-lamb"] = make_curve(
        "mnist1d-lamb", exact_steps(top, 150, 100), batch_sizes=top, optimizer="lamb"
    )
    fixed = budget_records(
        {16: 0.9, 32: 0.89, 128: 0.8, 512: 0.55, 2048: None},
        {16: 0.9, 32: 0.9, 128: 0.91, 512: 0.9, 2048: 0.89},
    )
    noise = [
        noise_record("mnist1d-nesterov", 90.0, (70.0, 120.0)),
        noise_record("digits-nesterov", 40.0, (30.0, 50.0)),
        noise_record("shakespeare-adam", 50.0, (20.0, 200.0)),
    ]
    return evaluate_all(plan.settings, curves, fixed, noise)


RUN = RunInfo(
    command="batchlab reproduce --quick",
    variant="quick",
    plan_dir="examples/findings/quick",
    out_dir="runs/findings-quick",
    versions={"batchlab": "0.1.0", "torch": "2.x", "python": "3.11"},
    cpu_count=2,
    workers=2,
    stage_seconds={"study mnist1d-nesterov": 61.5, "noise scale during training": 12.25},
    generated="2026-01-01",
)


@pytest.fixture(scope="module")
def document(plan, findings):
    return render_document(
        findings, plan.studies, RUN, figures={n: f"f/{n}.png" for n in range(1, 8)}
    )


def test_every_section_is_present_with_its_verdict(findings, document):
    for section in findings.sections:
        heading = f"## {section.number}. {section.title}"
        assert heading in document
        body = document.split(heading, 1)[1].split("\n## ", 1)[0]
        assert f"**Verdict: {section.verdict}.**" in body
        assert section.criterion in body
        assert "![" in body and f"(f/{section.number}.png)" in body


def test_no_placeholder_or_python_repr_is_left(document):
    for leftover in ("{{", "}}", "{%", "%}", "None", "nan", "Undefined"):
        assert leftover not in document, leftover


def test_numbers_in_the_document_are_the_evaluated_numbers(findings, document):
    regimes = findings.regimes
    for fit in regimes.fits:
        assert f"{fmt(fit.b_crit)} {fmt_ci(fit.b_crit_ci)}" in document
    for pair in regimes.pairs:
        assert f"| {fmt(pair.value)} | {fmt_ci(pair.ci)} |" in document
    ratio = findings.momentum.b_crit_ratio
    assert f"{fmt(ratio.value)} {fmt_ci(ratio.ci)}" in document
    for row in findings.lr_rules.rows:
        assert f"{fmt(row.beyond_exponent)} {fmt_ci(row.beyond_ci)}" in document
    size = findings.dataset_size.b_crit_ratio
    assert f"{fmt(size.value)} {fmt_ci(size.ci)}" in document
    large = findings.dataset_size.large
    assert large.b_crit_model == "free bend"
    assert (
        f"{fmt(large.b_crit)} {fmt_ci(large.b_crit_ci)} (free bend; hyperbola "
        f"{fmt(large.fit.b_crit)})" in document
    )
    fixed = findings.fixed_epochs
    assert fmt_signed(fixed.gap_fixed) in document and fmt_signed(fixed.gap_tuned) in document
    for row in findings.noise_scale.rows:
        assert f"{fmt(row.ratio)} {fmt_ci(row.ratio_ci)}" in document
    for row in findings.large_batch.rows:
        assert (
            f"| {fmt(row.batch_size)} | {fmt(row.resolution)} | {fmt(row.reference)} |" in document
        )
    assert "| wall time of the stages run | 1.23 min |" in document
    assert "batchlab reproduce --quick" in document and "This is a quick run" in document


def test_reasons_quote_the_same_numbers_as_the_tables(findings, document):
    ratio = findings.momentum.b_crit_ratio
    assert (
        fmt(ratio.value) in findings.momentum.reason
        and fmt_ci(ratio.ci) in findings.momentum.reason
    )
    assert findings.momentum.reason[1:] in document


def test_tables_are_well_formed(document):
    lines = document.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            header = lines[i - 1]
            assert header.startswith("|") and line.count("|") == header.count("|"), header
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                assert lines[j].count("|") >= header.count("|"), lines[j]
                j += 1


def test_summary_links_point_at_the_section_anchors(findings, document):
    anchors = re.findall(r"\]\(#([^)]+)\)", document)
    assert len(anchors) == 8  # the summary's seven, and the link to the studies table
    headings = {
        re.sub(r"[^\w\- ]", "", line[3:].lower()).replace(" ", "-")
        for line in document.splitlines()
        if line.startswith("## ")
    }
    assert set(anchors) <= headings


def test_write_document_draws_seven_small_figures_linked_relatively(plan, findings, tmp_path):
    doc, figures = write_document(findings, plan.studies, RUN, tmp_path / "docs" / "findings.md")
    text = doc.read_text()
    assert sorted(figures) == [1, 2, 3, 4, 5, 6, 7]
    for path in figures.values():
        assert path.parent == tmp_path / "docs" / "findings"
        assert path.stat().st_size < 120_000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(findings/{path.name})" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (doc.parent / link).is_file()


def test_full_run_document_has_no_quick_banner(plan, findings):
    full = RunInfo(**{**RUN.__dict__, "variant": "full", "command": "batchlab reproduce"})
    text = render_document(findings, plan.studies, full)
    assert "This is a quick run" not in text
    assert "No figure" in text  # no figures passed


def test_the_studies_table_says_how_many_seeds_each_stage_runs(plan, findings):
    def studies_row(studies) -> str:
        text = render_document(findings, studies, RUN)
        rows = [r for r in text.splitlines() if r.startswith("| mnist1d-nesterov | mnist1d-cnn (")]
        assert len(rows) == 1
        return rows[0]

    full = studies_row(load_plan(PLAN.parent / "full").studies)
    assert (
        "| 1; the best 2: 3 (median decides); the chosen one 7 where its seeds disagree 2× "
        "or miss, up to 2 rounds; a rising rung's recheck: 3 |"
    ) in full
    assert "| 1; the best 2: 3 (median decides) |" in studies_row(plan.studies)  # quick: no more
