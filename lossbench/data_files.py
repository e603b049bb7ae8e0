"""Where the data sets' files are: their names, the directory each command reads, finding, downloading.

    python -c "from lossbench.data_files import default_dir; print(default_dir('mnist'))"

The directory: `root` (the sweep's `data.root`); else, for MNIST, the
environment variable LOSSBENCH_DATA, else the default location
$XDG_DATA_HOME/lossbench/mnist (~/.local/share/lossbench/mnist), where
`python -m lossbench data install DIR_OR_URL` puts the files, checked
(lossbench/data_install.py); for
Fashion-MNIST, where Debian's package dataset-fashion-mnist installs it
(LOSSBENCH_DATA points at MNIST). Missing files are downloaded into it by
torchvision when that imports and the network works. Reading them into
tensors is lossbench/data.py's.

torch-free, so that `python -m lossbench data --help` imports no torch.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from lossbench.errors import UserError

# role -> the file name every MNIST mirror, torchvision and Debian use
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@dataclass(frozen=True)
class Dataset:
    title: str  # for messages
    torchvision_class: str  # the torchvision.datasets class; it downloads into ROOT/<class>/raw


DATASETS = {
    "mnist": Dataset("MNIST", "MNIST"),
    "fashion_mnist": Dataset("Fashion-MNIST", "FashionMNIST"),
}


def default_dir(name: str) -> Path:
    """Where `data install` puts data set `name`, and where MNIST is read from when neither
    data.root nor LOSSBENCH_DATA is set: $XDG_DATA_HOME/lossbench/NAME, by default
    ~/.local/share/lossbench/NAME (data, not a cache: it cannot always be fetched again)."""
    return absolute(Path(os.environ.get("XDG_DATA_HOME") or "~/.local/share") / "lossbench" / name)


def absolute(path: str | os.PathLike) -> Path:
    """`path` with ~ expanded, made absolute from the working directory: what errors show."""
    return Path(os.path.abspath(Path(path).expanduser()))


def data_dir(name: str, root: str | os.PathLike | None) -> tuple[Path, str]:
    """The directory to read data set `name` from, and where that choice came from (for messages)."""
    if root not in (None, ""):
        return absolute(root), "data.root"
    if name != "mnist":
        return Path(DEBIAN_FASHION_DIR), "Debian's location, used when no root is given"
    if os.environ.get("LOSSBENCH_DATA"):
        return absolute(os.environ["LOSSBENCH_DATA"]), "from LOSSBENCH_DATA"
    return default_dir(name), "the default location: neither data.root nor LOSSBENCH_DATA is set"


def find_files(name: str, root: Path) -> dict[str, Path | None]:
    """Each role's file: raw before .gz (no gunzip), in root, then where torchvision downloads to."""
    places = (root, root / DATASETS[name].torchvision_class / "raw")
    return {role: next((path for place in places for path in (place / base, place / f"{base}.gz") if path.is_file()),
                       None)
            for role, base in FILES.items()}


def source_files(name: str, root: Path, origin: str) -> dict[str, Path]:
    files = find_files(name, root)
    if None in files.values():
        download_note = download(name, root)
        files = find_files(name, root)
        problem = missing_files_problem(name, root, files)
        if problem:
            raise UserError(f"{DATASETS[name].title} data directory {root} ({origin}) {problem}; "
                            f"{download_note}. {how_to_provide(name)}")
    return files


def missing_files_problem(name: str, root: Path, files: dict[str, Path | None]) -> str | None:
    """What keeps `root` from being data set `name`'s directory (files: what _find found), or None."""
    missing = [FILES[role] for role, path in files.items() if path is None]
    if not missing:
        return None
    if not root.exists():
        return "does not exist"
    if not root.is_dir():
        return "is not a directory"
    return (f"lacks {', '.join(missing)} (looked for each raw and as .gz, also in "
            f"{root / DATASETS[name].torchvision_class / 'raw'})")


def download(name: str, root: Path) -> str:
    """Try torchvision's downloader into root; say what happened, for the error message if files are still missing."""
    try:
        import torchvision.datasets
    except Exception as err:  # a torchvision built for another torch fails on import with all kinds of errors
        return f"no download was tried: torchvision cannot be imported ({type(err).__name__}: {err})"
    try:
        getattr(torchvision.datasets, DATASETS[name].torchvision_class)(str(root), download=True)
    except Exception as err:  # offline, unwritable root, server gone: all mean "provide the files yourself"
        return f"downloading them there with torchvision failed ({type(err).__name__}: {err})"
    return "torchvision's download did not produce them"


def how_to_provide(name: str) -> str:
    dataset = DATASETS[name]
    ways = []
    if name == "mnist":
        ways.append(f"`python -m lossbench data install DIR_OR_URL` copies them from a directory DIR (or "
                    f"downloads them from a mirror URL), checks them and puts them in {default_dir(name)}, "
                    "where every command looks when neither data.root nor LOSSBENCH_DATA is set")
    env = "set LOSSBENCH_DATA=DIR or " if name == "mnist" else ""
    ways += [f"{env}pass data.root=DIR to the sweep (root=DIR to load_split) for a directory DIR that holds them",
             "on a machine with network access, `pip install lossbench[download]` (torchvision) and lossbench "
             "downloads them into DIR"]
    if name == "fashion_mnist":
        ways.append(f"`apt-get install dataset-fashion-mnist` (Debian) puts them in {DEBIAN_FASHION_DIR}, "
                    f"the directory used when no root is given")
    return (f"lossbench reads {dataset.title} from the four standard IDX files, each raw or gzipped (.gz): "
            f"{', '.join(FILES.values())}. To provide them: " + "; or ".join(ways) + ".")
