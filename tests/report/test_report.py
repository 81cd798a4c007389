"""The HTML report: every section present, every image decodes, user strings escaped."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from batchlab import Study, StudyConfig
from batchlab.cli import app
from batchlab.report import ReportError, build_report, write_report

from .conftest import make_results, write_results

SECTIONS = ("headline", "scaling", "hyperparameters", "trials", "noise-scale", "reproducibility")
IMAGE = re.compile(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=]+)"')

NQM_STUDY = {
    "name": "nqm-report",
    "optimizer": "momentum",
    "seed": 0,
    "workload": {"name": "nqm", "params": {"dim": 200}},
    "ladder": {"min": 4, "max": 256},
    "search": {
        "trials_per_rung": 6,
        "space": {
            "lr": {"low": 1e-2, "high": 2.0, "scale": "log"},
            "one_minus_momentum": {"low": 1e-2, "high": 1.0, "scale": "log"},
        },
    },
    "budget": {"steps": 4000},
    "evaluation": {"every": 10},
}


def decoded_images(html: str) -> list[Image.Image]:
    """Every embedded PNG, decoded (raises if one is corrupt)."""
    images = []
    for payload in IMAGE.findall(html):
        image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        image.load()
        images.append(image)
    return images


EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def handmade_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hand-made study (every trial outcome) whose name is markup, as an attacker's."""
    return write_results(tmp_path_factory.mktemp("handmade") / "study", make_results(EVIL))


@pytest.fixture(scope="module")
def handmade_html(handmade_dir: Path) -> str:
    return build_report(handmade_dir).html


@pytest.fixture(scope="module")
def nqm_study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("studies") / "nqm"
    Study(StudyConfig.model_validate(NQM_STUDY), directory).run()
    return directory


def test_report_of_a_real_nqm_study_has_every_section_and_decodable_images(nqm_study_dir):
    path = write_report(nqm_study_dir)
    assert path == nqm_study_dir / "report.html"
    html = path.read_text()
    for section in SECTIONS[:4] + SECTIONS[5:]:
        assert f'<section id="{section}">' in html, section
    images = decoded_images(html)
    # Scaling figure, hyperparameter figure and one trial figure per rung (7 rungs).
    assert len(images) >= 2 + 7
    assert all(image.width > 100 and image.height > 100 for image in images)
    results = json.loads((nqm_study_dir / "results.json").read_text())
    fit = results["analysis"]["fit"]
    assert f"{fit['b_crit']:.3g}"[:3] in html.replace(",", "")


def test_report_of_a_handmade_results_file_has_every_section(handmade_html):
    html = handmade_html
    for section in SECTIONS:
        assert f'<section id="{section}">' in html, section
    assert len(decoded_images(html)) >= 3 + 8
    # Every trial outcome of the hand-made file is shown, with its reason.
    for status in ("reached", "not_reached", "diverged", "beaten", "error"):
        assert status.replace("_", " ") in html or status in html
    assert "still in progress" in html


def test_every_user_string_is_escaped(handmade_html):
    html = handmade_html
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # The only scripts are the package's own (hashed into the CSP).
    assert html.count("<script>") == 1
    # Markup in parameters, reasons and tracebacks is escaped too.
    assert "<b>boom</b>" not in html and "&lt;b&gt;boom&lt;/b&gt;" in html
    assert "<i>user param</i>" not in html


def test_report_is_self_contained(handmade_html):
    html = handmade_html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "Content-Security-Policy" in html


def test_two_studies_give_overlaid_curves_and_a_comparison(tmp_path):
    a = write_results(tmp_path / "a", make_results("sgd", b_crit=64.0, in_progress=False))
    b = write_results(tmp_path / "b", make_results("momentum", b_crit=256.0, in_progress=False))
    report = build_report([a, b])
    html = report.html
    assert '<section id="comparison">' in html and 'id="comparison-table"' in html
    assert report.studies == ("sgd", "momentum")
    assert len(decoded_images(html)) >= 1 + 2 * (3 + 8)
    # The two curves are S_min (1 + B_crit / B) with B_crit 64 and 256, rounded to
    # the evaluation interval: the B_crit ratio is 4 up to that rounding.
    row = re.search(r'<tr><td class="text">momentum</td>(.*?)</tr>', html, re.DOTALL)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    assert float(cells[3]) == pytest.approx(4.0, rel=0.1)


def test_missing_results_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="results.json"):
        build_report(tmp_path / "empty")


def test_cli_writes_the_report_and_names_its_path(handmade_dir, tmp_path):
    out = tmp_path / "out.html"
    result = CliRunner().invoke(app, ["report", str(handmade_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "Report:" in result.output
    assert len(decoded_images(out.read_text())) >= 3


def test_cli_bad_directory_is_one_line_and_exit_code_2(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_the_rungs_table_shows_each_rungs_cost_with_its_interval(nqm_study_dir):
    """steps / S_min and examples / E_min of the answer, with their intervals, per rung."""
    from batchlab.report._html import format_interval, format_number

    html = build_report(nqm_study_dir).html
    assert "<th>steps / S_min</th>" in html and "<th>examples / E_min</th>" in html
    rungs = json.loads((nqm_study_dir / "results.json").read_text())["analysis"]["answer"]["rungs"]
    reached = [r for r in rungs if r["steps"] is not None]
    assert reached
    for row in reached:
        assert row["steps_ci"] is not None and row["steps_ratio_ci"] is not None
        assert f"{format_number(row['steps_ratio'])} <span" in html
        assert format_interval(row["steps_ratio_ci"]) in html
        assert format_interval(row["steps_ci"]) in html


def test_the_headline_says_what_sets_b_crits_interval(nqm_study_dir):
    """The answer's interval_sources sentence (batchlab.analysis.explain_interval)."""
    from markupsafe import escape

    page = build_report(nqm_study_dir).html
    answer = json.loads((nqm_study_dir / "results.json").read_text())["analysis"]["answer"]
    sources = answer["interval_sources"]
    assert sources is not None
    assert "<strong>B_crit's interval.</strong>" in page
    assert str(escape(sources["sentence"])) in page
