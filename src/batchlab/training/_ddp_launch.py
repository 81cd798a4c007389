"""Trials that train with DDP: one trial on P processes, launched through torchrun.

With ``performance.processes_per_trial = P`` a worker runs each trial as
``torchrun --standalone --nproc_per_node=P -m batchlab.training._ddp_launch`` (PyTorch's own
launcher and rendezvous; gloo on CPU, NCCL on GPUs). Every rank builds the same
model from the trial's seed and draws the same global batches from the same
generator, then trains on its 1/P slice of each batch inside
``DistributedDataParallel``: the all-reduced gradient is the mean over the global
batch, so the trial's curve is the single-process curve at the same global batch
size up to float rounding (``tests/study/test_ddp_trials.py``). Every rank uses rank
0's evaluated metrics, so all of them evaluate (coarse or dense) and stop at the same
steps. Rank 0 streams its evaluations to the worker and writes the
result, which the worker (holding the trial's claim and heartbeat) records in the
storage.

References:
    Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel
    Training", VLDB 13(12); Goyal et al. 2017, "Accurate, Large Minibatch SGD"
    (Sec. 3: the global batch is the sum of the per-worker batches).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_json
from ..workloads import Target, get_workload
from ._parallel import DataParallel
from ._run import RunResult, RunSpec, run_training

#: Prefix of the lines in which rank 0 reports an evaluation to the worker.
EVAL_LINE = "@batchlab-eval "

logger = logging.getLogger(__name__)


class DDPTrialError(RuntimeError):
    """The torchrun processes of a trial failed; the message carries their last output."""


class _TransportCrash(RuntimeError):
    """A rank died of a signal without a Python error: the launch, not the trial, failed."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: SIGTERM torchrun (which stops its ranks) if the worker is killed, so a
    # killed worker leaves no orphaned training behind; the slot is re-run elsewhere.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_ddp_trial(
    workload: dict[str, Any],
    spec: Any,
    target: Target,
    processes: int,
    *,
    stop_at_target: bool = True,
    stop_after: int | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    threads: int | None = None,
    launch_retries: int = 2,
) -> Any:
    """Run one trial on ``processes`` ranks through torchrun and return its ``RunResult``.

    Args:
        workload: ``{"name": ..., "params": {...}}`` as in the study config; every rank
            builds it (a ``module:function`` workload must be importable there).
        spec: the trial's :class:`~batchlab.training.RunSpec`; ``batch_size`` is
            the global batch, split evenly over the ranks (a study's config checks
            that ``processes`` divides it; each rank's :func:`shard_batch` refuses
            an uneven split).
        target: defines steps-to-target.
        processes: ranks (``--nproc_per_node``).
        stop_at_target: stop at the first evaluation meeting the target.
        stop_after: stop once beaten at this step count (the best known at launch).
        on_eval: called with (step, metrics) at every evaluation of rank 0.
        threads: torch threads per rank (default: this process's threads / ranks).
        launch_retries: relaunches after a rank died of a signal with no Python
            error before rank 0 wrote the result (gloo aborts a rank now and then,
            e.g. pytorch issue #188266); the trial is deterministic, so a relaunch
            trains the same curve, and each evaluation reaches ``on_eval`` once. A
            rank that dies after rank 0 wrote the result (rarely, in its teardown,
            with "terminate called without an active exception";
            ``benchmarks/ddp_launches.py`` counts them) costs nothing.

    Raises:
        DDPTrialError: a rank raised, or ranks kept dying (their output is in the message).
    """
    if launch_retries < 0:
        raise ValueError(f"launch_retries must be >= 0, got {launch_retries}")
    threads = threads or max(1, torch.get_num_threads() // processes)
    job = {
        "workload": workload,
        "spec": {**asdict(spec), "hparams": dict(spec.hparams)},
        "target": asdict(target),
        "stop_at_target": stop_at_target,
        "stop_after": stop_after,
    }
    reported = -1

    def forward(step: int, metrics: dict[str, float]) -> None:
        # A relaunch trains the same curve again: each evaluation is reported once.
        nonlocal reported
        if on_eval is not None and step > reported:
            reported = step
            on_eval(step, metrics)

    for attempt in range(1 + launch_retries):
        try:
            data = _launch(job, processes, threads, forward)
            break
        except _TransportCrash as crash:
            if attempt == launch_retries:
                raise DDPTrialError(str(crash)) from None
            logger.warning("relaunching a DDP trial: %s", crash)
    nan = float("nan")
    return RunResult(
        status=data["status"],
        steps_to_target=data["steps_to_target"],
        resolution_steps=data["resolution_steps"],
        steps=data["steps"],
        metrics={k: [nan if v is None else v for v in vs] for k, vs in data["metrics"].items()},
        train_loss=[nan if v is None else v for v in data["train_loss"]],
        reason=data["reason"],
    )


def torchrun_command(processes: int, job_path: Path, out_path: Path) -> list[str]:
    """The torchrun command that trains the job in ``job_path`` on ``processes`` ranks
    (gloo or NCCL) and has rank 0 write its result to ``out_path``."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "batchlab.training._ddp_launch",
        str(job_path),
        str(out_path),
    ]


def _launch(
    job: dict[str, Any],
    processes: int,
    threads: int,
    on_eval: Callable[[int, dict[str, float]], None],
) -> dict[str, Any]:
    """One torchrun launch of ``job``; returns rank 0's result as written.

    Raises:
        DDPTrialError: a rank raised a Python error (its traceback is in the message).
        _TransportCrash: torchrun failed and no rank raised (e.g. a rank aborted).
    """
    with tempfile.TemporaryDirectory(prefix="batchlab-ddp-") as tmp:
        job_path, out, log = Path(tmp, "job.json"), Path(tmp, "result.json"), Path(tmp, "log.txt")
        job_path.write_text(json.dumps(job))
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(threads),
            # A module:function workload found from the worker's directory is found there too.
            "PYTHONPATH": os.pathsep.join(
                p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        with log.open("w") as log_file:
            process = subprocess.Popen(
                torchrun_command(processes, job_path, out),
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                env=env,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            try:
                assert process.stdout is not None
                for line in process.stdout:
                    if line.startswith(EVAL_LINE):
                        event = json.loads(line[len(EVAL_LINE) :])
                        on_eval(int(event["step"]), event["metrics"])
                code = process.wait()
            finally:
                if process.poll() is None:
                    process.terminate()
                    process.wait()
        if out.exists():  # written by rank 0 after its last step: the trial is done
            if code != 0:
                logger.warning(
                    "torchrun exited with code %d after rank 0 wrote the trial's result (a "
                    "rank failed on its way out); the result stands",
                    code,
                )
            return json.loads(out.read_text())
        failed = f"torchrun with {processes} processes exited with code {code}; "
        tracebacks = {
            path.stem: path.read_text(errors="replace").strip().splitlines()
            for path in sorted(Path(tmp).glob("rank*.error"))
        }
        # A rank's own error says more than torchrun's summary; a rank that only lost
        # its peer ("Connection closed by peer") says where the peer died, not why.
        own = {rank: lines for rank, lines in tracebacks.items() if not _lost_peer(lines)}
        for rank, lines in own.items():
            detail = f"{rank} failed: {lines[-1]}\n" + "\n".join(lines[-12:])
            raise DDPTrialError(failed + detail)
        lines = log.read_text(errors="replace").strip().splitlines()
        # A C++ abort prints "terminate called ..." and "what(): ..." before torchrun's summary.
        aborts = [line for line in lines if "terminate called" in line or "what():" in line]
        lost = [lines[-1] for lines in tracebacks.values() if lines]
        raise _TransportCrash(failed + "\n".join(aborts[:4] + lost[:1] + lines[-15:]))


def _lost_peer(traceback_lines: list[str]) -> bool:
    """Whether a rank's traceback ends in gloo's error for a peer that went away."""
    last = traceback_lines[-1] if traceback_lines else ""
    return any(
        words in last
        for words in ("Connection closed by peer", "Connection reset by peer", "remote worker")
    )


def _rank_main(job_path: str, out_path: str) -> None:
    """One rank of a DDP trial (run by torchrun): train, and on rank 0 write the result."""
    import torch.distributed as dist

    job = json.loads(Path(job_path).read_text())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        spec = job["workload"]
        workload = get_workload(spec["name"], spec.get("params", {}), spec.get("path", ()))

        def report(step: int, metrics: dict[str, float]) -> None:
            print(EVAL_LINE + json.dumps({"step": step, "metrics": metrics}), flush=True)

        result = run_training(
            workload,
            RunSpec(**job["spec"]),
            Target(**job["target"]),
            stop_at_target=job["stop_at_target"],
            stop_after=job["stop_after"],
            on_eval=report if rank == 0 else None,
            parallel=DataParallel(rank, world_size),
        )
        if rank == 0:
            atomic_write_json(Path(out_path), result.to_dict())
        # Leave together: a gloo peer torn down early can abort the other at exit.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _main(job_path: str, out_path: str) -> None:  # pragma: no cover - run by torchrun
    try:
        _rank_main(job_path, out_path)
    except BaseException:
        import traceback

        rank = os.environ.get("RANK", "unknown")
        Path(out_path).with_name(f"rank{rank}.error").write_text(traceback.format_exc())
        raise


if __name__ == "__main__":  # pragma: no cover - entered through torchrun
    _main(*sys.argv[1:3])
