"""One checkpoint's measurement: S(B) fitted, B_simple measured, the two compared.

References:
    McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch
    Training", arXiv:1812.06162, eq. 2.11 (S(B) = S_min (1 + B_crit/B)) and Appendix A
    (B_simple).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._seeding import make_generator, seed_for
from ..analysis import AnalysisError, PredictionComparison, compare_prediction, fit_scaling
from ..noise import NoiseScaleResult, measure_noise_scale
from ..workloads import ExactNoiseScale, Workload
from ._checkpoints import Checkpoint
from ._results import CheckpointMeasurement, RungMeasurement


def _noise_at(
    workload: Workload,
    model: torch.nn.Module,
    batch_size: int,
    micro_batch_size: int,
    batches: int,
    seed: int,
    precision: str,
) -> NoiseScaleResult:
    stream = workload.train_batches(batch_size, make_generator(seed))
    return measure_noise_scale(
        model,
        workload.loss_fn,
        (next(stream) for _ in range(batches)),
        micro_batch_size,
        precision=precision,
    )


def _fit(batch_sizes: list[int], steps: list[int | None], n_bootstrap: int, seed: int) -> Any:
    reached = sum(s is not None for s in steps)
    if reached < 3:
        return None, f"only {reached} batch size(s) reached the target; the fit needs 3"
    try:
        return fit_scaling(batch_sizes, steps, n_bootstrap=n_bootstrap, seed=seed), None
    except AnalysisError as error:
        return None, str(error)


def analyse_checkpoint(
    workload: Workload,
    point: Checkpoint,
    value: float,
    target: Any,
    rungs: list[RungMeasurement],
    model: torch.nn.Module,
    *,
    noise_batch_size: int | None,
    noise_micro_batch_size: int | None,
    noise_batches: int,
    n_bootstrap: int,
    seed: int,
    precision: str = "fp32",
) -> CheckpointMeasurement:
    """Fit S(B), measure B_simple at the checkpoint and compare them.

    ``model`` is the checkpoint's, on the workload's device; B_simple's forward passes
    run in ``precision``, its statistics in float32/float64
    (:func:`batchlab.measure_noise_scale`).
    """
    sizes = [r.batch_size for r in rungs]
    notes = []
    fit, note = _fit(sizes, [r.steps_to_target for r in rungs], n_bootstrap, seed)
    if note:
        notes.append(f"measured: {note}")
    exact_fit = None
    if all(r.exact_steps is not None for r in rungs):
        exact_fit, note = _fit(sizes, [r.exact_steps_to_target for r in rungs], n_bootstrap, seed)
        if note:
            notes.append(f"exact: {note}")
    noise = None
    if noise_batch_size:
        assert noise_micro_batch_size is not None
        noise = _noise_at(
            workload,
            model,
            noise_batch_size,
            noise_micro_batch_size,
            noise_batches,
            seed_for(seed, point.step, 1 << 30),
            precision,
        )
    exact_noise: ExactNoiseScale | None = None
    closed_form = getattr(workload, "noise_scale", None)
    if callable(closed_form):
        exact_noise = closed_form(model)
    prediction: PredictionComparison | None = None
    if fit is not None and noise is not None:
        if noise.b_simple > 0 and math.isfinite(noise.b_simple):
            low, high = noise.b_simple_ci
            ci = (low if math.isfinite(low) and low > 0 else None,
                  high if math.isfinite(high) else None)  # fmt: skip
            try:
                prediction = compare_prediction(
                    fit, noise.b_simple, None if ci == (None, None) else ci, seed=seed
                )
            except AnalysisError as error:
                notes.append(f"B_simple vs B_crit: {error}")
        else:
            notes.append(
                f"B_simple = {noise.b_simple:.3g} is not positive: |G|² is lost in the noise at "
                f"noise_batch_size={noise_batch_size}; use a larger one or more noise_batches"
            )
    return CheckpointMeasurement(
        step=point.step,
        examples_seen=point.examples_seen,
        value=value,
        target=target,
        rungs=tuple(rungs),
        fit=fit,
        exact_fit=exact_fit,
        noise=noise,
        exact_noise=exact_noise,
        prediction=prediction,
        note="; ".join(notes) or None,
    )
