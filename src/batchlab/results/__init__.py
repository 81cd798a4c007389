"""A study's results: the ``results.json`` schema, its one writer and its one reader.

* :class:`StudyResult`, :class:`RungResult`, :class:`TrialRecord` — the records a
  study writes (``StudyResult.save``: ``results.json`` and ``results.csv``);
* :func:`load_study` — read them back (a directory, a file, a dict), validated, as
  :class:`StudyData` holding the same records; every reader (report, findings) uses it;
* :data:`STATUSES` — the trial outcomes, the one vocabulary of every layer;
* :class:`Fields`, :func:`read_json`, :func:`check_schema_version`,
  :class:`ResultsError` — checked reading of any batchlab JSON file (``cbs.json`` too).
"""

from ._fields import Fields, ResultsError, check_schema_version, read_json
from ._read import (
    NOISE_SCALE_JSON,
    NoiseScale,
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
    "check_schema_version",
    "environment",
    "load_study",
    "now_iso",
    "parse_noise_scale",
    "read_json",
    "search_space",
]
