"""benchmarks/transfer_doc.py: docs/transfer.md's measured run, rendered from results.json.

A tiny real study (linreg, three rungs, the linear and square-root rules on two seeds)
stands in for examples/shakespeare-adamw.toml; the rendered section must show the
numbers its results.json holds, and only the text between the markers may change.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from batchlab.reproduce import fmt
from batchlab.results import load_study
from batchlab.study import Study, StudyConfig

from .study.conftest import LINREG_STUDY

TRANSFER_DOC = Path(__file__).resolve().parents[1] / "benchmarks" / "transfer_doc.py"
COMMAND = "python benchmarks/transfer_doc.py --out runs/linreg-test"


@pytest.fixture(scope="module")
def transfer_doc():
    spec = importlib.util.spec_from_file_location("transfer_doc", TRANSFER_DOC)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    data = copy.deepcopy(LINREG_STUDY)
    data["transfer"] = {"rules": ["linear", "sqrt"], "seeds": 2}
    out = tmp_path_factory.mktemp("transfer_doc") / "study"
    # One torch thread: with more, OpenMP's spinning on a busy machine costs ten times as long.
    Study(StudyConfig.model_validate(data), out).run(threads=1)
    return out


@pytest.fixture(scope="module")
def raw(study_dir):
    return json.loads((study_dir / "results.json").read_text())


@pytest.fixture(scope="module")
def section(transfer_doc, study_dir):
    return transfer_doc.render_measured_run(load_study(study_dir), COMMAND)


def _row(section: str, batch_size: int, table: str = "Per rung:") -> str:
    """The row of ``batch_size`` in the first table after the line starting with ``table``."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(table))
    return next(line for line in lines[start:] if line.startswith(f"| {batch_size} |"))


def _with_lrs(study, lrs):
    """``study`` with each rung's tuned learning rate replaced."""
    return dataclasses.replace(
        study,
        rungs=tuple(
            dataclasses.replace(r, best_hparams={**r.best_hparams, "lr": lr})
            for r, lr in zip(study.rungs, lrs, strict=True)
        ),
    )


def test_analysis_is_the_block_results_json_holds(transfer_doc, study_dir, raw):
    analysis, _ = transfer_doc.ladder_analysis(load_study(study_dir))
    assert json.loads(json.dumps(analysis)) == raw["analysis"]


def test_section_shows_each_rungs_steps_and_tuned_lr_from_results_json(section, raw):
    for rung in raw["rungs"]:
        row = _row(section, rung["batch_size"])
        assert row.startswith(f"| {rung['batch_size']} | {rung['steps_to_target']} |")
        assert f" {rung['best_hparams']['lr']:.4g} " in row


def test_section_shows_the_command_environment_and_times(section, raw):
    flat = " ".join(section.split())
    assert f"`{COMMAND}`" in flat
    env = raw["environment"]
    for value in (env["batchlab"], env["torch"], env["python"], f"{env['cpu_count']} CPU cores"):
        assert value in flat
    assert f"wall time {round(raw['wall_time_s']):,} s" in flat
    assert f"trial time {round(raw['trial_time_s']):,} s" in flat
    done = sum(r["trials_done"] for r in raw["rungs"])
    assert f"{done} of {done} planned trials finished" in flat


def test_section_shows_b_crit_and_its_interval_from_analysis_fit(section, raw):
    fit = raw["analysis"]["fit"]
    low, high = fit["b_crit_ci"]
    flat = " ".join(section.split())
    assert f"B_crit = {fmt(fit['b_crit'])} (95% interval {fmt(low)} to {fmt(high)})" in flat
    assert f"S_min = {fmt(fit['s_min'])} steps" in flat


def test_section_shows_each_rules_steps_and_median_ratio(section, raw):
    costs = raw["analysis"]["rule_costs"]
    assert [c["rule"] for c in costs] == ["linear", "sqrt"]
    median_row = next(line for line in section.splitlines() if line.startswith("| median cost"))
    cells = [cell.strip() for cell in median_row.strip("|").split("|")][2:]
    for cell, c in zip(cells, costs, strict=True):
        assert cell.startswith(f"×{c['median_ratio']:.2f}")
        # A rung the rule never reached has no ratio: the median says it left it out.
        assert ("not reached" in cell) == bool(c["unreached"])
    for c in costs:
        for b, steps, ratio in zip(c["batch_sizes"], c["steps"], c["ratios"], strict=True):
            cell = "not reached" if steps is None else f"{steps} (×{ratio:.2f})"
            assert cell in _row(section, b, table="Rungs run by rule")


def test_section_shows_the_transfer_line_and_each_rules_error(transfer_doc, study_dir):
    # Tuned lr ∝ √B exactly: exponent 0.50 with no width, the square-root rule exact.
    study = load_study(study_dir)
    study = _with_lrs(study, [0.01 * (r.batch_size / 4) ** 0.5 for r in study.rungs])
    analysis, _ = transfer_doc.ladder_analysis(study)
    trends = analysis["hparam_trends"]
    flat = " ".join(transfer_doc.render_measured_run(study, COMMAND).split())
    assert " ".join(trends["transfer"].split()) in flat
    assert "| lr | η ∝ B^0.50 (0.50, 0.50) |" in flat
    assert "square root ×1.00 (yes)" in flat and "linear ×" in flat
    assert flat.count("| square root |") == 1  # what the slope reads as


def test_section_says_when_no_tuned_value_moved(transfer_doc, study_dir):
    study = load_study(study_dir)
    study = _with_lrs(study, [0.1] * len(study.rungs))
    flat = " ".join(transfer_doc.render_measured_run(study, COMMAND).split())
    assert "No tuned hyperparameter moved from B = 4 to B = 64" in flat


def test_section_without_rule_runs_says_so(transfer_doc, study_dir):
    study = load_study(study_dir)
    tuned_only = dataclasses.replace(
        study,
        rungs=tuple(
            dataclasses.replace(r, trials=[t for t in r.trials if t.rule is None])
            for r in study.rungs
        ),
    )
    section = transfer_doc.render_measured_run(tuned_only, COMMAND)
    assert "No rungs were run by rule" in section and "median cost" not in section
    assert "B_crit = " in section


def test_section_without_a_fit_says_why(transfer_doc, study_dir):
    study = load_study(study_dir)
    two_rungs = dataclasses.replace(study, rungs=study.rungs[:2])
    flat = " ".join(transfer_doc.render_measured_run(two_rungs, COMMAND).split())
    assert "No fit of S(B) = S_min (1 + B_crit/B): Analysis impossible: 2 rung(s)" in flat


def test_section_with_a_failed_fit_shows_the_error(transfer_doc, study_dir, monkeypatch):
    monkeypatch.setattr(
        transfer_doc, "ladder_analysis", lambda study: ({"error": "no bend found"}, None)
    )
    section = transfer_doc.render_measured_run(load_study(study_dir), COMMAND)
    assert "it failed (no bend found)" in section
    assert "No rungs were run by rule" in section


def test_replace_between_markers_changes_only_the_text_between_them(transfer_doc):
    start, end = transfer_doc.START, transfer_doc.END
    text = f"# Title\n\nbefore {start}\nold 1\nold 2\n{end} after\n\nlast line\n"
    replaced = transfer_doc.replace_between_markers(text, "new section\n")
    assert replaced == f"# Title\n\nbefore {start}\nnew section\n{end} after\n\nlast line\n"
    assert transfer_doc.replace_between_markers(replaced, "new section") == replaced


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all\n",
        "<!-- measured-run:start -->\nonly the start\n",
        "<!-- measured-run:end -->\nwrong order\n<!-- measured-run:start -->\n",
        "<!-- measured-run:start -->\n<!-- measured-run:start -->\n<!-- measured-run:end -->\n",
    ],
)
def test_replace_between_markers_refuses_text_without_one_pair_in_order(transfer_doc, text):
    with pytest.raises(ValueError, match="measured-run"):
        transfer_doc.replace_between_markers(text, "new")


def test_main_rewrites_only_the_section_of_the_doc(transfer_doc, study_dir, tmp_path, capsys):
    doc = tmp_path / "transfer.md"
    before, after = "# Doc\n\n### One measured run\n\n", "\nHow to read it.\n"
    doc.write_text(f"{before}{transfer_doc.START}\nold\n{transfer_doc.END}\n{after}")
    transfer_doc.main(["--out", str(study_dir), "--doc", str(doc)])
    text = doc.read_text()
    assert text.startswith(f"{before}{transfer_doc.START}\n<!-- generated by")
    assert text.endswith(f"{transfer_doc.END}\n{after}")
    assert "old\n" not in text
    command = f"python benchmarks/transfer_doc.py --out {study_dir} --doc {doc}"
    assert f"`{command}`" in " ".join(text.split())
    assert "| median cost |" in capsys.readouterr().out
