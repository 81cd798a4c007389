"""The FSDP2 noise-scale hook against the DDP hook on the same model and batches.

One ``torchrun --nproc_per_node=2`` launch (gloo backend, CPU) runs
:mod:`tests.integrations.fsdp_worker`: each scenario trains the same model on the
same per-rank batches under FSDP2 (``fully_shard``, with
``register_fsdp_noise_scale_hook``) and under DDP (with ``register_noise_scale_hook``).
Both estimate the same quantities from the same per-rank gradients, so per step
|G_small|², |G_big|², B_small and B_big, and the averaged |G|², tr(Σ) and B_simple,
must agree.

Tolerances: the two sides differ only in summation order (DDP sums a flat bucket,
FSDP2 one parameter, or one shard, at a time; FSDP2 reduce-scatters where DDP
all-reduces) and in training drifting by that rounding over a few SGD steps. In
float64 that is ~1e-16 relative per operation, so rtol 1e-10 leaves six orders of
margin and still fails on any real error (a missing parameter, shard or rank, a
wrong averaging factor or batch size is >= 1e-2 relative). float32: rtol 1e-5
(eps 6e-8, a few hundred roundings). B_simple is a ratio of differences of the
norms; the estimators are linear in the norms, so their tolerances are propagated
from the norms' (``_estimate_atol``), and B_simple's relative ones added.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from . import fsdp_worker
from .fsdp_worker import SCENARIOS

# One torchrun launch: two processes importing torch and batchlab, 15-40 s of wall time
# on a busy 2-core machine, so slow like the DDP test.
pytestmark = pytest.mark.slow

WORLD_SIZE = 2
WORKER = Path(fsdp_worker.__file__)
RTOL = {name: 1e-5 if "32" in str(spec["dtype"]) else 1e-10 for name, spec in SCENARIOS.items()}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Each rank's report from one 2-process torchrun launch (gloo, CPU)."""
    out = tmp_path_factory.mktemp("fsdp") / "report"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD_SIZE}",
        str(WORKER),
        str(out),
    ]
    proc = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, cwd=WORKER.parent
    )
    reports = []
    for rank in range(WORLD_SIZE):
        path = Path(f"{out}.rank{rank}.json")
        assert path.exists(), f"rank {rank} wrote no report:\n{proc.stdout}\n{proc.stderr}"
        reports.append(json.loads(path.read_text()))
    crashes = [r["crash"] for r in reports if "crash" in r]
    # As in test_ddp: a gloo teardown abort after complete reports is tolerated.
    teardown_abort = "terminate called without an active exception" in proc.stderr
    assert not crashes, f"{crashes}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0 or teardown_abort, proc.stderr[-4000:]
    return reports


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_per_step_norms_equal_the_ddp_hooks(ranks: list[dict[str, Any]], name: str) -> None:
    fsdp, ddp = ranks[0][name]["fsdp"]["history"], ranks[0][name]["ddp"]["history"]
    assert [r["step"] for r in fsdp] == list(range(SCENARIOS[name]["steps"]))
    assert [r["step"] for r in ddp] == [r["step"] for r in fsdp]
    for key in ("sq_norm_small", "sq_norm_big"):
        np.testing.assert_allclose(
            [r[key] for r in fsdp], [r[key] for r in ddp], rtol=RTOL[name], err_msg=key
        )
    # Given sizes 4 and (3, 5) (harmonic mean 3.75); counted from 3 forwards of 2 each.
    for key in ("b_small", "b_big"):
        assert [r[key] for r in fsdp] == [r[key] for r in ddp], key


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_averaged_estimates_and_b_simple_equal_the_ddp_hooks(
    ranks: list[dict[str, Any]], name: str
) -> None:
    fsdp, ddp = ranks[0][name]["fsdp"], ranks[0][name]["ddp"]
    rtol = RTOL[name]
    assert fsdp["n"] == ddp["n"] == SCENARIOS[name]["steps"]
    if SCENARIOS[name]["per_module"]:
        assert set(fsdp["per_module"]) == set(ddp["per_module"]) == {"fc1", "fc2", "(root)"}
    else:
        assert fsdp["per_module"] == ddp["per_module"] == {}
    pairs = [("total", fsdp, ddp)] + [
        (module, fsdp["per_module"][module], ddp["per_module"][module])
        for module in ddp["per_module"]
    ]
    for key, got, want in pairs:
        # Per-module norms are at most the total's: the total's bound covers them too.
        atol_g, atol_t = _estimate_atol(ddp["history"], rtol)
        assert got["grad_sq_norm"] == pytest.approx(want["grad_sq_norm"], rel=0, abs=atol_g), key
        assert got["trace_cov"] == pytest.approx(want["trace_cov"], rel=0, abs=atol_t), key
        # B_simple = tr(Σ)/|G|²: relative errors add.
        rel = atol_g / abs(want["grad_sq_norm"]) + atol_t / abs(want["trace_cov"])
        assert got["b_simple"] == pytest.approx(want["b_simple"], rel=rel), key


def _estimate_atol(history: list[dict[str, Any]], rtol: float) -> tuple[float, float]:
    """Bounds on the averaged |G|² and tr(Σ) errors when each norm is off by rtol.

    The per-step estimators (McCandlish et al. 2018, Appendix A) are linear in the
    norms: |G|² = (B_big |G_big|² - B_small |G_small|²) / (B_big - B_small) and
    tr(Σ) = (|G_small|² - |G_big|²) / (1/B_small - 1/B_big).
    """
    errors_g, errors_t = [], []
    for r in history:
        small, big, bs, bb = r["sq_norm_small"], r["sq_norm_big"], r["b_small"], r["b_big"]
        errors_g.append(rtol * (bb * big + bs * small) / (bb - bs))
        errors_t.append(rtol * (small + big) / (1 / bs - 1 / bb))
    return max(errors_g), max(errors_t)


def test_every_rank_holds_identical_statistics(ranks: list[dict[str, Any]]) -> None:
    for name in SCENARIOS:
        assert ranks[0][name]["fsdp"] == ranks[1][name]["fsdp"], name


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fsdp_training_follows_ddp(ranks: list[dict[str, Any]], name: str) -> None:
    # The hook only reads gradients: FSDP2 training ends where DDP training does.
    got, want = ranks[0][name]["params"]["fsdp"], ranks[0][name]["params"]["ddp"]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=10 * RTOL[name], atol=10 * RTOL[name])


def test_one_all_reduce_per_step(ranks: list[dict[str, Any]]) -> None:
    for name, spec in SCENARIOS.items():
        assert ranks[0][name]["all_reduces_per_step"] == [1] * spec["steps"], name


def test_mixed_precision_accumulation_matches_float32_ddp(ranks: list[dict[str, Any]]) -> None:
    # bfloat16 compute (unit roundoff u = 2**-8 = 3.9e-3): the weights, activations and
    # gradients are each rounded to within u, and the few roundings along a 2-layer
    # backward compound to a few u in each gradient entry, so a squared norm is off by
    # well under 13 u ~ 0.05 relative (0.4-0.7% seen). Taking only the last of the three
    # micro-batches' gradients (FSDP2 keeps the accumulated one apart from .grad under
    # this policy) is off by 40-80%.
    report = ranks[0]["mixed_precision"]
    for key in ("sq_norm_small", "sq_norm_big"):
        np.testing.assert_allclose(report["fsdp"][key], report["ddp"][key], rtol=0.05)
    assert report["fsdp"]["b_small"] == report["ddp"]["b_small"] == [6, 6, 6]


def test_refusals(ranks: list[dict[str, Any]]) -> None:
    errors = ranks[0]["errors"]
    assert errors["not_fsdp"]["types"][0] == "TypeError"
    assert "fully_shard" in errors["not_fsdp"]["message"]
    assert "got TinyNet" in errors["not_fsdp"]["message"]
    assert errors["fsdp1"]["types"][:3] == ["ShardedModelError", "BatchlabError", "TypeError"]
    assert "FSDP1" in errors["fsdp1"]["message"] and "FSDP2" in errors["fsdp1"]["message"]
    # NoiseScaleTracker still needs whole gradients; its error names the FSDP2 hook.
    tracker = errors["tracker_on_fsdp2"]
    assert tracker["types"][0] == "ShardedModelError"
    assert "register_fsdp_noise_scale_hook" in tracker["message"]
    assert errors["no_backward"]["types"][0] == "ValueError"
    assert "no backward" in errors["no_backward"]["message"]
