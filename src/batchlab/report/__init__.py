"""HTML reports of batch-size scaling studies: one self-contained file, plots embedded.

The report reads a study's results (``results.json``; ``noise_scale.json`` if
present), recomputes the analysis from the steps-to-target of every rung and lays
out the figures a researcher would draw (Shallue et al. 2018; McCandlish et al.
2018). Every image is a PNG data URI and every study-provided string is escaped:
the file opens from an e-mail attachment, with no server and no network.

Example:
    >>> import batchlab as bl
    >>> bl.report.write_report("runs/nqm")                      # doctest: +SKIP
    PosixPath('runs/nqm/report.html')
    >>> bl.report.write_report(["runs/sgd", "runs/momentum"], "compare.html")  # doctest: +SKIP
"""

from ..results import EdgeWarning, ResultsError, StudyData, edge_warnings, load_study
from ._report import Report, build_report, write_report

#: The report's old name for :class:`batchlab.results.ResultsError`.
ReportError = ResultsError

__all__ = [
    "EdgeWarning",
    "Report",
    "ReportError",
    "ResultsError",
    "StudyData",
    "build_report",
    "edge_warnings",
    "load_study",
    "write_report",
]
