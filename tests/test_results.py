"""Tests of a sweep directory's files: atomic writes, rows keyed by run_id, checkpoints, config.yaml, the lock.

    /work/venv/bin/python -m pytest tests/test_results.py
"""

import errno
import os
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from lossbench import atomic
from lossbench.errors import UserError
from lossbench.results import columns, verify, write


def test_run_id_and_hash_are_deterministic():
    settings = {"sizes": "784-30-10", "init": "large", "epochs": 30}
    h = columns.config_hash(settings)
    assert len(h) == 8 and h == columns.config_hash(dict(reversed(settings.items())))
    assert h != columns.config_hash(settings | {"epochs": 31})
    assert columns.run_id("sigmoid_ce", 0.5, 3, h) == f"sigmoid_ce_lr0.5_s3_{h}"
    assert columns.run_id("sigmoid_mse", 3.0, 0, h) == f"sigmoid_mse_lr3_s0_{h}"


def test_metric_columns():
    assert columns.metric_columns(2) == ["train_cost", "val_acc", "val_cost", "test_acc", "test_cost",
                                         "test_saturated", "grad_b1", "grad_w1", "grad_b2", "grad_w2"]


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
    assert write.finished_run_ids(tmp_path) == {"a", "b", "c"}
    assert write.finished_run_ids(tmp_path / "nowhere") == set()


def test_write_rows_drops_exact_copies_of_a_row(tmp_path):
    """A sync or a merge may leave a row twice; the next write keeps it once."""
    path = tmp_path / "runs.csv"
    path.write_text("run_id,acc\na,0.1\nb,0.2\na,0.1\n")
    write.write_rows(path, pd.DataFrame({"run_id": ["c"], "acc": [0.3]}))
    assert path.read_text() == "run_id,acc\na,0.1\nb,0.2\nc,0.3\n"


def test_epoch_rows_are_run_major_with_nan_for_missing_metrics():
    metrics = [{"val_acc": np.array([0.1, 0.2])},  # epoch 0: no training metrics
               {"val_acc": np.array([0.3, 0.4]), "train_cost": np.array([1.0, 2.0])}]
    rows = columns.epoch_rows(["a", "b"], metrics, ["train_cost", "val_acc"])
    assert rows["run_id"].tolist() == ["a", "a", "b", "b"] and rows["epoch"].tolist() == [0, 1, 0, 1]
    assert rows["val_acc"].tolist() == [0.1, 0.3, 0.2, 0.4]
    assert np.isnan(rows["train_cost"][0]) and rows["train_cost"][3] == 2.0


def test_run_outcomes_first_best_epochs_and_all_nan_runs():
    test = np.array([[0.1, 0.5, 0.5, 0.2], [np.nan] * 4, [0.3, 0.4, np.nan, np.nan]])
    val = np.array([[0.2, 0.1, 0.3, 0.3], [np.nan] * 4, [0.5, 0.1, np.nan, np.nan]])
    out = columns.run_outcomes(test, val)
    assert out["peak_test_acc"].tolist()[0::2] == [0.5, 0.4] and np.isnan(out["peak_test_acc"][1])
    assert out["peak_epoch"].tolist() == [2, pd.NA, 2]  # the first epoch reaching the peak
    assert out["val_selected_epoch"].tolist() == [3, pd.NA, 1]  # the first epoch with the best val acc
    assert out["val_selected_test_acc"].tolist()[0::2] == [0.5, 0.3]
    assert out["final_test_acc"][0] == 0.2 and np.isnan(out["final_test_acc"][2])  # diverged: no final


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


COMMITTED = sorted(path.parent for path in (Path(__file__).resolve().parents[1] / "results").glob("*/runs.csv"))


@pytest.mark.parametrize("directory", COMMITTED, ids=[path.name for path in COMMITTED])
def test_committed_sweep_directories_read_back_whole(directory):
    """Directories written before runs were verified on reading (results/) hold no damage: every run finished."""
    val_size = verify.read_config(directory / "config.yaml")["data"]["val_size"]
    found = verify.verify_sweep(directory, val_size=val_size)
    assert found.damage == [] and len(found.finished) == len(pd.read_csv(directory / "runs.csv")) > 0


def test_lock_refuses_a_second_holder(tmp_path):
    with write.directory_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(UserError, match=rf"another sweep \(pid {os.getpid()}\) is writing {tmp_path}"):
            with write.directory_lock(tmp_path):
                pass
    with write.directory_lock(tmp_path):  # released when the first holder ends
        pass
