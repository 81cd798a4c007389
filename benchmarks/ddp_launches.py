"""Claim: a DDP trial's torchrun launch sometimes fails after training, not during it.

Result: see the note of the run that added this script (the figures are printed, not
asserted). CI once failed a study's DDP trial (``tests/study/test_ddp_trials.py``)
with rank 1 killed by SIGABRT and no Python error; here such launches print
gloo's ``terminate called without an active exception`` and happen *after* rank 0
wrote the trial's result, i.e. in the ranks' teardown.
:func:`batchlab.training.run_ddp_trial` therefore keeps a result rank 0 wrote, and
relaunches (twice at most) a launch that died of a signal before it.

It launches the same torchrun command as ``run_ddp_trial`` (2 ranks, gloo, one
thread each) ``--launches`` times on digits-mlp (40 steps of Nesterov SGD at global
batch 64, a new seed each), and counts the launches that exited non-zero and, of
those, how many had written the result first. The output of a failed launch is kept
in ``--keep DIR`` (default: none kept).

Run:  python benchmarks/ddp_launches.py [--launches 60] [--keep DIR]
      (about 6 s per launch on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from batchlab.training import RunSpec
from batchlab.training._ddp_launch import torchrun_command
from batchlab.workloads import get_workload


def launch(seed: int) -> tuple[int, bool, str]:
    """One launch: (torchrun's exit code, whether rank 0 wrote the result, its output)."""
    workload = get_workload("digits-mlp", {})
    spec = RunSpec(
        batch_size=64,
        optimizer="nesterov",
        hparams={"lr": 0.1, "momentum": 0.9},
        max_steps=40,
        eval_every=20,
        seed=seed,
    )
    with tempfile.TemporaryDirectory(prefix="batchlab-ddp-launches-") as tmp:
        job, out = Path(tmp, "job.json"), Path(tmp, "result.json")
        job.write_text(
            json.dumps(
                {
                    "workload": {"name": "digits-mlp", "params": {}},
                    "spec": {**asdict(spec), "hparams": dict(spec.hparams)},
                    "target": asdict(workload.target),
                    "stop_at_target": True,
                    "stop_after": None,
                }
            )
        )
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(
            torchrun_command(2, job, out), capture_output=True, text=True, env=env, check=False
        )
        return done.returncode, out.exists(), done.stdout + "\n" + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--launches", type=int, default=60)
    parser.add_argument("--keep", type=Path, help="write each failed launch's output here")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    failed, after_result, started = 0, 0, time.perf_counter()
    for seed in range(args.launches):
        code, written, output = launch(seed)
        if code != 0:
            failed += 1
            after_result += written
            aborts = [line for line in output.splitlines() if "terminate called" in line]
            print(f"launch {seed}: exit {code}, result written: {written}; {aborts[:1]}")
            if args.keep is not None:
                (args.keep / f"launch{seed}.log").write_text(output)
    wall = time.perf_counter() - started
    print(
        f"{args.launches} launches in {wall:.0f} s: {failed} exited non-zero, "
        f"{after_result} of them after rank 0 wrote the result"
    )


if __name__ == "__main__":
    main()
