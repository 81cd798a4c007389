"""Checkpoints hold the complete state of a run: resuming from one continues it exactly."""

from __future__ import annotations

import pytest
import torch

from batchlab._seeding import make_generator
from batchlab.cbs import (
    CheckpointError,
    CheckpointSaver,
    checkpoint_path,
    load_checkpoint,
    load_checkpoints,
    save_checkpoint,
    snapshot,
    train_base_run,
)
from batchlab.optim import optimizer_for
from batchlab.training import train_step
from batchlab.workloads import get_workload


@pytest.fixture(scope="module")
def mnist1d():
    return get_workload("mnist1d-cnn", {"num_train": 256, "num_val": 64})


def test_resuming_a_checkpoint_continues_the_run_bit_for_bit(mnist1d):
    """Model + Adam state at step 3, then the same 3 batches, give the step-6 state."""
    hparams = {"lr": 3e-3}
    first, last = train_base_run(
        mnist1d, [3, 6], batch_size=16, optimizer="adam", hparams=hparams, seed=5
    )
    assert (first.step, last.step) == (3, 6)
    assert first.examples_seen == 48 and first.optimizer == "adam" and "loss" in first.metrics
    model = mnist1d.build_model(0)
    model.load_state_dict(first.model_state)
    opt = optimizer_for(model, "adam", hparams)
    opt.load_state_dict(first.optimizer_state)
    batches = mnist1d.train_batches(16, make_generator(5))
    for _ in range(3):  # the batches the base run used before the checkpoint
        next(batches)
    for _ in range(3):
        train_step(mnist1d, model, opt, batches)
    for name, value in model.state_dict().items():
        assert torch.equal(value, last.model_state[name]), name


def test_snapshot_is_a_copy(mnist1d):
    model = mnist1d.build_model(0)
    checkpoint = snapshot(0, model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    fresh = mnist1d.build_model(0).state_dict()
    for name, value in checkpoint.model_state.items():
        assert torch.equal(value, fresh[name])


def test_save_and_load_round_trip(tmp_path, mnist1d):
    model = mnist1d.build_model(1)
    opt = optimizer_for(model, "momentum", {"lr": 0.1, "momentum": 0.9})
    train_step(mnist1d, model, opt, mnist1d.train_batches(8, make_generator(0)))
    checkpoint = snapshot(1, model, opt, optimizer="momentum", hparams={"lr": 0.1}, batch_size=8)
    path = save_checkpoint(checkpoint, tmp_path)
    assert path == checkpoint_path(tmp_path, 1) == tmp_path / "step_00000001.pt"
    loaded = load_checkpoint(path)
    assert (loaded.step, loaded.optimizer, loaded.hparams, loaded.batch_size) == (
        1, "momentum", {"lr": 0.1}, 8
    )  # fmt: skip
    for name, value in checkpoint.model_state.items():
        assert torch.equal(value, loaded.model_state[name])
    buffers = [s["momentum_buffer"] for s in loaded.optimizer_state["state"].values()]
    assert buffers and all(isinstance(b, torch.Tensor) for b in buffers)


def test_saver_writes_only_the_chosen_steps(tmp_path, mnist1d):
    model = mnist1d.build_model(0)
    opt = optimizer_for(model, "sgd", {"lr": 0.1})
    saver = CheckpointSaver(
        tmp_path, steps=[0, 2], optimizer="sgd", hparams={"lr": 0.1}, batch_size=8
    )
    batches = mnist1d.train_batches(8, make_generator(0))
    assert saver.maybe_save(0, model, opt) is not None
    for step in range(1, 4):
        train_step(mnist1d, model, opt, batches)
        saver.maybe_save(step, model, opt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000000.pt", "step_00000002.pt"]
    loaded = load_checkpoints(tmp_path)
    assert [c.step for c in loaded] == [0, 2]
    assert loaded[1].examples_seen == 16
    assert [c.step for c in load_checkpoints(tmp_path, [2])] == [2]


def test_missing_and_foreign_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoints(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="no checkpoint files"):
        load_checkpoints(tmp_path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "step_00000005.pt")
    with pytest.raises(CheckpointError, match="not a batchlab checkpoint"):
        load_checkpoints(tmp_path)
    with pytest.raises(CheckpointError, match=r"no checkpoint at step\(s\) 7; it has steps 5"):
        load_checkpoints(tmp_path, [7])
    (tmp_path / "step_00000009.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "step_00000009.pt")


def test_a_diverging_base_run_is_an_error():
    linreg = get_workload("linreg", {})
    with pytest.raises(ValueError, match="diverged"):
        train_base_run(linreg, [200], batch_size=4, optimizer="sgd", hparams={"lr": 50.0})


@pytest.mark.parametrize("steps", [[], [-1]])
def test_bad_checkpoint_steps_are_refused(steps):
    with pytest.raises(ValueError, match="checkpoint"):
        train_base_run(get_workload("linreg", {}), steps, batch_size=4, optimizer="sgd",
                       hparams={"lr": 0.1})  # fmt: skip
