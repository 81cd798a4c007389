"""Checked access to the JSON files batchlab writes: one error type, one field checker.

Every reader of a batchlab JSON file (``results.json`` here, ``cbs.json`` in the
report) reads it with :func:`read_json`, refuses a newer layout with
:func:`check_schema_version` and takes its fields through :class:`Fields`, so a
damaged or foreign file fails with a message naming the file and the field rather
than with a ``KeyError`` deep inside a plot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._errors import BatchlabError


class ResultsError(BatchlabError, ValueError):
    """A results file is missing, unreadable or lacks a field a reader needs."""


def read_json(path: Path) -> Any:
    """The JSON in ``path``; :class:`ResultsError` if it is not valid JSON or a directory."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsError(f"{path}: not valid JSON ({error})") from None
    except IsADirectoryError:
        raise ResultsError(f"{path} is a directory, expected a JSON file") from None


def check_schema_version(data: Mapping[str, Any], where: str, newest: int) -> None:
    """Refuse a file whose ``schema_version`` is newer than ``newest`` (absent: current)."""
    schema = data.get("schema_version", newest)
    if isinstance(schema, int) and schema > newest:
        raise ResultsError(
            f"{where}: schema_version {schema} is newer than this batchlab reads "
            f"({newest}); upgrade batchlab"
        )


class Fields:
    """Typed field access with errors that name the file and the field path."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, location: str, expected: str, value: Any) -> ResultsError:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return ResultsError(f"{self.where}: field {location!r} must be {expected}, got {shown}")

    def get(
        self, obj: Mapping[str, Any], key: str, location: str, kind: str, *, optional: bool = False
    ) -> Any:
        if key not in obj or obj[key] is None:
            if optional:
                return None
            raise ResultsError(f"{self.where}: missing field {location!r}")
        return self.check(obj[key], location, kind)

    def check(self, value: Any, location: str, kind: str) -> Any:
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(location, "an integer", value)
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail(location, "a number", value)
            return float(value)
        elif kind == "str":
            if not isinstance(value, str):
                raise self.fail(location, "a string", value)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise self.fail(location, "true or false", value)
        elif kind == "dict":
            if not isinstance(value, dict):
                raise self.fail(location, "an object", value)
        elif kind == "list":
            if not isinstance(value, list):
                raise self.fail(location, "a list", value)
        return value

    def numbers(self, obj: Any, location: str) -> dict[str, float]:
        """A ``{name: number}`` dict (non-numbers, e.g. strings, are kept out)."""
        self.check(obj, location, "dict")
        return {
            str(k): float(v)
            for k, v in obj.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
