"""How each tuned hyperparameter moves with batch size, against the rules that say how it should.

A study tunes the learning rate η, Adam's β2 and the weight decay λ separately at every
rung. This module reads those tuned values against B the way :func:`lr_trend` reads the
learning rate: the log-log slope of a quantity against B, with an interval, and which
rule the slope is consistent with. Each rule of :mod:`batchlab.optim`'s transfer
functions holds one quantity fixed (or growing as a fixed power of B):

* ``lr``, linear: η ∝ B (Goyal et al. 2017);
* ``lr``, square-root: η ∝ B^½ (Krizhevsky 2014; Malladi et al. 2022 for Adam);
* ``lr``, unchanged: η ∝ B^0;
* ``beta2``, half-life: the half-life in examples h = B·ln ½ / ln β2 ∝ B^0 (Marek et
  al. 2025);
* ``beta2``, unchanged: 1 − β2 ∝ B^0;
* ``weight_decay``, timescale: AdamW's τ = B/(η·λ·N) in epochs ∝ B^0 (Wang &
  Aitchison 2024);
* ``weight_decay``, unchanged: λ ∝ B^0.

A rule is therefore a (quantity, exponent) pair and nothing else: its prediction at
every rung is q(B) = q(B₀)·(B/B₀)^k from the smallest tuned rung B₀, turned back into
the hyperparameter (for the timescale rule with that rung's own tuned η). This is why
the module needs no copy of the transfer formulas (analysis may not import optim; both
sit in one layer): ``tests/analysis/test_hparam_trends.py`` checks that the predictions
equal :func:`batchlab.optim.scale_beta2`, :func:`~batchlab.optim.scale_weight_decay`
and :func:`~batchlab.optim.scale_lr` applied from B₀. The noise-scale rules (surge,
saturating) are not power laws and need B_noise; they are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from ._checks import AnalysisError, check_batch_sizes, check_confidence, plain, plain_pair, rung
from ._lr_trend import _regime_members, _slope
from ._regimes import REGIMES

#: The hyperparameters read against batch size, in the order they are reported.
TREND_HPARAMS: tuple[str, ...] = ("lr", "beta2", "weight_decay")

#: Without an interval (two rungs), a slope is consistent with a rule's exponent when
#: within this of it: half the gap between the linear and square-root rules, as in
#: :func:`lr_trend`.
_RULE_TOLERANCE = 0.25

#: Slack on "inside the interval", so that an exact power law (se = 0) is consistent
#: with its own exponent despite rounding in the slope.
_EXACT = 1e-9

_LN_HALF = math.log(0.5)

_CITE = {
    "linear": "Goyal et al. 2017, arXiv:1706.02677",
    "square-root": "Krizhevsky 2014, arXiv:1404.5997; Malladi et al. 2022, arXiv:2205.10287",
    "half-life": "Marek et al. 2025, arXiv:2507.07101",
    "timescale": "Wang & Aitchison 2024, arXiv:2405.13698; Bergsma et al. 2025, arXiv:2505.13738",
    "unchanged": "",
}


@dataclass(frozen=True)
class ExponentFit:
    """The log-log slope of one quantity against batch size.

    Attributes:
        quantity: its name (``"lr"``, ``"one_minus_beta2"``, ``"half_life"``,
            ``"weight_decay"``, ``"timescale"``).
        label: how it is written for a reader, with its unit.
        values: the quantity at each rung of the trend.
        exponent: OLS slope k of log q = k log B + c.
        exponent_se: its standard error (``None`` with two rungs).
        exponent_ci: slope ± t·se, t the Student-t quantile with n − 2 degrees of
            freedom (``None`` with two rungs).
        per_regime: regime -> slope within it (``None`` with fewer than two rungs
            there); empty without regimes.
    """

    quantity: str
    label: str
    values: tuple[float, ...]
    exponent: float
    exponent_se: float | None
    exponent_ci: tuple[float, float] | None
    per_regime: dict[str, float | None] = field(default_factory=dict)

    def contains(self, exponent: float) -> bool:
        """``exponent`` lies in the interval (within 0.25 of the slope without one)."""
        if self.exponent_ci is None:
            return abs(self.exponent - exponent) <= _RULE_TOLERANCE
        low, high = self.exponent_ci
        return low - _EXACT <= exponent <= high + _EXACT

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "quantity": self.quantity,
            "label": self.label,
            "values": [plain(v) for v in self.values],
            "exponent": plain(self.exponent),
            "exponent_se": plain(self.exponent_se),
            "exponent_ci": plain_pair(self.exponent_ci),
            "per_regime": {k: plain(v) for k, v in self.per_regime.items()},
        }


@dataclass(frozen=True)
class RulePrediction:
    """One rule's prediction at every rung, from the smallest tuned rung, and its error.

    Attributes:
        rule: ``"linear"``, ``"square-root"``, ``"half-life"``, ``"timescale"`` or
            ``"unchanged"`` (the names of :class:`batchlab.optim.HparamTransfer`'s rules).
        quantity: the quantity the rule holds to q ∝ B^k (an :class:`ExponentFit`'s).
        exponent: k.
        predicted: the hyperparameter the rule gives at each rung.
        log_errors: log(measured/predicted) per rung, on the hyperparameter's error
            scale (η, 1 − β2, λ); 0 at the smallest rung by construction.
        mean_abs_log_error: their mean absolute value over the other rungs.
        consistent: k lies in the quantity's exponent interval (within 0.25 of the
            slope with two rungs).
        citation: where the rule comes from (empty for ``"unchanged"``).
    """

    rule: str
    quantity: str
    exponent: float
    predicted: tuple[float, ...]
    log_errors: tuple[float, ...]
    mean_abs_log_error: float
    consistent: bool
    citation: str

    @property
    def error_factor(self) -> float:
        """exp(mean |log error|): the typical factor the rule is off by (1: exact)."""
        return math.exp(self.mean_abs_log_error)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "rule": self.rule,
            "quantity": self.quantity,
            "exponent": self.exponent,
            "predicted": [plain(v) for v in self.predicted],
            "log_errors": [plain(v) for v in self.log_errors],
            "mean_abs_log_error": plain(self.mean_abs_log_error),
            "error_factor": plain(self.error_factor),
            "consistent": self.consistent,
            "citation": self.citation,
        }


@dataclass(frozen=True)
class HparamTrend:
    """One tuned hyperparameter against batch size: its slopes and every rule's error.

    Attributes:
        name: ``"lr"``, ``"beta2"`` or ``"weight_decay"``.
        batch_sizes: the rungs it was tuned at.
        values: the tuned values there.
        exponents: the slopes of the quantities it is read as (η; 1 − β2 and the
            half-life; λ and the timescale).
        rules: the rules' predictions, in a fixed order per hyperparameter.
        closest: the rule with the smallest mean absolute log error.
        reads_as: among the rules whose exponent lies in the interval, the one with
            the smallest error; ``None`` when none does.
        message: one or two sentences for a human.
    """

    name: str
    batch_sizes: tuple[int | float, ...]
    values: tuple[float, ...]
    exponents: tuple[ExponentFit, ...]
    rules: tuple[RulePrediction, ...]
    closest: str
    reads_as: str | None
    message: str

    def exponent(self, quantity: str) -> ExponentFit:
        """The slope of ``quantity`` (one of :attr:`exponents`)."""
        for fit in self.exponents:
            if fit.quantity == quantity:
                return fit
        raise KeyError(quantity)

    def rule(self, name: str) -> RulePrediction:
        """The prediction of rule ``name`` (one of :attr:`rules`)."""
        for prediction in self.rules:
            if prediction.rule == name:
                return prediction
        raise KeyError(name)

    def change(self) -> str:
        """How the tuned value moved from the first rung to the last, in words."""
        first, last = self.values[0], self.values[-1]
        if self.name == "beta2":
            return f"{_fmt(first, 4)} -> {_fmt(last, 4)}"
        return f"x{_fmt(last / first)}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "name": self.name,
            "batch_sizes": list(self.batch_sizes),
            "values": [plain(v) for v in self.values],
            "exponents": [fit.to_dict() for fit in self.exponents],
            "rules": [prediction.to_dict() for prediction in self.rules],
            "closest": self.closest,
            "reads_as": self.reads_as,
            "message": self.message,
        }


@dataclass(frozen=True)
class HparamTrends:
    """Every tuned hyperparameter of a ladder against batch size (:func:`hparam_trends`).

    Attributes:
        trends: hyperparameter -> its :class:`HparamTrend`, for those that vary
            across at least two tuned rungs (``lr``, ``beta2``, ``weight_decay`` order).
        from_batch_size: the smallest tuned rung.
        to_batch_size: the largest tuned rung.
        train_size: N, the training examples (the timescale is in epochs when known,
            in examples otherwise).
        confidence: level of the exponents' intervals.
    """

    trends: dict[str, HparamTrend]
    from_batch_size: int | float
    to_batch_size: int | float
    train_size: int | None = None
    confidence: float = 0.95

    @property
    def transfer(self) -> str:
        """One line: what the tuned values did from the smallest rung to the largest.

        ``"to go from B=64 to B=512 on this model: lr x2.8 (closest: square-root rule,
        off by x1.1), beta2 0.99 -> 0.95 (closest: half-life rule, off by x1.3)"``.
        """
        parts = []
        for trend in self.trends.values():
            best = trend.rule(trend.closest)
            where = ""
            if (trend.batch_sizes[0], trend.batch_sizes[-1]) != (
                self.from_batch_size,
                self.to_batch_size,
            ):
                where = f" (B={trend.batch_sizes[0]}->{trend.batch_sizes[-1]})"
            parts.append(
                f"{trend.name} {trend.change()}{where} (closest: {trend.closest} rule, "
                f"off by x{_fmt(best.error_factor)})"
            )
        return (
            f"to go from B={self.from_batch_size} to B={self.to_batch_size} on this model: "
            + ", ".join(parts)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``transfer``: :attr:`transfer`)."""
        return {
            "from_batch_size": self.from_batch_size,
            "to_batch_size": self.to_batch_size,
            "train_size": self.train_size,
            "confidence": self.confidence,
            "hparams": {name: trend.to_dict() for name, trend in self.trends.items()},
            "transfer": self.transfer,
        }


@dataclass(frozen=True)
class _Quantity:
    """A quantity q of a hyperparameter: q from the value, and the value back from q."""

    name: str
    label: str
    forward: Callable[[float, float, float], float]  # (value, B, η) -> q
    inverse: Callable[[float, float, float], float]  # (q, B, η) -> value


def _quantities(name: str, train_size: int | None) -> dict[str, _Quantity]:
    if name == "lr":
        return {"lr": _Quantity("lr", "η", lambda v, b, lr: v, lambda q, b, lr: q)}
    if name == "beta2":
        return {
            "one_minus_beta2": _Quantity(
                "one_minus_beta2", "1 − β2", lambda v, b, lr: 1.0 - v, lambda q, b, lr: 1.0 - q
            ),
            # h = B ln ½ / ln β2 examples, so β2 = ½^(B/h).
            "half_life": _Quantity(
                "half_life",
                "half-life B·ln ½ / ln β2 (examples)",
                lambda v, b, lr: b * _LN_HALF / math.log(v),
                lambda q, b, lr: math.exp(b * _LN_HALF / q),
            ),
        }
    n = float(train_size) if train_size else 1.0
    unit = "epochs" if train_size else "examples"
    return {
        "weight_decay": _Quantity("weight_decay", "λ", lambda v, b, lr: v, lambda q, b, lr: q),
        # τ = B/(ηλN): the (1 − ηλ) shrink per step as a timescale in epochs (examples
        # without N; the exponent is the same).
        "timescale": _Quantity(
            "timescale",
            f"timescale B/(ηλ{'N' if train_size else ''}) ({unit})",
            lambda v, b, lr: b / (lr * v * n),
            lambda q, b, lr: b / (lr * q * n),
        ),
    }


#: Per hyperparameter: its rules as (name, quantity, exponent), in report order.
_RULES: dict[str, tuple[tuple[str, str, float], ...]] = {
    "lr": (("linear", "lr", 1.0), ("square-root", "lr", 0.5), ("unchanged", "lr", 0.0)),
    "beta2": (("half-life", "half_life", 0.0), ("unchanged", "one_minus_beta2", 0.0)),
    "weight_decay": (("timescale", "timescale", 0.0), ("unchanged", "weight_decay", 0.0)),
}

#: The scale a hyperparameter's prediction error is measured on (its search scale).
_ERROR_SCALE: dict[str, Callable[[float], float]] = {
    "lr": lambda v: v,
    "beta2": lambda v: 1.0 - v,
    "weight_decay": lambda v: v,
}


def hparam_trends(
    batch_sizes: Sequence[float],
    tuned_hparams: Sequence[Mapping[str, float] | None],
    *,
    regimes: Any = None,
    train_size: int | None = None,
    confidence: float = 0.95,
) -> HparamTrends:
    """Each tuned hyperparameter's exponent against B, and each rule's prediction error.

    For ``lr``, ``beta2`` and ``weight_decay``, wherever the tuned value varies across
    at least two rungs: the OLS slope of log q on log B for the quantities it is read
    as (η; 1 − β2 and the half-life in examples h = B·ln ½/ln β2; λ and the AdamW
    timescale τ = B/(ηλN) in epochs), with the interval slope ± t·se (Student t,
    n − 2 degrees of freedom; none with two rungs), and per scaling regime when
    ``regimes`` are given. Each rule holds one quantity to q ∝ B^k (the list in this
    module's docstring); its prediction at every rung is q(B₀)·(B/B₀)^k from the
    smallest rung B₀, turned back into the hyperparameter, and its error is
    log(measured/predicted) on the search scale (η, 1 − β2, λ). A rule is
    *consistent* when k lies in the interval of its quantity's exponent.

    The weight-decay timescale is that of decoupled decay (AdamW) and of SGD's L2
    term, whose weights shrink by (1 − ηλ) per step; for Adam's coupled L2 and for
    LARS/LAMB it is no timescale, and the "unchanged" rule is the one to read. When
    the learning rate was not tuned (no ``lr`` in the hyperparameters) it is taken
    as fixed, as :func:`batchlab.optim.transfer_hparams` does (the timescale's values
    are then B/(λN), off by the constant 1/η; its exponent and the rules' predictions
    are not). Rungs tuned to λ = 0 have no logarithm and no timescale and are left
    out of the weight-decay trend.

    References:
        Shallue et al. 2018, "Measuring the Effects of Data Parallelism on Neural
        Network Training", arXiv:1811.03600 (tune at every batch size; the optimal LR
        follows no simple rule beyond perfect scaling); Goyal et al. 2017,
        arXiv:1706.02677 (linear); Krizhevsky 2014, arXiv:1404.5997, and Malladi et al.
        2022, arXiv:2205.10287 (square root, for Adam from its SDE); Marek et al. 2025,
        arXiv:2507.07101 (β2 at a fixed half-life in examples); Wang & Aitchison 2024,
        arXiv:2405.13698, and Bergsma et al. 2025, arXiv:2505.13738 (AdamW's timescale
        B/(ηλN) fixed).

    Args:
        batch_sizes: batch size per rung, positive and strictly increasing.
        tuned_hparams: per rung, its tuned hyperparameters (``None``: not tuned, e.g.
            the target was never reached); other names than the three are ignored.
        regimes: optional :class:`ScalingRegimes` (or its ``to_dict()``), for the
            per-regime slopes.
        train_size: N, training examples (the timescale in epochs); ``None``: unknown,
            the timescale is then in examples (its exponent is the same).
        confidence: level of the intervals.

    Returns:
        An :class:`HparamTrends`; its ``trends`` is empty when nothing varies.

    Raises:
        AnalysisError (a ValueError): mismatched lengths, fewer than two tuned rungs,
            a tuned value out of its domain (η ≤ 0, β2 outside (0, 1), λ < 0).
    """
    sizes = check_batch_sizes(batch_sizes)
    if isinstance(tuned_hparams, str | bytes | Mapping) or not hasattr(tuned_hparams, "__len__"):
        raise AnalysisError(
            f"tuned_hparams must be a sequence of mappings (one per rung), got {tuned_hparams!r}"
        )
    if len(tuned_hparams) != len(sizes):
        raise AnalysisError(
            f"batch_sizes and tuned_hparams must have the same length, got {len(sizes)} "
            f"and {len(tuned_hparams)}"
        )
    confidence = check_confidence(confidence)
    if train_size is not None and (
        isinstance(train_size, bool) or not isinstance(train_size, int) or train_size < 1
    ):
        raise AnalysisError(f"train_size must be a positive integer or None, got {train_size!r}")
    tuned = [
        (float(b), _checked(h, rung(b))) for b, h in zip(sizes, tuned_hparams, strict=True) if h
    ]
    if len(tuned) < 2:
        raise AnalysisError(
            f"tuned_hparams: the trends need at least 2 tuned rungs, got {len(tuned)}"
        )
    members = _regime_members(regimes) if regimes is not None else None
    lr_tuned = any("lr" in h for _, h in tuned)
    trends = {}
    for name in TREND_HPARAMS:
        rows = [
            (b, h[name], h.get("lr", 1.0))
            for b, h in tuned
            if name in h and (name != "weight_decay" or "lr" in h or not lr_tuned)
        ]
        if name == "weight_decay":
            rows = [row for row in rows if row[1] > 0]  # λ = 0 has no log and no timescale
        if len(rows) < 2 or len({value for _, value, _ in rows}) < 2:
            continue
        trends[name] = _trend(name, rows, train_size, confidence, members)
    return HparamTrends(
        trends=trends,
        from_batch_size=rung(tuned[0][0]),
        to_batch_size=rung(tuned[-1][0]),
        train_size=train_size,
        confidence=confidence,
    )


def _checked(hparams: Mapping[str, Any], batch_size: int | float) -> dict[str, float]:
    """The three hyperparameters of one rung, checked against their domains."""
    if not isinstance(hparams, Mapping):
        raise AnalysisError(
            f"tuned_hparams at batch size {batch_size} must be a mapping, got {hparams!r}"
        )
    out = {}
    for name in TREND_HPARAMS:
        if hparams.get(name) is None:
            continue
        value = hparams[name]
        if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
            raise AnalysisError(
                f"tuned_hparams: {name} at batch size {batch_size} must be a number, got {value!r}"
            )
        value = float(value)
        valid = {
            "lr": value > 0,
            "beta2": 0 < value < 1,
            "weight_decay": value >= 0,
        }[name]
        if not (math.isfinite(value) and valid):
            domain = {"lr": "> 0", "beta2": "in (0, 1)", "weight_decay": ">= 0"}[name]
            raise AnalysisError(
                f"tuned_hparams: {name} at batch size {batch_size} must be {domain}, got {value!r}"
            )
        out[name] = value
    return out


def _trend(
    name: str,
    rows: list[tuple[float, float, float]],
    train_size: int | None,
    confidence: float,
    members: dict[str, np.ndarray] | None,
) -> HparamTrend:
    sizes = np.array([b for b, _, _ in rows])
    values = [v for _, v, _ in rows]
    lrs = [lr for _, _, lr in rows]
    quantities = _quantities(name, train_size)
    fits = {
        key: _exponent_fit(
            quantity,
            sizes,
            [quantity.forward(v, b, lr) for b, v, lr in rows],
            confidence,
            members,
        )
        for key, quantity in quantities.items()
    }
    scale = _ERROR_SCALE[name]
    rules = []
    for rule_name, key, k in _RULES[name]:
        quantity, q0 = quantities[key], fits[key].values[0]
        predicted = [
            float(quantity.inverse(q0 * (b / sizes[0]) ** k, b, lr))
            for b, lr in zip(sizes.tolist(), lrs, strict=True)
        ]
        errors = [
            math.log(scale(v) / scale(p)) if scale(p) > 0 else math.inf
            for v, p in zip(values, predicted, strict=True)
        ]
        rules.append(
            RulePrediction(
                rule=rule_name,
                quantity=key,
                exponent=k,
                predicted=tuple(predicted),
                log_errors=tuple(errors),
                mean_abs_log_error=float(np.mean(np.abs(errors[1:]))),
                consistent=fits[key].contains(k),
                citation=_CITE[rule_name],
            )
        )
    closest = min(rules, key=lambda r: r.mean_abs_log_error).rule
    consistent = [r for r in rules if r.consistent]
    reads_as = min(consistent, key=lambda r: r.mean_abs_log_error).rule if consistent else None
    batch_sizes = tuple(rung(b) for b in sizes)
    return HparamTrend(
        name=name,
        batch_sizes=batch_sizes,
        values=tuple(values),
        exponents=tuple(fits.values()),
        rules=tuple(rules),
        closest=closest,
        reads_as=reads_as,
        message=_message(name, batch_sizes, list(fits.values()), rules, closest, reads_as),
    )


def _exponent_fit(
    quantity: _Quantity,
    sizes: np.ndarray,
    values: list[float],
    confidence: float,
    members: dict[str, np.ndarray] | None,
) -> ExponentFit:
    log_b, log_q = np.log(sizes), np.log(values)
    exponent, se = _slope(log_b, log_q)
    ci = None
    if se is not None:
        half = float(student_t.ppf(0.5 + confidence / 2, sizes.size - 2)) * se
        ci = (exponent - half, exponent + half)
    per_regime: dict[str, float | None] = {}
    if members is not None:
        for regime in REGIMES:
            inside = np.isin(sizes, members[regime])
            per_regime[regime] = (
                _slope(log_b[inside], log_q[inside])[0] if inside.sum() >= 2 else None
            )
    return ExponentFit(
        quantity=quantity.name,
        label=quantity.label,
        values=tuple(float(v) for v in values),
        exponent=exponent,
        exponent_se=se,
        exponent_ci=ci,
        per_regime=per_regime,
    )


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}"


def _two(value: float) -> str:
    """Two decimals, without a "-0.00" for a rounding error below zero."""
    return f"{round(value, 2) + 0.0:.2f}"


def _message(
    name: str,
    sizes: tuple[int | float, ...],
    fits: list[ExponentFit],
    rules: list[RulePrediction],
    closest: str,
    reads_as: str | None,
) -> str:
    slopes = []
    for fit in fits:
        interval = (
            ""
            if fit.exponent_ci is None
            else f" [{_two(fit.exponent_ci[0])}, {_two(fit.exponent_ci[1])}]"
        )
        slopes.append(f"{fit.label} grows as B^{_two(fit.exponent)}{interval}")
    reading = (
        f"consistent with the {reads_as} rule"
        if reads_as is not None
        else "consistent with none of the rules"
    )
    best = next(r for r in rules if r.rule == closest)
    return (
        f"From B = {sizes[0]} to {sizes[-1]}, tuned {name}: {'; '.join(slopes)}: {reading}. "
        f"Predicted from B = {sizes[0]}, the {closest} rule comes closest "
        f"(off by x{_fmt(best.error_factor)} on average)."
    )
