"""The one base class for batchlab's domain errors.

Every error a user can cause with bad input derives from :class:`BatchlabError`
(and, where Python has a matching built-in, from that too: a bad argument value is
also a ``ValueError``), so the CLI can turn them into one clear line and exit code 2.
"""

from __future__ import annotations


class BatchlabError(Exception):
    """Base class of the errors batchlab raises for bad input or bad state."""


class ConfigError(BatchlabError, ValueError):
    """A configuration value is invalid; the message names the field."""


class WorkloadError(BatchlabError, ValueError):
    """A workload name, spec or parameter is invalid."""
