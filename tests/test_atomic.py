"""Tests of the one atomic writer: the old version or the new one, never half, and a failed write keeps the old.

    python -m pytest tests/test_atomic.py
"""

import errno
import os
import stat

import pytest

from lossbench import atomic


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "runs.csv"
    atomic.atomic_write(path, b"old\n")
    atomic.atomic_write(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["runs.csv"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~atomic._UMASK  # not mkstemp's 0600


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "runs.csv"
    atomic.atomic_write(path, b"old\n")

    def killed(*args):
        raise KeyboardInterrupt  # as if interrupted between writing and renaming

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(path, b"new\n")
    assert path.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["runs.csv"]


def test_a_write_that_fails_is_a_write_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "runs.csv"
    atomic.atomic_write(path, b"old\n")
    atomic.atomic_write(tmp_path / "checkpoints" / "a.pt", b"x")  # makes the directory it writes into
    with pytest.raises(atomic.WriteError, match=rf"cannot write {path}/a.pt: \[Errno 17\] File exists"):
        atomic.atomic_write(path / "a.pt", b"x")  # a file where the directory should be

    def full_disk(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(atomic.WriteError, match=rf"cannot write {path}: \[Errno 28\] No space left on device\. "
                                                 "The files written before it are intact"):
        atomic.atomic_write(path, b"new\n")
    assert path.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.pt", "checkpoints", "runs.csv"]
