"""``Study``: plan, run (resumably, with any number of workers), and collect a study.

A study directory holds ``config.json`` (the validated config, to resume from and to
refuse silent changes), the journal storage ``optuna.journal`` (unless an RDB URL is
configured), and ``results.json`` / ``results.csv``, rewritten atomically as trials
finish.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pydantic
import torch
from optuna.trial import TrialState

from .._checks import check_positive_int
from .._device import resolve_device
from .._errors import ConfigError
from .._io import atomic_write_json, remove_stale_temporaries
from .._secrets import redact_url
from .._threads import torch_threads
from ..results import SearchRange, StudyResult, environment, now_iso
from ..workloads import Workload, get_workload
from ._collect import analyse, collect_rung, elapsed_seconds, missing_slots, unfinished_by_rung
from ._config import StudyConfig, resolve_target, validate_against_workload
from ._directory import CONFIG_FILE, resolve_storage_url, save_config
from ._journal import journal_path
from ._liveness import reaping, requeue
from ._locks import storage_lock
from ._plan import (
    CONFIG_ATTR,
    PLANNED_ATTR,
    PLANNED_STAGES,
    RUNG_ATTR,
    Rung,
    confirmation_growth_error,
    enqueue_slot,
    load_rung_studies,
    plan_rungs,
    rung_attrs,
)
from ._processes import default_workers, run_worker_processes, spread_devices
from ._runner import FailFast, TrialEvent
from ._storage import StorageError, open_storage
from ._worker import work

logger = logging.getLogger(__name__)

#: While a study runs, ``results.json`` is rewritten at most this often. The storage
#: holds every finished trial the moment it finishes; the results files are a view
#: of it, and rewriting them after every trial costs O(trials) each time.
RESULTS_EVERY_S = 10.0


class WorkersDied(RuntimeError):
    """Worker processes of :meth:`Study.run` died and left planned trials unfinished."""


class StudyIncomplete(RuntimeError):
    """The workers are done but planned trials never finished; the message names them."""


def describe_unfinished(unfinished: dict[int, list[int]]) -> str:
    """``{16: [3, 1000001]}`` -> ``"batch size 16: slots 3, 1000001"``."""
    return "; ".join(
        f"batch size {b}: slot{'s' if len(slots) > 1 else ''} {', '.join(map(str, slots))}"
        for b, slots in unfinished.items()
        if slots
    )


def trainable_parameters(workload: Workload, seed: int) -> int:
    """The model size N: trainable parameters of ``workload.build_model(seed=seed)``.

    Recorded in ``results.json`` (``workload.parameters``) so that the report can fit
    B_crit against N across studies (Kaplan et al. 2020, Sec. 5.1; Zhang et al. 2024,
    Sec. 4). Building the model on the CPU is cheap next to any trial.
    """
    model = workload.build_model(seed=seed)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class RungStatus:
    """Progress of one rung, for ``batchlab study status``."""

    batch_size: int
    planned: int
    done: int
    running: int
    best_steps: int | None
    mean_trial_s: float | None
    #: Planned slots without a final trial that nothing is waiting or running for (lost:
    #: ``study resume`` enqueues them again).
    missing: tuple[int, ...] = ()


class Study:
    """A batch-size scaling study in a directory (Shallue et al. 2018's protocol).

    Example:
        >>> study = Study.from_config("examples/nqm.toml", out="runs/nqm")  # doctest: +SKIP
        >>> result = study.run(workers=2)                                   # doctest: +SKIP
        >>> result.steps_to_target                                          # doctest: +SKIP
        {4: 6460, 8: 3240, ...}
    """

    def __init__(self, config: StudyConfig, directory: str | Path | None = None) -> None:
        self.config = config
        self.directory = Path(directory) if directory is not None else Path("runs") / config.name
        self._storage_handle: Any = None
        self._workload: Workload | None = None
        self._parameters: int | None = None

    @classmethod
    def from_config(cls, path: str | Path, out: str | Path | None = None) -> Study:
        """A study from a TOML config file; results go to ``out`` (default ``runs/<name>``)."""
        return cls(StudyConfig.from_toml(path), out)

    @classmethod
    def load(cls, directory: str | Path) -> Study:
        """The study saved in ``directory`` (by an earlier ``run``), to resume or inspect."""
        directory = Path(directory)
        path = directory / CONFIG_FILE
        if not path.exists():
            raise ConfigError(f"{directory} is not a study directory (no {CONFIG_FILE})")
        try:
            config = StudyConfig.model_validate_json(path.read_text())
        except pydantic.ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc']) or 'config'}: {item['msg']}"
                for item in error.errors()
            )
            raise ConfigError(
                f"{path} is corrupt ({problems}); nothing was read or written; "
                "restore it from a backup"
            ) from None
        if config.storage is not None and redact_url(config.storage, mask=None) != config.storage:
            # Saved by an older batchlab, with the storage's password: this process
            # keeps it (in memory), the file loses it.
            atomic_write_json(path, config.to_json_dict())
            logger.warning(
                "removed the storage password from %s; other processes connect with "
                "PGPASSWORD or ~/.pgpass (docs/distributed.md)",
                path,
            )
        return cls(config, directory)

    @property
    def storage_url(self) -> str:
        """The study's storage: its own journal file, or the configured URL.

        File-backed storages named in the config (a journal path or an SQLite file)
        must lie inside the study directory: a config never makes batchlab write
        elsewhere. Relative paths are relative to the study directory.
        """
        return resolve_storage_url(self.config.storage, self.directory)

    # -- preparation -------------------------------------------------------------

    def prepare(self, *, force: bool = False) -> None:
        """Validate against the workload, save the config, create and plan every rung.

        A new study directory is removed again if preparing it fails, so bad input
        leaves nothing behind. A study started before (its ``config.json`` exists)
        whose trials are gone from the storage is refused, with nothing written
        (:meth:`_require_trials`): planning it afresh would silently start over.
        """
        if (self.directory / CONFIG_FILE).exists():
            self._require_growable(self._require_trials())
        validate_against_workload(self.config, self.workload())
        self.storage_url  # noqa: B018 - validates a configured storage path first
        created = not self.directory.exists()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.directory)
            save_config(self.directory, self.config.to_json_dict(), force=force)
            self._plan()
        except BaseException:
            if created:
                shutil.rmtree(self.directory, ignore_errors=True)
                self._storage_handle = None
            raise

    def _require_growable(self, names: set[str] | None) -> None:
        """Refuse, before anything is written, a config whose confirmations cannot grow
        on the studies already planned (``names``: the storage's study names, read here
        if ``None``; :func:`confirmation_growth_error`)."""
        storage = self._storage()
        if names is None:
            names = set(optuna.study.get_all_study_names(storage))
        for rung in plan_rungs(self.config):
            if rung.study_name in names:
                study = optuna.load_study(study_name=rung.study_name, storage=storage)
                if (error := confirmation_growth_error(study, self.config)) is not None:
                    raise ConfigError(error)

    def _plan(self) -> None:
        """Create every rung's Optuna study and enqueue its missing trials (idempotent)."""
        storage = self._storage()
        config_json = self.config.model_dump_json()
        # The storage's lock, not the directory's: processes on other machines (another
        # directory, the same database) may plan the same study at the same moment.
        with storage_lock(storage, "plan", self.config.name):
            for rung in plan_rungs(self.config):
                study = optuna.create_study(
                    study_name=rung.study_name,
                    storage=storage,
                    direction="minimize",
                    load_if_exists=True,
                )
                if int(study.user_attrs.get(PLANNED_ATTR, 0)) < self.config.search.trials_per_rung:
                    study.set_user_attr(CONFIG_ATTR, config_json)
                    study.set_user_attr(RUNG_ATTR, rung_attrs(rung))
                for planned in PLANNED_STAGES:
                    have = int(study.user_attrs.get(planned.attr, 0))
                    want = planned.wanted(self.config, rung)
                    if have < want:
                        planned.enqueue(study, self.config, rung, have, want)
                        study.set_user_attr(planned.attr, want)
                self._enqueue_lost(study, rung)

    def _enqueue_lost(self, study: optuna.Study, rung: Rung) -> None:
        """Enqueue again the planned slots of a rung that were lost (:func:`missing_slots`).

        A slot's last failed trial is copied (same point and seed); a slot with no trial
        at all is planned afresh.
        """
        with reaping(study):  # not a slot a reaper is re-enqueueing right now
            for slot in missing_slots(study):
                tried = [
                    t
                    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                    if int(t.user_attrs.get("slot", -1)) == slot
                ]
                if tried:
                    requeue(study, tried[-1])
                else:
                    enqueue_slot(study, self.config, rung, slot)
                logger.warning(
                    "batch size %d: planned slot %d had no trial left to run; enqueued it again",
                    rung.batch_size,
                    slot,
                )

    def _require_trials(self) -> set[str] | None:
        """Open the storage of a started study, refusing one that no longer holds it.

        Returns:
            The names of the studies the storage holds, read when it opens it
            (``None``: it was open already, and nothing was read).

        Raises:
            StorageError: the journal (or SQLite) file is missing, or the storage
                holds none of the study's rungs; it says where it looked. Nothing is
                created or written.
        """
        if self._storage_handle is not None:
            return None
        url = self.storage_url
        path = journal_path(url)
        if path is None and url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///") :])
        if path is not None and not path.exists():
            raise self._trials_gone(f"its storage file {path} does not exist")
        names = {rung.study_name for rung in plan_rungs(self.config)}
        stored = set(optuna.study.get_all_study_names(self._storage()))
        if not names & stored:
            self._storage_handle = None
            where = f"the file {path}" if path is not None else redact_url(url)
            raise self._trials_gone(
                f"{where} holds none of its {len(names)} rung studies (e.g. {min(names)!r})"
            )
        return stored

    def _trials_gone(self, why: str) -> StorageError:
        if not (self.directory / CONFIG_FILE).exists():
            return StorageError(
                f"study {self.config.name!r} has no trials: {why}; it was never started "
                f"in {self.directory} (run it first)"
            )
        return StorageError(
            f"the trials of study {self.config.name!r} ({self.directory}) are gone: {why}. "
            "Nothing was planned or written. Restore the storage to resume, or start "
            "the study afresh in a new directory (`batchlab study run CONFIG --out NEW_DIR`)"
        )

    def _storage(self) -> Any:
        """The study's Optuna storage, opened once."""
        if self._storage_handle is None:
            self._storage_handle = open_storage(
                self.storage_url,
                heartbeat_interval=self.config.workers.heartbeat_interval,
                grace_period=self.config.workers.grace_period,
                max_retries=self.config.workers.max_retries,
            )
        return self._storage_handle

    def workload(self) -> Workload:
        """The study's workload (built once)."""
        if self._workload is None:
            w = self.config.workload
            self._workload = get_workload(w.name, w.params, w.path)
        return self._workload

    def model_size(self) -> int:
        """The model size N (:func:`trainable_parameters` at the study's seed; counted once)."""
        if self._parameters is None:
            self._parameters = trainable_parameters(self.workload(), self.config.seed)
        return self._parameters

    # -- running -----------------------------------------------------------------

    def run(
        self,
        workers: int | None = None,
        *,
        device: str | None = None,
        threads: int | None = None,
        force: bool = False,
        fail_fast: bool = False,
        on_event: Callable[[TrialEvent], None] | None = None,
        on_poll: Callable[[list[RungStatus]], None] | None = None,
    ) -> StudyResult:
        """Run (or resume) the study until every planned trial has finished.

        Args:
            workers: local worker processes. With 1, trials run in this process;
                with N > 1, N processes share the storage. Default: one per visible
                GPU when training on CUDA without naming a GPU, else 1.
            device: where trials train: ``"auto"`` (CUDA if seen), ``"cpu"``,
                ``"cuda"`` (workers spread over the GPUs, one each, round robin) or
                ``"cuda:N"`` [default: the config's ``performance.device``].
            threads: torch threads per worker. Default: with one worker, this
                process's setting (``torch.get_num_threads()``); with N,
                ``cpu_count // N`` each, so they don't oversubscribe the cores.
            force: accept config changes that cannot invalidate finished trials.
            fail_fast: stop at the first trial that raises.
            on_event: per-trial progress (in-process runs only).
            on_poll: called about once a second with every rung's status (N > 1).

        Returns:
            The collected results (also written to ``results.json``/``results.csv``).
        """
        check_positive_int(workers, "workers", optional=True)
        check_positive_int(threads, "threads", optional=True)
        device = device or self.config.performance.device
        resolve_device(device)  # a device this machine lacks: the error now, before planning
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        workers = workers or default_workers(device, gpus)
        devices = spread_devices(device, workers, gpus)
        self.prepare(force=force)
        started = time.perf_counter()
        snapshot = self._snapshot_writer()
        if workers == 1:

            def on_trial_event(event: TrialEvent) -> None:
                if event.kind == "finish":
                    snapshot()
                if on_event is not None:
                    on_event(event)

            with torch_threads(threads):
                work(
                    self.config,
                    self.storage_url,
                    fail_fast=fail_fast,
                    on_event=on_trial_event,
                    device=devices[0],
                )
        else:
            threads = threads or max(1, (os.cpu_count() or 1) // workers)
            self._run_processes(devices, threads, fail_fast, on_poll, snapshot)
        logger.info("study %s finished in %.1f s", self.config.name, time.perf_counter() - started)
        result = self.results(write=True)
        unfinished = self.unfinished()
        if unfinished:
            raise StudyIncomplete(
                f"the workers are done but planned trials never finished ("
                f"{describe_unfinished(unfinished)}); the results hold what did. "
                f"`batchlab study resume {self.directory}` runs them again"
            )
        return result

    def unfinished(self) -> dict[int, list[int]]:
        """Per rung (batch size), its planned slots without a final trial (if any)."""
        return unfinished_by_rung(load_rung_studies(self._storage(), self.config))

    def _snapshot_writer(self) -> Callable[[], None]:
        """A function that rewrites the results files, at most every ``RESULTS_EVERY_S``.

        Snapshots skip the analysis: a half-run ladder is not worth fitting (the
        final results, and the report, analyse the finished study).
        """
        last = time.monotonic()

        def snapshot() -> None:
            nonlocal last
            if time.monotonic() - last >= RESULTS_EVERY_S:
                self.results(write=True, analysis=False)
                last = time.monotonic()

        return snapshot

    def _run_processes(
        self,
        devices: list[str],
        threads: int,
        fail_fast: bool,
        on_poll: Callable[[list[RungStatus]], None] | None,
        snapshot: Callable[[], None],
    ) -> None:
        def on_tick() -> None:
            if on_poll is not None:
                on_poll(self.status())
            snapshot()

        workers = len(devices)
        failed = run_worker_processes(
            self.config, self.storage_url, devices, threads, fail_fast, on_tick
        )
        if failed and fail_fast:
            raise FailFast(f"a worker stopped with exit code {failed[0]} at a failing trial")
        if not failed:
            return
        left = sum(max(r.planned - r.done, 0) for r in self.status())
        codes = ", ".join(str(code) for code in failed)
        if left:
            self.results(write=True, analysis=False)  # what did finish, on disk now
            raise WorkersDied(
                f"{len(failed)} of {workers} worker processes exited abnormally (exit codes "
                f"{codes}) and {left} planned trial(s) have not finished; the workers' errors "
                f"are logged above. Finished trials are kept: fix the cause, then "
                f"`batchlab study resume {self.directory}`"
            )
        logger.warning(
            "%d worker(s) exited abnormally (exit codes %s); the other workers re-ran their trials",
            len(failed),
            codes,
        )

    # -- inspecting --------------------------------------------------------------

    def status(self) -> list[RungStatus]:
        """Per rung: trials planned/done/running, best steps, mean trial time."""
        self._require_trials()
        storage = self._storage()
        out = []
        for rung, study in load_rung_studies(storage, self.config):
            result = collect_rung(rung, study)
            times = [t.wall_time_s for t in result.trials if t.wall_time_s is not None]
            out.append(
                RungStatus(
                    batch_size=rung.batch_size,
                    planned=result.trials_planned,
                    done=result.trials_done,
                    running=result.trials_running,
                    best_steps=result.steps_to_target,
                    mean_trial_s=sum(times) / len(times) if times else None,
                    missing=tuple(missing_slots(study)),
                )
            )
        return out

    def results(self, *, write: bool = False, analysis: bool = True) -> StudyResult:
        """Collect results from the storage (and write them to the study directory).

        Args:
            write: also write ``results.json`` and ``results.csv`` (atomically).
            analysis: fit S(B), regimes and the LR trend (see :mod:`batchlab.analysis`).
        """
        self._require_trials()
        storage = self._storage()
        rung_studies = load_rung_studies(storage, self.config)
        rungs = [collect_rung(rung, study) for rung, study in rung_studies]
        workload = self.workload()
        target = resolve_target(self.config, workload)
        space = {
            name: SearchRange(r.low, r.high, r.scale)
            for name, r in self.config.search_space().items()
        }
        result = StudyResult(
            name=self.config.name,
            config=self.config.to_json_dict(),
            workload={
                "name": workload.name,
                "description": getattr(workload, "description", ""),
                "params": dict(getattr(workload, "params", {})),
                "train_size": workload.train_size,
                "parameters": self.model_size(),
            },
            target={"metric": target.metric, "value": target.value, "direction": target.direction},
            rungs=rungs,
            analysis=analyse(rungs, workload.train_size, space) if analysis else None,
            environment=environment(),
            wall_time_s=elapsed_seconds([study for _, study in rung_studies]),
            trial_time_s=sum(t.wall_time_s or 0.0 for r in rungs for t in r.trials),
            created=now_iso(),
            search_space={
                name: {"low": r.low, "high": r.high, "scale": r.scale} for name, r in space.items()
            },
        )
        if write:
            result.save(self.directory)
        return result
