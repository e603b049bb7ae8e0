"""Writing a sweep directory: rows keyed by run_id, config.yaml, checkpoints, the lock.

    python -m lossbench sweep sweep.pairs=[sigmoid_ce] sweep.lrs=[0.5] sweep.seeds=1 optim.epochs=1 data.train_size=1000

Every file is written atomically (lossbench/atomic.py), so a kill at any moment leaves either
the old or the new version, never half of one. Rows are keyed by run_id: writing a run's rows
again replaces them, so a sweep that resumes never duplicates a run. A directory holds one
sweep: config.yaml says which, and a sweep with another config is refused.
"""

import fcntl
import hashlib
import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch
from omegaconf import OmegaConf

from lossbench.atomic import atomic_write
from lossbench.config import SweepConfig
from lossbench.errors import UserError
from lossbench.results.verify import flatten, read_config

CHECKPOINT_MAGIC = b"lossbench-checkpoint-v1\n"


def remove_stale_temp_files(directory: Path) -> None:
    """Delete temporary files that a killed sweep left (call with the directory's lock held)."""
    for folder in (directory, directory / "checkpoints"):  # not nested sweeps: they may be running
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink()


def _as_text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as its CSV text cells: what is already written is copied, never re-parsed."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)), dtype=str, keep_default_na=False)


def read_text(path: Path) -> pd.DataFrame | None:
    """The CSV's cells as written (a spreadsheet's byte-order mark, CRLF and quotes undone)."""
    if not path.exists():
        return None
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def write_rows(path: Path, rows: pd.DataFrame) -> None:
    """Add `rows` to the CSV at `path`, replacing any rows there with the same run_id (and
    dropping exact copies of a row, which a sync or a merge may leave: they hold nothing more)."""
    new = _as_text_frame(rows)
    old = read_text(path)
    if old is not None:
        old = old.drop_duplicates()
        new = pd.concat([old[~old["run_id"].isin(new["run_id"])], new], ignore_index=True).fillna("")
    atomic_write(path, new.to_csv(index=False).encode())


# --- config.yaml -------------------------------------------------------------
def schema_defaults() -> dict:
    """The config keys that the schema gives a default, flattened: {"sweep.ensemble_size": 160, ...}."""
    tree = OmegaConf.to_container(OmegaConf.structured(SweepConfig), enum_to_str=True)  # MISSING: "???"
    return {key: value for key, value in flatten(tree).items() if value != "???"}


def claim_directory(directory: Path, cfg) -> None:
    """Write config.yaml, or refuse if the directory already holds a sweep with another config.

    A key that config.yaml lacks is no difference if its value now is the schema's default: the
    directory was written before the key existed, and the sweep then did what the default does.
    """
    path = directory / "config.yaml"
    mine = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    theirs = read_config(path)
    if theirs is None:
        atomic_write(path, OmegaConf.to_yaml(mine).encode())
        return
    a, b, defaults, absent = flatten(theirs), flatten(mine), schema_defaults(), object()
    diff = [f"{key}: {a.get(key, '(absent)')} there, {b.get(key, '(absent)')} now" for key in sorted(a.keys() | b.keys())
            if a.get(key, absent) != b.get(key, absent)
            and not (key not in a and key in defaults and b[key] == defaults[key])]
    if diff:
        raise UserError(f"config mismatch: {directory} holds a sweep with another config "
                        f"({'; '.join(diff)}). Resume it with the same overrides, or write "
                        "this sweep elsewhere (hydra.run.dir=PATH).")


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
