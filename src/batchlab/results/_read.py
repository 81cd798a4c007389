"""The one reader of ``results.json`` (and an optional ``noise_scale.json``).

The report and the findings only *read* results: this module turns the JSON written
by ``StudyResult.to_dict()`` back into the schema's records (:class:`RungResult`,
:class:`TrialRecord`), checking every field it uses, so a damaged or foreign file
fails with a message naming the file and the field rather than with a ``KeyError``
deep inside a plot. Files of every schema version so far are read.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._fields import Fields, ResultsError, check_schema_version, read_json
from ._schema import RESULTS_JSON, SCHEMA_VERSION, RungResult, TrialRecord
from ._space import SearchRange, parse_ranges

NOISE_SCALE_JSON = "noise_scale.json"


@dataclass(frozen=True)
class NoiseScale:
    """Gradient noise scale B_simple tracked over training (McCandlish et al. 2018).

    ``ci_low``/``ci_high`` are NaN where an entry has no interval.
    """

    steps: tuple[int, ...]
    b_simple: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    batch_size: int | None = None

    @property
    def final(self) -> tuple[float, tuple[float, float] | None]:
        """The last measurement and its interval (``None`` if it has none)."""
        low, high = self.ci_low[-1], self.ci_high[-1]
        ci = (low, high) if math.isfinite(low) and math.isfinite(high) else None
        return self.b_simple[-1], ci


@dataclass(frozen=True)
class StudyData:
    """Everything the report shows about one study."""

    name: str
    source: Path | None
    config: dict[str, Any]
    workload: dict[str, Any]
    target: dict[str, Any]
    rungs: tuple[RungResult, ...]
    environment: dict[str, Any]
    wall_time_s: float | None
    created: str | None
    search_space: dict[str, SearchRange] = field(default_factory=dict)
    noise_scale: NoiseScale | None = None
    trial_time_s: float | None = None

    @property
    def reached(self) -> tuple[RungResult, ...]:
        """The rungs where some trial reached the target."""
        return tuple(r for r in self.rungs if r.steps_to_target is not None)

    @property
    def complete(self) -> bool:
        return all(r.complete for r in self.rungs)


def load_study(source: str | Path | Mapping[str, Any] | Any) -> StudyData:
    """Read one study for the report.

    Args:
        source: a study directory (holding ``results.json``), a ``results.json``
            file, a results dict (``StudyResult.to_dict()``) or any object with a
            ``to_dict()`` method returning one (a ``StudyResult``).

    Returns:
        The validated :class:`StudyData`. A ``noise_scale.json`` beside the
        results file is used when the results carry no noise scale.

    Raises:
        FileNotFoundError: the path does not exist.
        ResultsError: the path holds no results, or a field is missing or malformed.
    """
    if isinstance(source, str | Path):
        path = _results_path(Path(source))
        data = read_json(path)
        noise_path = path.parent / NOISE_SCALE_JSON
        noise = data.get("noise_scale") if isinstance(data, dict) else None
        if noise is None and noise_path.is_file():
            noise = read_json(noise_path)
            return _parse(data, str(path), path.parent, noise, str(noise_path))
        return _parse(data, str(path), path.parent, noise, str(path))
    if isinstance(source, Mapping):
        data = dict(source)
    elif callable(getattr(source, "to_dict", None)):
        data = source.to_dict()
    else:
        raise TypeError(
            "expected a study directory, a results.json path, a results dict or a "
            f"StudyResult, got {type(source).__name__}"
        )
    return _parse(data, "results", None, data.get("noise_scale"), "results")


def _results_path(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", str(path))
    if path.is_file():
        return path
    results = path / RESULTS_JSON
    if results.is_file():
        return results
    if (path / "config.json").is_file():
        raise ResultsError(
            f"{path}: the study has no results yet (no {RESULTS_JSON}); they are written as "
            "soon as its first trial finishes"
        )
    raise ResultsError(
        f"{path} is not a study directory (no {RESULTS_JSON}); "
        "give the --out directory of `batchlab study run`"
    )


def _parse(
    data: Any,
    where: str,
    directory: Path | None,
    noise: Any,
    noise_where: str,
) -> StudyData:
    f = Fields(where)
    if not isinstance(data, dict):
        raise ResultsError(f"{where}: expected a JSON object of study results")
    check_schema_version(data, where, SCHEMA_VERSION)
    name = f.get(data, "name", "name", "str")
    rungs_raw = f.get(data, "rungs", "rungs", "list")
    rungs = tuple(
        sorted(
            (_parse_rung(f, rung, f"rungs[{i}]") for i, rung in enumerate(rungs_raw)),
            key=lambda r: r.batch_size,
        )
    )
    sizes = [r.batch_size for r in rungs]
    if len(set(sizes)) != len(sizes):
        raise ResultsError(f"{where}: two rungs have the same batch_size")
    config = f.get(data, "config", "config", "dict", optional=True) or {}
    target = f.get(data, "target", "target", "dict", optional=True) or {}
    for key, kind in (("metric", "str"), ("direction", "str"), ("value", "number")):
        f.get(target, key, f"target.{key}", kind)
    elapsed = f.get(data, "wall_time_s", "wall_time_s", "number", optional=True)
    trial_time = f.get(data, "trial_time_s", "trial_time_s", "number", optional=True)
    has_trial_time = "trial_time_s" in data
    workload = f.get(data, "workload", "workload", "dict", optional=True) or {}
    # The model size, recorded since the report fits B_crit against it; older files lack it.
    parameters = f.get(workload, "parameters", "workload.parameters", "int", optional=True)
    if parameters is not None and parameters <= 0:
        raise f.fail("workload.parameters", "a positive integer", parameters)
    return StudyData(
        name=name,
        source=directory,
        config=config,
        workload=workload,
        target=target,
        rungs=rungs,
        environment=f.get(data, "environment", "environment", "dict", optional=True) or {},
        # Files without trial_time_s (before it existed) wrote the summed trial time
        # as wall_time_s: it is read as what it was, and their elapsed time is unknown.
        wall_time_s=elapsed if has_trial_time else None,
        trial_time_s=trial_time if has_trial_time else elapsed,
        created=f.get(data, "created", "created", "str", optional=True),
        search_space=search_space(data),
        noise_scale=None if noise is None else parse_noise_scale(noise, noise_where),
    )


def _parse_rung(f: Fields, raw: Any, at: str) -> RungResult:
    f.check(raw, at, "dict")
    batch_size = f.get(raw, "batch_size", f"{at}.batch_size", "int")
    if batch_size <= 0:
        raise f.fail(f"{at}.batch_size", "a positive integer", batch_size)
    trials_raw = f.get(raw, "trials", f"{at}.trials", "list", optional=True) or []
    trials = [_parse_trial(f, t, f"{at}.trials[{i}]") for i, t in enumerate(trials_raw)]
    steps = f.get(raw, "steps_to_target", f"{at}.steps_to_target", "int", optional=True)
    best_trial = f.get(raw, "best_trial", f"{at}.best_trial", "int", optional=True)
    if steps is None and "steps_to_target" not in raw:
        # A hand-made file: the rung's best as the study chooses it. (analysis pulls in
        # SciPy, which the study's workers, importing this package, never need.)
        from ..analysis import best_run_per_batch_size

        index = best_run_per_batch_size(
            {"batch_size": batch_size, "steps_to_target": t.steps_to_target} for t in trials
        ).get(batch_size)
        if index is not None:
            steps, best_trial = trials[index].steps_to_target, trials[index].number
    best_hparams = raw.get("best_hparams")
    done = f.get(raw, "trials_done", f"{at}.trials_done", "int", optional=True)
    planned = f.get(raw, "trials_planned", f"{at}.trials_planned", "int", optional=True)
    running = f.get(raw, "trials_running", f"{at}.trials_running", "int", optional=True)
    return RungResult(
        batch_size=batch_size,
        budget_steps=f.get(raw, "budget_steps", f"{at}.budget_steps", "int", optional=True),
        eval_every=f.get(raw, "eval_every", f"{at}.eval_every", "int", optional=True),
        trials_planned=_or(planned, len(trials)),
        trials_done=_or(done, len(trials)),
        trials_running=_or(running, 0),
        steps_to_target=steps,
        best_trial=best_trial,
        best_hparams=None
        if best_hparams is None
        else f.numbers(best_hparams, f"{at}.best_hparams"),
        trials=trials,
        search_steps=f.get(raw, "search_steps", f"{at}.search_steps", "int", optional=True),
        seed_interval=raw.get("seed_interval")
        if isinstance(raw.get("seed_interval"), list)
        else None,
        seed_coverage=f.get(raw, "seed_coverage", f"{at}.seed_coverage", "number", optional=True),
        seed_steps=[
            None if s is None else f.check(s, f"{at}.seed_steps[{i}]", "int")
            for i, s in enumerate(
                f.get(raw, "seed_steps", f"{at}.seed_steps", "list", optional=True) or []
            )
        ],
    )


def _parse_trial(f: Fields, raw: Any, at: str) -> TrialRecord:
    f.check(raw, at, "dict")
    status = f.get(raw, "status", f"{at}.status", "str", optional=True) or "unknown"
    reason = raw.get("reason")
    tb = raw.get("traceback")
    return TrialRecord(
        number=f.get(raw, "number", f"{at}.number", "int"),
        slot=_or(f.get(raw, "slot", f"{at}.slot", "int", optional=True), -1),
        seed=_or(f.get(raw, "seed", f"{at}.seed", "int", optional=True), -1),
        params=f.numbers(raw.get("params") or {}, f"{at}.params"),
        hparams=f.numbers(raw.get("hparams") or {}, f"{at}.hparams"),
        status=status,
        steps_to_target=f.get(
            raw, "steps_to_target", f"{at}.steps_to_target", "int", optional=True
        ),
        reason=None if reason is None else str(reason),
        wall_time_s=f.get(raw, "wall_time_s", f"{at}.wall_time_s", "number", optional=True),
        curve=raw.get("curve") if isinstance(raw.get("curve"), dict) else None,
        traceback=None if tb is None else str(tb),
        retry_of=f.get(raw, "retry_of", f"{at}.retry_of", "int", optional=True),
        warm_start=raw.get("warm_start") if isinstance(raw.get("warm_start"), dict) else None,
        threads=f.get(raw, "threads", f"{at}.threads", "int", optional=True),
        confirm_of=f.get(raw, "confirm_of", f"{at}.confirm_of", "int", optional=True),
        rule=f.get(raw, "rule", f"{at}.rule", "str", optional=True),
        device=f.get(raw, "device", f"{at}.device", "str", optional=True),
        precision=f.get(raw, "precision", f"{at}.precision", "str", optional=True),
        compiled=f.get(raw, "compiled", f"{at}.compiled", "bool", optional=True),
        ensemble=f.get(raw, "ensemble", f"{at}.ensemble", "int", optional=True),
        extended=_windows(raw.get("extended")),
        recheck_from=f.get(raw, "recheck_from", f"{at}.recheck_from", "int", optional=True),
        spread=f.get(raw, "spread", f"{at}.spread", "str", optional=True),
    )


def _windows(raw: Any) -> dict[str, list[float]] | None:
    """A trial's ``extended`` windows (name -> ``[low, high]``); malformed ones left out."""
    if not isinstance(raw, dict):
        return None
    windows = {}
    for name, window in raw.items():
        if (
            isinstance(window, list)
            and len(window) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in window)
            and window[0] < window[1]
        ):
            windows[str(name)] = [float(window[0]), float(window[1])]
    return windows or None


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def parse_noise_scale(raw: Any, where: str = "noise_scale") -> NoiseScale:
    """Parse ``{"history": [{"step", "b_simple", "b_simple_ci"}...], "batch_size"}``.

    Entries without a finite ``b_simple`` are skipped (an estimate that is still
    undefined early in training); an empty history is an error.
    """
    f = Fields(where)
    if not isinstance(raw, dict):
        raise ResultsError(f"{where}: noise_scale must be an object with a 'history' list")
    history = f.get(raw, "history", "noise_scale.history", "list")
    steps, values, lows, highs = [], [], [], []
    for i, entry in enumerate(history):
        at = f"noise_scale.history[{i}]"
        f.check(entry, at, "dict")
        value = entry.get("b_simple")
        if value is None or not math.isfinite(float(f.check(value, f"{at}.b_simple", "number"))):
            continue
        steps.append(f.get(entry, "step", f"{at}.step", "int"))
        values.append(float(value))
        ci = entry.get("b_simple_ci")
        if isinstance(ci, list | tuple) and len(ci) == 2 and all(c is not None for c in ci):
            lows.append(float(f.check(ci[0], f"{at}.b_simple_ci[0]", "number")))
            highs.append(float(f.check(ci[1], f"{at}.b_simple_ci[1]", "number")))
        else:
            lows.append(math.nan)
            highs.append(math.nan)
    if not values:
        raise ResultsError(f"{where}: noise_scale.history has no finite b_simple")
    return NoiseScale(
        steps=tuple(steps),
        b_simple=tuple(values),
        ci_low=tuple(lows),
        ci_high=tuple(highs),
        batch_size=f.get(raw, "batch_size", "noise_scale.batch_size", "int", optional=True),
    )


def search_space(data: Mapping[str, Any]) -> dict[str, SearchRange]:
    """The searched hyperparameters of a study (empty if the file cannot tell).

    Studies write their resolved space (``search_space``, the optimizer's defaults
    included); for files written before that, the config's explicit ``search.space``
    table is used.
    """
    raw = data.get("search_space")
    if not isinstance(raw, Mapping):
        config = data.get("config")
        search = config.get("search") if isinstance(config, Mapping) else None
        raw = search.get("space") if isinstance(search, Mapping) else None
    return parse_ranges(raw or {})
