"""Critical batch size under a warmup-stable-decay schedule (branch, cool down, measure).

The LR sequences are checked against the closed form of the WSD schedule
(:func:`batchlab.optim.wsd_multiplier`): the base run's warmup, and each branch's
cooldown, step by step. Everything here is deterministic (exact equality of LRs),
so no statistical tolerance is involved.
"""

from __future__ import annotations

import json
import math

import pytest

import batchlab.cbs._branch as branch_module
import batchlab.cbs._checkpoints as checkpoint_module
from batchlab.cbs import (
    Cooldown,
    describe_schedule,
    improvement_target,
    linreg_cooldown_excess_loss,
    measure_critical_batch,
    run_branch,
    train_base_run,
)
from batchlab.workloads import get_workload

SMALL = {
    "optimizer": "sgd",
    "hparams": {"lr": 0.1},
    "base_batch_size": 4,
    "lr_rule": "none",
    "improvement_fraction": 0.3,
    "max_steps": 40,
    "noise_batch_size": 0,
    "n_bootstrap": 0,
}


def _recording(monkeypatch, module):
    calls: list[float] = []
    original = module.set_lr

    def record(opt, lr):
        calls.append(lr)
        original(opt, lr)

    monkeypatch.setattr(module, "set_lr", record)
    return calls


def test_cooldown_steps_and_lrs_follow_the_closed_form():
    cooldown = Cooldown(fraction=0.2)
    assert cooldown.steps(40, 8) == 10  # 10 / (40 + 10) = 20%
    lrs = cooldown.lrs(0.5, 40, 8)
    assert lrs == pytest.approx([0.5 * (1 - j / 10) for j in range(10)])
    cosine = Cooldown(examples=50, decay="cosine")
    assert cosine.steps(7, 8) == 7  # ceil(50 / 8)
    assert cosine.lrs(1.0, 7, 8) == pytest.approx(
        [0.5 * (1 + math.cos(math.pi * j / 7)) for j in range(7)]
    )
    assert Cooldown(fraction=0.5).steps(0, 4) == 0


def test_branch_cooldown_applies_the_schedule_per_step(monkeypatch):
    linreg = get_workload("linreg", {"dim": 8})
    (point,) = train_base_run(linreg, [5], batch_size=4, optimizer="sgd", hparams={"lr": 0.1})
    calls = _recording(monkeypatch, branch_module)
    cooldown = Cooldown(fraction=0.25, decay="linear")
    never = improvement_target(point.metrics["excess_loss"], "min", metric="excess_loss",
                               delta=10.0 * point.metrics["excess_loss"])  # fmt: skip
    result = run_branch(
        linreg, point, batch_size=8, lr=0.2, target=never, eval_steps=[3, 6],
        cooldown=cooldown,
    )  # fmt: skip
    # Resuming sets the branch LR once; then at t = 3 (k = 1) and t = 6 (k = 2) each
    # cooldown step runs at 0.2 * (1 - j / k).
    assert calls == pytest.approx([0.2, 0.2, 0.2, 0.1])
    assert result.steps == (4, 8)  # t + k: the cooldown counts
    assert result.status == "not_reached"


def test_wsd_base_run_warms_up_then_stays_at_the_peak(monkeypatch):
    calls = _recording(monkeypatch, checkpoint_module)
    linreg = get_workload("linreg", {"dim": 8})
    result = measure_critical_batch(
        linreg, [6], [4, 8, 16], **SMALL, exact=False, schedule="wsd", warmup_steps=4,
        total_steps=100, cooldown_fraction=0.2,
    )  # fmt: skip
    assert calls == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    schedule = result.settings["schedule"]
    assert schedule["name"] == "wsd" and schedule["stable_end"] == 80
    assert schedule["cooldown"] == {"fraction": 0.2, "examples": None, "decay": "linear"}
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["schedule"] == schedule
    assert all(r.exact_steps is None for c in result.checkpoints for r in c.rungs)
    assert "linear cooldown over 20% of each branch" in result.describe_schedule()


def test_constant_schedule_is_recorded_and_described():
    linreg = get_workload("linreg", {"dim": 8})
    result = measure_critical_batch(linreg, [0], [4, 8, 16], **SMALL, exact=False)
    assert result.schedule == {"name": "constant"}
    assert result.to_dict()["schedule"] == {"name": "constant"}
    assert describe_schedule(None).startswith("constant LR")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "cosine"}, "schedule must be one of constant, wsd"),
        ({"cooldown_fraction": 0.2}, "cooldown_fraction applies to schedule='wsd'"),
        ({"warmup_steps": 3}, "warmup_steps applies to schedule='wsd'"),
        ({"schedule": "wsd", "cooldown_fraction": 1.5}, "cooldown_fraction must be in"),
        ({"schedule": "wsd", "cooldown_examples": 0}, "cooldown_examples must be a positive"),
        (
            {"schedule": "wsd", "cooldown_fraction": 0.2, "cooldown_examples": 8},
            "exactly one of cooldown_fraction and cooldown_examples",
        ),
        ({"schedule": "wsd", "cooldown_fraction": 0.2, "cooldown_decay": "step"},
         "cooldown_decay must be one of"),
        ({"schedule": "wsd", "cooldown_decay": "cosine"}, "cooldown_decay needs"),
        ({"schedule": "wsd", "warmup_steps": 5}, "step 0 is in the warmup phase"),
        ({"schedule": "wsd", "checkpoints": [90], "total_steps": 100},
         "step 90 is in the decay phase"),
        ({"schedule": "wsd", "decay_fraction": 1.0}, "decay_fraction must be in"),
    ],
)  # fmt: skip
def test_bad_schedule_options_name_the_option(kwargs, message):
    linreg = get_workload("linreg", {"dim": 4})
    args = {"checkpoints": [0], "batch_sizes": [8, 16, 32], "max_steps": 5, **kwargs}
    with pytest.raises(ValueError, match=message):
        measure_critical_batch(linreg, **args)


def test_given_checkpoints_outside_the_stable_phase_are_refused():
    linreg = get_workload("linreg", {"dim": 4})
    points = train_base_run(linreg, [2, 8], batch_size=4, optimizer="sgd", hparams={"lr": 0.1})
    with pytest.raises(ValueError, match="step 2 is in the warmup phase"):
        measure_critical_batch(linreg, points, [4, 8, 16], schedule="wsd", warmup_steps=4)


def test_exact_linreg_cooldown_follows_the_lr_sequence():
    # d = 1, σ = 0: each SGD step multiplies E[r²] by (1 − ηλ)² + 2η²λ²/B (Isserlis:
    # E[x⁴] = 3λ², so the minibatch-gradient variance is 2λ²r²/B), at that step's η.
    lam, r0, batch, lr = 0.5, 2.0, 4, 0.4
    cooldown = Cooldown(fraction=0.5, decay="cosine")
    values = linreg_cooldown_excess_loss(
        [[lam]], [r0], 0.0, lr=lr, batch_size=batch, eval_steps=[0, 3, 6], cooldown=cooldown
    )
    for t, value in zip([0, 3, 6], values, strict=True):
        m = r0**2
        for eta in [lr] * t + cooldown.lrs(lr, t, batch):
            m *= (1 - eta * lam) ** 2 + 2 * eta**2 * lam**2 / batch
        assert value == pytest.approx(0.5 * lam * m, rel=1e-12)
    assert len(cooldown.lrs(lr, 6, batch)) == 6


def test_linreg_wsd_branching_matches_the_exact_s_of_b():
    # As tests/cbs/test_measure.py (20% acceptance; steps within 20% or one step), with
    # every branch read after a linear cooldown over 20% of its steps. Seed sweep 0-4
    # (4 repeats): measured/exact B_crit in [0.90, 1.00], steps within 5%; ~4 s.
    linreg = get_workload("linreg", {"dim": 64, "decay": 0.5})
    result = measure_critical_batch(
        linreg, [30], [4, 16, 64, 256, 1024], optimizer="sgd", hparams={"lr": 0.05},
        base_batch_size=16, lr_rule="sqrt", improvement_fraction=0.8, max_steps=2000,
        eval_resolution=0.05, repeats=4, noise_batch_size=0, n_bootstrap=200,
        schedule="wsd", warmup_steps=10, cooldown_fraction=0.2,
    )  # fmt: skip
    (c,) = result.checkpoints
    for rung in c.rungs:
        measured, exact = rung.steps_to_target, rung.exact_steps_to_target
        assert measured is not None and exact is not None, rung.batch_size
        assert abs(measured - exact) <= max(1, 0.2 * exact), rung.batch_size
    assert c.fit is not None and c.exact_fit is not None, c.note
    assert c.fit.b_crit == pytest.approx(c.exact_fit.b_crit, rel=0.2)
