"""Old name of :mod:`batchlab.reproduce` (the literature's findings, re-measured).

Kept so that ``import batchlab.findings`` in users' scripts goes on working.
"""

from ..reproduce import *  # noqa: F403
from ..reproduce import __all__  # noqa: F401
