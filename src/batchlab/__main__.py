"""``python -m batchlab``: the same as the ``batchlab`` command."""

from .cli import main

main()
