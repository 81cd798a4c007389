"""A study directory: its saved config, and where its storage lives.

``config.json`` holds the validated config a study was started with, so that it can
be resumed from the directory alone and a changed config is refused instead of
silently mixing trials of two studies. File storages named in a config resolve to
paths inside the directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._errors import ConfigError
from .._io import atomic_write_json
from ._journal import JOURNAL_NAME

CONFIG_FILE = "config.json"

#: Fields that may change between runs of one study (with ``force``): they cannot
#: change what a finished trial measured.
SAFE_CHANGES = (
    "workers.heartbeat_interval",
    "workers.grace_period",
    "search.trials_per_rung",
    "search.confirm_top",
    "search.confirm_seeds",
    "search.confirm_reserve",
    "search.refine",
    "search.neighbours",
)
#: Of the safe changes, those that may only grow: planned trials are never taken back
#: (a field missing from an older config counts as 0: confirmations came later).
GROW_ONLY = (
    "search.trials_per_rung",
    "search.refine",
    "search.neighbours",
    "search.confirm_top",
    "search.confirm_seeds",
    "search.confirm_reserve",
)


def resolve_storage_url(storage: str | None, directory: Path) -> str:
    """Absolute storage URL for a study directory (see :attr:`Study.storage_url`)."""
    root = directory.resolve()
    if storage is None:
        return f"journal://{(root / JOURNAL_NAME).as_posix()}"
    for prefix in ("journal://", "sqlite:///"):
        if storage.startswith(prefix) or (prefix == "journal://" and "://" not in storage):
            raw = storage[len(prefix) :] if storage.startswith(prefix) else storage
            path = (root / raw).resolve()  # an absolute raw path replaces root
            if not path.is_relative_to(root):
                raise ConfigError(
                    f"storage: {storage!r} points outside the study directory {root}; "
                    "file storages named in a config must lie inside it (use a relative path)"
                )
            return (
                f"{prefix}{path.as_posix()}"
                if prefix == "sqlite:///"
                else f"journal://{path.as_posix()}"
            )
    return storage


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}


#: Fields that say where things are, not what is measured: they may differ between
#: runs of one study (a project moved, another --workload-path) and are not compared.
LOCATION_FIELDS = ("workload.path",)


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, old value, new value) for every field that differs (locations aside)."""
    a, b = _flatten(old), _flatten(new)
    return [
        (key, a.get(key), b.get(key))
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key) and key not in LOCATION_FIELDS
    ]


def with_new_defaults(old: dict[str, Any]) -> dict[str, Any]:
    """A config saved by an older batchlab, with the fields added since at their defaults.

    Every field is added with a default that keeps the meaning studies had before it
    existed (e.g. ``search.edge_extension = 0``, ``performance.device = "auto"``), so
    a study started before is resumed as it was, not refused as changed. A config the
    current schema rejects is returned as it is (the comparison then shows why).
    """
    from ._config import StudyConfig

    try:
        defaults = _flatten(StudyConfig.model_validate(old).to_json_dict())
    except ValueError:  # pydantic's ValidationError is a ValueError
        return old
    present = _flatten(old)
    filled: dict[str, Any] = {}
    for key, value in {**defaults, **present}.items():
        node = filled
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return filled


def save_config(directory: Path, new: dict[str, Any], *, force: bool) -> None:
    """Write ``config.json``, refusing a change to the config the study started with.

    With ``force``, the :data:`SAFE_CHANGES` are accepted (more trials per rung or
    confirmations, but never fewer); any other change would invalidate finished trials.
    """
    path = directory / CONFIG_FILE
    if path.exists():
        old = with_new_defaults(json.loads(path.read_text()))
        changes = config_diff(old, new)
        if changes:
            lines = [f"  {key}: {a!r} -> {b!r}" for key, a, b in changes]
            unsafe = [key for key, _, _ in changes if key not in SAFE_CHANGES]
            shrink = any(key in GROW_ONLY and (b or 0) < (a or 0) for key, a, b in changes)
            if not force or unsafe or shrink:
                why = (
                    "pass --force to apply it"
                    if not force and not unsafe and not shrink
                    else "these fields would invalidate finished trials; start a new study directory"
                )
                raise ConfigError(
                    f"the config differs from the one this study ({path}) was started with:\n"
                    + "\n".join(lines)
                    + f"\n{why}"
                )
    atomic_write_json(path, new)
