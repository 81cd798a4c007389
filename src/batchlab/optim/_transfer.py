"""Hyperparameters that follow the batch: move a tuned set from batch size B to B'.

Each rule is a pure function on numbers with its paper and equation in the docstring;
:func:`transfer_hparams` applies the right ones to a whole set of hyperparameters of
one optimizer and says, per hyperparameter, which rule moved it and why. The rules are
starting points for a new batch size, not a substitute for tuning there: Shallue et
al. 2018 find that the best learning rate follows no simple rule beyond the
perfect-scaling regime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._factory import OPTIMIZER_HPARAMS, OPTIMIZERS
from ._scaling import scale_lr
from ._validation import check_choice, check_int, check_real

#: Learning-rate rules of :func:`transfer_hparams`: :func:`scale_lr`'s three, the
#: Adam "surge" (:func:`surge_lr`) and SGD's saturating optimum (:func:`saturating_lr`).
LR_RULES: tuple[str, ...] = ("linear", "sqrt", "none", "surge", "saturating")

#: The rules that need the gradient noise scale B_noise.
NOISE_SCALE_LR_RULES: tuple[str, ...] = ("surge", "saturating")

#: Optimizers with Adam's second-moment average (they have ``beta2``).
ADAM_FAMILY: tuple[str, ...] = ("adam", "adamw", "lamb")

#: Optimizers whose weight decay shrinks the weights by (1 − ηλ) per step, so that
#: 1/(ηλ) is a timescale in steps (coupled L2 in plain SGD is, too: w ← (1 − ηλ)w − ηg).
TIMESCALE_DECAY: tuple[str, ...] = ("adamw", "sgd", "momentum", "nesterov")

_CITE = {
    "linear": "Goyal et al. 2017, arXiv:1706.02677",
    "sqrt": "Krizhevsky 2014, arXiv:1404.5997; for Adam, Malladi et al. 2022, arXiv:2205.10287",
    "surge": "Li et al. 2024, arXiv:2405.14578",
    "saturating": "McCandlish et al. 2018, arXiv:1812.06162",
    "beta2": "Marek et al. 2025, arXiv:2507.07101",
    "timescale": "Wang & Aitchison 2024, arXiv:2405.13698",
}


def _check_beta2(name: str, value: Any) -> float:
    """``value`` as a float if it lies in the open interval (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def _check_batch_sizes(from_batch_size: Any, to_batch_size: Any) -> float:
    """B'/B after checking that both are positive integers."""
    check_int("from_batch_size", from_batch_size, low=1)
    check_int("to_batch_size", to_batch_size, low=1)
    return to_batch_size / from_batch_size


def scale_weight_decay(
    weight_decay: float, from_batch_size: int, to_batch_size: int, *, lr_factor: float = 1.0
) -> float:
    """AdamW's weight decay at batch size B' that keeps its timescale fixed in epochs.

    Decoupled weight decay shrinks the weights by (1 − ηλ) per step, an exponential
    moving average over the last τ_iter = 1/(ηλ) steps. Wang & Aitchison 2024 find
    that the timescale to hold fixed is the one measured in epochs (examples seen),
    τ_epoch = τ_iter/(N/B) = B/(ηλN). Keeping τ_epoch fixed when B → B' and η → η'
    gives

        λ' = λ · (B'/B) · (η/η'),

    i.e. η'λ'·(N/B') = ηλ·(N/B): the decay applied per epoch is unchanged. At a fixed
    learning rate, λ grows in proportion to the batch size. Bergsma et al. 2025 find
    the same timescale B/(ηλD) (D the tokens of the whole run) to be the quantity
    that transfers.

    The same argument holds for SGD with coupled L2 decay (w ← (1 − ηλ)w − ηg; with
    momentum μ fixed, the timescale is (1 − μ)/(ηλ) and the rule is the same). Under
    the linear LR rule it leaves λ unchanged, which is what Goyal et al. 2017 do.

    References:
        Wang & Aitchison 2024, "How to set AdamW's weight decay as you scale model and
        dataset size", https://arxiv.org/abs/2405.13698
        Bergsma et al. 2025, "Power Lines: Scaling Laws for Weight Decay and Batch Size
        in LLM Pre-training", https://arxiv.org/abs/2505.13738

    Args:
        weight_decay: λ tuned at ``from_batch_size``, >= 0.
        from_batch_size: B, a positive integer.
        to_batch_size: B', a positive integer.
        lr_factor: η'/η, the factor the learning rate is scaled by in the same move
            (1: the learning rate stays as it is), > 0.

    Returns:
        λ' for batch size B'.
    """
    weight_decay = check_real("weight_decay", weight_decay, low=0.0)
    ratio = _check_batch_sizes(from_batch_size, to_batch_size)
    lr_factor = check_real("lr_factor", lr_factor, low=0.0, low_inclusive=False)
    return weight_decay * ratio / lr_factor


def beta2_half_life(beta2: float, batch_size: int) -> float:
    """The half-life of Adam's second-moment average, in examples: h = B·ln(½)/ln(β2).

    After t = ln(½)/ln(β2) steps a gradient's weight in v has halved; at B examples
    per step that is h examples (Marek et al. 2025 count it in tokens).

    References:
        Marek et al. 2025, "Small batch size training for language models: when
        vanilla SGD works, and why gradient accumulation is wasteful",
        https://arxiv.org/abs/2507.07101

    Args:
        beta2: β2 in (0, 1).
        batch_size: B, a positive integer.

    Returns:
        The half-life h in examples.
    """
    beta2 = _check_beta2("beta2", beta2)
    check_int("batch_size", batch_size, low=1)
    return batch_size * math.log(0.5) / math.log(beta2)


def scale_beta2(beta2: float, from_batch_size: int, to_batch_size: int) -> float:
    """Adam's β2 at batch size B' with the same half-life in examples: β2' = β2^(B'/B).

    Marek et al. 2025 find that β2 transfers across batch sizes when its half-life
    h = B·ln(½)/ln(β2) (:func:`beta2_half_life`) is held fixed in examples (tokens),
    which gives β2' = β2^(B'/B): a small batch needs a β2 much closer to 1 (their
    β2 = 0.9999 at batch size 1). Porian et al. 2024 found the same need for a higher
    β2 at small batch sizes. To first order in 1 − β2 this is Malladi et al. 2022's
    SDE rule for Adam, 1 − β2' = (B'/B)(1 − β2).

    References:
        Marek et al. 2025, "Small batch size training for language models: when
        vanilla SGD works, and why gradient accumulation is wasteful",
        https://arxiv.org/abs/2507.07101
        Porian et al. 2024, "Resolving Discrepancies in Compute-Optimal Scaling of
        Language Models", https://arxiv.org/abs/2406.19146
        Malladi, Lyu, Panigrahi, Arora 2022, "On the SDEs and Scaling Rules for
        Adaptive Gradient Algorithms", https://arxiv.org/abs/2205.10287

    Args:
        beta2: β2 tuned at ``from_batch_size``, in (0, 1).
        from_batch_size: B, a positive integer.
        to_batch_size: B', a positive integer.

    Returns:
        β2' for batch size B'.
    """
    beta2 = _check_beta2("beta2", beta2)
    ratio = _check_batch_sizes(from_batch_size, to_batch_size)
    return beta2**ratio


def _surge_curve(batch_size: float, noise_scale: float) -> float:
    """ε_opt(B)/ε_max = 1 / (½(√(B_noise/B) + √(B/B_noise))); 1 at B = B_noise."""
    return 2.0 / (math.sqrt(noise_scale / batch_size) + math.sqrt(batch_size / noise_scale))


def surge_lr(lr: float, from_batch_size: int, to_batch_size: int, noise_scale: float) -> float:
    """Adam's learning rate at B' on the "surge" curve through (B, lr), peaking at B_noise.

    For sign-like (Adam-style) updates Li et al. 2024 derive an optimal learning rate
    that first rises with the batch size and then falls:

        ε_opt(B) = ε_max / (½ (√(B_noise/B) + √(B/B_noise))),

    with its peak ε_max at B = B_noise. Below the peak it grows like √B (the square-root
    rule); beyond it, it falls like 1/√B; the curve is symmetric in log B around
    B_noise. Given ``lr`` tuned at B, this returns lr · ε_opt(B')/ε_opt(B), so ε_max need
    not be known. This is the formula exactly as written above: the summaries of the
    paper available when this was written confirm its rise-then-fall shape and the peak
    at B_peak = B_noise, but the full expression could not be checked against the
    paper's own text.

    References:
        Li et al. 2024, "Surge Phenomenon in Optimal Learning Rate and Batch Size
        Scaling", NeurIPS 2024, https://arxiv.org/abs/2405.14578

    Args:
        lr: learning rate tuned at ``from_batch_size``, >= 0.
        from_batch_size: B, a positive integer.
        to_batch_size: B', a positive integer.
        noise_scale: B_noise (in examples, e.g. a measured B_simple), > 0.

    Returns:
        The learning rate for batch size B'.
    """
    lr = check_real("lr", lr, low=0.0)
    _check_batch_sizes(from_batch_size, to_batch_size)
    noise_scale = check_real("noise_scale", noise_scale, low=0.0, low_inclusive=False)
    return (
        lr * _surge_curve(to_batch_size, noise_scale) / _surge_curve(from_batch_size, noise_scale)
    )


def saturating_lr(lr: float, from_batch_size: int, to_batch_size: int, noise_scale: float) -> float:
    """SGD's learning rate at B' on McCandlish's optimal-step curve through (B, lr).

    For SGD on a locally quadratic loss, the optimal step size at batch size B is
    ε_opt(B) = ε_max / (1 + B_noise/B) (McCandlish et al. 2018, Sec. 2, with B_noise as
    in their eq. 2.8): linear in B well below B_noise (the linear rule), saturating at
    ε_max well above it. Given ``lr`` tuned at B, this returns lr · ε_opt(B')/ε_opt(B).
    It is the SGD counterpart of :func:`surge_lr` (Li et al. 2024 contrast the two).

    References:
        McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
        Training", https://arxiv.org/abs/1812.06162

    Args:
        lr: learning rate tuned at ``from_batch_size``, >= 0.
        from_batch_size: B, a positive integer.
        to_batch_size: B', a positive integer.
        noise_scale: B_noise (in examples, e.g. a measured B_simple), > 0.

    Returns:
        The learning rate for batch size B'.
    """
    lr = check_real("lr", lr, low=0.0)
    _check_batch_sizes(from_batch_size, to_batch_size)
    noise_scale = check_real("noise_scale", noise_scale, low=0.0, low_inclusive=False)
    return lr * (1.0 + noise_scale / from_batch_size) / (1.0 + noise_scale / to_batch_size)


class SeesawStep(NamedTuple):
    """What Seesaw does where a schedule would divide the learning rate by α."""

    lr_factor: float
    """Multiply the learning rate by this (1/√α)."""
    batch_factor: float
    """Multiply the batch size by this (α)."""


def seesaw_step(decay_factor: float) -> SeesawStep:
    """Seesaw: replace "divide the learning rate by α" by "divide it by √α, multiply B by α".

    Meterez et al. 2025 show that for Adam (through normalized SGD, its proxy, in the
    variance-dominated regime, where it steps like SGD at a learning rate ∝ η·√B) a
    learning-rate cut by α and the pair (cut by √α, batch × α) give the same loss
    dynamics, the second in α times fewer steps for the same examples: whenever a
    schedule (step or cosine decay) would halve the learning rate, Seesaw multiplies it
    by 1/√2 and doubles the batch size. For plain SGD the equivalence is instead
    (η/α, B) ~ (η, αB) (their finite-sample result on noisy linear regression; Smith et
    al. 2018), which :func:`seesaw_step` does not return.

    References:
        Meterez et al. 2025, "Seesaw: Accelerating Training by Balancing Learning Rate
        and Batch Size Scheduling", https://arxiv.org/abs/2510.14717
        Smith, Kindermans, Ying, Le 2018, "Don't Decay the Learning Rate, Increase the
        Batch Size", https://arxiv.org/abs/1711.00489

    Args:
        decay_factor: α >= 1, the factor the schedule would divide the learning rate by
            (2 for a halving; 1 for no decay).

    Returns:
        ``SeesawStep(lr_factor=1/√α, batch_factor=α)``; it unpacks as a pair.
    """
    alpha = check_real("decay_factor", decay_factor, low=1.0)
    return SeesawStep(lr_factor=1.0 / math.sqrt(alpha), batch_factor=alpha)


@dataclass(frozen=True)
class HparamTransfer:
    """How one hyperparameter moved from one batch size to the other.

    Attributes:
        before: the value at the old batch size.
        after: the value at the new batch size.
        rule: the rule's name (an LR rule of :data:`LR_RULES`, ``"half-life"``,
            ``"timescale"`` or ``"unchanged"``).
        explanation: one line: the formula and its citation, or why it did not move.
    """

    before: Any
    after: Any
    rule: str
    explanation: str

    @property
    def factor(self) -> float | None:
        """after/before, or ``None`` where that is undefined (before = 0, not a number)."""
        numbers = all(
            isinstance(v, (int, float)) and not isinstance(v, bool)
            for v in (self.before, self.after)
        )
        if not numbers or self.before == 0:
            return None
        return self.after / self.before

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.before,
            "to": self.after,
            "factor": self.factor,
            "rule": self.rule,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class TransferResult:
    """Hyperparameters moved from one batch size to another by :func:`transfer_hparams`.

    Attributes:
        hparams: the hyperparameters for ``to_batch_size`` (same keys as given).
        transfers: per hyperparameter, its :class:`HparamTransfer` (rule and reason).
        optimizer: the optimizer's name.
        from_batch_size: B, where ``hparams`` were tuned.
        to_batch_size: B'.
        lr_rule: the learning-rate rule that was used.
        noise_scale: B_noise, if a rule used it.
    """

    hparams: dict[str, Any]
    transfers: dict[str, HparamTransfer]
    optimizer: str
    from_batch_size: int
    to_batch_size: int
    lr_rule: str
    noise_scale: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "from_batch_size": self.from_batch_size,
            "to_batch_size": self.to_batch_size,
            "lr_rule": self.lr_rule,
            "noise_scale": self.noise_scale,
            "hparams": dict(self.hparams),
            "transfers": {name: t.to_dict() for name, t in self.transfers.items()},
        }


def default_lr_rule(optimizer: str, *, noise_scale: float | None = None) -> str:
    """The learning-rate rule :func:`transfer_hparams` uses when none is given.

    Adam family (``adam``, ``adamw``, ``lamb``): ``"sqrt"`` (Malladi et al. 2022 derive
    it for Adam from its SDE; You et al. 2019 scale LAMB's learning rate this way), or
    ``"surge"`` when ``noise_scale`` is known. SGD family (``sgd``, ``momentum``,
    ``nesterov``, ``lars``): ``"linear"`` (Goyal et al. 2017), or ``"saturating"`` when
    ``noise_scale`` is known.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if optimizer in ADAM_FAMILY:
        return "sqrt" if noise_scale is None else "surge"
    return "linear" if noise_scale is None else "saturating"


def _lr_factor(
    rule: str, from_batch_size: int, to_batch_size: int, noise_scale: float | None
) -> float:
    if rule == "surge":
        assert noise_scale is not None
        return surge_lr(1.0, from_batch_size, to_batch_size, noise_scale)
    if rule == "saturating":
        assert noise_scale is not None
        return saturating_lr(1.0, from_batch_size, to_batch_size, noise_scale)
    return scale_lr(1.0, from_batch_size, to_batch_size, rule)


def _lr_explanation(rule: str, noise_scale: float | None) -> str:
    if rule == "linear":
        return f"η·B'/B, linear scaling rule ({_CITE['linear']})"
    if rule == "sqrt":
        return f"η·√(B'/B), square-root rule ({_CITE['sqrt']})"
    if rule == "surge":
        return (
            f"η·f(B')/f(B), f(B) = 2/(√(B_noise/B) + √(B/B_noise)), B_noise = {noise_scale:g}: "
            f"Adam's surge, peak at B_noise ({_CITE['surge']})"
        )
    if rule == "saturating":
        return (
            f"η·g(B')/g(B), g(B) = 1/(1 + B_noise/B), B_noise = {noise_scale:g}: "
            f"SGD's optimal step ({_CITE['saturating']})"
        )
    return "lr_rule 'none' keeps the learning rate"


def _weight_decay_transfer(
    optimizer: str, weight_decay: Any, from_batch_size: int, to_batch_size: int, lr_factor: float
) -> HparamTransfer:
    if optimizer in TIMESCALE_DECAY:
        after = scale_weight_decay(
            weight_decay, from_batch_size, to_batch_size, lr_factor=lr_factor
        )
        where = "AdamW" if optimizer == "adamw" else "SGD's coupled L2 (same (1 − ηλ) shrink)"
        return HparamTransfer(
            weight_decay,
            after,
            "timescale",
            f"λ·(B'/B)·(η/η'): {where}, timescale 1/(ηλ) fixed in epochs ({_CITE['timescale']})",
        )
    check_real("weight_decay", weight_decay, low=0.0)
    reason = {
        "adam": "Adam's L2 term passes through the 1/√v preconditioner, so 1/(ηλ) is no "
        "timescale (Loshchilov & Hutter 2019, arXiv:1711.05101)",
        "lars": "LARS's decay is rescaled by the per-layer trust ratio, so 1/(ηλ) is no timescale",
        "lamb": "LAMB's decay is rescaled by the per-layer trust ratio, so 1/(ηλ) is no timescale",
    }[optimizer]
    return HparamTransfer(weight_decay, weight_decay, "unchanged", reason)


def transfer_hparams(
    hparams: Mapping[str, Any],
    from_batch_size: int,
    to_batch_size: int,
    *,
    optimizer: str,
    lr_rule: str | None = None,
    noise_scale: float | None = None,
) -> TransferResult:
    """Move hyperparameters tuned at one batch size to another, each by its cited rule.

    * ``lr`` by ``lr_rule`` (:data:`LR_RULES`; default :func:`default_lr_rule`: square
      root for the Adam family, linear for the SGD family, and the noise-scale curves
      :func:`surge_lr` / :func:`saturating_lr` when ``noise_scale`` is given);
    * ``beta2`` (Adam family) by :func:`scale_beta2`, its half-life in examples fixed;
    * ``weight_decay`` for AdamW and SGD/momentum/Nesterov by
      :func:`scale_weight_decay` (the decay timescale fixed in epochs, taking the new
      learning rate into account; without ``lr`` in ``hparams`` the learning rate is
      taken as fixed). For Adam's coupled L2 and for LARS/LAMB, whose decay goes
      through a preconditioner or trust ratio, there is no such timescale and
      ``weight_decay`` is left unchanged;
    * every other hyperparameter (``beta1``, ``momentum``, ``eps``, ...) unchanged.

    These are starting points at the new batch size; tune there when it matters
    (Shallue et al. 2018, "Measuring the Effects of Data Parallelism on Neural Network
    Training", arXiv:1811.03600).

    Args:
        hparams: hyperparameters tuned at ``from_batch_size``, e.g.
            ``{"lr": 3e-4, "beta2": 0.95, "weight_decay": 0.1}``.
        from_batch_size: B, a positive integer.
        to_batch_size: B', a positive integer.
        optimizer: one of :data:`~batchlab.optim.OPTIMIZERS`.
        lr_rule: one of :data:`LR_RULES`, or ``None`` for :func:`default_lr_rule`.
        noise_scale: B_noise in examples (e.g. a measured B_simple); needed by, and only
            used by, the ``"surge"`` and ``"saturating"`` rules.

    Returns:
        A :class:`TransferResult`: the new hyperparameters and, per hyperparameter, the
        rule used and a one-line explanation with its citation.

    Example:
        >>> r = transfer_hparams({"lr": 3e-4, "beta2": 0.95}, 64, 512, optimizer="adamw")
        >>> round(r.hparams["beta2"], 4)
        0.6634
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_batch_sizes(from_batch_size, to_batch_size)
    if not isinstance(hparams, Mapping):
        raise ValueError(f"hparams must be a mapping of names to values, got {hparams!r}")
    if noise_scale is not None:
        noise_scale = check_real("noise_scale", noise_scale, low=0.0, low_inclusive=False)
    rule = default_lr_rule(optimizer, noise_scale=noise_scale) if lr_rule is None else lr_rule
    check_choice("lr_rule", rule, LR_RULES)
    if rule in NOISE_SCALE_LR_RULES and noise_scale is None:
        raise ValueError(f"lr_rule {rule!r} needs noise_scale (B_noise in examples)")
    if rule not in NOISE_SCALE_LR_RULES and noise_scale is not None:
        raise ValueError(
            f"noise_scale is used only by lr_rule 'surge' or 'saturating', not {rule!r}; "
            "drop it or choose one of those"
        )

    lr_factor = _lr_factor(rule, from_batch_size, to_batch_size, noise_scale)
    transfers: dict[str, HparamTransfer] = {}
    for name, value in hparams.items():
        if name == "lr":
            lr = check_real("lr", value, low=0.0)
            explanation = _lr_explanation(rule, noise_scale)
            transfers[name] = HparamTransfer(value, lr * lr_factor, rule, explanation)
        elif name == "beta2" and optimizer in ADAM_FAMILY:
            after = scale_beta2(value, from_batch_size, to_batch_size)
            half_life = beta2_half_life(value, from_batch_size)
            transfers[name] = HparamTransfer(
                value,
                after,
                "half-life",
                f"β2^(B'/B): half-life fixed at {half_life:.4g} examples ({_CITE['beta2']})",
            )
        elif name == "weight_decay":
            factor = lr_factor if "lr" in hparams else 1.0
            transfers[name] = _weight_decay_transfer(
                optimizer, value, from_batch_size, to_batch_size, factor
            )
        elif name in OPTIMIZER_HPARAMS[optimizer]:
            reason = f"no batch-size rule for {name}"
            transfers[name] = HparamTransfer(value, value, "unchanged", reason)
        else:
            reason = f"not a hyperparameter of {optimizer}"
            transfers[name] = HparamTransfer(value, value, "unchanged", reason)
    return TransferResult(
        hparams={name: t.after for name, t in transfers.items()},
        transfers=transfers,
        optimizer=optimizer,
        from_batch_size=from_batch_size,
        to_batch_size=to_batch_size,
        lr_rule=rule,
        noise_scale=noise_scale if rule in NOISE_SCALE_LR_RULES else None,
    )
