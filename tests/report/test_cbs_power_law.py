"""The cbs report's power law: B_crit against the examples seen, fitted and drawn.

Hand-built ``cbs.json``: B_crit = 3 · D^0.5 exactly at four checkpoints, so the fitted
exponent is 0.5 to rounding; its interval is the measurement bootstrap over each
point's ±10% (log) interval, which must contain 0.5 and be the one
:func:`batchlab.analysis.fit_power_law` gives on the same points.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from batchlab.analysis import fit_power_law
from batchlab.report import build_report
from batchlab.report._cbs import cbs_power_law, parse_cbs, power_law_text

IMAGE = re.compile(r'<img[^>]+src="data:image/png;base64,')
EXAMPLES = [0, 1_000, 4_000, 16_000, 64_000]


def b_crit(d: float) -> float:
    return 3.0 * d**0.5


def point(step: int, examples: int, *, ci: list | None) -> dict:
    fit = None
    if examples > 0:
        fit = {"s_min": 10.0, "b_crit": b_crit(examples), "b_crit_ci": ci}
    return {
        "step": step,
        "examples_seen": examples,
        "value": 1.0,
        "target": {"metric": "loss", "value": 0.8, "direction": "min"},
        "rungs": [{"batch_size": 4, "steps_to_target": 10}],
        "fit": fit,
        "note": None,
    }


def cbs_json(*, unbounded_last: bool = False, schedule: dict | None = None) -> dict:
    points = []
    for i, d in enumerate(EXAMPLES):
        ci = [b_crit(d) / 1.1, b_crit(d) * 1.1] if d else None
        if unbounded_last and i == len(EXAMPLES) - 1:
            ci = [b_crit(d) / 1.1, None]
        points.append(point(10 * i, d, ci=ci))
    data = {
        "kind": "batchlab-cbs",
        "schema_version": 1,
        "workload": {"name": "linreg", "params": {}},
        "optimizer": "sgd",
        "settings": {"metric": "loss"},
        "checkpoints": points,
    }
    if schedule is not None:
        data["schedule"] = schedule
    return data


def expected_text(examples: list[int]) -> str:
    ds = [d for d in examples if d > 0]
    fit = fit_power_law(
        ds, [b_crit(d) for d in ds], y_ci=[(b_crit(d) / 1.1, b_crit(d) * 1.1) for d in ds],
        n_bootstrap=2000, seed=0,
    )  # fmt: skip
    return power_law_text(fit)


def test_power_law_is_fitted_on_the_checkpoints_with_examples_seen():
    law = cbs_power_law(parse_cbs(cbs_json()))
    assert law is not None
    assert law.fit.exponent == pytest.approx(0.5, abs=1e-9)
    assert law.fit.x == tuple(float(d) for d in EXAMPLES[1:])  # D = 0 cannot be on a log axis
    low, high = law.fit.exponent_ci
    assert low < 0.5 < high
    assert law.text == expected_text(EXAMPLES)
    assert law.text.startswith("B_crit ∝ D^k, k = 0.5 [")
    assert law.left_out == []


def test_report_shows_the_figure_and_the_exponent(tmp_path: Path):
    directory = tmp_path / "cbs"
    directory.mkdir()
    (directory / "cbs.json").write_text(json.dumps(cbs_json()))
    html = build_report(directory).html
    assert 'class="power-law"' in html
    assert f"Power law over 4 checkpoints: {expected_text(EXAMPLES)}." in html
    assert len(IMAGE.findall(html)) == 2  # the B_crit/S(B) figure and the power law
    assert "Schedule assumed: constant LR" in html


def test_unbounded_points_are_left_out_and_named(tmp_path: Path):
    law = cbs_power_law(parse_cbs(cbs_json(unbounded_last=True)))
    assert law is not None and law.left_out == [40]
    assert law.text == expected_text(EXAMPLES[:-1])
    directory = tmp_path / "cbs"
    directory.mkdir()
    (directory / "cbs.json").write_text(json.dumps(cbs_json(unbounded_last=True)))
    assert "left out (unbounded interval): steps 40" in build_report(directory).html


def test_one_usable_checkpoint_has_no_power_law(tmp_path: Path):
    data = cbs_json()
    data["checkpoints"] = data["checkpoints"][:2]
    assert cbs_power_law(parse_cbs(data)) is None
    directory = tmp_path / "cbs"
    directory.mkdir()
    (directory / "cbs.json").write_text(json.dumps(data))
    assert 'class="power-law"' not in build_report(directory).html


def test_the_schedule_is_shown():
    schedule = {"name": "wsd", "warmup_steps": 5, "stable_end": 80,
                "cooldown": {"fraction": 0.2, "examples": None, "decay": "linear"}}  # fmt: skip
    data = parse_cbs(cbs_json(schedule=schedule))
    assert data.schedule == schedule
    from batchlab.report._cbs import cbs_view

    assert "linear cooldown over 20% of each branch" in cbs_view(data).schedule
