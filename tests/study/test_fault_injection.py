"""kill -9 at seeded random moments (mid-trial, mid-journal-write, mid-results-write),
then resume: every planned trial finishes exactly once and nothing is lost or torn."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from batchlab.study import StorageError, Study, StudyConfig, open_storage
from batchlab.study._journal import recover_journal

from .checks import assert_each_slot_once

CHILD = r"""
import json, os, sys, time
from pathlib import Path
config_json, directory, mode, marker, nth = sys.argv[1:6]
marker, nth = Path(marker), int(nth)

# Rewrite results.json after every trial (not every 10 s), so kills land mid-write.
import batchlab.study._study as study_module
study_module.RESULTS_EVERY_S = 0.0

if mode == "results":
    # Stall between writing the temporary file and renaming it over results.json.
    import batchlab._io as io
    real_replace = io.os.replace
    def stalled_replace(src, dst):
        if str(dst).endswith("results.json"):
            marker.touch()
            time.sleep(60)
        real_replace(src, dst)
    io.os.replace = stalled_replace
elif mode == "journal":
    # Write half of the nth journal record, then stall: a torn append.
    from optuna.storages.journal import _file
    real_append = _file.JournalFileBackend.append_logs
    calls = [0]
    def torn_append(self, logs):
        calls[0] += 1
        if calls[0] == nth:
            data = ("\n".join(json.dumps(l, separators=(",", ":")) for l in logs) + "\n").encode()
            with open(self._file_path, "ab") as f:
                f.write(data[: len(data) // 2]); f.flush(); os.fsync(f.fileno())
            marker.touch()
            time.sleep(60)
        real_append(self, logs)
    _file.JournalFileBackend.append_logs = torn_append

from batchlab.study import Study, StudyConfig
Study(StudyConfig.model_validate_json(config_json), directory).run()
"""


def test_truncated_last_journal_record_is_dropped_with_a_warning(tmp_path, caplog):
    journal = tmp_path / "j.log"
    journal.write_bytes(b'{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}\n{"op_co')
    with caplog.at_level(logging.WARNING):
        assert recover_journal(journal) == len(b'{"op_co')
    assert "truncated record" in caplog.text
    assert journal.read_bytes().endswith(b"\n")
    storage = open_storage(str(journal))
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["s"]


def test_corrupt_journal_record_is_reported_not_misread(tmp_path):
    journal = tmp_path / "j.log"
    journal.write_bytes(
        b'{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}\n{garbage}\n{"op_code":0}\n'
    )
    with pytest.raises(StorageError, match="cannot read the journal"):
        open_storage(str(journal))


@pytest.mark.slow
def test_kill_minus_nine_at_random_moments_then_resume(tmp_path, linreg_study):
    linreg_study["ladder"] = {"batch_sizes": [4, 16, 64, 256]}
    linreg_study["search"]["trials_per_rung"] = 8
    linreg_study["budget"] = {"steps": 3000}  # long enough that 18 rounds of kills fit in
    config = StudyConfig.model_validate(linreg_study)
    directory = tmp_path / "study"
    study = Study(config, directory)
    rng = random.Random(2026)
    modes = ["plain", "results", "journal"] * 6
    kills = 0
    for round_index, mode in enumerate(modes):
        marker = tmp_path / f"marker-{round_index}"
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                config.model_dump_json(),
                str(directory),
                mode,
                str(marker),
                str(rng.randint(5, 60)),
            ],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + (rng.uniform(2.5, 5.0) if mode == "plain" else 60)
        while time.monotonic() < deadline and child.poll() is None and not marker.exists():
            time.sleep(0.02)
        if child.poll() is not None:
            break  # the study finished before this kill
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        kills += 1
        results = directory / "results.json"
        if results.exists():
            json.loads(results.read_text())  # never torn: the old or the new file, whole
    assert kills >= 10
    final = Study.load(directory).run()
    assert final.complete
    assert_each_slot_once(study.storage_url, 8)
    # Nothing lost or changed: the same trials and outcomes as an uninterrupted run.
    clean = Study(config, tmp_path / "clean").run()
    resumed = [t for r in final.rungs for t in r.trials]
    uninterrupted = [t for r in clean.rungs for t in r.trials]
    assert [(t.slot, t.status, t.steps_to_target) for t in resumed] == [
        (t.slot, t.status, t.steps_to_target) for t in uninterrupted
    ]
    for a, b in zip(resumed, uninterrupted, strict=True):
        # A re-run trial may train in another ensemble (or alone): vmap's batched
        # kernels sum in another order, so curves agree to float32 rounding.
        assert a.curve.keys() == b.curve.keys() and a.curve["steps"] == b.curve["steps"]
        for name in a.curve.keys() - {"steps"}:
            np.testing.assert_allclose(a.curve[name], b.curve[name], rtol=1e-4, atol=1e-6)
    saved = json.loads((directory / "results.json").read_text())
    assert saved["steps_to_target"] == {str(b): s for b, s in clean.steps_to_target.items()}
    assert not list(Path(directory).glob(".results.json.*.tmp"))
