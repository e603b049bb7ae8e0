"""A sweep directory's files: runs.csv, epochs.csv, config.yaml, checkpoints, the lock.

    python -c "import pandas as pd; print(pd.read_csv('outputs/sweep/DIR/runs.csv'))"

Every file is written atomically (a temporary file in the same directory, fsync,
os.replace, fsync of the directory), so a kill at any moment leaves either the old
or the new version, never half of one; a write that fails (a full disk) raises
WriteError and leaves the old version too. Rows are keyed by run_id: writing a run's
rows again replaces them, so a sweep that resumes never duplicates a run.
The columns are documented in docs/results.md ("Result files").
"""

import fcntl
import hashlib
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lossbench.errors import UserError

RUN_COLUMNS = [
    "run_id", "pair", "activation", "cost", "lr", "seed",
    "sizes", "init", "batch_size", "epochs", "l2", "dataset", "train_size",
    "status", "diverged_epoch", "peak_test_acc", "peak_epoch", "final_test_acc",
    "val_selected_test_acc", "val_selected_epoch", "wall_time_s", "device", "dtype", "torch_version",
]
BASE_METRICS = ["train_cost", "val_acc", "val_cost", "test_acc", "test_cost", "test_saturated"]
CHECKPOINT_MAGIC = b"lossbench-checkpoint-v1\n"
_UMASK = os.umask(0o022)  # read it (the only way) and put it back: mkstemp's files are 0600,
os.umask(_UMASK)  # the sweep's files get the mode that open() would give them


def metric_columns(n_layers: int) -> list[str]:
    """epochs.csv's metric columns for a network with n_layers weight layers (len(sizes) - 1)."""
    grads = [f"grad_{kind}{layer}" for layer in range(1, n_layers + 1) for kind in ("b", "w")]
    return BASE_METRICS + grads


def config_hash(settings: dict) -> str:
    """8 hex digits naming the non-grid settings (sizes, init, data, schedule, dtype) of a run."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def run_id(pair: str, lr: float, seed: int, settings_hash: str) -> str:
    return f"{pair}_lr{lr:g}_s{seed}_{settings_hash}"


# --- atomic files ------------------------------------------------------------
def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteError(UserError):
    """A file of the sweep could not be written (a full disk, a read-only or broken directory)."""


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` by `data` (creating its directory) so that no reader and no kill ever sees
    a partial file; WriteError if that fails, with the old version of `path` left as it was."""
    try:
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err}. The files written before it are intact.") from None


def remove_stale_temp_files(directory: Path) -> None:
    """Delete temporary files that a killed sweep left (call with the directory's lock held)."""
    for folder in (directory, directory / "checkpoints"):  # not nested sweeps: they may be running
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink()


def _as_text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as its CSV text cells: what is already written is copied, never re-parsed."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)), dtype=str, keep_default_na=False)


def read_text(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_rows(path: Path, rows: pd.DataFrame) -> None:
    """Add `rows` to the CSV at `path`, replacing any rows there with the same run_id."""
    new = _as_text_frame(rows)
    old = read_text(path)
    if old is not None:
        new = pd.concat([old[~old["run_id"].isin(new["run_id"])], new], ignore_index=True).fillna("")
    atomic_write(path, new.to_csv(index=False).encode())


def finished_run_ids(directory: Path) -> set[str]:
    """The runs that runs.csv holds: a run gets its row only after all its epochs are written."""
    runs = read_text(directory / "runs.csv")
    return set() if runs is None else set(runs["run_id"])


# --- config.yaml -------------------------------------------------------------
def _flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flatten(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def claim_directory(directory: Path, cfg) -> None:
    """Write config.yaml, or refuse if the directory already holds a sweep with another config."""
    path = directory / "config.yaml"
    mine = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if path.exists():
        try:
            theirs = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        except (OmegaConfBaseException, yaml.YAMLError) as err:
            raise UserError(f"{path} is not a config lossbench can read ({err}); write this sweep "
                            "elsewhere (hydra.run.dir=PATH).") from None
        if theirs != mine:
            a, b = _flatten(theirs), _flatten(mine)
            diff = [f"{key}: {a.get(key, '(absent)')} there, {b.get(key, '(absent)')} now"
                    for key in sorted(a.keys() | b.keys()) if a.get(key) != b.get(key)]
            raise UserError(f"config mismatch: {directory} holds a sweep with another config "
                            f"({'; '.join(diff)}). Resume it with the same overrides, or write "
                            "this sweep elsewhere (hydra.run.dir=PATH).")
        return
    atomic_write(path, OmegaConf.to_yaml(mine).encode())


# --- checkpoints -------------------------------------------------------------
class CorruptCheckpoint(Exception):
    """A checkpoint file that fails its checksum or cannot be loaded."""


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save `state` behind a magic line and the SHA-256 of its bytes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    atomic_write(path, CHECKPOINT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_checkpoint(path: Path) -> dict:
    """The state saved at `path`; CorruptCheckpoint if its bytes are not what was saved."""
    data = path.read_bytes()
    header, rest = data[:len(CHECKPOINT_MAGIC)], data[len(CHECKPOINT_MAGIC):]
    digest, payload = rest[:64], rest[65:]  # 64 hex digits, a newline, the torch.save bytes
    if header != CHECKPOINT_MAGIC or hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CorruptCheckpoint(f"{path} fails its checksum")
    try:
        # the file is the sweep's own and its checksum holds; it pickles numpy arrays
        return torch.load(io.BytesIO(payload), weights_only=False)
    except Exception as err:  # any unpickling failure means: do not use it
        raise CorruptCheckpoint(f"{path} cannot be loaded ({err})") from err


# --- the lock ----------------------------------------------------------------
@contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive flock on directory/.lock; UserError if another sweep holds it.

    The file exists only while a sweep holds it: the holder deletes it before letting go. A sweep
    that opened the file just before that deletion would lock a file no longer in the directory,
    so a lock counts only if the path still names the locked file; if not, it locks the new one.
    """
    path = directory / ".lock"
    while True:
        lock = open(path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise UserError(f"another sweep (pid {holder}) is writing {directory}; wait for it to end, "
                            "or write this sweep elsewhere (hydra.run.dir=PATH).") from None
        if path.exists() and os.path.samestat(path.stat(), os.fstat(lock.fileno())):
            break
        lock.close()
    with lock:  # closing the file releases the lock, also when the process is killed
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # still locked: no other sweep holds or deletes it now


# --- rows --------------------------------------------------------------------
def metric_table(metrics: list[dict[str, np.ndarray]], key: str, n_models: int) -> np.ndarray:
    """[M, E+1]: model m's `key` after epoch e (NaN where an epoch has no such metric, e.g. epoch 0's costs)."""
    return np.stack([np.asarray(m[key], dtype=np.float64) if key in m else np.full(n_models, np.nan)
                     for m in metrics], axis=1)


def epoch_rows(run_ids: list[str], metrics: list[dict[str, np.ndarray]], columns: list[str]) -> pd.DataFrame:
    """epochs.csv rows, run by run, epoch 0 (initialization) first; metrics[e] is epoch e's dict."""
    n_models, n_epochs = len(run_ids), len(metrics)
    rows = {"run_id": np.repeat(run_ids, n_epochs), "epoch": np.tile(np.arange(n_epochs), n_models)}
    return pd.DataFrame(rows | {key: metric_table(metrics, key, n_models).reshape(-1) for key in columns})


def _first_best(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of [M, E]: the first column holding the row's maximum (-1 if all NaN) and that maximum."""
    empty = np.isnan(values).all(axis=1)
    index = np.where(np.isnan(values), -np.inf, values).argmax(axis=1)
    best = np.take_along_axis(values, index[:, None], axis=1)[:, 0]
    return np.where(empty, -1, index), best


def run_outcomes(test_acc: np.ndarray, val_acc: np.ndarray) -> pd.DataFrame:
    """runs.csv's accuracy columns from [M, E] accuracies after epochs 1..E.

    peak = the best test accuracy and its first epoch; val-selected = the test accuracy
    at the first epoch with the best validation accuracy (early stopping on validation).
    """
    peak_index, peak = _first_best(test_acc)
    val_index, _ = _first_best(val_acc)
    val_selected = np.take_along_axis(test_acc, val_index[:, None], axis=1)[:, 0]

    def epoch(index: np.ndarray) -> pd.Series:  # column index -> epoch number; none if all NaN
        return pd.Series(index + 1, dtype="Int64").where(index >= 0)

    return pd.DataFrame({
        "peak_test_acc": np.where(peak_index >= 0, peak, np.nan),
        "peak_epoch": epoch(peak_index),
        "final_test_acc": test_acc[:, -1],
        "val_selected_test_acc": np.where(val_index >= 0, val_selected, np.nan),
        "val_selected_epoch": epoch(val_index),
    })
