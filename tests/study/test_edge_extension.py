"""A rung whose best search point is on an edge of the space refines beyond it.

``[search] edge_extension``: the refinement window on that side reaches that
fraction of the configured (log) range beyond it, clamped to the values the
hyperparameter can take; the edge flag then judges the extended range.
"""

from __future__ import annotations

import copy
import math

import pytest
from pydantic import ValidationError

from batchlab.results import edge_warnings, load_study
from batchlab.study import Study, StudyConfig
from batchlab.study._plan import REFINE_SLOT_BASE
from batchlab.study._space import ParamRange, extended_windows, point_in_window

from .conftest import NQM_STUDY
from .test_nqm_study import independent_best_steps

LOW, HIGH = 0.002, 0.02  # far below the NQM's best learning rates (about 0.05 to 0.2)


def too_low_lr(nqm_study, extension: float) -> StudyConfig:
    nqm_study["search"].update(
        refine=8,
        edge_extension=extension,
        space={"lr": {"low": LOW, "high": HIGH}},
        fixed={"one_minus_momentum": 0.1},
    )
    nqm_study["evaluation"]["resolution"] = 0.0  # exact curves on the coarse grid
    return StudyConfig.model_validate(nqm_study)


@pytest.fixture(scope="module")
def too_low(tmp_path_factory):
    results = {}
    for extension in (0.0, 1.0):
        config = too_low_lr(copy.deepcopy(NQM_STUDY), extension)
        directory = tmp_path_factory.mktemp(f"ext{extension}") / "nqm"
        results[extension] = (config, Study(config, directory).run(), directory)
    return results


def test_refinement_reaches_beyond_the_edge_up_to_the_cap(too_low):
    _, off, _ = too_low[0.0]
    config, on, _ = too_low[1.0]
    cap = HIGH * 10 ** (1.0 * math.log10(HIGH / LOW))  # one whole (log) range beyond
    search_only = independent_best_steps(config)
    beyond = False
    for rung_on, rung_off in zip(on.rungs, off.rungs, strict=True):
        search = [t for t in rung_on.trials if t.slot < REFINE_SLOT_BASE]
        refine = [t for t in rung_on.trials if t.slot >= REFINE_SLOT_BASE]
        assert len(refine) == 8
        assert all(t.extended is None for t in search)
        assert all(LOW <= t.params["lr"] <= HIGH for t in search)
        for t in refine:
            low, high = t.extended["lr"]
            assert low < HIGH and high == pytest.approx(cap)
            assert low <= t.params["lr"] <= high
            assert t.hparams["lr"] == t.params["lr"]
        beyond |= any(t.params["lr"] > HIGH for t in refine)
        # Without the extension refinement stays inside the configured range.
        for t in rung_off.trials:
            assert t.extended is None and LOW <= t.params["lr"] <= HIGH
        # Exact curves: more points never do worse than the search's; here, beyond the
        # edge is where the optimum is.
        assert rung_on.steps_to_target <= search_only[rung_on.batch_size]
        assert rung_on.steps_to_target < rung_off.steps_to_target
    assert beyond


def test_the_edge_flag_judges_the_extended_range(too_low):
    _, off, _ = too_low[0.0]
    _, on, _ = too_low[1.0]
    # Without the extension every rung's best is pinned to the configured top.
    assert [(e.batch_size, e.side, e.extended) for e in off.edges] == [
        (r.batch_size, "high", False) for r in off.rungs
    ]
    assert all(e.high == HIGH for e in off.edges)
    # With it, a rung whose best is bracketed inside the extended window is not flagged;
    # one whose best is still the largest tried is, against the extended range.
    flagged = {e.batch_size: e for e in on.edges}
    assert flagged and len(flagged) < len(on.rungs)
    for rung in on.rungs:
        best = rung.best.params["lr"]
        tried = [t.params["lr"] for t in rung.trials]
        if rung.batch_size in flagged:
            edge = flagged[rung.batch_size]
            assert edge.extended and edge.side == "high" and edge.low == LOW
            assert edge.high > HIGH and best == max(tried)
            assert "even after extending it" in edge.message
        else:
            assert best > HIGH and best < max(tried)  # outside the configured range


def test_extension_survives_results_json_and_reaches_report_and_cli(too_low, tmp_path):
    from batchlab.report import write_report

    _, on, directory = too_low[1.0]
    on.save(tmp_path)
    loaded = load_study(tmp_path)
    for written, read in zip(on.rungs, loaded.rungs, strict=True):
        assert [t.extended for t in read.trials] == [t.extended for t in written.trials]
    # The report and the CLI read their flags through edge_warnings of the loaded study.
    assert edge_warnings(loaded.rungs, loaded.search_space) == on.edges
    written = on.to_dict()["edges"]
    assert written and all(e["extended"] for e in written)
    html = write_report(directory, tmp_path / "report.html").read_text()
    assert "even after extending it beyond the configured range" in html


def test_windows_are_clamped_to_what_the_hyperparameter_can_take():
    lr = ParamRange(low=1e-3, high=1e-1)
    one_minus = ParamRange(low=0.01, high=0.5)
    warmup = ParamRange(low=0.1, high=0.5, scale="linear")
    space = {"lr": lr, "one_minus_momentum": one_minus, "warmup_fraction": warmup}
    center = {"lr": 1e-1, "one_minus_momentum": 0.5, "warmup_fraction": 0.1}
    edges = {"lr": "high", "one_minus_momentum": "high", "warmup_fraction": "low"}
    windows = extended_windows(center, space, 0.125, edges, 2.0)
    # lr: two (log) ranges beyond the top; inside: at least the usual window.
    assert windows["lr"][1] == pytest.approx(1e3)
    assert windows["lr"][0] == pytest.approx(1e-3 * 100 ** (1 - 0.125))
    assert windows["one_minus_momentum"][1] == 1.0  # momentum >= 0
    assert windows["warmup_fraction"][0] == 0.0  # not below 0
    assert windows["warmup_fraction"][1] == pytest.approx(0.1 + 0.125 * 0.4)
    for name, window in windows.items():
        for planned in (space[name].low, space[name].high):
            assert window[0] <= point_in_window(planned, space[name], window) <= window[1]
    # No room beyond: the end of the range is the end of the domain, or the extension is 0.
    at_one = {"one_minus_momentum": ParamRange(low=0.01, high=1.0)}
    assert (
        extended_windows(
            {"one_minus_momentum": 1.0}, at_one, 0.125, {"one_minus_momentum": "high"}, 2.0
        )
        == {}
    )
    assert extended_windows(center, space, 0.125, edges, 0.0) == {}
    # Not on an edge: no extension.
    assert extended_windows(center, space, 0.125, {}, 2.0) == {}


@pytest.mark.parametrize("value", [-0.1, 4.5, float("nan"), float("inf")])
def test_bad_edge_extension_is_named(nqm_study, value):
    nqm_study["search"]["edge_extension"] = value
    with pytest.raises(ValidationError, match="edge_extension"):
        StudyConfig.model_validate(nqm_study)
