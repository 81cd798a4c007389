"""Claim: a study on CUDA measures what the same study measures on the CPU, faster.

Prints, for two finished studies of one config (``results.json`` of each): wall time,
trials, trials per second, each rung's steps-to-result side by side, and B_crit with
its 95% interval; also where the trials trained (device, precision). Run by
``benchmarks/gpu_check.sh`` after it ran the default study on the CPU and on CUDA.

Run:  python benchmarks/gpu_compare.py runs/cpu runs/cuda
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any


def summary(directory: Path) -> dict[str, Any] | None:
    """Wall time, trials, per-rung steps and B_crit of the study in ``directory``."""
    path = directory / "results.json"
    if not path.exists():
        print(f"{directory}: no results.json (the study did not get far enough)")
        return None
    data = json.loads(path.read_text())
    trials = [t for rung in data["rungs"] for t in rung["trials"]]
    answer = (data.get("analysis") or {}).get("answer") or {}
    where = Counter(f"{t.get('device')} {t.get('precision')}" for t in trials)
    return {
        "wall_s": data.get("wall_time_s") or float("nan"),
        "trials": len(trials),
        "steps": {r["batch_size"]: r["steps_to_target"] for r in data["rungs"]},
        "b_crit": answer.get("b_crit"),
        "b_crit_ci": answer.get("b_crit_ci"),
        "where": ", ".join(f"{k} x{n}" for k, n in where.most_common()),
        "complete": all(r["trials_done"] >= r["trials_planned"] for r in data["rungs"]),
    }


def _b_crit(s: dict[str, Any]) -> str:
    if s["b_crit"] is None:
        return "none"
    ci = s["b_crit_ci"]
    return f"{s['b_crit']:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cpu", type=Path, help="the CPU study's directory")
    parser.add_argument("gpu", type=Path, help="the CUDA study's directory")
    args = parser.parse_args()
    found = {"cpu": summary(args.cpu), "cuda": summary(args.gpu)}
    runs = {name: s for name, s in found.items() if s is not None}
    for name, s in runs.items():
        print(
            f"{name:>5}: wall {s['wall_s']:.1f} s, {s['trials']} trials, "
            f"{s['trials'] / s['wall_s']:.2f} trials/s, B_crit {_b_crit(s)}, "
            f"trained on {s['where']}{'' if s['complete'] else ' (INCOMPLETE)'}"
        )
    if len(runs) < 2:
        return
    print(f"speed-up (wall): x{runs['cpu']['wall_s'] / runs['cuda']['wall_s']:.2f}")
    print(f"\n{'batch size':>10}{'cpu steps':>11}{'cuda steps':>12}{'ratio':>8}")
    for batch_size, cpu in runs["cpu"]["steps"].items():
        cuda = runs["cuda"]["steps"].get(batch_size)
        ratio = f"{cuda / cpu:.3f}" if cpu and cuda else "—"
        print(f"{batch_size:>10}{cpu!s:>11}{cuda!s:>12}{ratio:>8}")


if __name__ == "__main__":
    main()
