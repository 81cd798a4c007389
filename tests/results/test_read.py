"""The one results reader: files written before the results/ package still load everywhere.

``fixtures/mnist1d-cnn-schema1.json`` is the default study's ``results.json`` as
batchlab a7d515b wrote it (``benchmarks/study_speed.py --skip-naive``), trimmed to the
best trial's curve per rung. It has no ``search_space`` block and no ``answer``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from batchlab.report import build_report
from batchlab.reproduce import curve_from_results, load_curve
from batchlab.results import (
    RESULTS_JSON,
    STATUSES,
    ResultsError,
    RungResult,
    TrialRecord,
    load_study,
)

FIXTURE = Path(__file__).parent / "fixtures" / "mnist1d-cnn-schema1.json"
BEST_STEPS = {16: 1350, 32: 750, 64: 400, 128: 300, 256: 250, 512: 240, 1024: 264, 2048: 312}


@pytest.fixture
def old_study(tmp_path: Path) -> Path:
    shutil.copy(FIXTURE, tmp_path / RESULTS_JSON)
    return tmp_path


def test_old_results_load_as_the_schema_records(old_study):
    study = load_study(old_study)
    assert {r.batch_size: r.steps_to_target for r in study.rungs} == BEST_STEPS
    rung = study.rungs[0]
    assert isinstance(rung, RungResult) and isinstance(rung.trials[0], TrialRecord)
    assert rung.best is not None and rung.best.steps_to_target == 1350
    assert rung.best.curve is not None and rung.best.seed >= 0
    assert {t.status for r in study.rungs for t in r.trials} <= set(STATUSES)
    # The space comes from the config's explicit table (the file predates search_space).
    assert study.search_space["lr"].low == pytest.approx(1e-2)


def test_old_results_render_in_the_report_with_the_answer(old_study):
    report = build_report(old_study)
    assert "mnist1d-cnn" in report.html and "Answer." in report.html
    assert "Largest data-efficient batch" in report.html


def test_old_results_give_the_findings_curve(old_study):
    curve = load_curve(old_study)
    assert dict(zip(curve.batch_sizes, curve.steps, strict=True)) == BEST_STEPS
    assert all(seed is not None for seed in curve.seeds)
    assert curve.search_space["lr"] == pytest.approx((1e-2, 3.0))
    assert curve_from_results(json.loads(FIXTURE.read_text())) == curve


def test_a_damaged_file_names_the_field(tmp_path):
    data = json.loads(FIXTURE.read_text())
    data["rungs"][2]["batch_size"] = "64"
    (tmp_path / RESULTS_JSON).write_text(json.dumps(data))
    with pytest.raises(ResultsError, match=r"rungs\[2\]\.batch_size.*an integer"):
        load_study(tmp_path)


def test_a_newer_schema_is_refused_with_what_to_do(tmp_path):
    data = json.loads(FIXTURE.read_text())
    data["schema_version"] = 99
    (tmp_path / RESULTS_JSON).write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="upgrade batchlab"):
        load_study(tmp_path)


def test_written_results_record_the_resolved_search_space(tmp_path):
    from batchlab import Study, StudyConfig

    config = StudyConfig.model_validate(
        {
            "name": "nqm-space",
            "optimizer": "momentum",  # no explicit space: the optimizer's defaults
            "workload": {"name": "nqm", "params": {"dim": 100}},
            "ladder": {"batch_sizes": [16, 64, 256]},
            "search": {"trials_per_rung": 2},
            "budget": {"steps": 200},
            "evaluation": {"every": 20},
        }
    )
    Study(config, tmp_path).run()
    written = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert set(written["search_space"]) == set(config.search_space())
    assert set(load_study(tmp_path).search_space) == set(config.search_space())


def test_the_study_the_report_and_the_findings_share_one_analysis(old_study):
    from batchlab.analysis import summarize_ladder
    from batchlab.report._summary import summarize
    from batchlab.reproduce._fits import FIT_SEED, summarize_fit
    from batchlab.results import rung_hparams, rung_lrs, search_floor
    from batchlab.study._collect import analyse

    study = load_study(old_study)
    sizes = [r.batch_size for r in study.rungs]
    steps = [r.steps_to_target for r in study.rungs]
    ladder = summarize_ladder(
        sizes,
        steps,
        rung_lrs(study.rungs),
        hparams=rung_hparams(study.rungs),
        resolutions=[r.resolution_steps for r in study.rungs],
        floors=[search_floor(r, study.search_space) for r in study.rungs],
    )
    assert ladder.fit is not None
    # results.json's analysis block, the report's numbers and the findings' fit.
    assert analyse(list(study.rungs), search_space=study.search_space) == ladder.to_dict()
    report = summarize(study)
    assert (report.fit, report.regimes, report.lr_trend) == (
        ladder.fit,
        ladder.regimes,
        ladder.lr_trend,
    )
    finding = summarize_fit(load_curve(old_study))
    assert finding is not None and finding.fit == summarize_ladder(sizes, steps, seed=FIT_SEED).fit
    # The findings read B_crit off the answer, as the CLI and the report do.
    assert (finding.b_crit, finding.b_crit_model) == (
        ladder.answer.b_crit,
        ladder.answer.b_crit_model,
    )
    assert finding.perfect == tuple(ladder.regimes.perfect)
