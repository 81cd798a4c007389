"""``BatchRampCallback``: inside ``Trainer.fit`` the accumulation grows to a fraction of the
calibrated B_crit, only at window boundaries Lightning can take (every optimizer step
sums exactly ``accumulate_grad_batches`` fresh micro-batch gradients), the optimizer's
lr / β2 / weight decay move at that same step by the ramp's rules, ``calibrate`` is
called when the ramp says a calibration is due and its answer reaches the ramp, and
bad set-ups fail with errors that name the argument.

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

from batchlab.integrations.lightning_ramp import BatchRampCallback  # noqa: E402
from batchlab.training import move_hparams  # noqa: E402
from batchlab.workloads import get_workload  # noqa: E402

pytestmark = pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated")

LR = 0.01
MICRO = 4
BETAS = (0.9, 0.99)
WEIGHT_DECAY = 0.1


class LinearRegression(pl.LightningModule):
    """Linear regression under AdamW; records each optimizer step's window and hyperparameters."""

    def __init__(self, dim: int = 16, warmup_steps: int | None = None) -> None:
        super().__init__()
        self.net = nn.Linear(dim, 1, bias=False)
        nn.init.zeros_(self.net.weight)
        self.warmup_steps = warmup_steps
        self.window: list[int] = []
        self.windows: list[dict] = []  # batch indices, k and the step's lr, β2, weight decay
        self.stale: list[float] = []
        self.modes: list[bool] = []

    def training_step(self, batch, batch_idx):
        self.window.append(batch_idx)
        self.modes.append(self.training)
        x, y = batch
        return 0.5 * (self.net(x).squeeze(-1) - y).square().mean()

    def on_before_backward(self, loss):
        if len(self.window) == 1:  # a window's first backward must start from zeroed .grad
            grad = self.net.weight.grad
            self.stale.append(0.0 if grad is None else float(grad.abs().sum()))

    def on_before_optimizer_step(self, optimizer):
        group = optimizer.param_groups[0]
        self.windows.append({
            "indices": self.window, "k": self.trainer.accumulate_grad_batches,
            "lr": group["lr"], "beta2": group["betas"][1], "wd": group["weight_decay"],
        })  # fmt: skip
        self.window = []

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
        if self.warmup_steps is None:
            return opt
        warmup = self.warmup_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def linreg_data(examples: int) -> TensorDataset:
    linreg = get_workload("linreg", {"dim": 16})
    x, y = linreg.sample(examples, torch.Generator().manual_seed(0))
    return TensorDataset(x, y)


def fit(callback, max_steps: int, model=None, examples: int = 8192, loader=None):
    model = LinearRegression() if model is None else model
    trainer = pl.Trainer(
        accumulate_grad_batches=2, max_steps=max_steps, callbacks=[callback], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    if loader is None:
        loader = DataLoader(linreg_data(examples), batch_size=MICRO, shuffle=True,
                            drop_last=True, generator=torch.Generator().manual_seed(1))  # fmt: skip
    trainer.fit(model, loader)
    return trainer, model


class Calibrations:
    """A ``calibrate`` that says B_crit = ``factor`` × the tracked B_simple, and records its calls."""

    def __init__(self, factor: float = 4.0) -> None:
        self.factor = factor
        self.calls: list[dict] = []

    def __call__(self, trainer, pl_module, ramp):
        calibrated = ramp.calibrated()
        assert calibrated is not None
        b_crit = self.factor * calibrated.b_simple
        self.calls.append({"due": ramp.calibration_due, "step": ramp.steps,
                           "global_step": trainer.global_step, "b_crit": b_crit})  # fmt: skip
        pl_module.eval()  # a branch may evaluate; the callback puts train mode back
        return b_crit, (b_crit / 2, 2 * b_crit)


def check_windows(model) -> None:
    """Every step summed exactly k consecutive micro-batches starting at a multiple of k
    (Lightning zeroes .grad there): no stale and no partial windows."""
    for window in model.windows:
        indices, k = window["indices"], window["k"]
        assert len(indices) == k and indices[0] % k == 0, (indices, k)
        assert indices == list(range(indices[0], indices[0] + k))
    assert model.stale == [0.0] * len(model.windows)


def test_accumulation_and_hparams_change_together_at_aligned_boundaries():
    calibrate = Calibrations(factor=4.0)
    callback = BatchRampCallback(calibrate=calibrate, fraction=0.5, max_batch_size=64,
                                 lr_rule="sqrt", update_every=5, min_steps=10)  # fmt: skip
    trainer, model = fit(callback, max_steps=300)
    check_windows(model)
    ramp = callback.ramp
    assert ramp is not None and ramp.history, "the ramp never grew the batch"
    ks = [w["k"] for w in model.windows]
    assert ks == sorted(ks) and ks[-1] > 2, ks  # grew, never shrank
    assert ks[-1] * MICRO <= 64
    # Every decided change was applied, in order, no earlier than decided.
    applied = [i for i in range(1, len(ks)) if ks[i] != ks[i - 1]]
    assert [ks[i] for i in applied] == [c.accumulation_steps for c in ramp.history]
    for i, change in zip(applied, ramp.history, strict=True):
        assert i >= change.step  # window i is optimizer step i + 1
    for prev, now in zip(model.windows, model.windows[1:], strict=False):
        moved = prev["k"] != now["k"]
        # No scheduler: the hyperparameters change exactly when the batch does.
        assert (now["lr"] != prev["lr"]) == moved
        assert (now["beta2"] != prev["beta2"]) == moved
        assert (now["wd"] != prev["wd"]) == moved
        if not moved:
            continue
        expected = move_hparams(
            {"lr": prev["lr"], "beta2": prev["beta2"], "weight_decay": prev["wd"]},
            prev["k"] * MICRO, now["k"] * MICRO, optimizer="adamw", lr_rule="sqrt",
        )  # fmt: skip
        assert now["lr"] == pytest.approx(expected["lr"], rel=1e-12)
        assert now["lr"] / prev["lr"] == pytest.approx(math.sqrt(now["k"] / prev["k"]), rel=1e-12)
        assert now["beta2"] == pytest.approx(expected["beta2"], rel=1e-12)
        assert now["wd"] == pytest.approx(expected["weight_decay"], rel=1e-12)
    assert trainer.accumulate_grad_batches == ramp.accumulation_steps
    assert ramp.examples_seen == sum(w["k"] * MICRO for w in model.windows)
    assert all(model.modes)  # calibrate's eval() did not leak into training


def test_calibrate_is_called_when_due_and_its_answer_reaches_the_ramp():
    calibrate = Calibrations(factor=3.0)
    callback = BatchRampCallback(calibrate=calibrate, max_batch_size=64, update_every=5,
                                 min_steps=10, calibration_gap=20, max_calibrations=3)  # fmt: skip
    fit(callback, max_steps=150)
    ramp = callback.ramp
    assert ramp is not None
    assert calibrate.calls and all(call["due"] for call in calibrate.calls)
    assert calibrate.calls[0]["step"] == 10  # the tracker's min_steps-th step
    assert [c["global_step"] for c in calibrate.calls] == [c["step"] for c in calibrate.calls]
    points = ramp.calibrations
    assert [p.b_crit for p in points] == [c["b_crit"] for c in calibrate.calls]
    assert [p.step for p in points] == [c["step"] for c in calibrate.calls]
    assert [p.b_crit_ci for p in points] == [(c["b_crit"] / 2, 2 * c["b_crit"])
                                             for c in calibrate.calls]  # fmt: skip
    assert ramp.ratio.ratio == pytest.approx(3.0, rel=1e-9)  # every point says r = 3
    assert not ramp.calibration_due


def test_calibrate_returning_none_skips_and_the_batch_waits():
    calls = []

    def calibrate(trainer, pl_module, ramp):
        calls.append(ramp.steps)

    callback = BatchRampCallback(calibrate=calibrate, update_every=5, min_steps=10,
                                 calibration_gap=10, max_calibrations=2)  # fmt: skip
    _, model = fit(callback, max_steps=60)
    ramp = callback.ramp
    assert ramp is not None and calls and len(calls) <= 2
    assert ramp.calibrations == [] and ramp.history == []  # waits for a calibration
    assert {w["k"] for w in model.windows} == {2}


def test_without_calibrate_the_ramp_follows_the_prior_ratio():
    callback = BatchRampCallback(prior_ratio=8.0, max_batch_size=64, lr_rule="sqrt",
                                 update_every=5, min_steps=10)  # fmt: skip
    _, model = fit(callback, max_steps=200)
    check_windows(model)
    ramp = callback.ramp
    assert ramp is not None and ramp.history and ramp.calibrations == []
    for change in ramp.history:
        assert change.ratio == pytest.approx(8.0, rel=1e-12)  # exp(log 8)
        assert change.b_crit == pytest.approx(8.0 * change.b_simple, rel=1e-12)


def test_an_lr_scheduler_keeps_its_shape_around_the_moved_base_lr():
    # LambdaLR warmup: lr(step) = base_lr · min(1, (step + 1)/10), the base moved by the
    # √ rule at each change: lr = LR · √(k/2) · warmup(step) at every step.
    callback = BatchRampCallback(calibrate=Calibrations(factor=4.0), max_batch_size=64,
                                 lr_rule="sqrt", update_every=5, min_steps=10)  # fmt: skip
    _, model = fit(callback, max_steps=200, model=LinearRegression(warmup_steps=10))
    check_windows(model)
    assert model.windows[-1]["k"] > 2
    for step, window in enumerate(model.windows):
        warmup = min(1.0, (step + 1) / 10)
        assert window["lr"] == pytest.approx(LR * math.sqrt(window["k"] / 2) * warmup, rel=1e-9)


def test_max_lr_factor_caps_the_lr_but_not_the_batch():
    callback = BatchRampCallback(calibrate=Calibrations(factor=4.0), max_batch_size=64,
                                 lr_rule="sqrt", max_lr_factor=1.0, update_every=5,
                                 min_steps=10)  # fmt: skip
    _, model = fit(callback, max_steps=200)
    assert model.windows[-1]["k"] > 2
    assert {w["lr"] for w in model.windows} == {LR}
    for window in model.windows:  # β2 still keeps its half-life in examples: β2^(B/B₀)
        assert window["beta2"] == pytest.approx(BETAS[1] ** (window["k"] / 2), rel=1e-9)


# ----- bad arguments ---------------------------------------------------------------------


def test_bad_options_fail_when_the_callback_is_built():
    with pytest.raises(TypeError, match="calibrate must be a callable"):
        BatchRampCallback(calibrate=42)
    with pytest.raises(ValueError, match="fraction must be a positive number"):
        BatchRampCallback(fraction=-1.0)
    with pytest.raises(ValueError, match="lr_rule must be one of"):
        BatchRampCallback(lr_rule="cubic")
    with pytest.raises(ValueError, match="prior_ratio must be"):
        BatchRampCallback(prior_ratio=0.0)


def test_manual_optimization_is_refused():
    class Manual(LinearRegression):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

    trainer = pl.Trainer(accumulate_grad_batches=1, max_steps=1, logger=False,
                         callbacks=[BatchRampCallback()], enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)  # fmt: skip
    with pytest.raises(ValueError, match="automatic optimization.*batchlab.BatchRamp"):
        trainer.fit(Manual(), DataLoader(linreg_data(64), batch_size=MICRO))


class Pair:
    """A batch Lightning cannot count examples in."""

    def __init__(self, x, y) -> None:
        self.x, self.y = x, y


class PairRegression(LinearRegression):
    def training_step(self, batch, batch_idx):
        return super().training_step((batch.x, batch.y), batch_idx)


def pair_loader() -> DataLoader:
    def collate(rows):
        x, y = zip(*rows, strict=True)
        return Pair(torch.stack(x), torch.stack(y))

    return DataLoader(linreg_data(256), batch_size=MICRO, collate_fn=collate, drop_last=True)


def test_a_batch_without_countable_examples_asks_for_micro_batch_size():
    with pytest.raises(ValueError, match="pass micro_batch_size="):
        fit(BatchRampCallback(), max_steps=2, model=PairRegression(), loader=pair_loader())
    callback = BatchRampCallback(micro_batch_size=MICRO, update_every=1, min_steps=1)
    fit(callback, max_steps=4, model=PairRegression(), loader=pair_loader())
    assert callback.ramp is not None and callback.ramp.micro_batch_size == MICRO


def test_an_optimizer_without_rules_asks_for_optimizer_name():
    class Adagrad(LinearRegression):
        def configure_optimizers(self):
            return torch.optim.Adagrad(self.parameters(), lr=LR)

    with pytest.raises(TypeError, match="pass optimizer_name="):
        fit(BatchRampCallback(), max_steps=2, model=Adagrad())


@pytest.mark.parametrize(
    ("returned", "error", "match"),
    [
        ("big", TypeError, r"calibrate must return \(b_crit, \(low, high\)\)"),
        ((32.0, 16.0), TypeError, r"calibrate must return \(b_crit, \(low, high\)\)"),
        ((-1.0, (0.0, 1.0)), ValueError, r"calibrate returned b_crit=-1.0"),
        ((math.nan, (0.0, 1.0)), ValueError, r"calibrate returned b_crit=nan"),
        ((32.0, (64.0, 16.0)), ValueError, r"calibrate returned the interval \(64.0, 16.0\)"),
    ],
)
def test_a_calibrate_result_that_is_not_a_b_crit_fails_naming_calibrate(returned, error, match):
    callback = BatchRampCallback(calibrate=lambda trainer, module, ramp: returned,
                                 update_every=5, min_steps=5)  # fmt: skip
    with pytest.raises(error, match=match):
        fit(callback, max_steps=20)
