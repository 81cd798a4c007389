"""Worker for tests/integrations/test_ddp.py, launched with torchrun (gloo, CPU).

``python -m torch.distributed.run --standalone --nproc_per_node=2 ddp_worker.py OUT``
runs every scenario below on each rank and writes ``OUT.rank<r>.json``. The test
recomputes the same training in one process and compares. The model and data
builders live here so that both sides use exactly the same ones.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP

IN_FEATURES, HIDDEN, CLASSES = 5, 6, 3
LR = 0.2
#: The step before which run_resumed checkpoints the hook and starts a new one.
RESUME_AT = 2

#: scenario -> steps, examples per rank per step (rank r holds local[r]), micro-batches
#: per step (all but the last under no_sync), dtype, per-module norms, tiny DDP buckets.
SCENARIOS: dict[str, dict[str, Any]] = {
    "multi_bucket": {"steps": 4, "local": [4, 4], "micro": 1, "dtype": torch.float64},
    "per_module": {"steps": 4, "local": [4, 4], "micro": 1, "dtype": torch.float64},
    "no_sync": {"steps": 3, "local": [6, 6], "micro": 3, "dtype": torch.float64},
    "uneven": {"steps": 3, "local": [3, 5], "micro": 1, "dtype": torch.float64},
    "float32": {"steps": 3, "local": [4, 4], "micro": 1, "dtype": torch.float32},
}
for _name, _spec in SCENARIOS.items():
    _spec["per_module"] = _name in ("per_module", "no_sync")
    _spec["tiny_buckets"] = _name in ("multi_bucket", "per_module")


class TinyNet(nn.Module):
    """Two linear layers plus a parameter owned by the root module (group "(root)")."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(IN_FEATURES, HIDDEN)
        self.fc2 = nn.Linear(HIDDEN, CLASSES)
        self.offset = nn.Parameter(torch.linspace(-0.1, 0.1, CLASSES))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.tanh(self.fc1(x))) + self.offset


def build_model(dtype: torch.dtype) -> nn.Module:
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(1234)  # the same initial weights on every rank and in the test
    try:
        model = TinyNet().to(dtype)
    finally:
        torch.random.set_rng_state(generator_state)
    return model


def make_data(name: str) -> list[list[tuple[Tensor, Tensor]]]:
    """data[step][rank] = (x, y): that rank's examples for that optimizer step."""
    spec = SCENARIOS[name]
    generator = torch.Generator().manual_seed(sum(map(ord, name)))
    data = []
    for _ in range(spec["steps"]):
        shards = []
        for size in spec["local"]:
            x = torch.randn(size, IN_FEATURES, generator=generator, dtype=torch.float64)
            y = torch.randint(0, CLASSES, (size,), generator=generator)
            shards.append((x.to(spec["dtype"]), y))
        data.append(shards)
    return data


def loss_fn(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return nn.functional.cross_entropy(model(x), y)


def flat_grads(model: nn.Module) -> Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def run_training(name: str, rank: int) -> dict[str, Any]:
    """Train a hooked DDP model and a plain DDP twin on the same data; report both."""
    from batchlab.integrations.ddp import register_noise_scale_hook

    spec = SCENARIOS[name]
    micro = spec["micro"]
    # A tiny bucket cap puts each parameter in its own bucket: the per-bucket norms must
    # add up, and DDP's bucket rebuild after the first step must be followed.
    options: dict[str, Any] = {"bucket_cap_mb": 1e-6} if spec["tiny_buckets"] else {}
    if name == "no_sync":
        options["gradient_as_bucket_view"] = True
    hooked = DDP(build_model(spec["dtype"]), **options)
    plain = DDP(build_model(spec["dtype"]), **options)
    # no_sync: let the hook count examples from the forwards; otherwise tell it.
    local = None if name == "no_sync" else spec["local"][rank]
    gns = register_noise_scale_hook(hooked, local_batch_size=local, per_module=spec["per_module"])
    optimizers = [torch.optim.SGD(m.parameters(), lr=LR) for m in (hooked, plain)]
    grad_diffs, buckets = [], []
    for shards in make_data(name):
        x, y = shards[rank]
        for model in (hooked, plain):
            parts = list(zip(x.chunk(micro), y.chunk(micro), strict=True))
            for i, (xm, ym) in enumerate(parts):
                if i < micro - 1:
                    with model.no_sync():
                        (loss_fn(model, xm, ym) / micro).backward()
                else:
                    (loss_fn(model, xm, ym) / micro).backward()
        diff = (flat_grads(hooked) - flat_grads(plain)).abs().max().item()
        buckets.append(len(gns._done[-1].big))  # buckets in the backward just finished
        grad_diffs.append(diff)
        if name == "no_sync":  # an evaluation forward must not count as training examples
            with torch.no_grad():
                hooked(x)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        gns.step()
    result = gns.result().to_dict()
    out = {
        "result": result,
        "grad_max_abs_diff": grad_diffs,
        "buckets": buckets,
        "params": [p.detach().to(torch.float64).reshape(-1).tolist() for p in hooked.parameters()],
        "b_simple": gns.b_simple,
        "grad_sq_norm": gns.grad_sq_norm,
        "trace_cov": gns.trace_cov,
        "n": gns.n,
    }
    if name == "multi_bucket":
        out["misuse"] = misuse(hooked, gns, make_data(name)[0][rank])
    return out


def misuse(model: DDP, gns: Any, shard: tuple[Tensor, Tensor]) -> dict[str, Any]:
    """step() with no synchronised backward, and with two (accumulation without no_sync)."""
    out = {"no_backward": capture(gns.step)}
    for _ in range(2):
        loss_fn(model, *shard).backward()
    out["two_backwards"] = capture(gns.step)
    model.zero_grad(set_to_none=True)
    out["n_after"] = gns.n
    # After remove(), the hook is DDP's plain all-reduce: nothing to step.
    gns.remove()
    loss_fn(model, *shard).backward()
    grad = flat_grads(model).clone()
    model.zero_grad(set_to_none=True)
    local = build_model(torch.float64)
    local.load_state_dict(model.module.state_dict())
    loss_fn(local, *shard).backward()
    expected = flat_grads(local)
    dist.all_reduce(expected)
    out["removed_grad_max_abs_diff"] = (grad - expected / dist.get_world_size()).abs().max().item()
    out["after_remove"] = capture(gns.step)
    out["n_after_remove"] = gns.n
    return out


def run_resumed(rank: int) -> dict[str, Any]:
    """The per_module scenario, checkpointed after RESUME_AT steps and resumed.

    The hook's ``state_dict`` goes through JSON; a new DDP model (with the trained
    weights) and a new hook load it and train on. The test compares the result with
    the uninterrupted per_module run.
    """
    from batchlab.integrations.ddp import register_noise_scale_hook

    spec = SCENARIOS["per_module"]
    local = spec["local"][rank]

    def hooked(weights: dict[str, Tensor] | None) -> tuple[DDP, Any, torch.optim.Optimizer]:
        net = build_model(spec["dtype"])
        if weights is not None:
            net.load_state_dict(weights)
        model = DDP(net, bucket_cap_mb=1e-6)
        gns = register_noise_scale_hook(model, local_batch_size=local, per_module=True)
        return model, gns, torch.optim.SGD(model.parameters(), lr=LR)

    model, gns, optimizer = hooked(None)
    state: dict[str, Any] = {}
    for step, shards in enumerate(make_data("per_module")):
        if step == RESUME_AT:
            state = json.loads(json.dumps(gns.state_dict()))
            gns.remove()
            model, gns, optimizer = hooked(model.module.state_dict())
            gns.load_state_dict(state)
        loss_fn(model, *shards[rank]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        gns.step()
    return {"result": gns.result().to_dict(), "state_keys": sorted(state)}


def run_bfloat16(rank: int) -> dict[str, Any]:
    """Half-precision buckets take the separate float64 all-reduce of the norms.

    The expected norms come from a non-DDP copy of the model on the same shard (the
    same bfloat16 gradient bit for bit) and from the DDP-averaged gradient, in float64.
    """
    from batchlab.integrations.ddp import register_noise_scale_hook

    hooked = DDP(build_model(torch.bfloat16))
    twin = build_model(torch.bfloat16)
    gns = register_noise_scale_hook(hooked, local_batch_size=4)
    optimizer = torch.optim.SGD(hooked.parameters(), lr=LR)
    expected_small, expected_big = [], []
    generator = torch.Generator().manual_seed(7)
    for _ in range(3):
        x = torch.randn(2, 4, IN_FEATURES, generator=generator).to(torch.bfloat16)[rank]
        y = torch.randint(0, CLASSES, (2, 4), generator=generator)[rank]
        twin.load_state_dict(hooked.module.state_dict())
        twin.zero_grad(set_to_none=True)
        loss_fn(twin, x, y).backward()
        local = flat_grads(twin).to(torch.float64)
        small = local.dot(local).reshape(1)
        dist.all_reduce(small)
        expected_small.append(small.item() / dist.get_world_size())
        loss_fn(hooked, x, y).backward()
        big = flat_grads(hooked).to(torch.float64)
        expected_big.append(big.dot(big).item())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        gns.step()
    history = gns.history
    return {
        "sq_norm_small": [r.sq_norm_small for r in history],
        "sq_norm_big": [r.sq_norm_big for r in history],
        "expected_small": expected_small,
        "expected_big": expected_big,
        "b_small": [r.b_small for r in history],
        "b_big": [r.b_big for r in history],
    }


def capture(function: Callable[[], Any]) -> dict[str, Any] | None:
    """None if ``function()`` returns; else the exception's class names and message."""
    try:
        function()
    except Exception as error:  # noqa: BLE001 - the test inspects what was raised
        return {"types": [c.__name__ for c in type(error).__mro__], "message": str(error)}
    return None


def run_errors(rank: int) -> dict[str, Any]:
    """Models the hook (and NoiseScaleTracker) must refuse, with the error each raises."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
    from torch.distributed.tensor import Replicate, distribute_tensor

    from batchlab import NoiseScaleTracker, measure_noise_scale
    from batchlab.integrations.ddp import register_noise_scale_hook

    out: dict[str, Any] = {}
    # A process group of one rank: no small/big pair.
    solo = dist.new_group([0])
    if rank == 0:
        single = DDP(build_model(torch.float64), process_group=solo)
        out["world_size_1"] = capture(lambda: register_noise_scale_hook(single))
    out["not_ddp"] = capture(lambda: register_noise_scale_hook(build_model(torch.float64)))
    out["bad_size"] = capture(
        lambda: register_noise_scale_hook(DDP(build_model(torch.float64)), local_batch_size=0)
    )
    fsdp1 = FullyShardedDataParallel(build_model(torch.float32), device_id=torch.device("cpu"))
    out["fsdp1_hook"] = capture(lambda: register_noise_scale_hook(fsdp1))
    out["fsdp1_tracker"] = capture(lambda: NoiseScaleTracker(fsdp1))
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    fsdp2 = build_model(torch.float32)
    fully_shard(fsdp2, mesh=mesh)
    out["fsdp2_hook"] = capture(lambda: register_noise_scale_hook(fsdp2))
    out["fsdp2_tracker"] = capture(lambda: NoiseScaleTracker(fsdp2))
    batch = (torch.randn(8, IN_FEATURES), torch.randint(0, CLASSES, (8,)))
    out["fsdp2_measure"] = capture(
        lambda: measure_noise_scale(fsdp2, lambda m, b: loss_fn(m, *b), [batch])
    )
    # Tensor parallelism without FSDP: one DTensor parameter is enough to refuse.
    tp = build_model(torch.float32)
    tp.fc2.weight = nn.Parameter(distribute_tensor(tp.fc2.weight.detach(), mesh, [Replicate()]))
    out["dtensor_tracker"] = capture(lambda: NoiseScaleTracker(tp))
    return out


def main(path: str) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank = dist.get_rank()
    out: dict[str, Any] = {"world_size": dist.get_world_size()}
    try:
        for name in SCENARIOS:
            out[name] = run_training(name, rank)
        out["resumed"] = run_resumed(rank)
        out["bfloat16"] = run_bfloat16(rank)
        out["errors"] = run_errors(rank)
    except Exception:
        out["crash"] = traceback.format_exc()
        raise
    finally:
        with open(f"{path}.rank{rank}.json", "w") as file:
            json.dump(out, file)
        # Both ranks leave together: a gloo peer torn down while the other still has
        # its pairs open can abort the survivor ("terminate called ..." at exit).
        if "crash" not in out:
            dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
