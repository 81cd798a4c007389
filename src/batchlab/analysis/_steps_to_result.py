"""Steps-to-result from a table of runs (Shallue et al. 2018, Sec. 3.3).

As in their data release (google-research ``batch_science/measurement_utils.py``):
a run's steps-to-target is the first evaluated step whose metric reaches the target,
and a batch size's steps-to-result is the minimum over its runs. The study's rungs,
and a results file that lacks them, choose each rung's best trial here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def best_run_per_batch_size(records: Iterable[Mapping[str, Any]]) -> dict[int, int | None]:
    """Which run sets each batch size's steps-to-result: its position in ``records``.

    A run *reaches* the target at the first evaluated step whose metric is ``>=`` the
    target value for a metric to maximise, ``<=`` for one to minimise
    (:meth:`batchlab.workloads.Target.reached`; a metric exactly on the target counts,
    as in the data release's ``>=`` threshold on accuracy); that step is the run's
    ``steps_to_target``. The best run of a batch size is the one with the fewest; of
    runs with equally few, the first in ``records`` (give them in slot order and the
    lowest slot wins). A batch size where no run reached the target maps to ``None``.

    Args:
        records: one mapping per run with ``batch_size`` and ``steps_to_target``
            (``None`` or absent: never reached).

    Returns:
        ``{batch_size: index into records, or None}``, batch sizes ascending.
    """
    best: dict[int, int | None] = {}
    fewest: dict[int, int] = {}
    for index, record in enumerate(records):
        size, steps = int(record["batch_size"]), record.get("steps_to_target")
        best.setdefault(size, None)
        if steps is not None and (size not in fewest or steps < fewest[size]):
            best[size], fewest[size] = index, int(steps)
    return dict(sorted(best.items()))


def best_steps_per_batch_size(records: Iterable[Mapping[str, Any]]) -> dict[int, int | None]:
    """Steps-to-result per batch size: the fewest steps-to-target over its runs.

    The runs and "reached" are those of :func:`best_run_per_batch_size` (``>=`` the
    target for a metric to maximise, ``<=`` for one to minimise); a batch size where
    no run reached the target maps to ``None`` (infeasible).

    Args:
        records: one mapping per run with ``batch_size`` and ``steps_to_target``.

    Returns:
        ``{batch_size: fewest steps or None}``, batch sizes ascending.
    """
    table = list(records)
    return {
        size: None if index is None else int(table[index]["steps_to_target"])
        for size, index in best_run_per_batch_size(table).items()
    }


def median_steps(steps: Sequence[int | None]) -> int | None:
    """The lower median of a candidate's steps-to-target over seeds (``None``: not reached).

    A run that never reached the target counts as more steps than any that did, so a
    candidate that reaches the target with fewer than half of its seeds has ``None``.
    The lower median of an even count keeps the result one of the measured counts.
    """
    if not steps:
        raise ValueError("median_steps needs at least one run")
    ordered = sorted(steps, key=lambda s: math.inf if s is None else s)
    return ordered[(len(ordered) - 1) // 2]


def confirmed_candidate(candidates: Sequence[Sequence[int | None]]) -> int | None:
    """Which candidate sets a rung's confirmed steps-to-result: the fewest median steps.

    After the search, a study re-runs its best candidates with fresh seeds
    (``[search] confirm_top``, ``confirm_seeds``): the best of N single-seed trials is
    the luckiest one (a minimum over seeds is biased low and noisy), while the median
    of one hyperparameter point over several seeds estimates what that point gives.

    Args:
        candidates: per candidate (in rank order: the search's best first), its
            steps-to-target on every seed it ran (the search trial included).

    Returns:
        The index of the candidate with the fewest :func:`median_steps` (of several,
        the better-ranked), or ``None`` when no candidate's median reached the target.
    """
    best, fewest = None, math.inf
    for index, steps in enumerate(candidates):
        median = median_steps(steps)
        if median is not None and median < fewest:
            best, fewest = index, median
    return best


def median_interval(
    steps: Sequence[int | None], confidence: float = 0.95
) -> tuple[int | None, int | None, float]:
    """A distribution-free interval for the median steps over seeds, and its coverage.

    Order statistics (e.g. Conover 1999, "Practical Nonparametric Statistics", Sec.
    3.2): for n seeds sorted X(1) <= ... <= X(n), the interval [X(k), X(n+1-k)]
    covers the population median with probability 1 − 2·P(Bin(n, ½) < k), whatever
    the distribution of a run's steps. The widest k that reaches ``confidence`` is
    used; with too few seeds for it (n = 3 covers at most 75%) the interval is the
    whole range [X(1), X(n)] and the coverage returned says how much less it is.
    A seed that never reached the target sorts last (``None``: unbounded above).

    Returns:
        (low, high, coverage); ``high`` is ``None`` when it is a seed that never reached.
    """
    if not steps:
        raise ValueError("median_interval needs at least one run")
    n = len(steps)
    ordered = sorted(steps, key=lambda s: math.inf if s is None else s)

    def coverage(k: int) -> float:
        below = sum(math.comb(n, i) for i in range(k)) / 2**n  # P(Bin(n, 1/2) < k)
        return 1.0 - 2.0 * below

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= confidence:
        k += 1
    return ordered[k - 1], ordered[n - k], coverage(k)
