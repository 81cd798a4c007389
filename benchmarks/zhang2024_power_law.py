"""Claim: B_crit from Zhang et al. 2024's own steps-to-target grows as a power law with scale.

Reads their published table (5 model sizes 85M-1.2B, each trained Chinchilla-style to a
per-model target loss, 9 batch sizes of 512-token sequences; see
../shared/data/zhang2024/README.md), fits S(B) = S_min (1 + B_crit / B) per model with
``bl.analysis.fit_scaling`` (B_crit with its bootstrap interval), then
``bl.analysis.fit_power_law`` of B_crit against the model size N and prints the
exponent with its interval (residual and measurement parts). In this table every model
sees D = 20 N tokens (Chinchilla-optimal, Hoffmann et al. 2022), so D and N grow
together and the exponent against D is the same number: separating them needs Zhang et
al.'s fixed-D / fixed-N runs, which the table does not hold.

Run:  python benchmarks/zhang2024_power_law.py [CSV ...]
      (default: both CSVs in ../shared/data/zhang2024)
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import batchlab as bl

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "zhang2024"
TOKENS_PER_SEQUENCE = 512
TOKENS_PER_PARAMETER = 20  # Chinchilla-optimal data (Hoffmann et al. 2022)


def parameters(setting: str) -> float:
    """``"85M"`` -> 85e6, ``"1.2B"`` -> 1.2e9."""
    scale = {"M": 1e6, "B": 1e9}[setting[-1]]
    return float(setting[:-1]) * scale


def read_table(path: Path) -> dict[str, tuple[list[int], list[int]]]:
    table: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    with path.open() as f:
        for row in csv.DictReader(f):
            sizes, steps = table[row["setting"]]
            sizes.append(int(row["batch_size"]))
            steps.append(int(row["steps"]))
    return dict(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="*", type=Path, help="published S(B) tables")
    args = parser.parse_args()
    paths = args.csv or sorted(DATA.glob("zhang2024_cbs_*.csv"))
    if not paths:
        raise SystemExit(f"no tables given and none found in {DATA}")
    for path in paths:
        print(f"\n{path.name}")
        print(f"{'model':>6}{'N':>10}{'D tokens':>11}{'B_crit (seq)':>14}{'95% interval':>20}")
        ns, b_crits, cis = [], [], []
        for setting, (sizes, steps) in read_table(path).items():
            fit = bl.analysis.fit_scaling(sizes, steps)
            n = parameters(setting)
            ns.append(n)
            b_crits.append(fit.b_crit)
            cis.append(fit.b_crit_ci)
            low, high = fit.b_crit_ci
            print(
                f"{setting:>6}{n:>10.3g}{TOKENS_PER_PARAMETER * n:>11.3g}{fit.b_crit:>14.0f}"
                f"{f'[{low:.0f}, {high:.0f}]':>20}"
            )
        law = bl.analysis.fit_power_law(ns, b_crits, y_ci=cis)
        print(f"B_crit against N (and D = {TOKENS_PER_PARAMETER} N): {law.message}")
        print(
            f"  residual interval {law.residual_ci[0]:.3f} to {law.residual_ci[1]:.3f} "
            f"(scatter about the law: {law.scatter:.3f} in log B_crit); measurement interval "
            f"{law.measurement_ci[0]:.3f} to {law.measurement_ci[1]:.3f}"
        )
        tokens = law.predict([1e9])[0] * TOKENS_PER_SEQUENCE
        print(f"  the law at N = 1e9 (D = 2e10 tokens): B_crit = {tokens:.3g} tokens per step")


if __name__ == "__main__":
    main()
