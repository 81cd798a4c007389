"""The gradient noise scale of a DDP training run, from its own all-reduce.

Run:  torchrun --nproc_per_node=2 examples/ddp_noise_scale.py [--steps 300]
      [--global-batch-size 256] [--micro-batches 1]

Each rank trains the built-in ``mnist1d-cnn`` model on its slice of every global
batch inside DistributedDataParallel; ``register_noise_scale_hook`` measures B_simple
from the per-rank gradients (the small batch) and their all-reduced average (the big
batch), with no extra gradient communication. With ``--micro-batches k`` each rank
accumulates k micro-batches, all but the last under ``no_sync()``. Rank 0 prints the
running estimate; every rank holds the same one. Uses NCCL and one GPU per rank when
CUDA is available, else gloo on the CPU (2 processes on a laptop take about a minute
for 300 steps).
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from batchlab.integrations.ddp import register_noise_scale_hook
from batchlab.optim import build_optimizer
from batchlab.workloads import get_workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps")
    parser.add_argument("--global-batch-size", type=int, default=256, help="examples per step")
    parser.add_argument("--micro-batches", type=int, default=1, help="per rank and step")
    parser.add_argument("--print-every", type=int, default=50, help="steps between reports")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if args.global_batch_size % (world_size * args.micro_batches):
        raise SystemExit("--global-batch-size must divide into ranks x micro-batches")
    local_batch_size = args.global_batch_size // world_size

    workload = get_workload("mnist1d-cnn")
    hparams = dict(workload.default_hparams)
    model = DDP(workload.build_model(seed=0).to(device), device_ids=[device] if cuda else None)
    optimizer = build_optimizer(hparams.pop("optimizer"), model.parameters(), hparams)
    gns = register_noise_scale_hook(model, local_batch_size=local_batch_size)

    # Every rank draws the same global batches and keeps its own slice of each.
    generator = torch.Generator().manual_seed(0)
    batches = workload.train_batches(args.global_batch_size, generator)
    for step in range(1, args.steps + 1):
        x, y = (t.split(local_batch_size)[rank].to(device) for t in next(batches))
        micro = list(zip(x.chunk(args.micro_batches), y.chunk(args.micro_batches), strict=True))
        for i, part in enumerate(micro):
            if i < len(micro) - 1:
                # Forward and backward under no_sync (DDP decides at the forward): the
                # gradient accumulates locally and is all-reduced after the last one.
                with model.no_sync():
                    (workload.loss_fn(model, part) / len(micro)).backward()
            else:
                loss = workload.loss_fn(model, part)
                (loss / len(micro)).backward()
        optimizer.step()
        gns.step()  # once per optimizer step, on every rank
        optimizer.zero_grad(set_to_none=True)
        if rank == 0 and step % args.print_every == 0:
            low, high = gns.b_simple_ci
            print(
                f"step {step:4d}  loss {loss.item():.3f}  "
                f"B_simple {gns.b_simple:7.1f}  95% CI [{low:.1f}, {high:.1f}]  "
                f"(B_small {local_batch_size}, B_big {args.global_batch_size})"
            )

    result = gns.result()
    if rank == 0:
        print(
            f"\nB_simple = {result.b_simple:.1f} over {result.n} steps; "
            f"|G|^2 = {result.grad_sq_norm:.4g}, tr(Sigma) = {result.trace_cov:.4g}"
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
