"""Results files for report tests: a hand-made one (every trial outcome) and a real nqm study."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

S_MIN = 200.0
B_CRIT = 128.0
BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)

#: A study config the study's own model accepts (momentum, lr and 1 - momentum searched).
HANDMADE_CONFIG: dict[str, Any] = {
    "name": "handmade",
    "optimizer": "momentum",
    "workload": {"name": "nqm", "params": {"dim": 100}},
    "ladder": {"batch_sizes": list(BATCH_SIZES)},
    "search": {
        "sampler": "sobol",
        "trials_per_rung": 8,
        "space": {
            "lr": {"low": 1e-3, "high": 2.0, "scale": "log"},
            "one_minus_momentum": {"low": 1e-3, "high": 1.0, "scale": "log"},
        },
    },
    "budget": {"steps": 4000},
    "evaluation": {"every": 10},
    "seed": 0,
}


def make_results(
    name: str = "handmade",
    *,
    s_min: float = S_MIN,
    b_crit: float = B_CRIT,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    trials: int = 8,
    noise: bool = True,
    in_progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """A results dict in ``StudyResult.to_dict()``'s schema, with S(B) = S_min (1 + B_crit/B).

    Every trial outcome appears (reached, not_reached, beaten, diverged, error with a
    reason and a traceback holding markup); with ``in_progress`` the largest rung has
    trials still running and nothing reached yet.
    """
    rng = np.random.default_rng(seed)
    config = copy.deepcopy(HANDMADE_CONFIG)
    config["name"] = name
    rungs = []
    for index, batch_size in enumerate(batch_sizes):
        best_steps = int(round(s_min * (1 + b_crit / batch_size) / 10) * 10)
        pending = in_progress and index == len(batch_sizes) - 1
        records = []
        for number in range(trials if not pending else trials // 2):
            lr = float(10 ** rng.uniform(-3, math.log10(2.0)))
            omm = float(10 ** rng.uniform(-3, 0))
            status, steps, reason, tb = "not_reached", None, None, None
            if number == 0:
                status, steps = "reached", best_steps
                # The best LR grows with B, and pins to the top of the range at large B.
                lr = min(2.0, 0.01 * batch_size**0.8)
                omm = 0.1
            elif number in (1, 2):
                status, steps = "reached", best_steps + 10 * number * (index + 1)
            elif number == 3:
                status, reason = "diverged", "loss is nan at step 40"
            elif number == 4:
                status, reason = "beaten", "stopped: trial 0 already reached the target"
            elif number == 5:
                status, reason = "error", "RuntimeError: <b>boom</b> & co"
                tb = 'Traceback (most recent call last):\n  File "<x>", line 1\nRuntimeError: <b>boom</b>\n'
            else:
                reason = "budget of 4000 steps exhausted"
            records.append(
                {
                    "number": index * trials + number,
                    "slot": number,
                    "seed": 1000 + number,
                    "params": {"lr": lr, "one_minus_momentum": omm},
                    "hparams": {"lr": lr, "momentum": 1 - omm},
                    "status": status,
                    "steps_to_target": steps,
                    "reason": reason,
                    "wall_time_s": 0.5,
                    "curve": {"steps": [10, 20], "loss": [1.0, 0.5]},
                    "traceback": tb,
                    "retry_of": None,
                }
            )
        best = records[0] if not pending else None
        if pending:
            for record in records:
                if record["status"] == "reached":
                    record["status"], record["steps_to_target"] = "not_reached", None
        rungs.append(
            {
                "batch_size": batch_size,
                "budget_steps": 4000,
                "eval_every": 10,
                "trials_planned": trials,
                "trials_done": len(records),
                "trials_running": 2 if pending else 0,
                "steps_to_target": best["steps_to_target"] if best else None,
                "best_hparams": best["hparams"] if best else None,
                "best_trial": best["number"] if best else None,
                "trials": records,
            }
        )
    history = []
    if noise:
        for step in range(0, 2000, 100):
            b = b_crit * (0.3 + 0.7 * step / 2000)
            history.append({"step": step, "b_simple": b, "b_simple_ci": [0.8 * b, 1.25 * b]})
    return {
        "name": name,
        "config": config,
        "workload": {
            "name": "nqm",
            "description": "noisy quadratic model",
            "params": {"dim": 100, "label": "<i>user param</i>"},
            "train_size": None,
        },
        "target": {"metric": "loss", "value": 0.5, "direction": "min"},
        "rungs": rungs,
        "analysis": None,
        "environment": {
            "batchlab": "0.1.0",
            "torch": "2.13.0+cpu",
            "optuna": "4.0.0",
            "numpy": "2.0.0",
            "python": "3.11.7",
            "platform": "Linux-test",
            "machine": "x86_64",
            "processor": "x86_64",
            "cpu_count": 2,
            "torch_threads": 2,
        },
        "wall_time_s": 12.5,
        "created": "2026-01-01T00:00:00+00:00",
        "noise_scale": {"history": history, "batch_size": 64} if noise else None,
        "schema_version": 1,
        "steps_to_target": {str(r["batch_size"]): r["steps_to_target"] for r in rungs},
    }


def write_results(directory: Path, results: dict[str, Any]) -> Path:
    """``directory/results.json`` holding ``results``; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results, indent=2))
    return directory


@pytest.fixture
def handmade() -> dict[str, Any]:
    return make_results()


@pytest.fixture
def handmade_dir(tmp_path: Path) -> Path:
    return write_results(tmp_path / "handmade", make_results())
