"""How the tuned learning rate grows with batch size, against the linear and √ rules.

The linear rule (LR ∝ B; Goyal et al. 2017) and the square-root rule (LR ∝ √B;
Hoffer et al. 2017) are the exponents 1 and 0.5 of a power law LR ∝ B^k. Shallue et al. 2018 found that the tuned LR follows neither beyond perfect
scaling, so the slope is also read within each scaling regime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._checks import AnalysisError, check_batch_sizes, check_per_rung, plain, rung
from ._regimes import REGIMES

#: Exponent k of LR ∝ B^k for each named rule.
LR_RULES: dict[str, float] = {"linear": 1.0, "square-root": 0.5}

#: A slope is read as a rule when it is nearer to it than half the gap between rules.
_RULE_TOLERANCE = 0.25

_REGIME_NAMES = {
    "perfect": "perfect scaling",
    "diminishing": "diminishing returns",
    "maximal": "maximal data parallelism",
}


@dataclass(frozen=True)
class LRTrend:
    """Log-log slope of the tuned learning rate against batch size.

    Attributes:
        exponent: least-squares slope k of log LR = k log B + const over all rungs.
        exponent_se: its standard error (``None`` with only two rungs).
        rule: the rule the overall slope reads as (``"linear"``, ``"square-root"``)
            or ``None`` when it is further than 0.25 from both exponents.
        per_regime: regime -> slope within it (``None`` with fewer than two rungs
            there); empty when no regimes were given.
        per_regime_rule: regime -> the rule that slope reads as, or ``None``.
        batch_sizes: the rungs.
        lrs: their tuned learning rates.
        message: one or two sentences for a human.
    """

    exponent: float
    exponent_se: float | None
    rule: str | None
    batch_sizes: tuple[int | float, ...]
    lrs: tuple[float, ...]
    message: str
    per_regime: dict[str, float | None] = field(default_factory=dict)
    per_regime_rule: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "exponent": plain(self.exponent),
            "exponent_se": plain(self.exponent_se),
            "rule": self.rule,
            "per_regime": {k: plain(v) for k, v in self.per_regime.items()},
            "per_regime_rule": dict(self.per_regime_rule),
            "batch_sizes": list(self.batch_sizes),
            "lrs": [float(lr) for lr in self.lrs],
            "message": self.message,
        }


def nearest_rule(exponent: float) -> str | None:
    """The rule whose exponent is within 0.25 of ``exponent`` (``None`` if neither is)."""
    name = min(LR_RULES, key=lambda k: abs(LR_RULES[k] - exponent))
    return name if abs(LR_RULES[name] - exponent) <= _RULE_TOLERANCE else None


def lr_trend(
    batch_sizes: Sequence[float],
    best_lrs: Sequence[float],
    regimes: Any = None,
) -> LRTrend:
    """Exponent k of the tuned LR ∝ B^k, overall and per scaling regime.

    The slope is ordinary least squares of log LR on log B (every rung weighs the
    same; with a log-spaced LR search the tuning error is roughly constant in log
    LR). A slope reads as the linear rule (k = 1) or the square-root rule
    (k = 0.5) when it is within 0.25 of that exponent — half the gap between
    them — and as neither otherwise (slower than √B, or faster than B).
    Per regime, only the rungs inside that regime count, and a regime needs two of
    them for a slope.

    References:
        Shallue et al. 2018, "Measuring the Effects of Data Parallelism on Neural
        Network Training", JMLR 20(112), Sec. 4 (the optimal learning rate does not
        follow the linear or square-root rule beyond perfect scaling); Goyal et al.
        2017, "Accurate, Large Minibatch SGD" (linear rule); Hoffer, Hubara and
        Soudry 2017, "Train longer, generalize better" (square-root rule).

    Args:
        batch_sizes: batch size per rung, positive and strictly increasing.
        best_lrs: tuned learning rate per rung, positive.
        regimes: optional :class:`ScalingRegimes` (or anything with ``perfect``,
            ``diminishing`` and ``maximal`` lists of rungs, or a mapping with those
            keys, such as its ``to_dict()``) for the per-regime slopes.

    Returns:
        An :class:`LRTrend`.

    Raises:
        AnalysisError (a ValueError): mismatched lengths, fewer than two rungs,
            non-positive or non-increasing batch sizes, non-positive learning rates.
    """
    sizes = check_batch_sizes(batch_sizes)
    check_per_rung(best_lrs, "best_lrs", sizes, "numbers")
    if len(sizes) < 2:
        raise AnalysisError(f"batch_sizes: the LR trend needs at least 2 rungs, got {len(sizes)}")
    lrs = []
    for i, lr in enumerate(best_lrs):
        try:
            value = float(lr)
        except (TypeError, ValueError):
            raise AnalysisError(f"best_lrs[{i}] must be a number, got {lr!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise AnalysisError(
                f"best_lrs must be positive and finite, got {lr!r} at batch size {rung(sizes[i])}"
            )
        lrs.append(value)
    log_b, log_lr = np.log(sizes), np.log(lrs)
    exponent, exponent_se = _slope(log_b, log_lr)

    per_regime: dict[str, float | None] = {}
    if regimes is not None:
        members = _regime_members(regimes)
        for name in REGIMES:
            inside = np.isin(sizes, members[name])
            per_regime[name] = (
                _slope(log_b[inside], log_lr[inside])[0] if inside.sum() >= 2 else None
            )
    per_regime_rule = {k: None if v is None else nearest_rule(v) for k, v in per_regime.items()}
    rule = nearest_rule(exponent)
    return LRTrend(
        exponent=exponent,
        exponent_se=exponent_se,
        rule=rule,
        batch_sizes=tuple(rung(b) for b in sizes),
        lrs=tuple(lrs),
        message=_message(sizes, exponent, exponent_se, per_regime, per_regime_rule),
        per_regime=per_regime,
        per_regime_rule=per_regime_rule,
    )


def _slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
    """OLS slope of y on x and its standard error (``None`` with two points)."""
    dx = x - x.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ (y - y.mean())) / sxx
    if x.size < 3:
        return slope, None
    residuals = y - y.mean() - slope * dx
    return slope, math.sqrt(float(residuals @ residuals) / (x.size - 2) / sxx)


def _regime_members(regimes: Any) -> dict[str, np.ndarray]:
    members = {}
    for name in REGIMES:
        if isinstance(regimes, Mapping):
            values = regimes.get(name)
        else:
            values = getattr(regimes, name, None)
        if values is None:
            raise AnalysisError(
                f"regimes must have 'perfect', 'diminishing' and 'maximal' rung lists; "
                f"{name!r} is missing from {type(regimes).__name__}"
            )
        members[name] = np.array([float(b) for b in values], dtype=float)
    return members


def _describe(exponent: float, rule: str | None) -> str:
    if rule is not None:
        return f"{rule} rule"
    if exponent < LR_RULES["square-root"]:
        return "neither rule: slower than the square-root rule" + (
            ", about flat" if abs(exponent) < 0.1 else ""
        )
    return "neither rule: faster than the linear rule"


def _message(
    sizes: np.ndarray,
    exponent: float,
    exponent_se: float | None,
    per_regime: dict[str, float | None],
    per_regime_rule: dict[str, str | None],
) -> str:
    spread = "" if exponent_se is None else f" ± {exponent_se:.2f}"
    rule = nearest_rule(exponent)
    lines = [
        f"From B = {rung(sizes[0])} to {rung(sizes[-1])} the tuned learning rate grows as "
        f"B^{exponent:.2f}{spread}, "
        + (
            f"closest to the {rule} rule (exponent {LR_RULES[rule]:g})."
            if rule is not None
            else f"following {_describe(exponent, rule)}."
        )
    ]
    known = {k: v for k, v in per_regime.items() if v is not None}
    if known:
        parts = [
            f"{_REGIME_NAMES[k]} B^{v:.2f} ({_describe(v, per_regime_rule[k])})"
            for k, v in known.items()
        ]
        lines.append("By regime: " + "; ".join(parts) + ".")
        for name in LR_RULES:
            holds = [_REGIME_NAMES[k] for k in known if per_regime_rule[k] == name]
            breaks = [_REGIME_NAMES[k] for k in known if per_regime_rule[k] != name]
            if holds and breaks:
                lines.append(
                    f"The {name} rule holds in {' and '.join(holds)} but breaks in "
                    f"{' and '.join(breaks)}."
                )
            elif holds:
                lines.append(f"The {name} rule holds in every regime with two or more rungs.")
    return " ".join(lines)
