"""Claim: on linreg, B_crit measured under WSD (after a cooldown) differs from the
constant-LR B_crit, both agree with their exact expected-curve values, and B_crit grows
as a power law in the examples seen D (fitted with ``bl.analysis.fit_power_law``).

The base run (SGD, B = 16, LR 0.05) is branched at several checkpoints, once with a
constant LR (``schedule="constant"``) and once as a WSD run (``schedule="wsd"``: 10
warmup steps, branches read after a linear cooldown over 20% of their steps). Prints,
per schedule and checkpoint, measured and exact B_crit, then the power law of B_crit
in D with its 95% interval. With --out DIR it writes DIR/<schedule>/cbs.json and the
report (``report.html``, with the power-law figure).

Run:  nice -n 10 python benchmarks/cbs_wsd.py [--checkpoints 30,60,100,200,300] [--repeats 8]
      [--out runs/cbs-wsd]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import batchlab as bl
from batchlab.report._cbs import cbs_power_law, parse_cbs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", default="30,60,100,200,300")
    parser.add_argument("--batch-sizes", default="4,8,16,32,64,128,256,512,1024")
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = [int(s) for s in args.checkpoints.split(",")]
    linreg = bl.get_workload("linreg", {"dim": 64, "decay": 0.5})
    common = dict(
        optimizer="sgd", hparams={"lr": 0.05}, base_batch_size=16, lr_rule="sqrt",
        improvement_fraction=0.8, max_steps=4000, eval_resolution=0.05,
        repeats=args.repeats, noise_batch_size=0, n_bootstrap=500, seed=args.seed,
    )  # fmt: skip
    schedules = {
        "constant": {},
        "wsd": {"schedule": "wsd", "warmup_steps": 10, "cooldown_fraction": 0.2},
    }
    for name, options in schedules.items():
        started = time.perf_counter()
        result = bl.cbs.measure_critical_batch(
            linreg, steps, [int(b) for b in args.batch_sizes.split(",")], **common, **options
        )
        print(f"\n{name}: {result.describe_schedule()}  ({time.perf_counter() - started:.0f} s)")
        print(f"{'step':>6}{'D':>8}{'B_crit':>9}{'95% CI':>18}{'exact':>9}")
        for c in result.checkpoints:
            fit, exact = c.fit, c.exact_fit
            ci = f"[{fit.b_crit_ci[0]:.1f}, {fit.b_crit_ci[1]:.1f}]" if fit else "-"
            print(
                f"{c.step:>6}{c.examples_seen:>8}{fit.b_crit if fit else float('nan'):>9.1f}"
                f"{ci:>18}{exact.b_crit if exact else float('nan'):>9.1f}"
            )
        data = result.to_dict()
        law = cbs_power_law(parse_cbs(data))
        print(
            "power law:",
            "-" if law is None else law.text,
            f"(left out: {law.left_out})" if law else "",
        )
        if args.out is not None:
            directory = args.out / name
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "cbs.json").write_text(json.dumps(data))
            from batchlab.report import build_report

            print("report:", build_report(directory).write())


if __name__ == "__main__":
    main()
