"""What several benchmark scripts share: CPU time, the environment line, search-only configs.

Imported as ``from _common import ...``: the scripts run as ``python benchmarks/NAME.py``,
which puts this directory first on ``sys.path``.
"""

from __future__ import annotations

import math
import platform
import resource
import sys

import torch

import batchlab
from batchlab.study import StudyConfig


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def study_environment(workers: int, config_name: str) -> str:
    """One line saying what a study benchmark ran on, printed first so figures carry it."""
    return (
        f"batchlab {batchlab.__version__}, torch {torch.__version__}, Python "
        f"{sys.version.split()[0]}, {platform.machine()}, {torch.get_num_threads()} threads, "
        f"{workers} workers; config {config_name}"
    )


def search_only(config: StudyConfig) -> StudyConfig:
    """``config`` with its search stage alone (``refine``, ``neighbours``, ``confirm_top`` 0)."""
    data = config.to_json_dict()
    data["search"] = {**data["search"], "refine": 0, "neighbours": 0, "confirm_top": 0}
    return StudyConfig.model_validate(data)


def propagated_b_crit_ci(
    analysis: dict | None, replicates: int = 500, seed: int = 0
) -> tuple[float, float] | None:
    """B_crit's 95% interval from the rungs' own intervals alone (a diagnostic).

    Each replicate draws every reached rung's log count from a split normal whose
    2.5% and 97.5% points are that rung's interval (``analysis.answer.rungs[].steps_ci``:
    fresh seeds, resolution, search floor; an unbounded top is left at the count) and
    refits S(B) = S_min (1 + B_crit / B); the percentiles of the refits are the interval.
    It ignores how far the rungs scatter about the curve (the residual bootstrap's
    part), so it says what the rungs' intervals alone would allow. ``None`` without a
    fit or with fewer than 3 rungs that have an interval.
    """
    import numpy as np

    from batchlab.analysis import fit_scaling

    rows = [
        r
        for r in ((analysis or {}).get("answer") or {}).get("rungs", [])
        if r.get("steps") is not None and r.get("steps_ci") is not None
    ]
    if not (analysis or {}).get("fit") or len(rows) < 3:
        return None
    z = 1.959964
    sizes = [r["batch_size"] for r in rows]
    count = np.log([r["steps"] for r in rows])
    below = (count - np.log([r["steps_ci"][0] for r in rows])) / z
    above = np.array(
        [
            0.0 if r["steps_ci"][1] is None else (math.log(r["steps_ci"][1]) - c) / z
            for r, c in zip(rows, count, strict=True)
        ]
    )
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(replicates):
        e = rng.standard_normal(len(rows))
        log_steps = count + np.where(e > 0, e * above, e * below)
        try:
            fit = fit_scaling(sizes, np.exp(log_steps).tolist(), n_bootstrap=0)
        except ValueError:
            continue
        draws.append(fit.b_crit)
    if len(draws) < replicates / 2:
        return None
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(low), float(high)
