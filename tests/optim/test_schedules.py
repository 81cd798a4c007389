"""warmup_schedule multipliers against their closed forms."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from batchlab.optim import warmup_schedule

BASE_LR = 0.5
WARMUP, TOTAL = 4, 20  # decay phase: steps 4..20, 16 steps long


def multipliers(last_step, **kwargs):
    """The LR multiplier after t = 0, 1, ..., last_step scheduler steps."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = warmup_schedule(optimizer, **kwargs)
    values = []
    for _ in range(last_step + 1):
        values.append(optimizer.param_groups[0]["lr"] / BASE_LR)
        optimizer.step()
        scheduler.step()
    return values


def cosine(p, f=0.0):
    return f + (1 - f) * 0.5 * (1 + math.cos(math.pi * p))


@pytest.mark.parametrize("decay", ["cosine", "linear", "poly", "step", "constant"])
def test_warmup_is_linear_from_one_step_to_the_base_lr_like_the_trainer(decay):
    values = multipliers(WARMUP, warmup_steps=WARMUP, total_steps=TOTAL, decay=decay)
    # The trainer's own warmup: min(1, (t + 1) / warmup).
    assert values == pytest.approx([min(1.0, (t + 1) / WARMUP) for t in range(WARMUP + 1)])


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # t: multiplier, with p = (t - 4) / 16 after warmup.
        ({"decay": "cosine"}, {0: 0.25, 4: 1.0, 9: cosine(5 / 16), 12: 0.5, 20: 0.0, 25: 0.0}),
        (
            {"decay": "cosine", "final_lr_fraction": 0.1},
            {4: 1.0, 12: 0.55, 16: cosine(0.75, 0.1), 20: 0.1, 30: 0.1},
        ),
        ({"decay": "linear"}, {3: 1.0, 8: 0.75, 12: 0.5, 20: 0.0, 21: 0.0}),
        ({"decay": "linear", "final_lr_fraction": 0.2}, {12: 0.6, 20: 0.2}),
        ({"decay": "poly"}, {4: 1.0, 8: 0.75**2, 12: 0.25, 20: 0.0}),
        ({"decay": "poly", "power": 3.0}, {12: 0.125, 16: 0.25**3}),
        ({"decay": "poly", "final_lr_fraction": 0.5}, {12: 0.625, 20: 0.5}),
        (
            {"decay": "step", "milestones": [10, 15], "gamma": 0.5},
            {4: 1.0, 9: 1.0, 10: 0.5, 14: 0.5, 15: 0.25, 30: 0.25},
        ),
        (
            {"decay": "step", "milestones": [10, 15], "gamma": 0.5, "final_lr_fraction": 0.3},
            {10: 0.5, 15: 0.3},
        ),
        # Default milestones: 4 + round(16 * k) for k = 1/3, 2/3, 8/9 -> 9, 15, 18.
        ({"decay": "step"}, {8: 1.0, 9: 0.1, 14: 0.1, 15: 0.01, 17: 0.01, 18: 0.001}),
        ({"decay": "constant"}, {0: 0.25, 4: 1.0, 20: 1.0, 30: 1.0}),
    ],
)
def test_schedule_multipliers_equal_closed_forms(kwargs, expected):
    values = multipliers(max(expected), warmup_steps=WARMUP, total_steps=TOTAL, **kwargs)
    for step, multiplier in expected.items():
        assert values[step] == pytest.approx(multiplier, rel=1e-12, abs=1e-15), step


def test_zero_warmup_starts_at_the_base_lr():
    values = multipliers(10, warmup_steps=0, total_steps=10, decay="linear")
    assert values == pytest.approx([1 - t / 10 for t in range(11)])


def test_warmup_over_the_whole_run_then_final_value():
    assert multipliers(5, warmup_steps=4, total_steps=4, decay="cosine") == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 0.0, 0.0]
    )


def test_schedule_state_dict_round_trips_and_pickles():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    scheduler = warmup_schedule(optimizer, WARMUP, TOTAL, decay="poly", power=3.0)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    fresh_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    fresh = warmup_schedule(fresh_optimizer, WARMUP, TOTAL, decay="poly", power=3.0)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 7
    assert fresh.get_last_lr() == scheduler.get_last_lr()
    assert pickle.loads(pickle.dumps(scheduler)).lr_lambdas[0](12) == pytest.approx(0.125)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"warmup_steps": 21}, "warmup_steps"),
        ({"warmup_steps": 2.5}, "warmup_steps"),
        ({"total_steps": 0}, "total_steps"),
        ({"decay": "exponential"}, "decay"),
        ({"decay": "poly", "power": 0.0}, "power"),
        ({"decay": "step", "gamma": 0.0}, "gamma"),
        ({"decay": "step", "gamma": 2.0}, "gamma"),
        ({"decay": "step", "milestones": [2, 10]}, "milestones"),
        ({"decay": "step", "milestones": [10, 10]}, "milestones"),
        ({"decay": "step", "milestones": [10, 30]}, "milestones"),
        ({"decay": "cosine", "final_lr_fraction": 1.5}, "final_lr_fraction"),
        ({"decay": "cosine", "power": 2.0}, "power"),
        ({"decay": "linear", "milestones": [10]}, "milestones"),
        ({"decay": "constant", "final_lr_fraction": 0.1}, "final_lr_fraction"),
    ],
)
def test_warmup_schedule_rejects_invalid_arguments_naming_them(kwargs, name):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    arguments = {"warmup_steps": WARMUP, "total_steps": TOTAL, **kwargs}
    with pytest.raises(ValueError, match=name):
        warmup_schedule(optimizer, **arguments)
