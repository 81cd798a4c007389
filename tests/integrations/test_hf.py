"""``batchlab.integrations.hf.NoiseScaleCallback``: inside ``transformers.Trainer.train()``
it gives exactly the statistics a ``NoiseScaleTracker`` gives in a hand-written
accumulation loop over the same micro-batches, puts them in the Trainer's logs, and
refuses set-ups it cannot measure. Tiny models built locally; nothing is downloaded.

Needs the ``hf`` extra; without it the tests are skipped, unless
``BATCHLAB_REQUIRE_INTEGRATIONS=1`` (set by CI), where a missing transformers is a failure.
"""

from __future__ import annotations

import copy
import importlib
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from .conftest import require

transformers = require("transformers", "hf")
require("accelerate", "hf")

from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from batchlab.integrations.hf import NoiseScaleCallback  # noqa: E402
from batchlab.noise import NoiseScaleTracker  # noqa: E402

LR = 0.05
BATCH = 8  # per_device_train_batch_size: one micro-batch
K = 4  # gradient_accumulation_steps
METRICS = ("b_simple", "b_simple_ci_low", "b_simple_ci_high", "grad_sq_norm", "trace_cov")


class Regression(nn.Module):
    """A small MLP whose forward returns the dict the Trainer expects."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x, labels=None):
        out = self.net(x)
        return {"loss": F.mse_loss(out, labels), "logits": out}


def regression_data(examples: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(examples, 8, generator=generator)
    y = x.sum(dim=1, keepdim=True) + torch.randn(examples, 1, generator=generator)
    return [{"x": x[i], "labels": y[i]} for i in range(examples)]


def training_args(tmp_path: Path, **overrides) -> TrainingArguments:
    """Plain SGD at a constant rate, no clipping, no saving, no reporting, on the CPU."""
    options = dict(
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=K,
        learning_rate=LR,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        logging_steps=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    options.update(overrides)
    return TrainingArguments(output_dir=str(tmp_path), **options)


def record_micro_batches(model: nn.Module) -> list[dict[str, torch.Tensor]]:
    """Every training forward's inputs, in order (the Trainer shuffles the data)."""
    seen: list[dict[str, torch.Tensor]] = []

    def hook(module, args, kwargs):
        if torch.is_grad_enabled():
            seen.append({name: value.detach().clone() for name, value in kwargs.items()})

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def replay(model: nn.Module, micro_batches, k: int, loss_fn, **options) -> NoiseScaleTracker:
    """The same training by hand: loss_fn per micro-batch, backward, step() per k."""
    tracker = NoiseScaleTracker(model, **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for start in range(0, len(micro_batches), k):
        window = micro_batches[start : start + k]
        for micro in window:
            loss_fn(model, micro, window).backward()
        tracker.step()
        optimizer.step()
        optimizer.zero_grad()
    return tracker


def mean_over_k(model, micro, window):
    return model(**micro)["loss"] / len(window)


def assert_same_history(actual: NoiseScaleTracker, expected: NoiseScaleTracker, rel=1e-12):
    assert actual.n == expected.n
    for got, want in zip(actual.history, expected.history, strict=True):
        assert (got.step, got.b_small, got.b_big) == (want.step, want.b_small, want.b_big)
        assert got.sq_norm_small == pytest.approx(want.sq_norm_small, rel=rel)
        assert got.sq_norm_big == pytest.approx(want.sq_norm_big, rel=rel)
        assert got.b_simple == pytest.approx(want.b_simple, rel=rel)


class LogRecorder(TrainerCallback):
    """Stands in for a report_to integration: keeps a copy of every log it is given."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


class RecordingCallback(NoiseScaleCallback):
    """A subclass that sees every measured step (the extension point)."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.measured_at: list[int] = []

    def on_measured_step(self, args, state, control) -> None:
        self.measured_at.append(state.global_step)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Six optimizer steps of four micro-batches, attached ahead of a log recorder."""
    torch.manual_seed(0)
    model = Regression()
    initial = copy.deepcopy(model)
    seen = record_micro_batches(model)
    recorder = LogRecorder()
    trainer = Trainer(
        model=model,
        args=training_args(tmp_path_factory.mktemp("hf"), max_steps=6),
        train_dataset=regression_data(BATCH * K * 6),
        callbacks=[recorder],
    )
    callback = RecordingCallback(ema_decay=0.5, confidence=0.9).attach(trainer)
    trainer.train()
    reference = replay(initial, seen, K, mean_over_k, ema_decay=0.5, confidence=0.9)
    return trainer, model, callback, recorder, reference


def test_statistics_equal_a_hand_written_accumulation_loop(trained):
    trainer, _, callback, _, reference = trained
    assert trainer.state.global_step == 6
    assert_same_history(callback.tracker, reference)
    got, want = callback.tracker.result(), reference.result()
    assert got.b_simple_ci == pytest.approx(want.b_simple_ci, rel=1e-12)
    assert got.grad_sq_norm == pytest.approx(want.grad_sq_norm, rel=1e-12)
    assert got.trace_cov == pytest.approx(want.trace_cov, rel=1e-12)
    assert callback.b_simple == got.b_simple and math.isfinite(got.b_simple)
    assert (got.history[0].b_small, got.history[0].b_big) == (BATCH, BATCH * K)
    assert callback.measured_at == [1, 2, 3, 4, 5, 6]


def test_metrics_are_in_log_history_and_reach_later_callbacks(trained):
    trainer, _, callback, recorder, _ = trained
    names = [f"noise_scale/{name}" for name in METRICS]
    logged = [entry for entry in trainer.state.log_history if names[0] in entry]
    assert [entry["step"] for entry in logged] == [2, 4, 6]  # logging_steps=2
    history = callback.tracker.history
    for entry in logged:
        record = history[entry["step"] - 1]
        expected = (
            record.b_simple,
            *record.b_simple_ci,
            record.grad_sq_norm,
            record.trace_cov,
        )
        for name, value in zip(names, expected, strict=True):
            assert entry[name] == pytest.approx(value, rel=1e-12, nan_ok=True), name
        assert "loss" in entry
    assert math.isfinite(logged[-1]["noise_scale/b_simple"])
    # Evaluation-free run: the end-of-training summary has no noise-scale keys.
    assert "train_loss" in trainer.state.log_history[-1]
    assert names[0] not in trainer.state.log_history[-1]
    # attach() put the callback ahead of the recorder, which stands in for report_to.
    seen_by_recorder = [logs for logs in recorder.logs if names[0] in logs]
    assert [logs[names[0]] for logs in seen_by_recorder] == [e[names[0]] for e in logged]


def test_attach_puts_the_callback_after_the_flow_callback_and_once(tmp_path):
    trainer = Trainer(
        model=Regression(),
        args=training_args(tmp_path, max_steps=1),
        train_dataset=regression_data(BATCH * K),
        callbacks=[LogRecorder()],
    )
    callback = NoiseScaleCallback()
    callback.attach(trainer)
    callback.attach(trainer)
    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert names[:3] == ["DefaultFlowCallback", "NoiseScaleCallback", "LogRecorder"]
    assert names.count("NoiseScaleCallback") == 1


def test_plain_callbacks_argument_still_fills_log_history(tmp_path):
    callback = NoiseScaleCallback(prefix="gns/")
    trainer = Trainer(
        model=Regression(),
        args=training_args(tmp_path, max_steps=2),
        train_dataset=regression_data(BATCH * K * 2),
        callbacks=[callback],
    )
    trainer.train()
    entry = trainer.state.log_history[-2]
    assert entry["step"] == 2 and "loss" in entry
    assert entry["gns/b_simple"] == pytest.approx(callback.b_simple, rel=1e-12)


@pytest.fixture
def one_thread():
    """A model this small only loses from intra-op threads (badly on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gpt2_with_token_normalized_loss_equals_replay(tmp_path, one_thread):
    """A transformers model from a config: the Trainer divides each micro-batch's
    summed token loss by the tokens of the whole step (num_items_in_batch)."""
    config = GPT2Config(
        n_layer=1,
        n_embd=16,
        n_head=2,
        vocab_size=32,
        n_positions=16,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    initial = copy.deepcopy(model)
    seen = record_micro_batches(model)
    ids = torch.randint(0, 32, (4 * K * 3, 12), generator=torch.Generator().manual_seed(1))
    trainer = Trainer(
        model=model,
        args=training_args(tmp_path, max_steps=3, per_device_train_batch_size=4),
        train_dataset=[{"input_ids": row, "labels": row} for row in ids],
    )
    callback = NoiseScaleCallback().attach(trainer)
    trainer.train()

    def token_normalized(model, micro, window):
        tokens = sum(int(m["labels"].ne(-100).sum()) for m in window)
        inputs = {k: v for k, v in micro.items() if k != "num_items_in_batch"}
        return model(**inputs, num_items_in_batch=tokens).loss

    # Older transformers (before num_items_in_batch) divide each loss by the step's k.
    normalized = getattr(trainer, "model_accepts_loss_kwargs", False)
    reference = replay(initial, seen, K, token_normalized if normalized else mean_over_k)
    assert callback.tracker.history[0].b_small == 4
    assert_same_history(callback.tracker, reference, rel=1e-6)
    assert math.isfinite(callback.b_simple)


def test_a_last_window_of_one_micro_batch_is_not_measured(tmp_path):
    # 9 micro-batches with gradient_accumulation_steps=4: steps of 4, 4 and 1.
    callback = NoiseScaleCallback()
    trainer = Trainer(
        model=Regression(),
        args=training_args(tmp_path, num_train_epochs=1),
        train_dataset=regression_data(BATCH * 9),
    )
    callback.attach(trainer)
    trainer.train()
    assert trainer.state.global_step == 3
    assert callback.tracker.n == 2
    assert [record.step for record in callback.tracker.history] == [0, 1]


def test_hooks_are_removed_at_train_end(trained):
    _, model, callback, _, _ = trained
    n = callback.tracker.n
    micro = regression_data(BATCH, seed=3)
    x = torch.stack([m["x"] for m in micro])
    labels = torch.stack([m["labels"] for m in micro])
    for _ in range(2):
        model(x, labels=labels)["loss"].backward()
    with pytest.raises(ValueError, match="0 micro-batch"):
        callback.tracker.step()  # the two backward passes above never reached it
    assert callback.tracker.n == n


def test_gradient_accumulation_steps_of_one_is_a_clear_error(tmp_path):
    trainer = Trainer(
        model=Regression(),
        args=training_args(tmp_path, max_steps=1, gradient_accumulation_steps=1),
        train_dataset=regression_data(BATCH),
    )
    NoiseScaleCallback().attach(trainer)
    with pytest.raises(
        ValueError, match=r"gradient_accumulation_steps >= 2.*got gradient_accumulation_steps=1"
    ):
        trainer.train()


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"micro_batch_size": -1}, ValueError, "micro_batch_size must be a positive integer"),
        ({"ema_decay": -0.1}, ValueError, "ema_decay must be None or in"),
        ({"prefix": 1}, TypeError, "prefix must be a string"),
        ({"measure_every": 1.5}, ValueError, "measure_every must be a positive integer"),
    ],
)
def test_bad_options_name_the_argument(options, error, match):
    with pytest.raises(error, match=match):
        NoiseScaleCallback(**options)


def test_missing_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    monkeypatch.delitem(sys.modules, "batchlab.integrations.hf")
    with pytest.raises(ImportError, match=r"pip install 'batchlab\[hf\]'"):
        importlib.import_module("batchlab.integrations.hf")
