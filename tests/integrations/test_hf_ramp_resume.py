"""``hf_ramp.BatchRampCallback`` resumes a ``Trainer`` run exactly where it stopped.

One uninterrupted run, checkpointing every few steps, is the reference. A run resumed
from one of its checkpoints (``trainer.train(resume_from_checkpoint=...)``, a new
model, Trainer and callback) must take the same optimizer steps after it: the same
accumulation, the same micro-batches (the Trainer's data order, the batch skipped to
inside the epoch), the same gradients and param-group ``lr`` / ``betas`` /
``weight_decay``, the same ramp history and calibration points, the same tracker
statistics and the same final weights; ``calibrate`` is asked only after the
checkpoint. The reference saves a checkpoint at every step; the runs resume from one
taken mid-epoch after the ramp grew the batch (where the Trainer alone would skip the
wrong batches: ``global_step`` × the starting accumulation), from one with a growth
decided but still waiting for an aligned window, and from one at an epoch's end. Runs that cannot resume exactly are refused.

Needs the ``hf`` extra; without it the tests are skipped, unless
``BATCHLAB_REQUIRE_INTEGRATIONS=1`` (set by CI).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .conftest import require

require("transformers", "hf")
require("accelerate", "hf")

from transformers import Trainer  # noqa: E402

from batchlab.integrations.hf_ramp import RESUME_FILE, BatchRampCallback  # noqa: E402

from .test_hf_ramp import (  # noqa: E402
    BATCH,
    Calibrations,
    K,
    Regression,
    StepRecorder,
    regression_data,
    training_args,
)

EXAMPLES = 192  # 48 micro-batches per epoch
EPOCHS = 3


def ramp_callback() -> tuple[BatchRampCallback, Calibrations]:
    calibrate = Calibrations(factor=8.0)
    callback = BatchRampCallback(calibrate=calibrate, max_batch_size=64, update_every=2,
                                 min_steps=4, calibration_gap=8, max_calibrations=3)  # fmt: skip
    return callback, calibrate


def run(output: Path, *, resume: Path | None = None, attach: bool = True, **overrides):
    """One training run (fresh model, Trainer and callback); what it did."""
    callback, calibrate = ramp_callback()
    torch.manual_seed(0)  # the same start whatever ran before (a resumed run loads its own)
    model = Regression()
    recorder = StepRecorder(model)
    options = dict(optim="adamw_torch", lr_scheduler_type="linear", weight_decay=0.1,
                   num_train_epochs=EPOCHS, save_strategy="steps", save_steps=1)  # fmt: skip
    args = training_args(output, **{**options, **overrides})
    callbacks = [recorder] if attach else [recorder, callback]
    trainer = Trainer(model=model, args=args, train_dataset=regression_data(EXAMPLES),
                      callbacks=callbacks)  # fmt: skip
    if attach:
        callback.attach(trainer)
    trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    return {"callback": callback, "calibrate": calibrate, "steps": recorder.steps,
            "weights": model.net.state_dict(), "trainer": trainer}  # fmt: skip


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run(tmp_path_factory.mktemp("reference"))


def checkpoint(reference, step: int) -> Path:
    return Path(reference["trainer"].args.output_dir) / f"checkpoint-{step}"


def resume_points(reference) -> dict[str, int]:
    """A mid-epoch checkpoint after the first growth, one with a growth decided but not yet
    applied (no aligned window yet), and one at an epoch's end."""
    steps, ramp = reference["steps"], reference["callback"].ramp
    assert ramp is not None and ramp.history, "the ramp never grew the batch"
    micro = [0]
    for step in steps:
        micro.append(micro[-1] + step["k"])  # micro-batches done after each step
    grown = next(n for n in range(1, len(steps)) if steps[n]["k"] > K)  # first grown step
    per_epoch = EXAMPLES // BATCH
    pending = [
        n for n in range(1, len(steps))
        if (state := torch.load(checkpoint(reference, n) / RESUME_FILE, weights_only=True))
        ["ramp"]["batch_size"] != state["accumulation"] * BATCH
    ]  # fmt: skip
    assert pending, "no checkpoint with a pending growth: change the set-up"
    return {
        "mid-epoch": min(n for n in range(grown + 2, len(steps)) if micro[n] % per_epoch),
        "pending": pending[0],
        "epoch end": min(n for n in range(grown + 1, len(steps)) if micro[n] % per_epoch == 0),
    }


def test_a_resumed_run_takes_the_same_steps_as_the_uninterrupted_one(reference, tmp_path):
    points = resume_points(reference)
    for where, start in points.items():
        resumed = run(tmp_path / where.replace(" ", "-"), resume=checkpoint(reference, start))
        want, got = reference["steps"][start:], resumed["steps"]
        assert [s["k"] for s in got] == [s["k"] for s in want], where
        # Not what the Trainer alone would do: it skips global_step x K micro-batches.
        assert got[0]["k"] > K, where
        for n, (a, b) in enumerate(zip(want, got, strict=True)):
            assert [s for s in ("lr", "beta2", "wd") if a[s] != b[s]] == [], (where, n)
            for (xa, ya), (xb, yb) in zip(a["window"], b["window"], strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb), (where, n)
            for ga, gb in zip(a["grads"], b["grads"], strict=True):
                torch.testing.assert_close(gb, ga, rtol=1e-6, atol=1e-8)
        for key, value in reference["weights"].items():
            torch.testing.assert_close(resumed["weights"][key], value, rtol=1e-6, atol=1e-8)
        ramp, ramp0 = resumed["callback"].ramp, reference["callback"].ramp
        assert ramp is not None and ramp0 is not None
        assert ramp.history == ramp0.history, where
        assert ramp.calibrations == ramp0.calibrations, where
        assert ramp.examples_seen == ramp0.examples_seen, where
        tracker, tracker0 = resumed["callback"].tracker, reference["callback"].tracker
        assert tracker is not None and tracker0 is not None
        # Every measured step's record, the running statistics and the step count (repr:
        # the first steps' intervals are nan, and nan != nan).
        assert repr(tracker.state_dict()) == repr(tracker0.state_dict()), where
        asked = [c["global_step"] for c in reference["calibrate"].calls if c["global_step"] > start]
        assert [c["global_step"] for c in resumed["calibrate"].calls] == asked, where
        assert resumed["trainer"].args.gradient_accumulation_steps == K


def test_every_checkpoint_holds_the_ramp_state(reference):
    folders = sorted(checkpoint(reference, 0).parent.glob("checkpoint-*"))
    assert folders and all((folder / RESUME_FILE).is_file() for folder in folders)


def test_a_callback_added_without_attach_is_refused(reference, tmp_path):
    start = resume_points(reference)["mid-epoch"]
    with pytest.raises(ValueError, match=r"cannot resume this run .*attach\(trainer\)"):
        run(tmp_path, resume=checkpoint(reference, start), attach=False)


def test_a_checkpoint_without_the_ramp_state_is_refused(reference, tmp_path):
    start = resume_points(reference)["mid-epoch"]
    copy = tmp_path / f"checkpoint-{start}"
    for file in checkpoint(reference, start).iterdir():
        if file.name != RESUME_FILE and file.is_file():
            (copy / file.name).parent.mkdir(exist_ok=True)
            (copy / file.name).write_bytes(file.read_bytes())
    with pytest.raises(ValueError, match=rf"the checkpoint holds no {RESUME_FILE}"):
        run(tmp_path / "out", resume=copy)


def test_another_starting_accumulation_is_refused(reference, tmp_path):
    start = resume_points(reference)["mid-epoch"]
    with pytest.raises(ValueError, match=r"started from gradient_accumulation_steps=2, this one "
                                         r"from 4"):  # fmt: skip
        run(tmp_path, resume=checkpoint(reference, start), gradient_accumulation_steps=4,
            per_device_train_batch_size=BATCH)  # fmt: skip
