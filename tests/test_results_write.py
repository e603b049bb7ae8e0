"""Tests of writing a sweep directory: rows keyed by run_id, checkpoints, config.yaml, the lock.

    python -m pytest tests/test_results_write.py
"""

import fcntl
import os
import re

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from lossbench.errors import UserError
from lossbench.results import write


def test_remove_stale_temp_files(tmp_path):
    (tmp_path / ".runs.csv.abc.tmp").write_text("half")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".x.pt.def.tmp").write_text("half")
    (tmp_path / "runs.csv").write_text("run_id\n")
    write.remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["checkpoints", "runs.csv"]


def test_write_rows_replaces_rows_by_run_id_and_keeps_written_text(tmp_path):
    path = tmp_path / "runs.csv"
    first = pd.DataFrame({"run_id": ["a", "b"], "acc": [0.1, 0.2], "diverged_epoch": pd.array([pd.NA, 3], "Int64")})
    write.write_rows(path, first)
    text = path.read_text()
    assert text == "run_id,acc,diverged_epoch\na,0.1,\nb,0.2,3\n"
    write.write_rows(path, pd.DataFrame({"run_id": ["c"], "acc": [0.3], "diverged_epoch": pd.array([pd.NA], "Int64")}))
    write.write_rows(path, pd.DataFrame({"run_id": ["b"], "acc": [0.25], "diverged_epoch": pd.array([4], "Int64")}))
    # ints stay ints, empties stay empty: old rows are copied as text, never re-parsed
    assert path.read_text() == "run_id,acc,diverged_epoch\na,0.1,\nc,0.3,\nb,0.25,4\n"
    assert write.read_text(tmp_path / "nowhere.csv") is None


def test_write_rows_drops_exact_copies_of_a_row(tmp_path):
    """A sync or a merge may leave a row twice; the next write keeps it once."""
    path = tmp_path / "runs.csv"
    path.write_text("run_id,acc\na,0.1\nb,0.2\na,0.1\n")
    write.write_rows(path, pd.DataFrame({"run_id": ["c"], "acc": [0.3]}))
    assert path.read_text() == "run_id,acc\na,0.1\nb,0.2\nc,0.3\n"


def test_checkpoint_round_trip_and_corruption(tmp_path):
    path = tmp_path / "checkpoints" / "sigmoid_ce.pt"
    state = {"run_ids": ["a"], "ensemble": {"W": [torch.arange(6.0)], "diverged": np.zeros(2, np.int64)},
             "metrics": [{"val_acc": np.array([0.5])}], "wall_time_s": 1.5}
    write.save_checkpoint(path, state)
    loaded = write.load_checkpoint(path)
    assert loaded["run_ids"] == ["a"] and torch.equal(loaded["ensemble"]["W"][0], torch.arange(6.0))
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[-10] ^= 1
    for bad in (bytes(flipped), good[: len(good) // 2], b"", b"not a checkpoint at all"):
        path.write_bytes(bad)
        with pytest.raises(write.CorruptCheckpoint):
            write.load_checkpoint(path)


def test_claim_directory_writes_then_refuses_another_config(tmp_path):
    cfg = OmegaConf.create({"sweep": {"lrs": [0.5, 3.0], "seeds": 2}, "dtype": "float32"})
    write.claim_directory(tmp_path, cfg)
    written = (tmp_path / "config.yaml").read_text()
    write.claim_directory(tmp_path, cfg)  # the same config: resume
    other = OmegaConf.create({"sweep": {"lrs": [0.5, 3.0], "seeds": 5}, "dtype": "float32"})
    with pytest.raises(UserError, match=r"config mismatch: .* \(sweep.seeds: 2 there, 5 now\)"):
        write.claim_directory(tmp_path, other)
    assert (tmp_path / "config.yaml").read_text() == written


def test_claim_directory_takes_keys_added_since_at_their_schema_default(tmp_path):
    """A directory written before a config key existed resumes if the key's value is its default."""
    old = {"sweep": {"lrs": [0.5], "seeds": 2}, "dtype": "float32"}
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(old))
    written = (tmp_path / "config.yaml").read_text()
    defaults = write.schema_defaults()
    assert defaults["sweep.ensemble_size"] == 160 and defaults["shard.count"] == 1 and "sweep.seeds" not in defaults
    now = OmegaConf.create({"sweep": {"lrs": [0.5], "seeds": 2, "ensemble_size": 160}, "shard": {"count": 1, "index": 0},
                            "dtype": "float32"})
    write.claim_directory(tmp_path, now)  # keys added since, at their defaults: the same sweep
    assert (tmp_path / "config.yaml").read_text() == written
    for key, value, shown in [("sweep.ensemble_size", 8, "sweep.ensemble_size: (absent) there, 8 now"),
                              ("shard.count", 2, "shard.count: (absent) there, 2 now")]:
        other = now.copy()
        OmegaConf.update(other, key, value)
        with pytest.raises(UserError, match=re.escape(shown)):
            write.claim_directory(tmp_path, other)
    missing_default = OmegaConf.create({"sweep": {"lrs": [0.5], "seeds": 2, "pairs": ["sigmoid_ce"]}, "dtype": "float32"})
    with pytest.raises(UserError, match=re.escape("sweep.pairs: (absent) there, ['sigmoid_ce'] now")):
        write.claim_directory(tmp_path, missing_default)  # sweep.pairs has no default: a difference
    assert (tmp_path / "config.yaml").read_text() == written


def test_lock_refuses_a_second_holder(tmp_path):
    with write.directory_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(UserError, match=rf"another sweep \(pid {os.getpid()}\) is writing {tmp_path}"):
            with write.directory_lock(tmp_path):
                pass
    with write.directory_lock(tmp_path):  # released when the first holder ends
        pass


def test_the_lock_exists_only_while_held(tmp_path):
    with write.directory_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(UserError, match=f"another sweep \\(pid {os.getpid()}\\) is writing {tmp_path}"):
            with write.directory_lock(tmp_path):
                pass
    assert not (tmp_path / ".lock").exists()


def test_a_lock_file_deleted_by_its_holder_meanwhile_is_not_trusted(tmp_path, monkeypatch):
    """Sweep B opens .lock; sweep A, finishing, deletes it and lets go; B's flock then succeeds on a
    file no longer in the directory, while a third sweep could create and lock a new one."""
    flock, calls = fcntl.flock, []

    def holder_finishes_first(file, operation):
        if not calls:
            (tmp_path / ".lock").unlink()
        calls.append(file)
        return flock(file, operation)

    monkeypatch.setattr(write.fcntl, "flock", holder_finishes_first)
    with write.directory_lock(tmp_path):
        assert len(calls) == 2  # the first lock was dropped, the file now in the directory locked
        assert os.path.samestat((tmp_path / ".lock").stat(), os.fstat(calls[1].fileno()))
