"""The Lightning batch-growth callbacks resume from a checkpoint exactly where they stopped.

A run of N optimizer steps with a ``ModelCheckpoint``, resumed with
``trainer.fit(module, ckpt_path="last")`` up to 2N steps, must take the same steps as
one uninterrupted 2N-step run: the same accumulation, the same param-group ``lr`` /
``betas`` / ``weight_decay`` at every step, the same grower history and calibrations,
the same tracker statistics and the same final weights. Restarting the grower from
scratch (no ``load_state_dict``) fails every one of these after the checkpoint.

Data order: Lightning restores the batch index on a mid-epoch resume but restarts a
plain ``DataLoader`` from its first batch (it warns so); the module reads the batch
with that index from a fixed tensor, so both runs see the same data at every batch
index without a resumable loader (the loader's batch still tells the callback how many
examples a micro-batch holds).

Needs the ``lightning`` extra; skipped without it unless ``BATCHLAB_REQUIRE_INTEGRATIONS=1``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .conftest import require

pl = require("lightning.pytorch", "lightning")

from batchlab.integrations.lightning_ramp import BatchRampCallback  # noqa: E402
from batchlab.integrations.lightning_schedule import BatchSizeScheduleCallback  # noqa: E402
from batchlab.workloads import get_workload  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated"),
    pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
    pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`"),
]

MICRO = 4
EXAMPLES = 512  # 128 batches an epoch: both tests cross an epoch boundary
DIM = 16


def linreg_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    linreg = get_workload("linreg", {"dim": DIM})
    return linreg.sample(EXAMPLES, torch.Generator().manual_seed(0))


class IndexedRegression(pl.LightningModule):
    """Linear regression on batch ``batch_idx`` of fixed data; records every optimizer step."""

    def __init__(self, optimizer: str, warmup_steps: int | None = None) -> None:
        super().__init__()
        self.net = nn.Linear(DIM, 1, bias=False)
        nn.init.zeros_(self.net.weight)
        self.x, self.y = linreg_tensors()
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.first_batch: int | None = None
        self.steps: list[dict] = []  # global step, window start, k, and the step's hparams

    def training_step(self, batch, batch_idx):
        if self.first_batch is None:
            self.first_batch = batch_idx
        rows = slice(batch_idx * MICRO, (batch_idx + 1) * MICRO)
        assert len(batch[0]) == MICRO
        return 0.5 * (self.net(self.x[rows]).squeeze(-1) - self.y[rows]).square().mean()

    def on_before_optimizer_step(self, optimizer):
        group = optimizer.param_groups[0]
        self.steps.append({
            "step": self.trainer.global_step, "start": self.first_batch,
            "k": self.trainer.accumulate_grad_batches, "lr": group["lr"],
            "betas": group.get("betas"), "weight_decay": group["weight_decay"],
        })  # fmt: skip
        self.first_batch = None

    def configure_optimizers(self):
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=0.05, weight_decay=0.01)
        opt = torch.optim.AdamW(self.parameters(), lr=0.01, betas=(0.9, 0.99), weight_decay=0.1)
        warmup = self.warmup_steps
        if warmup is None:
            return opt
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def fit(callback, module, max_steps: int, ckpt_dir, every: int, ckpt_path: str | None = None):
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=every,
                                              save_last=True)  # fmt: skip
    trainer = pl.Trainer(
        accumulate_grad_batches=2, max_steps=max_steps, callbacks=[callback, checkpoint],
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    loader = DataLoader(TensorDataset(*linreg_tensors()), batch_size=MICRO)
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    return trainer


def interrupted_and_whole(make_callback, make_module, steps: int, tmp_path):
    """(callback, module) of ``steps`` steps + a resume to 2·``steps``, and of 2·``steps`` at once,
    and the interrupted run's checkpointed callback state."""
    whole_cb, whole = make_callback(), make_module()
    fit(whole_cb, whole, 2 * steps, tmp_path / "whole", every=steps)
    first_cb, first = make_callback(), make_module()
    fit(first_cb, first, steps, tmp_path / "resumed", every=steps)
    last = tmp_path / "resumed" / "last.ckpt"
    saved = torch.load(last, weights_only=False)["callbacks"][first_cb.state_key]
    resumed_cb, resumed = make_callback(), make_module()
    fit(resumed_cb, resumed, 2 * steps, tmp_path / "resumed", every=steps, ckpt_path="last")
    resumed.steps = first.steps + resumed.steps
    return (whole_cb, whole), (resumed_cb, resumed), saved


def check_same_run(whole, resumed, steps: int) -> None:
    """Step by step the same accumulation and hyperparameters; the same final weights.

    Both runs do the same float operations in the same order on CPU, so the recorded
    hyperparameters agree to rounding (rel 1e-12) and the weights to float32 rounding.
    """
    assert [s["step"] for s in resumed.steps] == list(range(2 * steps))
    assert [(s["start"], s["k"]) for s in resumed.steps] == [
        (s["start"], s["k"]) for s in whole.steps
    ]
    for ours, theirs in zip(resumed.steps, whole.steps, strict=True):
        for key in ("lr", "weight_decay"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-12), (ours, theirs)
        if theirs["betas"] is not None:
            assert ours["betas"] == pytest.approx(theirs["betas"], rel=1e-12), (ours, theirs)
    torch.testing.assert_close(resumed.net.weight, whole.net.weight, rtol=1e-6, atol=1e-9)


def test_the_ramp_resumes_where_it_stopped(tmp_path):
    # A calibration and a change before the checkpoint (step 45, which ends the first
    # epoch: the resumed run starts a new one), a change after it, an LR warmup running
    # across it and an LR cap (max_lr_factor) that binds after it, computed from the LRs
    # at the first run's start.
    def calibrate(trainer, pl_module, ramp):
        b_crit = 4.0 * ramp.calibrated().b_simple
        return b_crit, (b_crit / 2, 2 * b_crit)

    def make_callback():
        return BatchRampCallback(calibrate=calibrate, max_batch_size=64, lr_rule="sqrt",
                                 max_lr_factor=1.5, update_every=5, min_steps=10)  # fmt: skip

    steps = 45
    (whole_cb, whole), (resumed_cb, resumed), saved = interrupted_and_whole(
        make_callback, lambda: IndexedRegression("adamw", warmup_steps=50), steps, tmp_path
    )
    check_same_run(whole, resumed, steps)
    # The scenario is the one described: it would not test much otherwise.
    changes = [c.step for c in whole_cb.ramp.history]
    assert min(changes) < steps < max(changes), changes
    assert [p.step for p in whole_cb.ramp.calibrations] == [10]
    assert whole.steps[steps]["start"] == 0  # the checkpoint ended an epoch
    assert saved["ramp"]["calibrations"] and saved["accumulation"] > 2
    assert max(s["lr"] for s in whole.steps) == pytest.approx(1.5 * 0.01, rel=1e-12)
    # The resumed callback holds the whole run's state.
    assert resumed_cb.ramp.history == whole_cb.ramp.history
    assert resumed_cb.ramp.calibrations == whole_cb.ramp.calibrations
    assert resumed_cb.ramp.examples_seen == whole_cb.ramp.examples_seen
    assert resumed_cb.tracker.n == whole_cb.tracker.n
    assert resumed_cb.tracker.b_simple == pytest.approx(whole_cb.tracker.b_simple, rel=1e-9)


@pytest.mark.parametrize(
    ("update_every", "steps", "epoch_end"),
    [
        # Changes k 5 -> 6 -> 7 decided at steps 81 and 84 wait for a window aligned with
        # them; the checkpoint at step 85 (mid-epoch) falls while they wait.
        (3, 85, False),
        # k 12 -> 14 decided at step 100 waits; the checkpoint at step 102 ends the epoch,
        # and the uninterrupted run applies it at the next epoch's first batch.
        (4, 102, True),
    ],
)
def test_the_schedule_resumes_where_it_stopped_with_a_change_pending(
    tmp_path, update_every, steps, epoch_end
):
    def make_callback():
        return BatchSizeScheduleCallback(fraction=0.5, max_batch_size=64, growth="multiple",
                                         lr_rule="sqrt", update_every=update_every,
                                         min_steps=10)  # fmt: skip

    (whole_cb, whole), (resumed_cb, resumed), saved = interrupted_and_whole(
        make_callback, lambda: IndexedRegression("sgd"), steps, tmp_path
    )
    check_same_run(whole, resumed, steps)
    # The scenario is the one described: a change pending at the checkpoint, applied later.
    changes = [c.step for c in whole_cb.schedule.history]
    assert min(changes) < steps < max(changes), changes
    assert (whole.steps[steps]["start"] == 0) == epoch_end
    pending = saved["schedule"]["batch_size"] // MICRO
    assert pending != saved["accumulation"], "no change was pending at the checkpoint"
    assert resumed_cb.schedule.history == whole_cb.schedule.history
    assert resumed_cb.schedule.examples_seen == whole_cb.schedule.examples_seen
    assert resumed_cb.tracker.n == whole_cb.tracker.n
    assert resumed_cb.tracker.b_simple == pytest.approx(whole_cb.tracker.b_simple, rel=1e-9)


# ----- what cannot be resumed exactly fails, naming it --------------------------------


def short_run(tmp_path):
    """A 12-step ramp run's checkpoint (a change applied at step 10)."""
    module = IndexedRegression("adamw")
    fit(BatchRampCallback(prior_ratio=8.0, update_every=5, min_steps=5), module, 12,
        tmp_path, every=12)  # fmt: skip
    assert module.steps[-1]["k"] > 2
    return tmp_path / "last.ckpt"


def test_a_resume_that_would_not_continue_the_run_fails_naming_why(tmp_path):
    last = short_run(tmp_path)

    def resume(accumulate=2, batch_size=MICRO, ckpt=last):
        trainer = pl.Trainer(
            accumulate_grad_batches=accumulate, max_steps=24, logger=False,
            callbacks=[BatchRampCallback(prior_ratio=8.0, update_every=5, min_steps=5)],
            enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False,
        )  # fmt: skip
        loader = DataLoader(TensorDataset(*linreg_tensors()), batch_size=batch_size)
        trainer.fit(IndexedRegression("adamw"), loader, ckpt_path=ckpt)

    with pytest.raises(
        ValueError, match=r"accumulate_grad_batches=2\), this one from accumulate_grad_batches=4"
    ):
        resume(accumulate=4)
    with pytest.raises(ValueError, match="micro_batch_size=4 examples per batch, this one 8"):
        resume(batch_size=2 * MICRO)
    # An optimizer whose moved LR did not come back as it was at the checkpoint.
    checkpoint = torch.load(last, weights_only=False)
    checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] = 0.01
    torch.save(checkpoint, tmp_path / "edited.ckpt")
    with pytest.raises(ValueError, match="param group 0's lr is 0.01 but was"):
        resume(ckpt=tmp_path / "edited.ckpt")


def test_a_state_from_inside_a_window_or_of_another_layout_is_refused(tmp_path):
    callback = BatchRampCallback()
    saved = torch.load(short_run(tmp_path), weights_only=False)["callbacks"][callback.state_key]
    callback.load_state_dict({})  # saved before the first batch: nothing to resume
    with pytest.raises(ValueError, match="inside an accumulation window .1 of its micro-batches"):
        callback.load_state_dict({**saved, "pending_backwards": 1})
    with pytest.raises(ValueError, match="has no 'tracker'"):
        callback.load_state_dict({k: v for k, v in saved.items() if k != "tracker"})
    with pytest.raises(ValueError, match="has no 'ramp'"):  # a schedule callback's state
        callback.load_state_dict({**{k: v for k, v in saved.items() if k != "ramp"},
                                  "schedule": saved["ramp"]})  # fmt: skip
    callback.load_state_dict(saved)  # the real one is kept for the resumed fit
