"""Local worker processes: ``Study.run(workers=N)`` with N > 1.

Each process is a fresh interpreter (``spawn``: no forked torch state) running
:func:`~batchlab.study._worker.work` on the study's storage, exactly as a
``batchlab study worker`` on another machine would.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable
from multiprocessing.connection import wait

import optuna

from ._config import StudyConfig
from ._storage import StorageUnreachable
from ._worker import work


def spread_devices(device: str, workers: int, gpu_count: int) -> list[str]:
    """The device of each of ``workers`` local workers: one GPU each, round robin.

    ``"auto"`` and ``"cuda"`` (no GPU named) spread the workers over the ``gpu_count``
    visible GPUs (``cuda:0``, ``cuda:1``, ..., then again from ``cuda:0``: several
    workers per GPU); ``"auto"`` without a GPU is the CPU; a named device is every
    worker's.
    """
    if device in ("auto", "cuda") and gpu_count > 0:
        return [f"cuda:{index % gpu_count}" for index in range(workers)]
    return ["cpu" if device == "auto" else device] * workers


def default_workers(device: str, gpu_count: int) -> int:
    """Local workers when none are asked for: one per visible GPU (``"auto"``/``"cuda"``), else 1."""
    return gpu_count if device in ("auto", "cuda") and gpu_count > 0 else 1


def run_worker_processes(
    config: StudyConfig,
    storage_url: str,
    devices: list[str],
    threads: int,
    fail_fast: bool,
    on_tick: Callable[[], None],
) -> list[int]:
    """Run one worker process per entry of ``devices`` (where it trains) until all have
    exited; the failed ones' exit codes.

    ``on_tick`` is called about once a second while they run (progress, snapshots).
    A process still alive when this is left early (an exception, Ctrl-C) gets 5 s to
    end, then is terminated.
    """
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker_process,
            args=(config.model_dump_json(), storage_url, threads, fail_fast, device),
            name=f"batchlab-worker-{index}",
        )
        for index, device in enumerate(devices)
    ]
    for process in processes:
        process.start()
    try:
        while alive := [p for p in processes if p.is_alive()]:
            on_tick()
            wait([p.sentinel for p in alive], timeout=1.0)  # wakes when one exits
    finally:
        for process in processes:
            process.join(timeout=None if not any(p.is_alive() for p in processes) else 5)
            if process.is_alive():
                process.terminate()
    return [p.exitcode for p in processes if p.exitcode not in (0, None)]


def _worker_process(
    config_json: str, storage_url: str, threads: int, fail_fast: bool, device: str
) -> None:
    """One spawned worker: ``threads`` torch threads, quiet Optuna, then :func:`work` on ``device``."""
    import torch

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        work(
            StudyConfig.model_validate_json(config_json),
            storage_url,
            fail_fast=fail_fast,
            device=device,
        )
    except StorageUnreachable as error:  # one line, not a traceback; exit code 1
        print(f"worker {os.getpid()} stopped: {error}", file=sys.stderr, flush=True)
        os._exit(1)
    # Every result is in the storage: leave without the interpreter's teardown of
    # torch and friends (~0.7 s, which the study would wait for). A worker that
    # raised exits the normal way, with its traceback and exit code 1.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
