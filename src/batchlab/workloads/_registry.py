"""Look workloads up by name, or import a user's own as ``module:function``.

A ``module:function`` spec imports ``module`` and calls ``function(**params)``, which
must return an object satisfying the :class:`~batchlab.workloads.Workload` protocol.
This runs the user's code by design: only use specs you trust.

Where ``module`` is looked for, in order: the directories of ``path`` (a study
config's ``[workload] path``, which always ends with the config file's own
directory, and ``--workload-path`` options), then the current directory, then the
usual ``sys.path``. The first of those directories that holds ``module`` (a
``module.py`` or a ``module/`` package) is put in front of ``sys.path``, so the
file beside your config imports without ``PYTHONPATH``, in every worker process.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import WorkloadError
from ._protocol import Target, Workload

#: name -> "module:Class" of the built-in workloads (imported lazily).
BUILTIN_WORKLOADS: dict[str, str] = {
    "mnist1d-cnn": "batchlab.workloads.mnist1d_cnn:MNIST1DWorkload",
    "digits-mlp": "batchlab.workloads.digits_mlp:DigitsMLPWorkload",
    "shakespeare-char": "batchlab.workloads.shakespeare_char:ShakespeareCharWorkload",
    "linreg": "batchlab.workloads.linreg:LinRegWorkload",
    "nqm": "batchlab.workloads.nqm:NQMWorkload",
}

_PROTOCOL_MEMBERS = (
    "name",
    "target",
    "metrics",
    "default_steps",
    "train_size",
    "build_model",
    "train_batches",
    "loss_fn",
    "evaluate",
)


@dataclass(frozen=True)
class WorkloadInfo:
    """What ``batchlab workloads`` shows about a built-in workload, without building it."""

    name: str
    description: str
    parameters: dict[str, Any]
    target: Target
    default_steps: int


def search_directories(path: Sequence[str | Path] = ()) -> list[Path]:
    """Where a ``module:function`` workload's module is looked for before ``sys.path``.

    The directories of ``path`` in order, then the current directory; duplicates once.
    """
    found: list[Path] = []
    for entry in [*path, os.getcwd()]:
        directory = Path(entry).expanduser().resolve()
        if directory not in found:
            found.append(directory)
    return found


def _holds_module(directory: Path, top: str) -> bool:
    return (directory / f"{top}.py").is_file() or (directory / top / "__init__.py").is_file()


def _load_attribute(spec: str, path: Sequence[str | Path] = ()) -> Callable[..., Any]:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise WorkloadError(f"workload spec {spec!r} must look like 'module:function'")
    directories = search_directories(path)
    top = module_name.split(".")[0]
    home = next((d for d in directories if _holds_module(d, top)), None)
    if home is not None and str(home) not in sys.path:
        sys.path.insert(0, str(home))
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        looked = ", ".join(str(d) for d in directories)
        raise WorkloadError(
            f"workload {spec!r}: could not import module {module_name!r} "
            f"({type(error).__name__}: {error}); looked in {looked}, then sys.path "
            "(add a directory with [workload] path or --workload-path)"
        ) from error
    try:
        factory = getattr(module, attribute)
    except AttributeError as error:
        raise WorkloadError(
            f"workload {spec!r}: module {module_name!r} has no attribute {attribute!r}"
        ) from error
    if not callable(factory):
        raise WorkloadError(f"workload {spec!r}: {attribute!r} is not callable")
    return factory


def _resolve(name: str, path: Sequence[str | Path] = ()) -> Callable[..., Any]:
    if name in BUILTIN_WORKLOADS:
        return _load_attribute(BUILTIN_WORKLOADS[name])
    if ":" in name:
        return _load_attribute(name, path)
    raise WorkloadError(
        f"unknown workload {name!r}; built-in workloads are: {', '.join(BUILTIN_WORKLOADS)} "
        "(or give your own as 'module:function')"
    )


def workload_parameters(factory: Callable[..., Any]) -> dict[str, Any]:
    """Keyword parameters a workload factory accepts, with their defaults."""
    return {
        name: (None if p.default is inspect.Parameter.empty else p.default)
        for name, p in inspect.signature(factory).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def get_workload(
    name: str, params: Mapping[str, Any] | None = None, path: Sequence[str | Path] = ()
) -> Workload:
    """Build the workload ``name`` (built-in name or ``module:function``) with ``params``.

    ``path``: directories to look for a ``module:function`` workload's module in, before
    the current directory and ``sys.path`` (module docstring).

    Raises:
        WorkloadError: unknown name, a spec that does not import, parameters the
            workload does not take, or a factory whose result is not a Workload.
    """
    if not isinstance(name, str) or not name:
        raise WorkloadError(f"workload must be a non-empty string, got {name!r}")
    factory = _resolve(name, path)
    params = dict(params or {})
    signature = inspect.signature(factory)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    accepted = workload_parameters(factory)
    unknown = sorted(set(params) - set(accepted))
    if unknown and not takes_any:
        raise WorkloadError(
            f"workload {name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(accepted) or 'no parameters'}"
        )
    try:
        workload = factory(**params)
    except (TypeError, ValueError) as error:
        raise WorkloadError(f"workload {name!r}: {error}") from error
    missing = [member for member in _PROTOCOL_MEMBERS if not hasattr(workload, member)]
    if missing:
        raise WorkloadError(
            f"workload {name!r} returned {type(workload).__name__}, which lacks "
            f"{', '.join(missing)} of the Workload protocol"
        )
    if not isinstance(workload.target, Target):
        raise WorkloadError(f"workload {name!r}: target must be a batchlab.workloads.Target")
    return workload


def list_workloads() -> list[WorkloadInfo]:
    """The built-in workloads, described from their classes (no data is built)."""
    infos = []
    for name in BUILTIN_WORKLOADS:
        cls = _resolve(name)
        infos.append(
            WorkloadInfo(
                name=name,
                description=cls.description,
                parameters=workload_parameters(cls),
                target=cls.target,
                default_steps=cls.default_steps,
            )
        )
    return infos
