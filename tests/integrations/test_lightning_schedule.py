"""``BatchSizeScheduleCallback``: inside ``Trainer.fit`` the accumulation grows with the
noise scale, only at window boundaries Lightning can take (every optimizer step sums
exactly ``accumulate_grad_batches`` fresh micro-batch gradients), and the LR follows
the rule.

Needs the ``lightning`` extra; skipped without it unless ``BATCHLAB_REQUIRE_INTEGRATIONS=1``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .conftest import require

pl = require("lightning.pytorch", "lightning")

from batchlab.integrations.lightning_schedule import BatchSizeScheduleCallback  # noqa: E402
from batchlab.workloads import get_workload  # noqa: E402

pytestmark = pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated")

LR = 0.05
MICRO = 4


class LinearRegression(pl.LightningModule):
    """Linear regression; records each optimizer step's window of batch indices."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Linear(dim, 1, bias=False)
        nn.init.zeros_(self.net.weight)
        self.window: list[int] = []
        self.windows: list[tuple[list[int], int, float]] = []  # (batch indices, k, lr)
        self.stale: list[float] = []

    def training_step(self, batch, batch_idx):
        self.window.append(batch_idx)
        x, y = batch
        return 0.5 * (self.net(x).squeeze(-1) - y).square().mean()

    def on_before_backward(self, loss):
        if len(self.window) == 1:  # a window's first backward must start from zeroed .grad
            grad = self.net.weight.grad
            self.stale.append(0.0 if grad is None else float(grad.abs().sum()))

    def on_before_optimizer_step(self, optimizer):
        k = self.trainer.accumulate_grad_batches
        self.windows.append((self.window, k, optimizer.param_groups[0]["lr"]))
        self.window = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


def linreg_data(examples: int) -> TensorDataset:
    linreg = get_workload("linreg", {"dim": 16})
    x, y = linreg.sample(examples, torch.Generator().manual_seed(0))
    return TensorDataset(x, y)


def fit(callback, max_steps: int, examples: int = 8192):
    model = LinearRegression(16)
    trainer = pl.Trainer(
        accumulate_grad_batches=2, max_steps=max_steps, callbacks=[callback], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    loader = DataLoader(linreg_data(examples), batch_size=MICRO, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(1))  # fmt: skip
    trainer.fit(model, loader)
    return trainer, model


@pytest.mark.parametrize("growth", ["pow2", "multiple"])
def test_accumulation_grows_only_at_aligned_window_boundaries(growth):
    callback = BatchSizeScheduleCallback(fraction=0.5, max_batch_size=64, growth=growth,
                                         lr_rule="sqrt", update_every=5, min_steps=10)  # fmt: skip
    trainer, model = fit(callback, max_steps=300)
    ks = [k for _, k, _ in model.windows]
    assert ks == sorted(ks) and ks[-1] > 2, ks  # grew, never shrank
    assert ks[-1] * MICRO <= 64
    for indices, k, lr in model.windows:
        # Every step summed exactly k consecutive micro-batches, starting at a multiple of k
        # (Lightning zeroes .grad there): no stale and no partial windows.
        assert len(indices) == k and indices[0] % k == 0, (indices, k)
        assert indices == list(range(indices[0], indices[0] + k))
        # The LR of the step is the rule's at the batch it used.
        assert lr == pytest.approx(LR * math.sqrt(k * MICRO / (2 * MICRO)), rel=1e-12)
    assert model.stale == [0.0] * len(model.windows)
    schedule = callback.schedule
    assert schedule is not None and schedule.history
    assert trainer.accumulate_grad_batches == schedule.accumulation_steps
    assert schedule.examples_seen == sum(k * MICRO for _, k, _ in model.windows)
    for change in schedule.history:
        assert change.batch_size <= 0.5 * change.b_simple


def test_manual_optimization_is_refused():
    class Manual(LinearRegression):
        def __init__(self) -> None:
            super().__init__(16)
            self.automatic_optimization = False

    trainer = pl.Trainer(accumulate_grad_batches=1, max_steps=1, logger=False,
                         callbacks=[BatchSizeScheduleCallback()], enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)  # fmt: skip
    with pytest.raises(ValueError, match="automatic optimization"):
        trainer.fit(Manual(), DataLoader(linreg_data(64), batch_size=MICRO))


def test_bad_options_fail_when_the_callback_is_built():
    with pytest.raises(ValueError, match="fraction must be a positive number"):
        BatchSizeScheduleCallback(fraction=-1.0)
    with pytest.raises(ValueError, match="lr_rule must be one of"):
        BatchSizeScheduleCallback(lr_rule="cubic")
