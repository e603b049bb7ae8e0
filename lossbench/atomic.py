"""Files written whole or not at all: a kill at any moment leaves the old version or the new one.

    python -c "from pathlib import Path; from lossbench.atomic import atomic_write; atomic_write(Path('/tmp/x'), b'hi')"

A temporary file in the same directory, fsync, os.replace, fsync of the directory: the one way
lossbench writes a file that someone may read (a sweep's CSVs, config.yaml and checkpoints,
run_info.json, the decoded-data cache). A write that fails (a full disk) raises WriteError and
leaves the old version as it was.
"""

import os
import stat
import tempfile
from pathlib import Path

from lossbench.errors import UserError

_UMASK = os.umask(0o022)  # read it (the only way) and put it back: mkstemp's files are 0600,
os.umask(_UMASK)  # the sweep's files get the mode that open() would give them


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteError(UserError):
    """A file of the sweep could not be written (a full disk, a read-only or broken directory)."""


class DamagedFile(UserError):
    """A file of the sweep that its owner must see to, since no retraining mends it: a directory or a
    read-only file in its place, git merge-conflict markers, another header, an unreadable config.yaml."""


def refuse_directory(path: Path) -> None:
    if path.is_dir():
        raise DamagedFile(f"{path}: a directory, where the sweep keeps a file; move it away (or rename "
                          "it), then run again.")


def require_replaceable(path: Path) -> None:
    """DamagedFile if `path` is a directory or a read-only file: someone made it so, and os.replace
    would replace it all the same (read-only means the mode bits: root passes every access check)."""
    refuse_directory(path)
    if path.exists() and not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise DamagedFile(f"{path}: read-only (mode {stat.S_IMODE(path.stat().st_mode):04o}), and the sweep "
                          f"must replace it; make it writable (chmod u+w {path}) and run again, or write this "
                          "sweep elsewhere (hydra.run.dir=PATH).")


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` by `data` (creating its directory) so that no reader and no kill ever sees
    a partial file; WriteError if that fails, with the old version of `path` left as it was;
    DamagedFile if `path` is a directory or a read-only file (require_replaceable)."""
    require_replaceable(path)
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
