"""`python -m lossbench data install DIR_OR_URL`: put MNIST where every command finds it, checked.

    python -m lossbench data install ../shared/data/mnist

The default location is $XDG_DATA_HOME/lossbench/mnist (~/.local/share/lossbench/mnist), where
lossbench/data_files.py looks for MNIST when neither data.root nor LOSSBENCH_DATA is set. Nothing is
installed unless all four files decode (the data layer's checks) and match MNIST's published
md5; an earlier installation is replaced only then, in one rename.
"""

import argparse
import hashlib
import shutil
import tempfile
from pathlib import Path

from lossbench.data_files import FILES, absolute, default_dir, download, find_files, missing_files_problem
from lossbench.errors import UserError

# md5 of each uncompressed MNIST file, as published (the shared copy's README lists them; its
# test files' .gz are byte-identical to torchvision's): what `data install` checks a copy against
MNIST_MD5 = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}


def install(source: str | None) -> str:
    """Put MNIST's four files into default_dir("mnist"), checked; the report for the user.

    source: a directory holding them (raw or .gz, or in MNIST/raw), an http(s) URL of a mirror
    (the four .gz files under it, downloaded with torchvision), or None for torchvision's own
    mirrors. Nothing is installed unless all four files decode and match MNIST's checksums; an
    earlier installation is replaced only then, in one rename.
    """
    target = default_dir("mnist")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".mnist-install-"))
    except OSError as err:
        raise UserError(f"cannot write {target.parent} ({err.strerror or err}); set XDG_DATA_HOME to a "
                        "writable directory (lossbench installs into $XDG_DATA_HOME/lossbench/mnist).") from None
    try:
        files = _fetch(source, staging / "downloaded")
        shapes = _checked(files)
        ready = staging / "mnist"
        ready.mkdir()
        for path in files.values():
            shutil.copyfile(path, ready / path.name)
        if target.exists():
            target.rename(staging / "replaced")
        ready.rename(target)
    except OSError as err:
        raise UserError(f"cannot install MNIST into {target} ({err}); nothing was changed there.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    lines = [f"installed MNIST from {source or MIRRORS} into {target}; each file decodes and matches MNIST's published md5:"]
    lines += [f"  {files[role].name}: {' x '.join(map(str, shape))}" for role, shape in shapes.items()]
    lines.append("Every lossbench command reads MNIST from there when neither data.root nor LOSSBENCH_DATA is set.")
    return "\n".join(lines)


MIRRORS = "torchvision's MNIST mirrors"  # where `data install` without a source downloads from


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _fetch(source: str | None, into: Path) -> dict[str, Path]:
    """The four files of `source` (see install): found in its directory, or downloaded into `into`."""
    if source is not None and not _is_url(source):
        directory = absolute(source)
        files = find_files("mnist", directory)
        problem = missing_files_problem("mnist", directory, files)
        if problem:
            raise UserError(f"cannot install MNIST from {directory}: it {problem}. Give the directory that "
                            f"holds {', '.join(FILES.values())} (each raw or .gz).")
        return files
    into.mkdir()
    note = download("mnist", into) if source is None else _download_from(source, into)
    files = find_files("mnist", into)
    if None in files.values():
        raise UserError(f"cannot install MNIST from {source or MIRRORS}: {note}. Download the four files "
                        f"({', '.join(f'{base}.gz' for base in FILES.values())}) yourself and run "
                        "`python -m lossbench data install DIR` on their directory.")
    return files


def _download_from(url: str, into: Path) -> str:
    """Download the four .gz files under `url` into `into` with torchvision; say what happened."""
    try:
        from torchvision.datasets.utils import download_url
    except Exception as err:  # as in _download: a torchvision built for another torch fails in many ways
        return (f"torchvision, which downloads them, cannot be imported ({type(err).__name__}: {err}); "
                "`pip install lossbench[download]` installs it")
    try:
        for base in FILES.values():
            download_url(f"{url.rstrip('/')}/{base}.gz", str(into), filename=f"{base}.gz")
    except Exception as err:  # offline, 404, server gone: all mean "provide the files yourself"
        return f"downloading them with torchvision failed ({type(err).__name__}: {err})"
    return "torchvision's download did not produce them"


def _checked(files: dict[str, Path]) -> dict[str, tuple[int, ...]]:
    """Each role's shape, once all four files decode (the data layer's checks) and match MNIST_MD5."""
    from lossbench.data import decode, read_idx_bytes  # torch: here, so that `data --help` imports none
    decoded = decode(files)
    for role, path in files.items():
        digest = hashlib.md5(read_idx_bytes(path)).hexdigest()
        if digest != MNIST_MD5[role]:
            raise UserError(f"{path}: the md5 of its uncompressed bytes is {digest}, not MNIST's {MNIST_MD5[role]}: "
                            f"it is not the standard {FILES[role]} (another data set, or damaged), so nothing "
                            "was installed. For other data in this format, point data.root or LOSSBENCH_DATA at it.")
    return {role: tuple(decoded[role].shape) for role in files}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench data",
        description=f"Install MNIST where every command finds it: {default_dir('mnist')} "
                    "($XDG_DATA_HOME/lossbench/mnist), used when neither data.root nor LOSSBENCH_DATA is set.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="install")
    install_parser = actions.add_parser(
        "install", help="copy (or download) MNIST's four IDX files there, check and report them",
        description="Copy MNIST's four IDX files (raw or .gz) from a directory, or download them, check that "
                    "each decodes and matches MNIST's published md5, and put them in the default location.")
    install_parser.add_argument("source", nargs="?", metavar="DIR_OR_URL",
                                help="a directory holding the four files, or the URL of a mirror holding the "
                                     ".gz files (downloaded with torchvision: pip install lossbench[download]); "
                                     "none: torchvision's own MNIST mirrors")
    args = parser.parse_args(argv)
    print(install(args.source))
    return 0
