"""RunningNoiseScale's checkpoint state: a tracker resumed from its state_dict goes on
as if never stopped; a bad state is refused with the key named, changing nothing."""

from __future__ import annotations

import pytest
import torch

from batchlab.noise import NoiseScaleTracker


def _train_tracked(model, workload, batches, tracker, optimizer):
    """Gradient accumulation over four micro-batches of 16, one tracker step per batch."""
    for x, y in batches:
        for part in zip(x.split(16), y.split(16), strict=True):
            (workload.loss_fn(model, part) / 4).backward()
        optimizer.step()
        tracker.step()
        optimizer.zero_grad()


def test_tracker_resumed_from_its_state_dict_goes_on_as_if_never_stopped(mnist1d, tmp_path):
    workload, batches = mnist1d
    # Uninterrupted: six steps.
    model = workload.build_model(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with NoiseScaleTracker(model, ema_decay=0.5) as whole:
        _train_tracked(model, workload, batches, whole, optimizer)
    # Three steps, a checkpoint through torch.save, a new tracker, three more.
    model = workload.build_model(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with NoiseScaleTracker(model, ema_decay=0.5) as first:
        _train_tracked(model, workload, batches[:3], first, optimizer)
        torch.save(first.state_dict(), tmp_path / "tracker.pt")
    with NoiseScaleTracker(model, ema_decay=0.5) as resumed:
        resumed.load_state_dict(torch.load(tmp_path / "tracker.pt", weights_only=True))
        _train_tracked(model, workload, batches[3:], resumed, optimizer)
    assert resumed.n == whole.n == 6
    assert resumed.b_simple == pytest.approx(whole.b_simple, rel=1e-9)
    assert resumed.b_simple_ci == pytest.approx(whole.b_simple_ci, rel=1e-9)
    assert [r.step for r in resumed.history] == [r.step for r in whole.history]
    assert resumed.per_module.keys() == whole.per_module.keys()


def test_tracker_state_of_other_modules_is_refused(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    with NoiseScaleTracker(model) as tracker:
        state = tracker.state_dict()
    state["group_names"] = ["elsewhere"]
    with NoiseScaleTracker(model) as other, pytest.raises(ValueError, match="other modules"):
        other.load_state_dict(state)
    del state["total"]
    with NoiseScaleTracker(model) as other, pytest.raises(ValueError, match="missing total"):
        other.load_state_dict(state)


def test_tracker_state_with_a_bad_value_names_it_and_changes_nothing(mnist1d):
    workload, batches = mnist1d
    model = workload.build_model(0)
    with NoiseScaleTracker(model) as tracker:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        _train_tracked(model, workload, batches[:2], tracker, optimizer)
        state = tracker.state_dict()
    with NoiseScaleTracker(model) as other:
        with pytest.raises(ValueError, match=r"state\['history'\]\[1\] is not a history record"):
            other.load_state_dict({**state, "history": [state["history"][0], {"step": 1}]})
        bad_modules = {**state["modules"], "m_tt": "x"}
        with pytest.raises(ValueError, match=r"state\['m_tt'\] must be a list of"):
            other.load_state_dict({**state, "modules": bad_modules})
        with pytest.raises(ValueError, match=r"state\['steps'\] must be an integer"):
            other.load_state_dict({**state, "steps": 1.5})
        assert other.n == 0 and other.history == []
