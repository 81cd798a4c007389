"""``BatchSizeSchedule``: the growth rule, the LR rule exactly, and B -> fraction * B_simple."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

import batchlab as bl
from batchlab._seeding import make_generator
from batchlab.optim import lr_multiplier, scale_lr, warmup_schedule
from batchlab.training._batch_size_schedule import next_batch_size
from batchlab.workloads import get_workload


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny steps: threads only add contention
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class FakeTracker:
    """A tracker whose estimate the test sets."""

    def __init__(self, b_simple: float = math.nan, n: int = 100) -> None:
        self.b_simple, self.n = b_simple, n


RULE = {"micro_batch_size": 8, "base_accumulation": 2, "fraction": 0.5}


@pytest.mark.parametrize(
    ("current", "b_simple", "growth", "cap", "expected"),
    [
        (16, 40.0, "pow2", None, 16),  # 0.5 * 40 = 20 < 32: not yet
        (16, 64.0, "pow2", None, 32),  # exactly 32
        (16, 300.0, "pow2", None, 128),  # largest 16 * 2^j <= 150
        (16, 300.0, "pow2", 100, 64),  # capped, still a power of two
        (16, 300.0, "multiple", None, 144),  # largest multiple of 8 <= 150
        (16, 300.0, "multiple", 100, 96),
        (128, 100.0, "pow2", None, 128),  # never shrinks
        (16, math.nan, "pow2", None, 16),
        (16, -5.0, "multiple", None, 16),  # a negative estimate (|G|^2 < 0) changes nothing
        (16, math.inf, "multiple", 256, 16),
    ],
)
def test_next_batch_size(current, b_simple, growth, cap, expected):
    assert next_batch_size(current, b_simple, growth=growth, max_batch_size=cap, **RULE) == expected


@pytest.mark.parametrize("rule", ["linear", "sqrt", "none"])
def test_lr_follows_the_rule_exactly(rule):
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD([{"params": [model.weight], "lr": 0.1},
                           {"params": [model.bias], "lr": 0.02}])  # fmt: skip
    tracker = FakeTracker()
    sched = bl.BatchSizeSchedule(tracker, **RULE, lr_rule=rule, optimizer=opt, update_every=1,
                                 growth="multiple")  # fmt: skip
    sizes = []
    for b_simple in (10, 80, 80, 200, 150, 1000):
        tracker.b_simple = b_simple
        sched.step()
        sizes.append(sched.batch_size)
        factor = scale_lr(1.0, 16, sched.batch_size, rule)
        assert sched.lr_factor == pytest.approx(factor, rel=1e-15)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * factor, rel=1e-12)
        assert opt.param_groups[1]["lr"] == pytest.approx(0.02 * factor, rel=1e-12)
    assert sizes == [16, 40, 40, 96, 96, 496]
    assert [c.batch_size for c in sched.history] == [40, 96, 496]
    assert sched.accumulation_steps == 62
    # Each step used the batch size it started with: 16, 16 (-> 40), 40, 40 (-> 96), 96, 96.
    assert sched.examples_seen == 16 + 16 + 40 + 40 + 96 + 96


def test_an_lr_scheduler_keeps_the_rule():
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    warmup = warmup_schedule(opt, warmup_steps=10, total_steps=100, decay="constant")
    warmup_multiplier = lr_multiplier(10, 100, "constant")
    tracker = FakeTracker(b_simple=128.0)
    sched = bl.BatchSizeSchedule(tracker, **RULE, lr_rule="linear", optimizer=opt,
                                 lr_scheduler=warmup, update_every=5)  # fmt: skip
    for step in range(1, 21):
        opt.step()
        warmup.step()
        sched.step()
        multiplier = warmup_multiplier(step)
        if step >= 5:
            assert sched.batch_size == 64
        expected = 0.1 * multiplier * (4.0 if step >= 5 else 1.0)
        # The schedule's change applies at once; the scheduler's next step keeps it.
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12), step


def test_updates_wait_for_min_steps_and_update_every():
    tracker = FakeTracker(b_simple=1000.0, n=0)
    sched = bl.BatchSizeSchedule(tracker, **RULE, update_every=4, min_steps=10)
    changed = []
    for step in range(1, 17):
        tracker.n = step
        changed.append(sched.step())
    assert [i + 1 for i, c in enumerate(changed) if c] == [12]  # first multiple of 4 with n >= 10


def test_state_dict_round_trip():
    tracker = FakeTracker(b_simple=100.0)
    sched = bl.BatchSizeSchedule(tracker, **RULE, update_every=1)
    for _ in range(3):
        sched.step()
    other = bl.BatchSizeSchedule(FakeTracker(), **RULE)
    other.load_state_dict(sched.state_dict())
    assert (other.batch_size, other.steps, other.examples_seen) == (32, 3, 16 + 32 + 32)
    assert other.history == sched.history


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_accumulation": 1}, "base_accumulation must be an integer >= 2"),
        ({"micro_batch_size": 0}, "micro_batch_size must be an integer >= 1"),
        ({"max_batch_size": 8}, "below the starting batch size"),
        ({"fraction": 0.0}, "fraction must be a positive number"),
        ({"growth": "fast"}, "growth must be one of"),
        ({"lr_rule": "cubic"}, "lr_rule must be one of"),
        ({"update_every": 0}, "update_every must be an integer >= 1"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bl.BatchSizeSchedule(FakeTracker(), **{**RULE, **kwargs})


def test_not_a_tracker_is_a_type_error():
    with pytest.raises(TypeError, match="NoiseScaleTracker"):
        bl.BatchSizeSchedule(object(), micro_batch_size=8)  # type: ignore[arg-type]


def accumulate(workload, model, stream, k):
    for _ in range(k):
        (workload.loss_fn(model, next(stream)) / k).backward()


def test_schedule_converges_to_fraction_of_the_closed_form_b_simple():
    """At fixed weights (lr = 0) linreg's B_simple is a known constant; B -> 0.5 * B_simple.

    The schedule takes the largest multiple of the micro-batch below 0.5 * B̂ (monotone,
    so the largest over the updates); the tolerance is the tracker's own relative
    interval half-width at the updates plus one micro-batch.
    """
    linreg = get_workload("linreg", {"dim": 16})
    model = linreg.build_model(0)
    with torch.no_grad():  # near the optimum, where |G| is small and B_simple large
        model.weight.copy_((linreg.w_star * 0.95).float().reshape(1, -1))
    exact = linreg.noise_scale(model).b_simple
    assert 100 < exact < 1000
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    micro = 8
    tracker = bl.NoiseScaleTracker(model, micro_batch_size=micro)
    sched = bl.BatchSizeSchedule(tracker, micro_batch_size=micro, base_accumulation=2,
                                 fraction=0.5, growth="multiple", optimizer=opt,
                                 update_every=10, min_steps=40)  # fmt: skip
    stream = linreg.train_batches(micro, make_generator(0))
    widths = []
    for step in range(1, 201):
        accumulate(linreg, model, stream, sched.accumulation_steps)
        opt.step()
        tracker.step()
        sched.step()
        opt.zero_grad()
        if step >= 40 and step % 10 == 0:
            low, high = tracker.b_simple_ci
            widths.append((high - low) / 2 / tracker.b_simple)
    tracker.remove()
    want = 0.5 * exact
    slack = max(widths) * want + micro
    assert abs(sched.batch_size - want) <= slack, (sched.batch_size, want, slack)
    assert sched.batch_size % micro == 0 and sched.history


def test_training_grows_the_batch_monotonically_and_within_the_cap():
    linreg = get_workload("linreg", {"dim": 16})
    model = linreg.build_model(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracker = bl.NoiseScaleTracker(model, micro_batch_size=4, ema_decay=0.9)
    sched = bl.BatchSizeSchedule(tracker, micro_batch_size=4, base_accumulation=2,
                                 max_batch_size=64, optimizer=opt, lr_rule="sqrt")  # fmt: skip
    stream = linreg.train_batches(4, make_generator(1))
    for _ in range(300):
        accumulate(linreg, model, stream, sched.accumulation_steps)
        opt.step()
        tracker.step()
        sched.step()
        opt.zero_grad()
    tracker.remove()
    sizes = [8] + [c.batch_size for c in sched.history]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes) and sizes[-1] <= 64
    assert len(sizes) >= 3  # B_simple grows as linreg converges (exact: ~6 at w=0)
    for change in sched.history:
        assert change.batch_size <= 0.5 * change.b_simple
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * math.sqrt(sched.batch_size / 8))


def test_max_lr_factor_caps_the_rule():
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = FakeTracker(b_simple=1024.0)
    sched = bl.BatchSizeSchedule(tracker, **RULE, lr_rule="linear", optimizer=opt,
                                 update_every=1, max_lr_factor=4.0)  # fmt: skip
    sched.step()
    assert sched.batch_size == 512 and sched.lr_factor == 4.0  # the rule says 32
    assert opt.param_groups[0]["lr"] == pytest.approx(0.4, rel=1e-12)
    assert sched.lr_factor_at(32) == 2.0
    with pytest.raises(ValueError, match="max_lr_factor must be a number >= 1"):
        bl.BatchSizeSchedule(tracker, **RULE, max_lr_factor=0.5)
