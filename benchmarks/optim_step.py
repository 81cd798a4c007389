"""Claim: a LARS/LAMB step costs at most 1.5x a torch.optim SGD-momentum/AdamW step.

LARS adds two norms and a trust-ratio multiply per tensor to momentum SGD; LAMB adds
two norms and a ratio to AdamW. This script measures whether that stays cheap.

What it measures: the wall time of ``optimizer.step()`` alone (gradients are set
once and never change; no forward/backward) on an MLP of about 1M parameters, for
torch.optim.SGD(momentum=0.9, weight_decay=1e-4) vs batchlab LARS (same momentum and
weight decay, every tensor trust-scaled) and torch.optim.AdamW(weight_decay=0.01) vs
batchlab LAMB (same), each with ``foreach=False`` (per-tensor) and ``foreach=True``
(multi-tensor). All eight optimizers run in the same process, interleaved: every
repeat times each of them for ``--steps`` steps in a rotating order, and the figure
is the median over repeats of the time per step. It prints the medians and the
ratios LARS/SGD-momentum and LAMB/AdamW, with hardware and versions, and the same for
the fastest repeat: other processes only ever add time, and on a shared machine they
stall multi-threaded kernels (an optimizer with more kernels per step is stalled more
often), so the minimum is the steadier estimate of the cost itself (as ``timeit``
advises). ``--threads 1`` takes the thread pool out of the comparison.

Run:  python benchmarks/optim_step.py [--repeats 31] [--steps 10] [--width 512]
      [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from batchlab.optim import LAMB, LARS


def mlp(width: int, depth: int, inputs: int = 256, classes: int = 10) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(inputs, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


OPTIMIZERS: dict[str, Callable[[list[nn.Parameter], bool], torch.optim.Optimizer]] = {
    "SGD-momentum": lambda ps, fe: torch.optim.SGD(
        ps, lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=fe
    ),
    "LARS": lambda ps, fe: LARS(ps, lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=fe),
    "AdamW": lambda ps, fe: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, foreach=fe),
    "LAMB": lambda ps, fe: LAMB(ps, lr=1e-3, weight_decay=0.01, foreach=fe),
}
PAIRS = (("LARS", "SGD-momentum"), ("LAMB", "AdamW"))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=4, help="hidden layers")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    template = mlp(args.width, args.depth).to(device)
    n_params = sum(p.numel() for p in template.parameters())
    n_tensors = len(list(template.parameters()))
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(p.shape, generator=gen).to(device) for p in template.parameters()]

    runs: dict[tuple[str, bool], torch.optim.Optimizer] = {}
    for foreach in (False, True):
        for name, build in OPTIMIZERS.items():
            params = [nn.Parameter(p.detach().clone()) for p in template.parameters()]
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            runs[name, foreach] = build(params, foreach)
    for optimizer in runs.values():  # warm up: state allocation, first-call overheads
        for _ in range(3):
            optimizer.step()
    synchronize(device)

    times: dict[tuple[str, bool], list[float]] = {key: [] for key in runs}
    keys = list(runs)
    for repeat in range(args.repeats):
        shift = repeat % len(keys)
        for key in keys[shift:] + keys[:shift]:  # rotate the order: no fixed position bias
            optimizer = runs[key]
            synchronize(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                optimizer.step()
            synchronize(device)
            times[key].append((time.perf_counter() - start) / args.steps)
    print(__doc__.splitlines()[0])
    print(
        f"torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    if hasattr(os, "getloadavg"):  # other processes on the machine skew the absolute times
        print(
            "load average (1/5/15 min) at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
        )
    print(
        f"model: MLP 256-{'-'.join([str(args.width)] * args.depth)}-10, "
        f"{n_params:,} parameters in {n_tensors} tensors; {args.repeats} interleaved repeats "
        f"x {args.steps} steps"
    )
    for label, statistic in (("median", statistics.median), ("minimum", min)):
        ms = {key: 1e3 * statistic(values) for key, values in times.items()}
        print(f"{label} time per step():")
        header = f"{'path':<11}" + "".join(f"{name:>14}" for name in OPTIMIZERS)
        header += "".join(f"{a + '/' + b:>20}" for a, b in PAIRS)
        print(header)
        for foreach in (False, True):
            row = f"{'foreach' if foreach else 'per-tensor':<11}"
            row += "".join(f"{ms[name, foreach]:>11.3f} ms" for name in OPTIMIZERS)
            row += "".join(f"{ms[a, foreach] / ms[b, foreach]:>19.2f}x" for a, b in PAIRS)
            print(row)


if __name__ == "__main__":
    main()
