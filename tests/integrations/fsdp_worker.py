"""Worker for tests/integrations/test_fsdp.py, launched with torchrun (gloo, CPU).

``python -m torch.distributed.run --standalone --nproc_per_node=2 fsdp_worker.py OUT``
trains, per scenario, the same model on the same per-rank batches twice: under
FSDP2 (``fully_shard`` on fc1, fc2 and the root) with ``register_fsdp_noise_scale_hook``,
and under DDP with ``register_noise_scale_hook``. Each rank writes ``OUT.rank<r>.json``
with both results; the test compares them.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

try:  # imported by the test (package) or run as a script by torchrun
    from .ddp_worker import CLASSES, IN_FEATURES, LR, build_model, capture, loss_fn
except ImportError:
    from ddp_worker import CLASSES, IN_FEATURES, LR, build_model, capture, loss_fn

#: scenario -> steps, examples per rank per step (rank r holds local[r]), micro-batches
#: per step (all but the last without gradient sync), dtype, per-module statistics.
SCENARIOS: dict[str, dict[str, Any]] = {
    "float64": {"steps": 4, "local": [4, 4], "micro": 1, "dtype": torch.float64},
    "per_module": {"steps": 3, "local": [4, 4], "micro": 1, "dtype": torch.float64},
    "uneven": {"steps": 3, "local": [3, 5], "micro": 1, "dtype": torch.float64},
    "accumulate": {"steps": 3, "local": [6, 6], "micro": 3, "dtype": torch.float64},
    "float32": {"steps": 3, "local": [4, 4], "micro": 1, "dtype": torch.float32},
}
for _name, _spec in SCENARIOS.items():
    _spec["per_module"] = _name in ("per_module", "accumulate")


def make_data(name: str) -> list[list[tuple[Tensor, Tensor]]]:
    """data[step][rank] = (x, y): that rank's examples for that optimizer step."""
    spec = SCENARIOS[name]
    generator = torch.Generator().manual_seed(sum(map(ord, name)) + 1)
    data = []
    for _ in range(spec["steps"]):
        shards = []
        for size in spec["local"]:
            x = torch.randn(size, IN_FEATURES, generator=generator, dtype=torch.float64)
            y = torch.randint(0, CLASSES, (size,), generator=generator)
            shards.append((x.to(spec["dtype"]), y))
        data.append(shards)
    return data


def sharded_model(dtype: torch.dtype) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model = build_model(dtype)
    fully_shard(model.fc1, mesh=mesh)
    fully_shard(model.fc2, mesh=mesh)
    fully_shard(model, mesh=mesh)  # the root holds ``offset``
    return model


class CountAllReduce:
    """Counts torch.distributed.all_reduce calls while active (the hook's collective)."""

    def __init__(self) -> None:
        self.count = 0
        self._original = dist.all_reduce

    def __enter__(self) -> CountAllReduce:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return self._original(*args, **kwargs)

        dist.all_reduce = counted
        return self

    def __exit__(self, *exc: Any) -> None:
        dist.all_reduce = self._original


def run(name: str, rank: int) -> dict[str, Any]:
    from batchlab.noise import register_fsdp_noise_scale_hook, register_noise_scale_hook

    spec = SCENARIOS[name]
    micro, per_module = spec["micro"], spec["per_module"]
    local = None if name == "accumulate" else spec["local"][rank]  # counted when None
    fsdp, ddp = sharded_model(spec["dtype"]), DDP(build_model(spec["dtype"]))
    hooks = {
        "fsdp": register_fsdp_noise_scale_hook(fsdp, local_batch_size=local, per_module=per_module),
        "ddp": register_noise_scale_hook(ddp, local_batch_size=local, per_module=per_module),
    }
    models = {"fsdp": fsdp, "ddp": ddp}
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=LR) for k, m in models.items()}
    all_reduces = []
    for shards in make_data(name):
        x, y = shards[rank]
        parts = list(zip(x.chunk(micro), y.chunk(micro), strict=True))
        for key, model in models.items():
            for i, (xm, ym) in enumerate(parts):
                last = i == micro - 1
                if key == "fsdp":
                    model.set_requires_gradient_sync(last)
                    (loss_fn(model, xm, ym) / micro).backward()
                elif last:
                    (loss_fn(model, xm, ym) / micro).backward()
                else:
                    with model.no_sync():
                        (loss_fn(model, xm, ym) / micro).backward()
            optimizers[key].step()
            if key == "fsdp":
                with CountAllReduce() as counter:
                    hooks[key].step()
                all_reduces.append(counter.count)
            else:
                hooks[key].step()
            optimizers[key].zero_grad(set_to_none=True)
    full = {n: p.full_tensor() for n, p in fsdp.named_parameters()}
    params = {
        "fsdp": [full[n].to(torch.float64).reshape(-1).tolist() for n in sorted(full)],
        "ddp": [
            p.detach().to(torch.float64).reshape(-1).tolist()
            for n, p in sorted(ddp.module.named_parameters())
        ],
    }
    return {
        "fsdp": hooks["fsdp"].result().to_dict(),
        "ddp": hooks["ddp"].result().to_dict(),
        "params": params,
        "all_reduces_per_step": all_reduces,
    }


def run_mixed_precision(rank: int) -> dict[str, Any]:
    """bfloat16 parameters, float32 reduction, 3 micro-batches: the FSDP2 path where the
    accumulated unsharded gradient is kept apart from ``.grad``; against float32 DDP.

    No optimizer step: both models keep the same weights, so the only difference is
    FSDP2's bfloat16 compute.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from batchlab.noise import register_fsdp_noise_scale_hook, register_noise_scale_hook

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    fsdp = build_model(torch.float32)
    for module in (fsdp.fc1, fsdp.fc2, fsdp):
        fully_shard(module, mesh=mesh, mp_policy=policy)
    ddp = DDP(build_model(torch.float32))
    hooks = [register_fsdp_noise_scale_hook(fsdp, local_batch_size=6)]
    hooks.append(register_noise_scale_hook(ddp, local_batch_size=6))
    for shards in make_data("accumulate"):
        x, y = shards[rank]
        parts = list(zip(x.float().chunk(3), y.chunk(3), strict=True))
        for i, (xm, ym) in enumerate(parts):
            fsdp.set_requires_gradient_sync(i == 2)
            (loss_fn(fsdp, xm, ym) / 3).backward()
            if i < 2:
                with ddp.no_sync():
                    (loss_fn(ddp, xm, ym) / 3).backward()
            else:
                (loss_fn(ddp, xm, ym) / 3).backward()
        for hook, model in zip(hooks, (fsdp, ddp), strict=True):
            hook.step()
            model.zero_grad(set_to_none=True)
    return {
        key: {
            "sq_norm_small": [r.sq_norm_small for r in hook.history],
            "sq_norm_big": [r.sq_norm_big for r in hook.history],
            "b_small": [r.b_small for r in hook.history],
        }
        for key, hook in zip(("fsdp", "ddp"), hooks, strict=True)
    }


def run_errors(rank: int) -> dict[str, Any]:
    from torch.distributed.fsdp import FullyShardedDataParallel

    from batchlab import NoiseScaleTracker
    from batchlab.noise import register_fsdp_noise_scale_hook

    fsdp1 = FullyShardedDataParallel(build_model(torch.float32), device_id=torch.device("cpu"))
    hook = register_fsdp_noise_scale_hook(sharded_model(torch.float64), local_batch_size=4)
    return {
        "not_fsdp": capture(lambda: register_fsdp_noise_scale_hook(build_model(torch.float64))),
        "fsdp1": capture(lambda: register_fsdp_noise_scale_hook(fsdp1)),
        "tracker_on_fsdp2": capture(lambda: NoiseScaleTracker(sharded_model(torch.float64))),
        "no_backward": capture(hook.step),
    }


def main(path: str) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank = dist.get_rank()
    out: dict[str, Any] = {"world_size": dist.get_world_size()}
    try:
        for name in SCENARIOS:
            out[name] = run(name, rank)
        out["mixed_precision"] = run_mixed_precision(rank)
        out["errors"] = run_errors(rank)
    except Exception:
        out["crash"] = traceback.format_exc()
        raise
    finally:
        with open(f"{path}.rank{rank}.json", "w") as file:
            json.dump(out, file)
        if "crash" not in out:
            dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
