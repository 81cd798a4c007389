"""What following a transfer rule costs, against tuning every batch size.

Shallue et al. 2018 (Sec. 4.7) warn that the linear and square-root learning-rate
rules break down beyond perfect scaling; a study can measure how much: beside each
tuned rung it trains the base rung's tuned hyperparameters moved to that batch size
by a rule (``[transfer]`` in a study config), on several seeds. The cost of the rule
at a rung is its median steps-to-target over those seeds divided by the tuned
rung's steps-to-target (1: as good as tuning; 1.5: 50% more steps).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._checks import plain
from ._steps_to_result import median_steps


@dataclass(frozen=True)
class RuleCost:
    """One rule's steps-to-target against the tuned ones, rung by rung.

    Attributes:
        rule: the learning-rate rule (with β2 and weight decay moved by theirs).
        batch_sizes: the rungs it ran on (the base rung excluded).
        seeds: per rung, its runs' steps-to-target (``None``: not reached).
        steps: per rung, the median over seeds (:func:`median_steps`; ``None`` when
            fewer than half of the seeds reached the target).
        tuned: per rung, the tuned steps-to-target (``None``: not reached).
        ratios: per rung, ``steps / tuned`` (``None`` where either is missing).
        unreached: rungs where the rule's median never reached the target although
            the tuned rung did: an unbounded cost within the budget.
        median_ratio: the median of ``ratios`` (``None`` without any).
    """

    rule: str
    batch_sizes: tuple[int, ...]
    seeds: tuple[tuple[int | None, ...], ...]
    steps: tuple[int | None, ...]
    tuned: tuple[float | None, ...]
    ratios: tuple[float | None, ...]
    unreached: tuple[int, ...]
    median_ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "rule": self.rule,
            "batch_sizes": list(self.batch_sizes),
            "seeds": [list(s) for s in self.seeds],
            "steps": list(self.steps),
            "tuned": [plain(t) for t in self.tuned],
            "ratios": [plain(r) for r in self.ratios],
            "unreached": list(self.unreached),
            "median_ratio": plain(self.median_ratio),
        }


def rule_costs(
    batch_sizes: Sequence[int],
    tuned_steps: Sequence[float | None],
    rule_runs: Sequence[Mapping[str, Sequence[int | None]]],
) -> dict[str, RuleCost]:
    """Per rule, its median steps per rung over seeds against the tuned steps.

    Args:
        batch_sizes: the rungs.
        tuned_steps: per rung, its tuned steps-to-target (``None``: not reached).
        rule_runs: per rung, rule -> its runs' steps-to-target (``{}`` where no rule
            ran, e.g. the base rung).

    Returns:
        rule -> :class:`RuleCost`, rules in the order they first appear.
    """
    if not len(batch_sizes) == len(tuned_steps) == len(rule_runs):
        raise ValueError("batch_sizes, tuned_steps and rule_runs need one entry per rung")
    rules = list(dict.fromkeys(name for runs in rule_runs for name in runs))
    costs = {}
    for rule in rules:
        rows = [
            (int(b), tuple(runs[rule]), tuned)
            for b, tuned, runs in zip(batch_sizes, tuned_steps, rule_runs, strict=True)
            if runs.get(rule)
        ]
        steps = [median_steps(list(seeds)) for _, seeds, _ in rows]
        ratios = [
            None if s is None or t is None or not math.isfinite(t) else s / t
            for s, (_, _, t) in zip(steps, rows, strict=True)
        ]
        known = [r for r in ratios if r is not None]
        costs[rule] = RuleCost(
            rule=rule,
            batch_sizes=tuple(b for b, _, _ in rows),
            seeds=tuple(seeds for _, seeds, _ in rows),
            steps=tuple(steps),
            tuned=tuple(t for _, _, t in rows),
            ratios=tuple(ratios),
            unreached=tuple(
                b for (b, _, t), s in zip(rows, steps, strict=True) if s is None and t is not None
            ),
            median_ratio=statistics.median(known) if known else None,
        )
    return costs
