"""``batchlab reproduce``: input errors in one line, and the quick run end to end (slow)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchlab.cli import app

PLANS = Path(__file__).resolve().parents[2] / "examples" / "findings"
SECTIONS = 7
VERDICTS = ("held", "did not hold", "inconclusive")

runner = CliRunner()


def test_reproduce_is_listed_with_its_options():
    result = runner.invoke(app, ["reproduce", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--quick", "--out", "--doc", "--workers", "--plan"):
        assert option in result.output


def test_a_directory_without_a_plan_is_one_clear_line(tmp_path):
    result = runner.invoke(app, ["reproduce", "--plan", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "is not a findings plan" in result.output and "Traceback" not in result.output


def test_the_quick_plan_without_quick_is_refused(tmp_path):
    result = runner.invoke(
        app,
        ["reproduce", "--plan", str(PLANS / "quick"), "--out", str(tmp_path)],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 2 and "pass --quick" in result.output


def check_document(doc: Path) -> str:
    text = doc.read_text()
    for number in range(1, SECTIONS + 1):
        section = re.search(rf"^## {number}\. .*?(?=^## )", text, re.S | re.M)
        assert section is not None, f"section {number} missing"
        verdict = re.search(r"\*\*Verdict: ([a-z ]+)\.\*\*", section.group(0))
        assert verdict is not None and verdict.group(1) in VERDICTS
        assert "|---" in section.group(0), f"section {number} has no measured table"
    for leftover in ("{{", "{%"):
        assert leftover not in text
    assert not re.search(r"\b(None|nan|inf)\b", text)
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (doc.parent / link).is_file() and link.endswith(".png")
    return text


@pytest.mark.slow
def test_quick_reproduction_writes_report_and_findings_and_resumes(tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "batchlab",
        "reproduce",
        "--quick",
        "--workers",
        "2",
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    elapsed = time.perf_counter() - started
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    text = check_document(out / "findings.md")
    assert "This is a quick run" in text and "batchlab reproduce --quick" in text
    assert len(list((out / "findings").glob("*.png"))) == SECTIONS
    verdicts = json.loads((out / "findings.json").read_text())
    assert sorted(verdicts) == [str(n) for n in range(1, SECTIONS + 1)]
    assert all(v["verdict"] in VERDICTS for v in verdicts.values())

    index = (out / "index.html").read_text()
    studies = [p.parent for p in out.glob("*/results.json")]
    assert len(studies) == 7
    for study in studies:
        assert (study / "report.html").is_file()
        assert f"{study.name}/report.html" in index
    for comparison in out.glob("compare-*.html"):
        assert comparison.name in index
    assert len(list(out.glob("compare-*.html"))) == 3
    assert 'href="findings.md"' in index

    # Run again: every study and run is found finished; nothing is trained again.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/results.json")}
    stamps.update({p: p.stat().st_mtime_ns for p in out.glob("measurements/*/*.json")})
    started = time.perf_counter()
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert time.perf_counter() - started < elapsed
    check_document(out / "findings.md")
