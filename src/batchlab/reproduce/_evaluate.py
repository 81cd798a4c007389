"""The seven findings together: :class:`Findings` and :func:`evaluate_all` from a plan.

Each finding lives in a module of its own (``_finding_regimes`` ... ``_finding_large_batch``):
a pure function of curves (:class:`~batchlab.reproduce.Curve`) and run records that
returns a frozen record with the measured numbers, the verdict (``"held"``, ``"did not
hold"`` or ``"inconclusive"``), the criterion that decided it, and one sentence saying
why. Nothing here trains, reads files or draws.

References:
    Shallue, Lee, Antognini, Sohl-Dickstein, Frostig, Dahl 2018, "Measuring the Effects
    of Data Parallelism on Neural Network Training", JMLR 20(112) (findings 1-5);
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training",
    arXiv:1812.06162 (finding 6); You, Gitman, Ginsburg 2017 (LARS) and You et al. 2019
    (LAMB) (finding 7); Masters & Luschi 2018, "Revisiting Small Batch Training for Deep
    Neural Networks" (the "batch ≤ 32" advice of finding 5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._curves import Curve
from ._finding_dataset_size import DatasetSizeFinding, evaluate_dataset_size
from ._finding_fixed_epochs import FixedEpochsFinding, evaluate_fixed_epochs
from ._finding_large_batch import LargeBatchFinding, evaluate_large_batch
from ._finding_lr_rules import LRFinding, evaluate_lr_rules
from ._finding_momentum import MomentumFinding, evaluate_momentum
from ._finding_noise_scale import NoiseFinding, evaluate_noise_scale
from ._finding_regimes import RegimesFinding, evaluate_regimes


@dataclass(frozen=True, kw_only=True)
class Findings:
    """The seven findings, in order."""

    regimes: RegimesFinding
    momentum: MomentumFinding
    lr_rules: LRFinding
    dataset_size: DatasetSizeFinding
    fixed_epochs: FixedEpochsFinding
    noise_scale: NoiseFinding
    large_batch: LargeBatchFinding

    @property
    def sections(self) -> tuple[Any, ...]:
        return (
            self.regimes,
            self.momentum,
            self.lr_rules,
            self.dataset_size,
            self.fixed_epochs,
            self.noise_scale,
            self.large_batch,
        )


def evaluate_all(
    settings: Any,
    curves: Mapping[str, Curve],
    fixed_budget: Sequence[Mapping[str, Any]],
    noise: Sequence[Mapping[str, Any]],
) -> Findings:
    """All seven findings from a plan's settings and its measurements."""
    regimes_curves = [curves[name] for name in settings.regimes.studies]
    fixed = settings.fixed_epochs
    return Findings(
        regimes=evaluate_regimes(regimes_curves),
        momentum=evaluate_momentum(
            curves[settings.momentum.sgd], curves[settings.momentum.momentum]
        ),
        lr_rules=evaluate_lr_rules(regimes_curves),
        dataset_size=evaluate_dataset_size(
            curves[settings.dataset_size.small],
            curves[settings.dataset_size.large],
            settings.dataset_size.factor,
        ),
        fixed_epochs=evaluate_fixed_epochs(
            fixed.study,
            fixed_budget,
            target=curves[fixed.study].target,
            epochs=fixed.epochs,
            small_batch_max=fixed.small_batch_max,
            tolerance=fixed.tolerance,
        ),
        noise_scale=evaluate_noise_scale(noise, curves, settings.noise_scale.factor),
        large_batch=evaluate_large_batch(
            curves[settings.large_batch.reference],
            [curves[name] for name in settings.large_batch.others],
        ),
    )
