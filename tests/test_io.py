"""Crash-safe writes: whole files only, nothing left behind, the usual permissions."""

from __future__ import annotations

import json
import os
import stat

import pytest

from batchlab._io import atomic_write, atomic_write_json, atomic_write_text


def test_atomic_write_gives_the_mode_a_plain_open_would(tmp_path):
    path = atomic_write_text(tmp_path / "report.html", "<html></html>")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_json(tmp_path / "results.json", {"a": 1})

    def half_then_fail(handle):
        handle.write(b'{"a": ')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
