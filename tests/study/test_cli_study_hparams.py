"""The study summary's hyperparameter line: how the tuned values moved, and the closest rule."""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from batchlab.analysis import summarize_ladder
from batchlab.cli import _study
from batchlab.results import RungResult, StudyResult

SIZES = [64, 128, 256, 512]


def result_with(hparams: list[dict[str, float]]) -> StudyResult:
    """A finished study whose rungs reached the target with ``hparams`` tuned."""
    steps = [round(400 * (1 + 200 / b)) for b in SIZES]
    rungs = [
        RungResult(
            batch_size=b,
            budget_steps=5000,
            eval_every=10,
            trials_planned=4,
            trials_done=4,
            trials_running=0,
            steps_to_target=s,
            best_hparams=h,
            best_trial=0,
        )
        for b, s, h in zip(SIZES, steps, hparams, strict=True)
    ]
    analysis = summarize_ladder(SIZES, steps, hparams=hparams, train_size=10_000).to_dict()
    return StudyResult(
        name="adamw",
        config={},
        workload={"name": "shakespeare-char", "train_size": 10_000},
        target={"metric": "loss", "value": 2.0, "direction": "min"},
        rungs=rungs,
        analysis=analysis,
        environment={},
        wall_time_s=1.0,
        created="2026-01-01T00:00:00+00:00",
    )


def printed(result: StudyResult, monkeypatch: pytest.MonkeyPatch) -> str:
    output = io.StringIO()
    monkeypatch.setattr(_study, "console", Console(file=output, width=400))
    _study.print_summary(result)
    return output.getvalue()


def test_summary_says_how_each_searched_hyperparameter_moved_and_the_closest_rule(monkeypatch):
    # lr ∝ √B (square root), β2 = 0.99^(B/64) (half-life), λ ∝ B at η ∝ √B (λ ∝ √B·√B).
    hparams = [
        {"lr": 1e-3 * math.sqrt(b / 64), "beta2": 0.99 ** (b / 64), "weight_decay": 0.1 * b / 64}
        for b in SIZES
    ]
    text = printed(result_with(hparams), monkeypatch)
    assert (
        "Hyperparameters: to go from B=64 to B=512 on this model: "
        "lr x2.83 (closest: square-root rule, off by x1), "
        "beta2 0.99 -> 0.9227 (closest: half-life rule, off by x1), "
        "weight_decay x8 (closest: timescale rule, off by x2)"
    ) in text


def test_only_searched_hyperparameters_get_a_part_of_the_line(monkeypatch):
    hparams = [{"lr": 1e-3 * b / 64, "beta2": 0.95, "weight_decay": 0.1} for b in SIZES]
    text = printed(result_with(hparams), monkeypatch)
    line = next(line for line in text.splitlines() if line.startswith("Hyperparameters:"))
    assert "lr x8 (closest: linear rule, off by x1)" in line
    assert "beta2" not in line and "weight_decay" not in line


def test_no_line_without_tuned_hyperparameters(monkeypatch):
    result = result_with([{"lr": 0.1}] * len(SIZES))
    assert "Hyperparameters:" not in printed(result, monkeypatch)
