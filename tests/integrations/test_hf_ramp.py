"""``batchlab.integrations.hf_ramp.BatchRampCallback``: inside ``Trainer.train()`` the
accumulation grows only where the Trainer can take it, every optimizer step's
gradient is exactly the mean-loss gradient over the micro-batches of its window (so
the loss scaling follows the window, whether the Trainer divides by the window's
length or by ``num_items_in_batch``), the optimizer's hyperparameters move at that same
step by the ramp's rules, ``calibrate`` reaches the ramp, and bad set-ups fail clearly.

Needs the ``hf`` extra; without it the tests are skipped, unless
``BATCHLAB_REQUIRE_INTEGRATIONS=1`` (set by CI).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from .conftest import require

require("transformers", "hf")
require("accelerate", "hf")

from transformers import (  # noqa: E402
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from batchlab.integrations.hf_ramp import BatchRampCallback  # noqa: E402
from batchlab.training import move_hparams  # noqa: E402

LR = 0.02
BATCH = 4  # per_device_train_batch_size: one micro-batch
K = 2  # gradient_accumulation_steps at the start


class Regression(nn.Module):
    """A small MLP (mean loss per micro-batch); remembers every input it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, labels=None):
        self.seen.append((x.detach().clone(), labels.detach().clone()))
        out = self.net(x)
        return {"loss": F.mse_loss(out, labels), "logits": out}


class TokenNormalized(Regression):
    """Accepts loss kwargs: the Trainer passes the window's ``num_items_in_batch``."""

    def forward(self, x, labels=None, **kwargs):
        self.seen.append((x.detach().clone(), labels.detach().clone()))
        out = self.net(x)
        loss = (out - labels).square().sum() / kwargs["num_items_in_batch"]
        return {"loss": loss, "logits": out}


def regression_data(examples: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(examples, 8, generator=generator)
    y = x.sum(dim=1, keepdim=True) + 0.5 * torch.randn(examples, 1, generator=generator)
    return [{"x": x[i], "labels": y[i]} for i in range(examples)]


def training_args(tmp_path: Path, **overrides) -> TrainingArguments:
    options = dict(
        per_device_train_batch_size=BATCH, gradient_accumulation_steps=K, learning_rate=LR,
        optim="sgd", lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0,
        logging_steps=1000, report_to="none", save_strategy="no", use_cpu=True,
        disable_tqdm=True, dataloader_num_workers=0, seed=0, num_train_epochs=1,
    )  # fmt: skip
    options.update(overrides)
    return TrainingArguments(output_dir=str(tmp_path), **options)


class StepRecorder(TrainerCallback):
    """Before every optimizer step: the window's inputs, its gradient and the hyperparameters."""

    def __init__(self, model: Regression) -> None:
        self.model = model
        self.steps: list[dict] = []
        self.done = 0  # micro-batches of earlier steps

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        window = self.model.seen[self.done :]
        group = optimizer.param_groups[0]
        self.steps.append({
            "start": self.done, "window": window, "k": args.gradient_accumulation_steps,
            "lr": group["lr"], "beta2": group.get("betas", (0, math.nan))[1],
            "wd": group["weight_decay"],
            "grads": [p.grad.detach().clone() for p in self.model.net.parameters()],
            "state": {k: v.detach().clone() for k, v in self.model.net.state_dict().items()},
        })  # fmt: skip
        self.done = len(self.model.seen)


def reference_grads(step: dict) -> list[torch.Tensor]:
    """The gradient of the mean squared error over all examples of the step's window."""
    net = Regression().net
    net.load_state_dict(step["state"])
    x = torch.cat([x for x, _ in step["window"]])
    y = torch.cat([y for _, y in step["window"]])
    F.mse_loss(net(x), y).backward()
    return [p.grad for p in net.parameters()]


class Calibrations:
    """``calibrate`` that says B_crit = ``factor`` × the tracked B_simple; records its calls."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.calls: list[dict] = []

    def __call__(self, args, state, model, ramp):
        calibrated = ramp.calibrated()
        assert calibrated is not None
        b_crit = self.factor * calibrated.b_simple
        self.calls.append({"due": ramp.calibration_due, "step": ramp.steps, "b_crit": b_crit,
                           "global_step": state.global_step})  # fmt: skip
        model.eval()
        return b_crit, (b_crit / 2, 2 * b_crit)


def train(tmp_path, callback, model=None, examples=2048, **overrides):
    model = Regression() if model is None else model
    recorder = StepRecorder(model)
    args = training_args(tmp_path, **overrides)
    trainer = Trainer(model=model, args=args, train_dataset=regression_data(examples),
                      callbacks=[recorder])  # fmt: skip
    callback.attach(trainer)
    trainer.train()
    return trainer, recorder


@pytest.mark.parametrize(
    ("model_cls", "optim"), [(Regression, "sgd"), (TokenNormalized, "adamw_torch")]
)
def test_every_step_averages_exactly_its_window_and_hparams_move_with_the_batch(
    tmp_path, model_cls, optim
):
    calibrate = Calibrations(factor=8.0)
    callback = BatchRampCallback(calibrate=calibrate, max_batch_size=64, lr_rule="sqrt",
                                 update_every=4, min_steps=8)  # fmt: skip
    trainer, recorder = train(tmp_path, callback, model=model_cls(), optim=optim,
                              weight_decay=0.1 if optim != "sgd" else 0.0)  # fmt: skip
    ramp = callback.ramp
    assert ramp is not None and ramp.history, "the ramp never grew the batch"
    steps = recorder.steps
    ks = [s["k"] for s in steps]
    assert ks == sorted(ks) and ks[-1] > K, ks
    for step in steps:
        # Exactly k micro-batches, the window starting at a multiple of k in the epoch
        # (one epoch here), and the gradient is the mean loss's over exactly those.
        assert len(step["window"]) == step["k"] and step["start"] % step["k"] == 0
        for got, want in zip(step["grads"], reference_grads(step), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    applied = [i for i in range(1, len(ks)) if ks[i] != ks[i - 1]]
    assert [ks[i] for i in applied] == [c.accumulation_steps for c in ramp.history]
    for prev, now in zip(steps, steps[1:], strict=False):
        moved = prev["k"] != now["k"]
        assert (now["lr"] != prev["lr"]) == moved  # constant schedule: only the ramp moves it
        if not moved:
            continue
        hparams = {"lr": prev["lr"], "weight_decay": prev["wd"]}
        if optim != "sgd":
            hparams["beta2"] = prev["beta2"]
        expected = move_hparams(hparams, prev["k"] * BATCH, now["k"] * BATCH,
                                optimizer="adamw" if optim != "sgd" else "sgd",
                                lr_rule="sqrt")  # fmt: skip
        assert now["lr"] / prev["lr"] == pytest.approx(math.sqrt(now["k"] / prev["k"]), rel=1e-9)
        assert now["wd"] == pytest.approx(expected["weight_decay"], rel=1e-9)
        if optim != "sgd":
            assert now["beta2"] == pytest.approx(expected["beta2"], rel=1e-9)
    assert ramp.examples_seen == sum(len(s["window"]) * BATCH for s in steps)
    assert trainer.args.gradient_accumulation_steps == K  # the user's value is back


def test_the_batch_size_in_effect_is_logged(tmp_path):
    callback = BatchRampCallback(calibrate=Calibrations(factor=8.0), max_batch_size=64,
                                 update_every=4, min_steps=8)  # fmt: skip
    trainer, recorder = train(tmp_path, callback, logging_steps=1)
    logged = {
        entry["step"]: entry["noise_scale/batch_size"]
        for entry in trainer.state.log_history
        if "noise_scale/batch_size" in entry
    }
    # Logged at the end of step n: the accumulation that step n + 1 trains with.
    ks = {n: s["k"] for n, s in enumerate(recorder.steps)}
    assert logged and len(set(logged.values())) > 1, logged
    for step, batch in logged.items():
        assert batch == ks.get(step, ks[len(ks) - 1]) * BATCH, (step, batch)


def test_calibrate_is_called_when_due_and_reaches_the_ramp(tmp_path):
    calibrate = Calibrations(factor=3.0)
    callback = BatchRampCallback(calibrate=calibrate, update_every=4, min_steps=8,
                                 calibration_gap=16, max_calibrations=2)  # fmt: skip
    train(tmp_path, callback, examples=1024)
    ramp = callback.ramp
    assert ramp is not None and calibrate.calls and all(c["due"] for c in calibrate.calls)
    assert calibrate.calls[0]["step"] == 8
    assert [c["global_step"] for c in calibrate.calls] == [c["step"] for c in calibrate.calls]
    assert [p.b_crit for p in ramp.calibrations] == [c["b_crit"] for c in calibrate.calls]
    assert ramp.ratio.ratio == pytest.approx(3.0, rel=1e-9)


def test_a_calibrate_result_that_is_not_a_b_crit_fails_naming_calibrate(tmp_path):
    callback = BatchRampCallback(calibrate=lambda args, state, model, ramp: "big",
                                 update_every=4, min_steps=4)  # fmt: skip
    with pytest.raises(TypeError, match=r"calibrate must return \(b_crit, \(low, high\)\)"):
        train(tmp_path, callback, examples=256)


def test_one_micro_batch_per_step_is_refused(tmp_path):
    with pytest.raises(ValueError, match="gradient_accumulation_steps >= 2"):
        train(tmp_path, BatchRampCallback(), examples=64, gradient_accumulation_steps=1)


def test_a_callback_not_attached_refuses_to_resume(tmp_path):
    callback = BatchRampCallback()
    with pytest.raises(ValueError, match=r"cannot resume this run .*attach\(trainer\)"):
        callback.on_train_begin(training_args(tmp_path), TrainerState(global_step=5),
                                TrainerControl(), model=Regression())  # fmt: skip


class Stream(torch.utils.data.IterableDataset):
    """A dataset without a length: the Trainer runs one "epoch" of max_steps × k₀ batches."""

    def __init__(self, examples: int) -> None:
        self.rows = regression_data(examples)

    def __iter__(self):
        return iter(self.rows)


def test_a_dataset_without_a_length_is_refused(tmp_path):
    # The Trainer's last step of such an "epoch" fetches micro-batches by the starting
    # accumulation: after a growth it would leave a partial window behind.
    args = training_args(tmp_path, max_steps=30)
    trainer = Trainer(model=Regression(), args=args, train_dataset=Stream(256))
    BatchRampCallback().attach(trainer)
    with pytest.raises(ValueError, match="needs a train_dataset with a length"):
        trainer.train()
