"""``BatchRamp``: grow the batch to a fraction of the *calibrated* critical batch size.

:class:`~batchlab.BatchSizeSchedule` grows the batch with the tracked noise scale
B_simple alone (open loop). B_simple predicts B_crit only up to a factor (McCandlish
et al. 2018, Sec. 2.3; Merrill et al. 2025 find the gap large under Adam), so the
ramp closes the loop: at a few chosen points a driver measures B_crit by short
branches and hands it to :meth:`BatchRamp.add_calibration`; the ratio
r = B_crit/B_simple is estimated online (:func:`estimate_ratio`) and the batch grows
to ``fraction`` · r̂ · B_simple(t). On every change the optimizer's hyperparameters
move by :func:`batchlab.optim.transfer_hparams` (LR, β2 half-life, AdamW's decay
timescale), or by Seesaw's trade (Meterez et al. 2025).

The controller never trains or branches itself: :attr:`BatchRamp.calibration_due`
says when to calibrate, a driver (:func:`batchlab.training.ramp_training`, or your
own loop) runs the branches.

References:
    McCandlish, Kaplan, Amodei et al. 2018, arXiv:1812.06162, Sec. 2.3, eq. 2.11.
    Merrill, Arora, Groeneveld, Hajishirzi 2025, arXiv:2505.23971.
    Meterez et al. 2025, "Seesaw", arXiv:2510.14717.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..optim import (
    LAMB,
    LARS,
    LR_RULES,
    NOISE_SCALE_LR_RULES,
    OPTIMIZERS,
    scale_weight_decay,
    seesaw_step,
    transfer_hparams,
)
from ._batch_size_schedule import (
    AccumulationGrowth,
    Growth,
    _positive_int,
    _Tracker,
    next_batch_size,
)
from ._ramp_calibration import (
    CalibratedBCrit,
    CalibrationPoint,
    RatioEstimate,
    calibrated_b_crit,
    estimate_ratio,
)


def optimizer_name_of(optimizer: torch.optim.Optimizer) -> str:
    """The batchlab name (:data:`~batchlab.optim.OPTIMIZERS`) of a torch optimizer."""
    if isinstance(optimizer, torch.optim.AdamW):
        return "adamw"
    if isinstance(optimizer, torch.optim.Adam):
        return "adam"
    if isinstance(optimizer, LAMB):
        return "lamb"
    if isinstance(optimizer, LARS):
        return "lars"
    if isinstance(optimizer, torch.optim.SGD):
        group = optimizer.param_groups[0]
        if group.get("nesterov"):
            return "nesterov"
        return "momentum" if group.get("momentum", 0) else "sgd"
    raise TypeError(
        f"cannot tell the rules for a {type(optimizer).__name__}; pass optimizer_name= "
        f"(one of {', '.join(OPTIMIZERS)})"
    )


def move_hparams(
    hparams: Mapping[str, float],
    from_batch_size: int,
    to_batch_size: int,
    *,
    optimizer: str,
    lr_rule: str | None = None,
    seesaw: bool = False,
    noise_scale: float | None = None,
    max_lr: float | None = None,
) -> dict[str, float]:
    """``lr``/``beta2``/``weight_decay`` at ``to_batch_size``, by the ramp's rules.

    Without ``seesaw``: :func:`batchlab.optim.transfer_hparams` (``noise_scale`` is
    passed only to the rules that use it). With ``seesaw``: the batch growth α =
    B'/B is Seesaw's trade for an LR decay by α, so the LR is multiplied by
    :func:`batchlab.optim.seesaw_step`'s 1/√α (Meterez et al. 2025), β2 keeps its
    half-life in examples and the weight-decay timescale follows the new LR. The LR is
    then capped at ``max_lr``, and the weight decay recomputed with the capped LR.
    """
    rule = "none" if seesaw else lr_rule
    scale = noise_scale if rule in NOISE_SCALE_LR_RULES else None
    result = transfer_hparams(
        hparams, from_batch_size, to_batch_size, optimizer=optimizer, lr_rule=rule,
        noise_scale=scale,
    )  # fmt: skip
    moved = dict(result.hparams)
    lr = moved["lr"] * (seesaw_step(to_batch_size / from_batch_size).lr_factor if seesaw else 1.0)
    if max_lr is not None:
        lr = min(lr, max_lr)
    decay = result.transfers.get("weight_decay")
    if lr != moved["lr"] and decay is not None and decay.rule == "timescale":
        moved["weight_decay"] = scale_weight_decay(
            hparams["weight_decay"], from_batch_size, to_batch_size, lr_factor=lr / hparams["lr"]
        )
    moved["lr"] = lr
    return moved


@dataclass(frozen=True)
class RampChange:
    """One change of the batch size by :class:`BatchRamp`.

    Attributes:
        step: optimizer steps taken when it changed (the new size applies from the next).
        examples_seen: training examples used by then.
        batch_size: the new effective batch size.
        accumulation_steps: micro-batches per step from now on.
        b_simple: the tracked noise scale then.
        b_crit: the calibrated B_crit (r̂ · B_simple) that set it.
        ratio: r̂ then.
        lr: the first param group's new learning rate (``nan`` without an optimizer).
    """

    step: int
    examples_seen: int
    batch_size: int
    accumulation_steps: int
    b_simple: float
    b_crit: float
    ratio: float
    lr: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.__dict__.items()}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RampChange:
        nan = math.nan
        return cls(
            int(raw["step"]), int(raw["examples_seen"]), int(raw["batch_size"]),
            int(raw["accumulation_steps"]),
            *(nan if raw[k] is None else float(raw[k]) for k in ("b_simple", "b_crit", "ratio", "lr")),
        )  # fmt: skip


def _positive_real(value: Any, name: str, low: float = 0.0, inclusive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (value == low and not inclusive):
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


class BatchRamp(AccumulationGrowth):
    """Grows the batch to ``fraction`` × the calibrated B_crit; moves the hyperparameters.

    A loop with gradient accumulation reads :attr:`accumulation_steps` before each
    optimizer step, calls :meth:`step` after it, and calibrates when told::

        tracker = bl.NoiseScaleTracker(model, ema_decay=0.9)
        ramp = bl.BatchRamp(tracker, micro_batch_size=16, max_batch_size=1024,
                            fraction=0.5, optimizer=opt)
        while not done:
            k = ramp.accumulation_steps
            for _ in range(k):
                (loss_fn(model, next(micro_batches)) / k).backward()
            opt.step(); tracker.step(); opt.zero_grad()
            ramp.step()                    # may grow the batch and move lr/β2/wd
            if ramp.calibration_due:       # branch, fit S(B), hand back B_crit
                fit = my_branches(model, opt, around=ramp.b_crit)
                ramp.add_calibration(fit.b_crit, fit.b_crit_ci)

    The batch size every ``update_every`` steps is :func:`next_batch_size` of
    r̂ · B_simple (allowed sizes: ``micro_batch_size`` × ``base_accumulation`` × 2^j,
    or any multiple; capped at ``max_batch_size`` and at ``max_growth`` × now; never
    smaller than now). Until the first calibration the batch stays put
    (``wait_for_calibration``) or follows ``prior_ratio`` · B_simple; it stays put only
    while a calibration can still come: with ``max_calibrations = 0`` (a ratio carried
    over from an earlier run as ``prior_ratio``), or every calibration spent without a
    usable point, it follows ``prior_ratio`` · B_simple. Points ``carried`` from
    earlier runs count as calibrations already made (with their intervals). A
    calibration is due at the first update once the tracker has ``min_steps`` steps,
    and again whenever B_simple has grown by ``recalibrate_growth`` since the last one
    and ``calibration_gap`` steps have passed (early in training the tracked B_simple
    can jump several-fold in a few steps), at most ``max_calibrations`` times.

    On a change from B to B', each param group's ``lr``, ``betas[1]`` (Adam family)
    and ``weight_decay`` become :func:`move_hparams` of their values at B: the rules of
    :func:`batchlab.optim.transfer_hparams` (``lr_rule``, default the optimizer's), or
    Seesaw's 1/√α LR per α-fold batch growth (``seesaw=True``), the LR at most
    ``max_lr_factor`` × its value at construction. An ``lr_scheduler``'s base LRs
    follow the same factor.

    References:
        McCandlish et al. 2018, arXiv:1812.06162; Merrill et al. 2025,
        arXiv:2505.23971; Meterez et al. 2025, arXiv:2510.14717.

    Args:
        tracker: a :class:`~batchlab.noise.NoiseScaleTracker` (``b_simple``, ``n``).
        micro_batch_size: examples per micro-batch.
        base_accumulation: micro-batches per step at the start, >= 2 (the tracker
            needs two).
        max_batch_size: cap on the batch size (``None``: none).
        fraction: target batch as a fraction of the calibrated B_crit, > 0.
        growth: ``"pow2"`` or ``"multiple"``.
        max_growth: the batch grows by at most this factor per update, > 1 (``None``:
            no limit). The tracked B_simple of a small model can jump tenfold between
            updates; one such jump must not move the batch (and the LR) that far.
        optimizer: the optimizer whose hyperparameters move (optional).
        optimizer_name: its batchlab name, for the rules (default: from its type).
        lr_rule: an LR rule of :data:`batchlab.optim.LR_RULES` (default: the
            optimizer's, :func:`batchlab.optim.default_lr_rule`); ``"surge"`` and
            ``"saturating"`` use the calibrated B_crit as the noise scale.
        seesaw: use Seesaw's LR-for-batch trade instead of ``lr_rule``.
        lr_scheduler: a torch LR scheduler whose ``base_lrs`` follow the LR moves.
        max_lr_factor: cap on every group's LR over its LR at construction, >= 1.
        update_every: steps between updates, >= 1.
        min_steps: tracker steps before the first calibration or change, >= 1.
        recalibrate_growth: B_simple growth factor that calls for a new calibration, > 1.
        max_calibrations: calibrations at most, >= 0.
        calibration_gap: steps at least between two calibrations, >= 0.
        wait_for_calibration: keep the batch until the first calibration point (while
            one can still come, and none was carried).
        prior_ratio: r before any calibration, > 0.
        carried: calibration points carried from earlier runs of the same model and
            optimizer (:attr:`RampResult.points <batchlab.training.RampResult.points>`):
            they enter r̂ from the first step with their intervals, and the spread
            between them and this run's points widens its interval (τ²), so a ratio
            carried over keeps its uncertainty. Not part of :meth:`state_dict` (pass
            them again when resuming).
        confidence: level of the intervals.
    """

    def __init__(
        self,
        tracker: _Tracker,
        *,
        micro_batch_size: int,
        base_accumulation: int = 2,
        max_batch_size: int | None = None,
        fraction: float = 0.5,
        growth: Growth = "pow2",
        max_growth: float | None = 2.0,
        optimizer: torch.optim.Optimizer | None = None,
        optimizer_name: str | None = None,
        lr_rule: str | None = None,
        seesaw: bool = False,
        lr_scheduler: Any = None,
        max_lr_factor: float | None = None,
        update_every: int = 10,
        min_steps: int = 20,
        recalibrate_growth: float = 2.0,
        max_calibrations: int = 3,
        calibration_gap: int = 100,
        wait_for_calibration: bool = True,
        prior_ratio: float = 1.0,
        carried: Sequence[CalibrationPoint] = (),
        confidence: float = 0.95,
    ) -> None:
        super().__init__(
            tracker,
            micro_batch_size=micro_batch_size,
            base_accumulation=base_accumulation,
            max_batch_size=max_batch_size,
            fraction=fraction,
            growth=growth,
            update_every=update_every,
            min_steps=min_steps,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
        )
        self.max_growth = (
            None if max_growth is None else _positive_real(max_growth, "max_growth", 1.0)
        )
        if optimizer_name is not None and optimizer_name not in OPTIMIZERS:
            raise ValueError(
                f"optimizer_name must be one of {', '.join(OPTIMIZERS)}, got {optimizer_name!r}"
            )
        if optimizer_name is None and optimizer is not None:
            optimizer_name = optimizer_name_of(optimizer)
        if lr_rule is not None and lr_rule not in LR_RULES:
            raise ValueError(f"lr_rule must be one of {', '.join(LR_RULES)}, got {lr_rule!r}")
        if not isinstance(seesaw, bool):
            raise ValueError(f"seesaw must be True or False, got {seesaw!r}")
        if seesaw and lr_rule is not None:
            raise ValueError("give either seesaw=True or lr_rule, not both")
        self.optimizer_name = optimizer_name
        self.lr_rule = lr_rule
        self.seesaw = seesaw
        self.max_lr_factor = (
            None
            if max_lr_factor is None
            else _positive_real(max_lr_factor, "max_lr_factor", 1.0, True)
        )
        self.recalibrate_growth = _positive_real(recalibrate_growth, "recalibrate_growth", 1.0)
        self.max_calibrations = _positive_int(max_calibrations, "max_calibrations", 0)
        self.calibration_gap = _positive_int(calibration_gap, "calibration_gap", 0)
        self.wait_for_calibration = bool(wait_for_calibration)
        self.prior_ratio = _positive_real(prior_ratio, "prior_ratio")
        self.confidence = _positive_real(confidence, "confidence")
        if self.confidence >= 1:
            raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
        self._initial_lrs = (
            [] if optimizer is None else [float(g["lr"]) for g in optimizer.param_groups]
        )
        self._history: list[RampChange] = []
        self._points: list[CalibrationPoint] = []
        # (step, B_simple) of every calibration, failed ones too
        self._attempts: list[tuple[int, float]] = []
        self._carried = tuple(carried)
        if not all(isinstance(p, CalibrationPoint) for p in self._carried):
            raise TypeError("carried must hold CalibrationPoint objects (e.g. RampResult.points)")
        self._update_estimate()

    # ----- what the loop reads ---------------------------------------------------------

    @property
    def history(self) -> list[RampChange]:
        """Every batch-size change so far."""
        return list(self._history)

    @property
    def calibrations(self) -> list[CalibrationPoint]:
        """Every calibration point so far."""
        return list(self._points)

    @property
    def ratio(self) -> RatioEstimate:
        """The running estimate of B_crit/B_simple."""
        return self._estimate

    def _b_simple(self) -> float:
        value = float(self.tracker.b_simple) if self.tracker.n > 0 else math.nan
        return value if math.isfinite(value) and value > 0 else math.nan

    def calibrated(self) -> CalibratedBCrit | None:
        """r̂ · B_simple now, with its interval (``None`` before B_simple is known)."""
        b_simple = self._b_simple()
        if math.isnan(b_simple):
            return None
        ci = getattr(self.tracker, "b_simple_ci", None)
        return calibrated_b_crit(self._estimate, b_simple, None if ci is None else tuple(ci))

    @property
    def b_crit(self) -> float:
        """The calibrated B_crit now (``nan`` before B_simple is known)."""
        b_simple = self._b_simple()
        return self._estimate.ratio * b_simple

    @property
    def calibration_due(self) -> bool:
        """True when a driver should measure B_crit now and call :meth:`add_calibration`."""
        if len(self._attempts) >= self.max_calibrations or self.tracker.n < self.min_steps:
            return False
        b_simple = self._b_simple()
        if math.isnan(b_simple):
            return False
        if not self._attempts:
            return True
        last_step, last_b_simple = self._attempts[-1]
        return (
            self._steps - last_step >= self.calibration_gap
            and b_simple >= self.recalibrate_growth * last_b_simple
        )

    # ----- calibration -----------------------------------------------------------------

    def add_calibration(
        self,
        b_crit: float,
        b_crit_ci: tuple[float, float],
        *,
        b_simple: float | None = None,
        step: int | None = None,
    ) -> CalibrationPoint:
        """Record a B_crit measured now (default: next to the tracker's B_simple)."""
        point = CalibrationPoint(
            step=self._steps if step is None else int(step),
            b_crit=b_crit,
            b_crit_ci=(float(b_crit_ci[0]), float(b_crit_ci[1])),
            b_simple=self._b_simple() if b_simple is None else b_simple,
            confidence=self.confidence,
        )
        self._points.append(point)
        self._attempts.append((self._steps, point.b_simple))
        self._update_estimate()
        return point

    def skip_calibration(self) -> None:
        """Count a calibration that gave no B_crit (e.g. too few branches reached)."""
        self._attempts.append((self._steps, self._b_simple()))

    def hparams_at(
        self,
        hparams: Mapping[str, float],
        from_batch_size: int,
        to_batch_size: int,
        *,
        group: int = 0,
    ) -> dict[str, float]:
        """``hparams`` moved between batch sizes by this ramp's rules, with param group ``group``'s LR cap."""
        if self.optimizer_name is None:
            raise ValueError("hparams_at needs optimizer_name (or an optimizer) to pick the rules")
        return move_hparams(
            hparams, from_batch_size, to_batch_size, optimizer=self.optimizer_name,
            lr_rule=self.lr_rule, seesaw=self.seesaw, noise_scale=self._noise_scale(),
            max_lr=self._max_lr(group),
        )  # fmt: skip

    def _max_lr(self, group: int) -> float | None:
        if self.max_lr_factor is None or group >= len(self._initial_lrs):
            return None
        return self._initial_lrs[group] * self.max_lr_factor

    def _noise_scale(self) -> float | None:
        b_crit = self.b_crit
        return b_crit if math.isfinite(b_crit) else None

    @property
    def _waiting(self) -> bool:
        """The batch waits for a first calibration point, while one can still come and
        none was carried (with ``max_calibrations`` spent, or 0, it follows
        ``prior_ratio`` · B_simple)."""
        return (
            self.wait_for_calibration
            and not self._points
            and not self._carried
            and len(self._attempts) < self.max_calibrations
        )

    def _update_estimate(self) -> None:
        self._estimate = estimate_ratio(
            [*self._carried, *self._points],
            prior_ratio=self.prior_ratio,
            confidence=self.confidence,
        )

    # ----- the loop's one call ---------------------------------------------------------

    def step(self, *, examples: int | None = None) -> bool:
        """Count one optimizer step; maybe grow the batch. Returns True if it grew."""
        if not self._count(examples):  # examples_seen never counts the branches
            return False
        if self._waiting:
            return False
        b_simple = self._b_simple()
        b_crit = self._estimate.ratio * b_simple
        cap = self.max_batch_size
        if self.max_growth is not None:
            step_cap = int(self._batch_size * self.max_growth)
            cap = step_cap if cap is None else min(cap, step_cap)
        new = next_batch_size(
            self._batch_size, b_crit, micro_batch_size=self.micro_batch_size,
            base_accumulation=self.base_accumulation, fraction=self.fraction,
            max_batch_size=cap, growth=self.growth,
        )  # fmt: skip
        if new == self._batch_size:
            return False
        old = self._batch_size
        self._batch_size = new
        self._move(old, new)
        lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer else math.nan
        self._history.append(
            RampChange(
                self._steps,
                self._examples,
                new,
                self.accumulation_steps,
                b_simple,
                b_crit,
                self._estimate.ratio,
                lr,
            )  # fmt: skip
        )
        return True

    def _move(self, old: int, new: int) -> None:
        if self.optimizer is None:
            return
        assert self.optimizer_name is not None
        for index, group in enumerate(self.optimizer.param_groups):
            hparams = {"lr": float(group["lr"])}
            if "betas" in group:  # the Adam family's (β1, β2)
                hparams["beta2"] = float(group["betas"][1])
            if "weight_decay" in group:
                hparams["weight_decay"] = float(group["weight_decay"])
            moved = self.hparams_at(hparams, old, new, group=index)
            ratio = moved["lr"] / hparams["lr"] if hparams["lr"] else 1.0
            group["lr"] = moved["lr"]
            if "initial_lr" in group:  # set by torch LR schedulers
                group["initial_lr"] = group["initial_lr"] * ratio
            if self.lr_scheduler is not None and index < len(self.lr_scheduler.base_lrs):
                self.lr_scheduler.base_lrs[index] *= ratio
            if "beta2" in hparams:
                group["betas"] = (group["betas"][0], moved["beta2"])
            if "weight_decay" in hparams:
                group["weight_decay"] = moved["weight_decay"]

    # ----- checkpointing ---------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Progress, history and calibration points, for resuming."""
        return {
            **self._progress_state(),
            "history": [c.to_dict() for c in self._history],
            "calibrations": [p.to_dict() for p in self._points],
            "attempts": [[s, b if math.isfinite(b) else None] for s, b in self._attempts],
            "initial_lrs": list(self._initial_lrs),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict` (the optimizer's values come from its own state)."""
        self._load_progress(state)
        self._history = [RampChange.from_dict(c) for c in state.get("history", [])]
        self._points = [CalibrationPoint.from_dict(p) for p in state.get("calibrations", [])]
        self._attempts = [
            (int(s), math.nan if b is None else float(b)) for s, b in state.get("attempts", [])
        ]
        if state.get("initial_lrs"):
            self._initial_lrs = [float(v) for v in state["initial_lrs"]]
        self._update_estimate()
