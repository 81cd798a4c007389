"""``batchlab.integrations.lightning.NoiseScaleCallback``: inside ``Trainer.fit`` it gives
exactly the statistics a ``NoiseScaleTracker`` gives in a hand-written accumulation loop,
logs them to the trainer's logger, and refuses set-ups it cannot measure.

Needs the ``lightning`` extra; without it the tests are skipped, unless
``BATCHLAB_REQUIRE_INTEGRATIONS=1`` (set by CI), where a missing Lightning is a failure.
"""

from __future__ import annotations

import copy
import csv
import importlib
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .conftest import require

pl = require("lightning.pytorch", "lightning")

from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from lightning.pytorch.plugins import MixedPrecision  # noqa: E402

from batchlab.integrations.lightning import NoiseScaleCallback  # noqa: E402
from batchlab.noise import NoiseScaleTracker  # noqa: E402

# Lightning calls a torch pytree API that torch 2.13 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated")


LR = 0.05
BATCH = 8  # one dataloader batch = one micro-batch
K = 4  # accumulate_grad_batches


class Regression(pl.LightningModule):
    """A small MLP on noisy linear data; training_step does not call forward."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


class ManualRegression(Regression):
    """Manual optimization that accumulates two half-batches per optimizer step."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        x, y = batch
        for xs, ys in zip(x.chunk(2), y.chunk(2), strict=True):
            self.manual_backward(F.mse_loss(self(xs), ys) / 2)
        optimizer.step()
        optimizer.zero_grad()


def make_data(examples: int, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(examples, 8, generator=generator)
    y = x.sum(dim=1, keepdim=True) + torch.randn(examples, 1, generator=generator)
    return TensorDataset(x, y)


def make_trainer(tmp_path: Path, callback, **kwargs) -> pl.Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        accumulate_grad_batches=K,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    options.update(kwargs)
    return pl.Trainer(default_root_dir=tmp_path, **options)


def reference_tracker(model: nn.Module, loader: DataLoader, steps: int, k: int, **options):
    """The same training written by hand: loss / k per micro-batch, then step()."""
    tracker = NoiseScaleTracker(model, micro_batch_size=BATCH, **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    batches = list(loader)
    for step in range(steps):
        for x, y in batches[step * k : (step + 1) * k]:
            (F.mse_loss(model.net(x), y) / k).backward()
        tracker.step()
        optimizer.step()
        optimizer.zero_grad()
    return tracker


def assert_same_history(actual: NoiseScaleTracker, expected: NoiseScaleTracker, rel=1e-12):
    assert actual.n == expected.n
    for got, want in zip(actual.history, expected.history, strict=True):
        assert got.step == want.step
        assert (got.b_small, got.b_big) == (want.b_small, want.b_big)
        assert got.sq_norm_small == pytest.approx(want.sq_norm_small, rel=rel)
        assert got.sq_norm_big == pytest.approx(want.sq_norm_big, rel=rel)
        assert got.b_simple == pytest.approx(want.b_simple, rel=rel)


class RecordingCallback(NoiseScaleCallback):
    """A subclass that sees every measured step (the extension point)."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.measured_at: list[int] = []

    def on_measured_step(self, trainer, pl_module) -> None:
        self.measured_at.append(trainer.global_step)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Six optimizer steps of four micro-batches, logged every second step to a CSV file."""
    tmp_path = tmp_path_factory.mktemp("lightning")
    data = make_data(BATCH * K * 6)
    torch.manual_seed(0)
    model = Regression()
    initial = copy.deepcopy(model)
    callback = RecordingCallback(ema_decay=0.5, confidence=0.9, prefix="gns/")
    trainer = make_trainer(
        tmp_path, callback, max_steps=6, logger=CSVLogger(tmp_path), log_every_n_steps=2
    )
    trainer.fit(model, DataLoader(data, batch_size=BATCH))
    reference = reference_tracker(
        initial, DataLoader(data, batch_size=BATCH), 6, K, ema_decay=0.5, confidence=0.9
    )
    return trainer, model, callback, reference


def test_statistics_equal_a_hand_written_accumulation_loop(fitted):
    trainer, _, callback, reference = fitted
    assert trainer.global_step == 6
    assert_same_history(callback.tracker, reference)
    got, want = callback.tracker.result(), reference.result()
    assert got.b_simple == pytest.approx(want.b_simple, rel=1e-12)
    assert got.b_simple_ci == pytest.approx(want.b_simple_ci, rel=1e-12)
    assert got.grad_sq_norm == pytest.approx(want.grad_sq_norm, rel=1e-12)
    assert got.trace_cov == pytest.approx(want.trace_cov, rel=1e-12)
    assert got.per_module.keys() == want.per_module.keys() == {"net.0", "net.2"}
    assert callback.b_simple == got.b_simple and math.isfinite(got.b_simple)
    assert callback.tracker.history[0].b_small == BATCH
    assert callback.tracker.history[0].b_big == BATCH * K
    assert callback.measured_at == [0, 1, 2, 3, 4, 5]


def test_measure_every_measures_one_step_in_k_as_the_tracker_does(tmp_path):
    data = make_data(BATCH * K * 6)
    torch.manual_seed(0)
    model = Regression()
    initial = copy.deepcopy(model)
    callback = RecordingCallback(measure_every=2)
    make_trainer(tmp_path, callback, max_steps=6).fit(model, DataLoader(data, batch_size=BATCH))
    reference = reference_tracker(
        initial, DataLoader(data, batch_size=BATCH), 6, K, measure_every=2
    )
    assert callback.measured_at == [0, 2, 4]  # steps 1, 3 and 5 left out
    assert [r.step for r in callback.tracker.history] == [0, 2, 4]
    assert_same_history(callback.tracker, reference)


def test_metrics_are_written_to_the_logger_every_log_every_n_steps(fitted):
    trainer, _, callback, _ = fitted
    path = Path(trainer.logger.log_dir) / "metrics.csv"
    with path.open() as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("gns/b_simple")]
    # Written after optimizer steps 2, 4, 6: Lightning's step column counts from 0.
    assert [int(row["step"]) for row in rows] == [1, 3, 5]
    history = callback.tracker.history
    for row in rows:
        record = history[int(row["step"])]
        expected = {
            "gns/b_simple": record.b_simple,
            "gns/b_simple_ci_low": record.b_simple_ci[0],
            "gns/b_simple_ci_high": record.b_simple_ci[1],
            "gns/grad_sq_norm": record.grad_sq_norm,
            "gns/trace_cov": record.trace_cov,
        }
        for name, value in expected.items():  # float32 in the log
            assert float(row[name]) == pytest.approx(value, rel=1e-6, nan_ok=True), name
    assert math.isfinite(float(rows[-1]["gns/b_simple"]))
    assert set(trainer.logged_metrics) >= {
        "gns/b_simple",
        "gns/b_simple_ci_low",
        "gns/b_simple_ci_high",
        "gns/grad_sq_norm",
        "gns/trace_cov",
    }


def test_hooks_are_removed_at_fit_end(fitted):
    _, model, callback, _ = fitted
    n = callback.tracker.n
    x, y = make_data(BATCH, seed=3).tensors
    for _ in range(2):
        F.mse_loss(model.net(x), y).backward()
    with pytest.raises(ValueError, match="0 micro-batch"):
        callback.tracker.step()  # the two backward passes above never reached it
    assert callback.tracker.n == n


def test_manual_optimization_counts_each_manual_backward(tmp_path):
    data = make_data(16 * 5)
    torch.manual_seed(1)
    model = ManualRegression()
    initial = copy.deepcopy(model)
    callback = NoiseScaleCallback()
    trainer = make_trainer(tmp_path, callback, accumulate_grad_batches=1, max_steps=5)
    trainer.fit(model, DataLoader(data, batch_size=16))
    # By hand: each batch of 16 is two micro-batches of 8 (what the forward hook counts).
    reference = reference_tracker(initial, DataLoader(data, batch_size=BATCH), 5, 2)
    assert trainer.global_step == 5
    assert_same_history(callback.tracker, reference)


def test_a_last_window_of_one_micro_batch_is_not_measured(tmp_path):
    # 9 batches with accumulate_grad_batches=4: steps of 4, 4 and 1 micro-batches.
    torch.manual_seed(2)
    model = Regression()
    callback = NoiseScaleCallback()
    trainer = make_trainer(tmp_path, callback, max_epochs=1)
    trainer.fit(model, DataLoader(make_data(BATCH * 9), batch_size=BATCH))
    assert trainer.global_step == 3
    assert callback.tracker.n == 2
    assert [record.step for record in callback.tracker.history] == [0, 1]


def test_fp16_loss_scale_is_divided_out(tmp_path):
    """With Lightning's 16-mixed GradScaler the norms are those of fp32 training."""
    data = make_data(BATCH * K * 3)
    torch.manual_seed(4)
    model = Regression()
    initial = copy.deepcopy(model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    callback = NoiseScaleCallback()
    trainer = make_trainer(
        tmp_path, callback, max_steps=3, plugins=[MixedPrecision("16-mixed", "cpu", scaler)]
    )
    trainer.fit(model, DataLoader(data, batch_size=BATCH))
    assert callback.tracker.scaler is scaler
    reference = reference_tracker(initial, DataLoader(data, batch_size=BATCH), 3, K)
    # fp16 autocast rounds activations; unscaled norms would be 2^24 times too large.
    assert_same_history(callback.tracker, reference, rel=2e-2)


def test_accumulate_grad_batches_of_one_is_a_clear_error(tmp_path):
    trainer = make_trainer(tmp_path, NoiseScaleCallback(), accumulate_grad_batches=1, max_steps=1)
    with pytest.raises(
        ValueError, match=r"accumulate_grad_batches >= 2.*got accumulate_grad_batches=1"
    ):
        trainer.fit(Regression(), DataLoader(make_data(BATCH * 2), batch_size=BATCH))


def test_two_optimizers_are_a_clear_error(tmp_path):
    class TwoOptimizers(ManualRegression):
        def configure_optimizers(self):
            return [
                torch.optim.SGD(self.net[0].parameters(), lr=LR),
                torch.optim.SGD(self.net[2].parameters(), lr=LR),
            ]

    trainer = make_trainer(tmp_path, NoiseScaleCallback(), accumulate_grad_batches=1, max_steps=1)
    with pytest.raises(ValueError, match="exactly one optimizer, got 2"):
        trainer.fit(TwoOptimizers(), DataLoader(make_data(16), batch_size=16))


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"micro_batch_size": 0}, ValueError, "micro_batch_size must be a positive integer"),
        ({"ema_decay": 1.0}, ValueError, "ema_decay must be None or in"),
        ({"confidence": 1.5}, ValueError, "confidence must be in"),
        ({"prefix": None}, TypeError, "prefix must be a string"),
        ({"measure_every": 0}, ValueError, "measure_every must be a positive integer"),
    ],
)
def test_bad_options_name_the_argument(options, error, match):
    with pytest.raises(error, match=match):
        NoiseScaleCallback(**options)


def test_missing_lightning_names_the_extra(monkeypatch):
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    monkeypatch.delitem(sys.modules, "batchlab.integrations.lightning")
    with pytest.raises(ImportError, match=r"pip install 'batchlab\[lightning\]'"):
        importlib.import_module("batchlab.integrations.lightning")


def test_standalone_pytorch_lightning_is_used_without_lightning(monkeypatch, tmp_path):
    ptl = pytest.importorskip("pytorch_lightning")
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "batchlab.integrations.lightning")
    module = importlib.import_module("batchlab.integrations.lightning")
    assert issubclass(module.NoiseScaleCallback, ptl.Callback)

    class Standalone(ptl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(8, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR)

    callback = module.NoiseScaleCallback()
    trainer = ptl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=2,
        accumulate_grad_batches=2,
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Standalone(), DataLoader(make_data(BATCH * 4), batch_size=BATCH))
    assert callback.tracker.n == 2
