"""Claim (goal): the DDP noise-scale hook adds at most ~3% to a DDP training step.

Result (2-core shared x86-64 VM, load average 5-8 from other jobs, torch 2.13.0 CPU,
Python 3.11, 2 processes with gloo, 15 rounds of 20 steps, two runs): wall-time ratio
noise-scale hook / plain DDP 1.035 and 0.981 on mnist1d-cnn, 1.029 and 1.109 on
shakespeare-char; the run-to-run noise (±10%) exceeds the effect, so the goal is
neither confirmed nor refuted there. Process CPU time puts the hook's own work at
+1.4 to +2.3% over PyTorch's bare Python ``allreduce_hook`` (the rest is the cost of any
Python communication hook). A third run on an idle machine (load average 1.8): paired
per-round ratios 0.996 (mnist1d-cnn) and 0.999 (shakespeare-char), CPU ratios 0.954
and 0.991, within the goal. Tables in docs/distributed.md. Not measured on GPUs.

Evidence: three copies of the same model (same initial weights) are wrapped in
DistributedDataParallel in the same 2-process job (``torchrun --nproc_per_node=2``,
gloo backend, CPU): one plain (DDP's built-in C++ all-reduce), one with PyTorch's own
Python ``allreduce_hook`` (what any Python communication hook costs: DDP calls back
into Python per bucket and per finished all-reduce), and one with
:func:`batchlab.integrations.ddp.register_noise_scale_hook`. All train with the
workload's default optimizer on the same batches, each rank on its half of the
batch. Blocks of ``--steps`` steps rotate through the arms (the order alternates) for
``--repeats`` rounds after a warm-up; the figures are the median per-step wall time of
each arm, the ratio of the noise-scale arm's median to plain DDP's, and the median of
the per-round paired ratios, as measured on rank 0 (DDP's all-reduce keeps the ranks
in step). The noise-scale arm calls ``step()`` every step, so its periodic flush to
the statistics is included. Per-process CPU time (all threads, gloo's included) is
printed too: it is less sensitive than wall time to other processes on the cores.

What the hook adds per step: one fused norm per bucket before and after its
all-reduce, ``P + 1`` floats appended to the last bucket's all-reduce (P = parameter
tensors) and a copy of that bucket, and ``step()`` bookkeeping; no extra collective.

Workloads: ``mnist1d-cnn`` (global batch 256 = 2 ranks x 128; 6.4k parameters in 8
tensors) and ``shakespeare-char`` (global batch 64 = 2 x 32 windows; a ~110k-parameter
Transformer). With ``--micro-batches k`` each rank accumulates k micro-batches, all
but the last under ``no_sync()``.

Run:  python benchmarks/ddp_gns_overhead.py [--steps 20] [--repeats 15] [--micro-batches 1]
(it launches itself with ``python -m torch.distributed.run --standalone
--nproc_per_node=2``; OMP_NUM_THREADS=1 in the workers).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel as DDP

import batchlab
from batchlab.integrations.ddp import NoiseScaleHook, register_noise_scale_hook
from batchlab.noise import split_batch
from batchlab.optim import build_optimizer
from batchlab.workloads import get_workload

WORLD_SIZE = 2
SETUPS = {"mnist1d-cnn": 256, "shakespeare-char": 64}  # global batch size


def make_arm(workload: Any) -> tuple[DDP, torch.optim.Optimizer]:
    hparams = dict(workload.default_hparams)
    name = hparams.pop("optimizer")
    model = DDP(workload.build_model(0))
    return model, build_optimizer(name, model.parameters(), hparams)


def run_block(
    workload: Any,
    model: DDP,
    optimizer: torch.optim.Optimizer,
    batches: list[Any],
    micro_batches: int,
    gns: NoiseScaleHook | None,
) -> tuple[float, float]:
    """Per step: wall seconds and CPU seconds of this process (all its threads)."""
    dist.barrier()
    start, start_cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        parts = split_batch(
            batch, len(batch[0] if isinstance(batch, tuple) else batch) // micro_batches
        )
        for i, part in enumerate(parts):
            if i < len(parts) - 1:
                with model.no_sync():
                    (workload.loss_fn(model, part) / len(parts)).backward()
            else:
                (workload.loss_fn(model, part) / len(parts)).backward()
        optimizer.step()
        if gns is not None:
            gns.step()
        optimizer.zero_grad(set_to_none=True)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return wall / len(batches), cpu / len(batches)


ARMS = ("plain", "torch_hook", "gns")


def measure(name: str, steps: int, repeats: int, micro_batches: int) -> dict[str, float]:
    rank = dist.get_rank()
    workload = get_workload(name)
    batch_size = SETUPS[name]
    local = batch_size // WORLD_SIZE
    stream = workload.train_batches(batch_size, torch.Generator().manual_seed(0))
    batches = [split_batch(next(stream), local)[rank] for _ in range(steps)]
    plain, torch_hooked, hooked = make_arm(workload), make_arm(workload), make_arm(workload)
    torch_hooked[0].register_comm_hook(None, allreduce_hook)
    gns = register_noise_scale_hook(hooked[0], local_batch_size=local)
    arms = {"plain": (*plain, None), "torch_hook": (*torch_hooked, None), "gns": (*hooked, gns)}
    for model, optimizer, hook in arms.values():  # warm-up, and DDP's bucket rebuild
        run_block(workload, model, optimizer, batches, micro_batches, hook)
    wall: dict[str, list[float]] = {key: [] for key in ARMS}
    cpu: dict[str, list[float]] = {key: [] for key in ARMS}
    for round_ in range(repeats):
        order = ARMS if round_ % 2 == 0 else ARMS[::-1]
        for key in order:
            model, optimizer, hook = arms[key]
            per_step, per_step_cpu = run_block(
                workload, model, optimizer, batches, micro_batches, hook
            )
            wall[key].append(per_step)
            cpu[key].append(per_step_cpu)
    median = statistics.median
    return {
        "plain_ms": 1e3 * median(wall["plain"]),
        "torch_hook_ms": 1e3 * median(wall["torch_hook"]),
        "gns_ms": 1e3 * median(wall["gns"]),
        "ratio": median(wall["gns"]) / median(wall["plain"]),
        "paired_ratio": median(h / p for h, p in zip(wall["gns"], wall["plain"], strict=True)),
        "plain_cpu_ms": 1e3 * median(cpu["plain"]),
        "torch_hook_cpu_ms": 1e3 * median(cpu["torch_hook"]),
        "gns_cpu_ms": 1e3 * median(cpu["gns"]),
        "cpu_ratio": median(cpu["gns"]) / median(cpu["plain"]),
        "tensors": sum(1 for p in hooked[0].parameters() if p.requires_grad),
        "b_simple": gns.b_simple,
        "n": gns.n,
    }


def worker(args: argparse.Namespace) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank = dist.get_rank()
    if rank == 0:
        print(
            f"batchlab {batchlab.__version__}, torch {torch.__version__}, Python "
            f"{platform.python_version()}, {platform.platform()}"
        )
        print(
            f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; "
            f"{WORLD_SIZE} processes (gloo), 1 torch thread each; load average "
            f"{os.getloadavg()[0]:.2f}"
        )
        print(
            f"{args.micro_batches} micro-batch(es) per rank and step, blocks of {args.steps} "
            f"steps, {args.repeats} alternating rounds, medians (rank 0)\n"
        )
        print(
            f"{'workload':<18}{'batch':>6}{'tensors':>8}{'plain':>8}{'torch hook':>11}"
            f"{'gns':>8}{'ratio':>7}{'paired':>7}{'CPU plain':>10}{'CPU torch':>10}"
            f"{'CPU gns':>9}{'CPU ratio':>10}{'B_simple':>9}"
        )
    for name in args.workloads:
        r = measure(name, args.steps, args.repeats, args.micro_batches)
        if rank == 0:
            print(
                f"{name:<18}{SETUPS[name]:>6}{r['tensors']:>8}{r['plain_ms']:>8.2f}"
                f"{r['torch_hook_ms']:>11.2f}{r['gns_ms']:>8.2f}{r['ratio']:>7.3f}"
                f"{r['paired_ratio']:>7.3f}{r['plain_cpu_ms']:>10.2f}"
                f"{r['torch_hook_cpu_ms']:>10.2f}{r['gns_cpu_ms']:>9.2f}{r['cpu_ratio']:>10.3f}"
                f"{r['b_simple']:>9.1f}"
            )
            sys.stdout.flush()
    if rank == 0:
        print(
            "\nms per training step (global batch over 2 ranks), medians over the rounds: "
            "plain DDP, DDP with\nPyTorch's Python allreduce_hook, DDP with the noise-scale "
            "hook (gns). ratio = median gns / median\nplain wall time; paired = median of the "
            "per-round ratios; CPU = process CPU time, all threads\n(gloo's included). "
            f"Load average at the end {os.getloadavg()[0]:.2f}. B_simple is from the short "
            "benchmark run\n(a sanity check, not a measurement)."
        )
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=15, help="alternating rounds")
    parser.add_argument(
        "--micro-batches", type=int, default=1, help="micro-batches per rank and step (no_sync)"
    )
    parser.add_argument("--workloads", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    args = parser.parse_args()
    if "LOCAL_RANK" in os.environ:  # launched by torchrun: do the work
        worker(args)
        return
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD_SIZE}",
        __file__,
        *sys.argv[1:],
    ]
    sys.exit(subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode)


if __name__ == "__main__":
    main()
