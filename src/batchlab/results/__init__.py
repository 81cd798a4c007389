"""A study's results: the ``results.json`` schema, its one writer and its one reader.

* :class:`StudyResult`, :class:`RungResult`, :class:`TrialRecord` — the records a
  study writes (``StudyResult.save``: ``results.json`` and ``results.csv``);
* :func:`load_study` — read them back (a directory, a file, a dict), validated, as
  :class:`StudyData` holding the same records; every reader (report, findings) uses it;
* :data:`STATUSES` — the trial outcomes, the one vocabulary of every layer;
* :func:`edge_warnings` — rungs whose best trial sits on the edge of a searched range;
* :class:`Fields`, :func:`read_json`, :func:`check_schema_version`,
  :class:`ResultsError` — checked reading of any batchlab JSON file (``cbs.json`` too).
"""

from ._fields import Fields, ResultsError, check_schema_version, read_json
from ._read import (
    NOISE_SCALE_JSON,
    NoiseScale,
    StudyData,
    load_study,
    parse_noise_scale,
    search_space,
)
from ._rises import (
    RISE_LEVEL,
    recheck_stalled,
    rise_chance,
    rises_above,
    rising_after_recheck,
    seeds_above,
    seeds_of,
    steps_text,
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
from ._space import (
    EDGE_MARGIN,
    EdgeWarning,
    SearchRange,
    edge_side,
    edge_warnings,
    range_position,
    search_floor,
    searched_ranges,
)
from ._summarize import rung_hparams, rung_lrs, summarize_rungs

__all__ = [
    "EDGE_MARGIN",
    "NOISE_SCALE_JSON",
    "RESULTS_CSV",
    "RESULTS_JSON",
    "RISE_LEVEL",
    "SCHEMA_VERSION",
    "STATUSES",
    "EdgeWarning",
    "Fields",
    "NoiseScale",
    "ResultsError",
    "RungResult",
    "SearchRange",
    "StudyData",
    "StudyResult",
    "TrialRecord",
    "check_schema_version",
    "edge_side",
    "edge_warnings",
    "environment",
    "load_study",
    "now_iso",
    "parse_noise_scale",
    "range_position",
    "read_json",
    "recheck_stalled",
    "rise_chance",
    "rises_above",
    "rising_after_recheck",
    "rung_hparams",
    "rung_lrs",
    "search_floor",
    "search_space",
    "searched_ranges",
    "seeds_above",
    "seeds_of",
    "steps_text",
    "summarize_rungs",
]
