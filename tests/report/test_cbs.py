"""The report's "Critical batch size over training" section, from ``cbs.json``."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from batchlab.cbs import measure_critical_batch
from batchlab.report import ReportError, build_report
from batchlab.report._cbs import load_cbs
from batchlab.workloads import get_workload

from .conftest import make_results, write_results

IMAGE = re.compile(r'<img[^>]+src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def cbs_data() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = measure_critical_batch(
            get_workload("linreg", {"dim": 16}), [0, 20], [4, 16, 64], optimizer="sgd",
            hparams={"lr": 0.1}, base_batch_size=8, lr_rule="linear", improvement_fraction=0.3,
            max_steps=300, eval_resolution=0.0, noise_batch_size=64, n_bootstrap=100,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return result.to_dict()


def write_cbs(directory: Path, data: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cbs.json").write_text(json.dumps(data))
    return directory


def images(html: str) -> list[Image.Image]:
    out = []
    for payload in IMAGE.findall(html):
        image = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        image.load()
        out.append(image)
    return out


def test_a_cbs_directory_alone_gets_its_own_page(tmp_path, cbs_data):
    directory = write_cbs(tmp_path / "cbs", cbs_data)
    report = build_report(directory)
    assert report.default_path == directory / "report.html"
    html = report.html
    assert '<section id="critical-batch">' in html and '<section id="headline">' not in html
    assert len(images(html)) == 1
    for point in cbs_data["checkpoints"]:
        assert f"<td>{point['step']}</td>" in html
    assert "B_simple / B_crit" in html and "exact B_crit" in html  # linreg: exact curves
    assert "http://" not in html.split("</head>")[1] and "https://" not in html


def test_a_study_directory_with_cbs_json_gains_the_section(tmp_path, cbs_data):
    # A small study (3 rungs, 2 trials each) keeps the page quick to draw.
    study = make_results("with-cbs", batch_sizes=(8, 16, 32), trials=2, in_progress=False)
    directory = write_cbs(write_results(tmp_path / "study", study), cbs_data)
    html = build_report(directory).html
    assert '<a href="#critical-batch">' in html and '<section id="critical-batch">' in html
    assert '<section id="headline">' in html and '<section id="reproducibility">' in html
    figures = re.findall(r'<img[^>]+alt="([^"]+)"', html)
    assert sum(alt.startswith("Critical batch size and noise scale") for alt in figures) == 1
    assert len(images(html)) == len(figures)


def test_strings_from_cbs_json_are_escaped(tmp_path, cbs_data):
    data = json.loads(json.dumps(cbs_data))
    data["checkpoints"][0]["note"] = EVIL
    data["settings"]["metric"] = EVIL
    html = build_report(write_cbs(tmp_path / "evil", data)).html
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(kind="something"), "not a `batchlab cbs` result"),
        (lambda d: d.update(checkpoints=[]), "'checkpoints' is empty"),
        (lambda d: d["checkpoints"][0].pop("step"), "missing field 'checkpoints\\[0\\].step'"),
        (
            lambda d: d["checkpoints"][1]["rungs"][0].update(batch_size="8"),
            "'checkpoints\\[1\\].rungs\\[0\\].batch_size' must be an integer",
        ),
        (lambda d: d["checkpoints"][0]["fit"].update(b_crit_ci=[1.0]), "a \\[low, high\\] pair"),
        (lambda d: d.update(schema_version=99), "newer than this batchlab reads"),
    ],
)
def test_malformed_cbs_json_names_the_field(tmp_path, cbs_data, edit, message):
    data = json.loads(json.dumps(cbs_data))
    edit(data)
    directory = write_cbs(tmp_path / "bad", data)
    with pytest.raises(ReportError, match=message):
        load_cbs(directory)


def test_missing_fit_is_shown_not_fatal(tmp_path, cbs_data):
    data = json.loads(json.dumps(cbs_data))
    for point in data["checkpoints"]:
        point["fit"] = point["prediction"] = None
        point["note"] = "measured: only 2 batch size(s) reached the target; the fit needs 3"
    html = build_report(write_cbs(tmp_path / "nofit", data)).html
    assert "No checkpoint has a fitted B_crit" in html and "the fit needs 3" in html
    assert len(images(html)) == 1
