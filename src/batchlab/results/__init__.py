"""A study's results: the ``results.json`` schema, its one writer and its one reader.

* :class:`StudyResult`, :class:`RungResult`, :class:`TrialRecord` — the records a
  study writes (``StudyResult.save``: ``results.json`` and ``results.csv``);
* :func:`load_study` — read them back (a directory, a file, a dict), validated, as
  :class:`StudyData` holding the same records; every reader (report, findings) uses it;
* :data:`STATUSES` — the trial outcomes, the one vocabulary of every layer.
"""

from ._read import (
    NOISE_SCALE_JSON,
    Fields,
    NoiseScale,
    ResultsError,
    SearchRange,
    StudyData,
    load_study,
    parse_noise_scale,
    search_space,
)
from ._schema import (
    RESULTS_CSV,
    RESULTS_JSON,
    SCHEMA_VERSION,
    STATUSES,
    RungResult,
    StudyResult,
    TrialRecord,
    environment,
    now_iso,
)

__all__ = [
    "NOISE_SCALE_JSON",
    "RESULTS_CSV",
    "RESULTS_JSON",
    "SCHEMA_VERSION",
    "STATUSES",
    "Fields",
    "NoiseScale",
    "ResultsError",
    "RungResult",
    "SearchRange",
    "StudyData",
    "StudyResult",
    "TrialRecord",
    "environment",
    "load_study",
    "now_iso",
    "parse_noise_scale",
    "search_space",
]
