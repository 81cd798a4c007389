"""Finding 5: "batch <= 32" is an effect of fixed-epoch budgets.

A pure function of measured curves and run records: the numbers, a verdict and the
criterion that decided it (see :mod:`batchlab.reproduce`). Nothing here trains,
reads files or draws.

References:
    Masters & Luschi 2018, "Revisiting Small Batch Training for Deep Neural Networks",
    arXiv:1804.07612; Shallue et al. 2018, JMLR 20(112), Sec. 5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._fits import HELD, INCONCLUSIVE, NOT_HELD, Verdict, fmt, fmt_signed


@dataclass(frozen=True, kw_only=True)
class BudgetRow:
    """One rung at both budgets: steps, epochs, the final validation metric and the run's status.

    A final metric is ``None`` when the run diverged (its status says so) or is missing.
    """

    batch_size: int
    fixed_steps: int | None
    fixed_epochs: float | None
    fixed_final: float | None
    tuned_steps: int | None
    tuned_epochs: float | None
    tuned_final: float | None
    fixed_status: str = "missing"
    tuned_status: str = "missing"

    def final(self, budget: str) -> float | None:
        """The final metric at ``budget`` (``"fixed"`` or ``"tuned"``)."""
        return self.fixed_final if budget == "fixed" else self.tuned_final


@dataclass(frozen=True, kw_only=True)
class FixedEpochsFinding:
    """Finding 5: small batches win at a fixed epoch budget, not at a tuned step budget.

    Attributes:
        rows: per rung, both budgets.
        gap_fixed, gap_tuned: best final metric among B ≤ ``small_batch_max`` minus the
            best among larger B, signed so that positive means the small batches did
            better (``None`` when one side has no finished run).
        best_fixed, best_tuned: (batch size, metric) of the best run at each budget.
    """

    study: str
    metric: str
    direction: str
    epochs: float
    small_batch_max: int
    tolerance: float
    rows: tuple[BudgetRow, ...]
    gap_fixed: float | None
    gap_tuned: float | None
    best_fixed: tuple[int, float] | None
    best_tuned: tuple[int, float] | None
    verdict: Verdict
    reason: str

    number = 5
    title = '"Batch ≤ 32" is an effect of fixed-epoch budgets'

    @property
    def criterion(self) -> str:
        b, tol = self.small_batch_max, fmt(self.tolerance)
        return (
            f"gap = best final {self.metric} among B ≤ {b} minus the best among B > {b} "
            "(positive: small batches better). Held if the gap exceeds the tolerance "
            f"{tol} at the fixed epoch budget but not at the tuned step budget; did not hold "
            f"if it exceeds {tol} at the tuned step budget too, or does not at the fixed epoch "
            "budget; inconclusive if a side has no finished run"
        )


def _gap(
    rows: Sequence[BudgetRow], budget: str, small_max: int, sign: float
) -> tuple[float | None, tuple[int, float] | None]:
    values = [(r.batch_size, r.final(budget)) for r in rows]
    values = [(b, v) for b, v in values if v is not None]
    small = [sign * v for b, v in values if b <= small_max]
    large = [sign * v for b, v in values if b > small_max]
    best = max(values, key=lambda bv: (sign * bv[1], -bv[0])) if values else None
    if not small or not large:
        return None, best
    return max(small) - max(large), best


def _run(
    record: Mapping[str, Any] | None,
) -> tuple[int | None, float | None, float | None, str]:
    """Steps, epochs, final metric and status of one budget's run (``"missing"`` without one)."""
    if record is None:
        return None, None, None, "missing"
    steps, epochs = int(record["max_steps"]), float(record["epochs"])
    return steps, epochs, record.get("final"), str(record.get("status", "finished"))


def evaluate_fixed_epochs(
    study: str,
    records: Sequence[Mapping[str, Any]],
    *,
    target: Mapping[str, Any],
    epochs: float,
    small_batch_max: int,
    tolerance: float,
) -> FixedEpochsFinding:
    """Final validation metric at a fixed epoch budget and at each rung's step budget.

    Args:
        study: the study whose tuned rungs were run.
        records: :func:`~batchlab.reproduce.run_budget_job` records (``batch_size``,
            ``budget``, ``max_steps``, ``epochs``, ``final``).
        target: the study's target (its metric and direction).
        epochs, small_batch_max, tolerance: the finding's settings.
    """
    sign = 1.0 if target["direction"] == "max" else -1.0
    by_rung: dict[int, dict[str, Mapping[str, Any]]] = {}
    for record in records:
        by_rung.setdefault(int(record["batch_size"]), {})[str(record["budget"])] = record
    rows = []
    for batch_size in sorted(by_rung):
        fixed_steps, fixed_epochs, fixed_final, fixed_status = _run(
            by_rung[batch_size].get("fixed_epochs")
        )
        tuned_steps, tuned_epochs, tuned_final, tuned_status = _run(
            by_rung[batch_size].get("tuned_steps")
        )
        rows.append(
            BudgetRow(
                batch_size=batch_size,
                fixed_steps=fixed_steps,
                fixed_epochs=fixed_epochs,
                fixed_final=fixed_final,
                tuned_steps=tuned_steps,
                tuned_epochs=tuned_epochs,
                tuned_final=tuned_final,
                fixed_status=fixed_status,
                tuned_status=tuned_status,
            )
        )
    gap_fixed, best_fixed = _gap(rows, "fixed", small_batch_max, sign)
    gap_tuned, best_tuned = _gap(rows, "tuned", small_batch_max, sign)
    metric = str(target["metric"])
    text = (
        f"best final {metric}: B = {fmt(best_fixed[0]) if best_fixed else '—'} at "
        f"{fmt(epochs)} epochs, B = {fmt(best_tuned[0]) if best_tuned else '—'} at the tuned "
        f"step budget; gap (B ≤ {small_batch_max} minus larger) {fmt_signed(gap_fixed)} and "
        f"{fmt_signed(gap_tuned)}, tolerance {fmt(tolerance)}"
    )
    if gap_fixed is None or gap_tuned is None:
        verdict, reason = INCONCLUSIVE, text + ": a side has no finished run."
    elif gap_tuned > tolerance:
        verdict, reason = NOT_HELD, text + ": small batches stay better with a tuned step budget."
    elif gap_fixed <= tolerance:
        # The claim explains an observation (small batches win at a fixed epoch
        # budget); where that observation is not reproduced, there is nothing to explain
        # and the claim is neither supported nor refuted.
        verdict, reason = (
            INCONCLUSIVE,
            text
            + (
                ": small batches are not better even at the fixed epoch budget, so the "
                "premise is not reproduced and the explanation cannot be tested."
            ),
        )
    else:
        verdict, reason = (
            HELD,
            text + (": small batches win only when every batch size gets the same epochs."),
        )
    return FixedEpochsFinding(
        study=study,
        metric=metric,
        direction=str(target["direction"]),
        epochs=float(epochs),
        small_batch_max=int(small_batch_max),
        tolerance=float(tolerance),
        rows=tuple(rows),
        gap_fixed=gap_fixed,
        gap_tuned=gap_tuned,
        best_fixed=best_fixed,
        best_tuned=best_tuned,
        verdict=verdict,
        reason=reason,
    )
