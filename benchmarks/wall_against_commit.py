"""Claim: the default study costs at most 2x the wall time it cost when [answer] was filed.

[answer] asks for its interval, replication and censoring "at no more than 2x today's
wall time on the default study", today being the commit it was filed on (a7d515b,
whose default study answered B_crit 72.3 [38.7, 123.7]). ``answer_interval.py``
compares against that pipeline's settings re-run on this version's code; this script
runs that commit's own code instead: it unpacks the commit (``git archive``) into a
temporary folder and times ``batchlab study run CONFIG --workers N`` there and in this
working tree, alternately (baseline, current, baseline, current, ...: the machine
drifts), each with its own ``src`` as ``PYTHONPATH`` and the same Python, so
the same torch and Optuna. It prints each run's wall time and answer line, then the
ratio of the medians.

Result: see the note of the run that added this script (the figures are printed, not
asserted).

Run:  python benchmarks/wall_against_commit.py [--baseline a7d515b] [--repeats 2]
      [--workers 2] [--config examples/mnist1d-cnn.toml]   (about 10 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The commit [answer] was filed on.
FILED_ON = "a7d515b"


def unpack(commit: str, into: Path) -> Path:
    """Write ``commit``'s tree into ``into`` (nothing in this repository changes)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True
    )
    if archive.returncode != 0:
        sys.exit(
            f"--baseline {commit!r}: not a commit of {ROOT} ({archive.stderr.decode().strip()})"
        )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def time_study(tree: Path, config: str, workers: int, out: Path) -> tuple[float, str]:
    """Wall seconds of ``batchlab study run`` in ``tree``, and its last answer line."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    command = [sys.executable, "-m", "batchlab", "study", "run", config]
    command += ["--out", str(out), "--workers", str(workers)]
    start = time.perf_counter()
    run = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"{' '.join(command)} in {tree} failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return wall, answer_line(run.stdout)


def answer_line(stdout: str) -> str:
    """The text from ``Answer: B_crit`` now, or from ``B_crit = `` before [answer], on."""
    text = " ".join(stdout.split())
    for marker in ("Answer: B_crit", "B_crit = "):
        at = text.find(marker)
        if at >= 0:
            return text[at : at + 110].split(" Results:")[0]
    return "(no B_crit printed)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=FILED_ON, help="commit to compare against")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each (alternating)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--config", default="examples/mnist1d-cnn.toml")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    print(
        f"baseline {args.baseline} against the working tree {ROOT}; {args.config}, "
        f"--workers {args.workers}, {args.repeats} run(s) each, alternating"
    )
    walls: dict[str, list[float]] = {"baseline": [], "current": []}
    with tempfile.TemporaryDirectory(prefix="wall-against-commit-") as tmp:
        trees = {"baseline": unpack(args.baseline, Path(tmp) / "baseline"), "current": ROOT}
        for repeat in range(args.repeats):
            for label, tree in trees.items():
                out = Path(tmp) / f"{label}-{repeat}"
                wall, answer = time_study(tree, args.config, args.workers, out)
                walls[label].append(wall)
                print(f"{label} run {repeat + 1}: {wall:6.1f} s  {answer}", flush=True)
    before, after = (statistics.median(walls[label]) for label in ("baseline", "current"))
    print(
        f"median wall: baseline {before:.1f} s, current {after:.1f} s: "
        f"current / baseline {after / before:.2f}x"
    )


if __name__ == "__main__":
    main()
