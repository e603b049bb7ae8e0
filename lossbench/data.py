"""MNIST and Fashion-MNIST as whole tensors, split the way Nielsen's book splits them.

    LOSSBENCH_DATA=../shared/data/mnist python -c "from lossbench.data import load_split; s = load_split(); print(s.train_x.shape, s.val_x.shape, s.test_x.shape)"

Reads the four standard IDX files (raw or gzipped) from one directory, checks
them, and returns the split of the book's mnist_loader.py (ch. 1; validation use in ch. 3):
the first 50,000 training images for training, the last 10,000 for validation,
the 10,000 test images for test. Pixels are uint8 / 255 in [0, 1], labels int64.

The directory, and finding (or downloading) the files in it, are
lossbench/data_files.py's: `root` (the sweep's `data.root`), else LOSSBENCH_DATA for
MNIST, else the default location where `python -m lossbench data install` puts them.

The decoded uint8 tensors are cached in the process and on disk (in
LOSSBENCH_CACHE, default ~/.cache/lossbench), keyed by each source file's path,
size and mtime, so only the first load of a directory pays for gunzip and
checks.
"""

import gzip
import hashlib
import io
import json
import math
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from lossbench.atomic import atomic_write
from lossbench.data_files import DATASETS, FILES, data_dir, source_files
from lossbench.devices import resolve_device
from lossbench.errors import UserError

Tensor = torch.Tensor

IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
REPLACE_HINT = "replace it with a complete copy"


@dataclass
class Split:
    """Train / validation / test: x [n, 784] floats in [0, 1], y [n] int64 class indices 0..9."""

    name: str
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor


def load_split(name: str = "mnist", root: str | os.PathLike | None = None, train_size: int | None = None,
               val_size: int = 10000, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Split:
    """The book's split of data set `name` ("mnist" | "fashion_mnist"), tensors on `device`.

    Validation is the last `val_size` images of the training file; training is
    its first `train_size` images (default: all before the validation block),
    so the two never overlap.
    """
    if name not in DATASETS:
        raise UserError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}.")
    device = resolve_device(device)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise UserError(f"dtype={dtype!r} is not a floating-point torch dtype; use e.g. torch.float32 or torch.float64.")
    directory, origin = data_dir(name, root)
    files = source_files(name, directory, origin)
    # path + size + mtime: a file replaced or rewritten since it was decoded misses both caches
    sources = tuple((role, str(path), st.st_size, st.st_mtime_ns) for role, path in files.items() for st in [path.stat()])
    decoded = _decoded(name, directory, sources)
    n = len(decoded["train_images"])
    train, val = _split_ranges(n, train_size, val_size)

    def pixels(images: Tensor) -> Tensor:
        # uint8 travels to the device first: a quarter of the bytes of float32
        return images.reshape(len(images), -1).to(device).to(dtype).div_(255)

    def labels(y: Tensor) -> Tensor:
        return y.to(device=device, dtype=torch.int64)

    return Split(
        name=name,
        train_x=pixels(decoded["train_images"][train]), train_y=labels(decoded["train_labels"][train]),
        val_x=pixels(decoded["train_images"][val]), val_y=labels(decoded["train_labels"][val]),
        test_x=pixels(decoded["test_images"]), test_y=labels(decoded["test_labels"]),
    )


def read_idx(path: Path, ndim: int) -> Tensor:
    """The uint8 array [d1, ..., d_ndim] stored in IDX file `path` (gzipped when its name ends in .gz)."""
    data = read_idx_bytes(path)
    kind = "images" if ndim == 3 else "labels"
    # IDX header: two zero bytes, type code 0x08 (unsigned byte), ndim; then ndim big-endian uint32 sizes
    magic = 0x0800 | ndim
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated IDX file: {len(data)} bytes, shorter than the {header}-byte header "
                        f"of an IDX file of {kind}; {REPLACE_HINT}.")
    found, *dims = struct.unpack(f">{1 + ndim}I", data[:header])
    if found != magic:
        raise UserError(f"{path}: wrong magic number 0x{found:08x}; an IDX file of {kind} starts with "
                        f"0x{magic:08x} (unsigned bytes, {ndim} dimension{'s' * (ndim > 1)}). Is it the right file?")
    size, body, shape = math.prod(dims), len(data) - header, " x ".join(map(str, dims))
    if body < size:
        raise UserError(f"{path}: truncated IDX file: its header declares {shape} = {size} "
                        f"bytes of {kind} but only {body} follow; {REPLACE_HINT}.")
    if body > size:
        raise UserError(f"{path}: corrupt IDX file: its header declares {shape} = {size} "
                        f"bytes of {kind} but {body} follow; {REPLACE_HINT}.")
    if size == 0:
        raise UserError(f"{path}: the IDX file holds no {kind} (its header declares {shape}).")
    # bytearray: frombuffer wants a writable buffer
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header, count=size).reshape(dims)


def read_idx_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise UserError(f"{path}: truncated or corrupt gzip file ({err}); {REPLACE_HINT}.") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror}).") from None


def decode(files: dict[str, Path]) -> dict[str, Tensor]:
    """The four files as uint8 tensors, checked: 28x28 images, labels 0..9, one label per image."""
    decoded = {role: read_idx(path, 3 if role.endswith("images") else 1) for role, path in files.items()}
    for part in ("train", "test"):
        images, labels = decoded[f"{part}_images"], decoded[f"{part}_labels"]
        images_file, labels_file = files[f"{part}_images"], files[f"{part}_labels"]
        if images.shape[1:] != IMAGE_SHAPE:
            raise UserError(f"{images_file}: images are {images.shape[1]}x{images.shape[2]}; "
                            f"MNIST-format images are {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}.")
        if len(images) != len(labels):
            raise UserError(f"{images_file} holds {len(images)} images but {labels_file} holds {len(labels)} "
                            f"labels; the two files must have one label per image.")
        out_of_range = (labels >= N_CLASSES).nonzero()
        if len(out_of_range):
            i = int(out_of_range[0])
            raise UserError(f"{labels_file}: label {int(labels[i])} at index {i} is out of range; "
                            f"labels are class indices 0..{N_CLASSES - 1}.")
    return decoded


def _split_ranges(n: int, train_size: int | None, val_size: int) -> tuple[slice, slice]:
    """Index ranges into the n-image training file: train first, validation the last val_size."""
    # the messages name the config keys (conf/data/) that set these sizes
    if not (isinstance(val_size, int) and 1 <= val_size < n):
        raise UserError(f"data.val_size={val_size!r} is out of range: validation is the last data.val_size images "
                        f"of the {n}-image training file, so it must be an integer from 1 to {n - 1}.")
    limit = n - val_size
    train_size = limit if train_size is None else train_size
    if not (isinstance(train_size, int) and 1 <= train_size <= limit):
        raise UserError(f"data.train_size={train_size!r} is out of range: training uses the first data.train_size "
                        f"images of the {n}-image training file, which must come before the validation block (its "
                        f"last data.val_size={val_size}), so it must be an integer from 1 to {limit}.")
    return slice(0, train_size), slice(limit, n)


def cache_dir() -> Path:
    """Where lossbench keeps what it can rebuild (decoded data sets, the compiled cpu_step.c):
    $LOSSBENCH_CACHE, else ~/.cache/lossbench."""
    return Path(os.environ.get("LOSSBENCH_CACHE") or "~/.cache/lossbench").expanduser()


@lru_cache(maxsize=4)
def _decoded(name: str, root: Path, sources: tuple[tuple[str, str, int, int], ...]) -> dict[str, Tensor]:
    """The checked uint8 tensors of `sources` (role, path, size, mtime_ns), from the disk cache when it is current."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    cache_file = cache_dir() / f"{name}-{digest}.pt"
    stamp = json.dumps(sources)
    try:
        cached = torch.load(cache_file, weights_only=True)
        if cached["sources"] == stamp:
            return {role: cached[role] for role in FILES}
    except Exception:  # absent, torn or foreign: a miss, rebuilt and overwritten below
        pass
    decoded = decode({role: Path(path) for role, path, *_ in sources})
    _write_cache(cache_file, {"sources": stamp, **decoded})
    return decoded


def _write_cache(path: Path, contents: dict) -> None:
    """torch.save `contents` to the cache file, atomically: a concurrent reader never sees half a file."""
    buffer = io.BytesIO()
    torch.save(contents, buffer)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, buffer.getvalue())
    except (OSError, UserError) as err:  # the cache only saves time
        warnings.warn(f"lossbench: cannot write the data cache {path} ({err}); each new process decodes the IDX "
                      f"files again.", stacklevel=3)
