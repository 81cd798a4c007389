"""Steps-to-result from a table of runs (Shallue et al. 2018, Sec. 3.3).

As in their data release (google-research ``batch_science/measurement_utils.py``):
a run's steps-to-target is the first evaluated step whose metric reaches the target,
and a batch size's steps-to-result is the minimum over its runs. The study's rungs,
and a results file that lacks them, choose each rung's best trial here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
