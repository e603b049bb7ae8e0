"""Tests of the data layer: the IDX reader and checks on small files made here, the real MNIST, the caches.

    python -m pytest tests/test_data.py

The real-data tests read LOSSBENCH_DATA or ../shared/data/mnist beside the
repository and skip when neither exists; the Fashion-MNIST test reads Debian's
dataset-fashion-mnist and skips without it.
"""

import gzip
import importlib.abc
import os
import struct
import sys
from pathlib import Path

import pytest
import torch

from lossbench import data
from lossbench.data import load_split, read_idx
from lossbench.data_files import DEBIAN_FASHION_DIR, FILES
from lossbench.errors import UserError

MNIST_DIR = Path(os.environ.get("LOSSBENCH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")


pytestmark = pytest.mark.usefixtures("isolated_data")


def idx_bytes(array: torch.Tensor, magic: int | None = None) -> bytes:
    """`array` (uint8 values) as an IDX file: magic, big-endian sizes, the bytes."""
    magic = 0x0800 | array.dim() if magic is None else magic
    return struct.pack(f">{1 + array.dim()}I", magic, *array.shape) + bytes(array.flatten().tolist())


def write_idx(path: Path, array: torch.Tensor, magic: int | None = None) -> Path:
    payload = idx_bytes(array, magic)
    # mtime=0: identical content gives identical .gz bytes, whatever the clock
    path.write_bytes(gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)
    return path


def fake_dataset(n_train=30, n_test=10, seed=0):
    """Four uint8 arrays shaped like MNIST's files, small; labels cycle through 0..9."""
    g = torch.Generator().manual_seed(seed)
    return {
        "train_images": torch.randint(0, 256, (n_train, 28, 28), generator=g, dtype=torch.uint8),
        "train_labels": torch.arange(n_train, dtype=torch.uint8) % 10,
        "test_images": torch.randint(0, 256, (n_test, 28, 28), generator=g, dtype=torch.uint8),
        "test_labels": torch.arange(n_test, dtype=torch.uint8) % 10,
    }


def write_dataset(directory: Path, arrays: dict, gz: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for role, array in arrays.items():
        write_idx(directory / (FILES[role] + (".gz" if gz else "")), array)
    return directory


# --- the IDX reader -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_raw_and_gzip(tmp_path, suffix):
    images = fake_dataset()["train_images"]
    path = write_idx(tmp_path / f"images{suffix}", images)
    assert torch.equal(read_idx(path, 3), images)


def test_truncated_raw_file_names_file_and_sizes(tmp_path):
    path = tmp_path / FILES["train_images"]
    path.write_bytes(idx_bytes(fake_dataset()["train_images"])[:-100])
    with pytest.raises(UserError, match=r"truncated IDX file: its header declares 30 x 28 x 28 = 23520 bytes of "
                                        r"images but only 23420 follow") as err:
        read_idx(path, 3)
    assert str(path) in str(err.value)


def test_trailing_bytes_are_corrupt(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(torch.arange(5, dtype=torch.uint8)) + b"\0")
    with pytest.raises(UserError, match="corrupt IDX file: .* 5 bytes of labels but 6 follow"):
        read_idx(path, 1)


def test_header_shorter_than_declared(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(struct.pack(">2I", 0x0803, 30))
    with pytest.raises(UserError, match="truncated IDX file: 8 bytes, shorter than the 16-byte header"):
        read_idx(path, 3)


@pytest.mark.parametrize("damage, expected", [
    (lambda gz: gz[: len(gz) // 2], "Compressed file ended before the end-of-stream marker"),
    (lambda gz: gz[:100] + bytes(b ^ 0xFF for b in gz[100:200]) + gz[200:], "truncated or corrupt gzip"),
    (lambda gz: b"not gzip at all", "Not a gzipped file"),
])
def test_bad_gzip_names_file_and_problem(tmp_path, damage, expected):
    path = tmp_path / f"{FILES['train_images']}.gz"
    path.write_bytes(damage(gzip.compress(idx_bytes(fake_dataset()["train_images"]), mtime=0)))
    with pytest.raises(UserError, match=expected) as err:
        read_idx(path, 3)
    assert str(path) in str(err.value) and "truncated or corrupt gzip file" in str(err.value)


def test_wrong_magic_number(tmp_path):
    # a labels file where images are expected: the magic's last byte is the number of dimensions
    path = write_idx(tmp_path / FILES["train_images"], torch.arange(10, dtype=torch.uint8))
    with pytest.raises(UserError, match=r"wrong magic number 0x00000801; an IDX file of images starts with "
                                        r"0x00000803") as err:
        read_idx(path, 3)
    assert str(path) in str(err.value)


# --- checks across files, through load_split --------------------------------------------------------------------
def test_image_label_count_mismatch(tmp_path):
    arrays = fake_dataset()
    arrays["test_labels"] = arrays["test_labels"][:-1]
    root = write_dataset(tmp_path / "d", arrays)
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte.gz holds 10 images but .*t10k-labels-idx1-ubyte.gz "
                                        r"holds 9 labels"):
        load_split(root=root, val_size=10)


def test_label_out_of_range(tmp_path):
    arrays = fake_dataset()
    arrays["train_labels"][7] = 10
    root = write_dataset(tmp_path / "d", arrays)
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte.gz: label 10 at index 7 is out of range"):
        load_split(root=root, val_size=10)


def test_wrong_image_size(tmp_path):
    arrays = fake_dataset()
    arrays["test_images"] = torch.zeros(10, 32, 32, dtype=torch.uint8)
    root = write_dataset(tmp_path / "d", arrays)
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte.gz: images are 32x32; MNIST-format images are 28x28"):
        load_split(root=root, val_size=10)


# --- the split --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_split_is_first_train_last_val_and_test(tmp_path, gz):
    arrays = fake_dataset()
    split = load_split(root=write_dataset(tmp_path / "d", arrays, gz=gz), val_size=10)
    assert torch.equal(split.train_x, arrays["train_images"][:20].reshape(20, 784).float() / 255)
    assert torch.equal(split.val_x, arrays["train_images"][20:].reshape(10, 784).float() / 255)
    assert torch.equal(split.test_x, arrays["test_images"].reshape(10, 784).float() / 255)
    assert torch.equal(split.train_y, arrays["train_labels"][:20].long())
    assert torch.equal(split.val_y, arrays["train_labels"][20:].long())
    assert torch.equal(split.test_y, arrays["test_labels"].long())
    assert split.train_x.dtype == torch.float32 and split.train_y.dtype == torch.int64


def test_train_size_val_size_and_dtype(tmp_path):
    arrays = fake_dataset()
    split = load_split(root=write_dataset(tmp_path / "d", arrays), train_size=5, val_size=8, dtype=torch.float64)
    assert split.train_x.dtype == torch.float64
    assert torch.equal(split.train_y, arrays["train_labels"][:5].long())
    assert torch.equal(split.val_y, arrays["train_labels"][22:].long())


@pytest.mark.parametrize("kwargs, expected", [
    (dict(train_size=21, val_size=10), r"data\.train_size=21 is out of range: .* from 1 to 20"),  # would overlap val
    (dict(train_size=0, val_size=10), r"data\.train_size=0 is out of range"),
    (dict(val_size=30), r"data\.val_size=30 is out of range: .* from 1 to 29"),
    (dict(val_size=0), r"data\.val_size=0 is out of range"),
    (dict(val_size=2.5), r"data\.val_size=2.5 is out of range"),
    (dict(name="svhn"), r"unknown data set 'svhn'; choose one of: mnist, fashion_mnist"),
    (dict(dtype=torch.int64), r"dtype=torch.int64 is not a floating-point torch dtype"),
    (dict(device="gpu"), r"device='gpu' is not a device"),
])
def test_bad_arguments(tmp_path, kwargs, expected):
    with pytest.raises(UserError, match=expected):
        load_split(root=write_dataset(tmp_path / "d", fake_dataset()), **{"val_size": 10, **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_without_cuda(tmp_path):
    with pytest.raises(UserError, match="sees no CUDA device"):
        load_split(root=write_dataset(tmp_path / "d", fake_dataset()), val_size=10, device="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_equal_cpu(tmp_path):
    root = write_dataset(tmp_path / "d", fake_dataset())
    cpu, cuda = load_split(root=root, val_size=10), load_split(root=root, val_size=10, device="cuda")
    assert cuda.train_x.is_cuda and cuda.test_y.is_cuda
    assert torch.equal(cuda.train_x.cpu(), cpu.train_x) and torch.equal(cuda.val_y.cpu(), cpu.val_y)


# --- missing files and downloading ------------------------------------------------------------------------------
def assert_says_how_to_provide(message: str):
    for name in FILES.values():
        assert name in message
    assert "raw or gzipped (.gz)" in message and "data.root=DIR" in message
    assert "pip install lossbench[download]" in message


def test_missing_directory_message(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError) as err:
        load_split(root=missing)
    message = str(err.value)
    assert message.startswith(f"MNIST data directory {missing} (data.root) does not exist; no download was "
                              f"tried: torchvision cannot be imported")
    assert "LOSSBENCH_DATA=DIR" in message
    assert_says_how_to_provide(message)


def test_missing_files_are_named(tmp_path):
    root = write_dataset(tmp_path / "d", fake_dataset())
    (root / f"{FILES['test_labels']}.gz").unlink()
    with pytest.raises(UserError, match=rf"MNIST data directory {root} \(data.root\) lacks t10k-labels-idx1-ubyte "
                                        rf"\(looked for "):
        load_split(root=root)


def test_no_directory_given_means_the_default_location(tmp_path, monkeypatch):
    monkeypatch.delenv("LOSSBENCH_DATA", raising=False)
    default = tmp_path / "xdg" / "lossbench" / "mnist"
    with pytest.raises(UserError) as err:
        load_split()
    message = str(err.value)
    assert message.startswith(f"MNIST data directory {default} (the default location: neither data.root nor "
                              "LOSSBENCH_DATA is set) does not exist")
    assert "`python -m lossbench data install DIR_OR_URL`" in message
    assert_says_how_to_provide(message)
    arrays = fake_dataset()
    write_dataset(default, arrays)
    assert torch.equal(load_split(val_size=10).test_y, arrays["test_labels"].long())


def test_root_beats_lossbench_data_beats_the_default_location(tmp_path, monkeypatch):
    sets = {name: fake_dataset(seed=seed) for seed, name in enumerate(["root", "env", "default"])}
    for name, arrays in sets.items():
        write_dataset(tmp_path / name, arrays)
    (tmp_path / "xdg" / "lossbench").mkdir(parents=True)
    (tmp_path / "default").rename(tmp_path / "xdg" / "lossbench" / "mnist")
    monkeypatch.setenv("LOSSBENCH_DATA", str(tmp_path / "env"))
    chosen = {"root": load_split(root=tmp_path / "root", val_size=10), "env": load_split(val_size=10)}
    monkeypatch.setenv("LOSSBENCH_DATA", "")  # empty: not set
    chosen["default"] = load_split(val_size=10)
    for name, split in chosen.items():
        assert torch.equal(split.test_x, sets[name]["test_images"].reshape(10, 784).float() / 255), name


@pytest.mark.parametrize("how", ["root", "env"])
def test_relative_paths_are_shown_absolute(tmp_path, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOSSBENCH_DATA", "data/mnist")
    with pytest.raises(UserError) as err:
        load_split(root="data/mnist" if how == "root" else None)
    origin = "data.root" if how == "root" else "from LOSSBENCH_DATA"
    assert str(err.value).startswith(f"MNIST data directory {tmp_path / 'data' / 'mnist'} ({origin}) does not exist")


def test_fashion_mnist_message_names_debian_package(tmp_path):
    with pytest.raises(UserError) as err:
        load_split("fashion_mnist", root=tmp_path)
    message = str(err.value)
    assert_says_how_to_provide(message)
    assert "apt-get install dataset-fashion-mnist" in message and DEBIAN_FASHION_DIR in message
    assert "LOSSBENCH_DATA" not in message  # it points at MNIST


def test_torchvision_that_fails_to_import_is_reported(tmp_path, monkeypatch):
    class BrokenTorchvision(importlib.abc.MetaPathFinder):
        """Like a torchvision built for another torch: its import raises something other than ImportError."""

        def find_spec(self, fullname, path, target=None):
            if fullname == "torchvision":
                raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.delitem(sys.modules, "torchvision")
    monkeypatch.setattr(sys, "meta_path", [BrokenTorchvision(), *sys.meta_path])
    with pytest.raises(UserError, match=r"torchvision cannot be imported \(RuntimeError: operator torchvision::nms"):
        load_split(root=tmp_path)


def test_downloads_with_torchvision_into_its_raw_folder(tmp_path, fake_torchvision):
    arrays = fake_dataset()
    # where torchvision puts them: ROOT/MNIST/raw, raw files beside the .gz
    fake_torchvision(lambda root: write_dataset(root / "MNIST" / "raw", arrays, gz=False))
    split = load_split(root=tmp_path / "new", val_size=10)
    assert torch.equal(split.test_y, arrays["test_labels"].long())


def test_failed_download_is_reported(tmp_path, fake_torchvision):
    def offline(root):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    fake_torchvision(offline)
    with pytest.raises(UserError, match=r"downloading them there with torchvision failed \(OSError: .*name resolution"):
        load_split(root=tmp_path)


# --- the caches -------------------------------------------------------------------------------------------------
def cache_files(tmp_path):
    return sorted((tmp_path / "cache").glob("*.pt"))


def test_second_load_comes_from_disk_cache_and_equals_first(tmp_path, monkeypatch):
    root = write_dataset(tmp_path / "d", fake_dataset())
    first = load_split(root=root, val_size=10)
    assert len(cache_files(tmp_path)) == 1
    data._decoded.cache_clear()  # as in a new process

    def no_decoding(*args):
        raise AssertionError("decoded the IDX files again instead of reading the cache")

    monkeypatch.setattr(data, "read_idx", no_decoding)
    second = load_split(root=root, val_size=10)
    for field in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, field), getattr(second, field))


def test_in_process_cache_needs_no_disk(tmp_path):
    root = write_dataset(tmp_path / "d", fake_dataset())
    load_split(root=root, val_size=10)
    cache_files(tmp_path)[0].unlink()
    load_split(root=root, val_size=10)
    assert cache_files(tmp_path) == []  # a second decode would have written it again


def test_changed_file_invalidates_both_caches(tmp_path):
    arrays = fake_dataset()
    root = write_dataset(tmp_path / "d", arrays, gz=False)
    assert torch.equal(load_split(root=root, val_size=10).test_y, arrays["test_labels"].long())
    arrays["test_labels"] = 9 - arrays["test_labels"]
    path = write_idx(root / FILES["test_labels"], arrays["test_labels"])
    # same size, so only the mtime tells; moved on by 1 s in case the file system's clock is coarse
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert torch.equal(load_split(root=root, val_size=10).test_y, arrays["test_labels"].long())
    data._decoded.cache_clear()
    assert torch.equal(load_split(root=root, val_size=10).test_y, arrays["test_labels"].long())


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    arrays = fake_dataset()
    root = write_dataset(tmp_path / "d", arrays)
    load_split(root=root, val_size=10)
    [cache_file] = cache_files(tmp_path)
    cache_file.write_bytes(cache_file.read_bytes()[:1000])
    data._decoded.cache_clear()
    assert torch.equal(load_split(root=root, val_size=10).test_y, arrays["test_labels"].long())
    data._decoded.cache_clear()
    assert torch.load(cache_file, weights_only=True)["test_labels"].tolist() == arrays["test_labels"].tolist()


def test_unwritable_cache_warns_and_loads(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path / "a_file" / "cache"))  # mkdir under a file fails
    with pytest.warns(UserWarning, match="cannot write the data cache"):
        split = load_split(root=write_dataset(tmp_path / "d", fake_dataset()), val_size=10)
    assert len(split.train_y) == 20


# --- the real data ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    if not MNIST_DIR.is_dir():
        pytest.skip(f"real MNIST not found at {MNIST_DIR}: set LOSSBENCH_DATA or put shared/data/mnist beside the repo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOSSBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        return load_split(root=MNIST_DIR)


def test_mnist_split_sizes_and_types(mnist):
    assert [len(t) for t in (mnist.train_x, mnist.train_y, mnist.val_x, mnist.val_y, mnist.test_x, mnist.test_y)] \
        == [50000, 50000, 10000, 10000, 10000, 10000]
    assert mnist.train_x.shape[1] == 784 and mnist.train_x.dtype == torch.float32 and mnist.test_y.dtype == torch.int64
    assert 0 <= mnist.train_x.min() and mnist.train_x.max() == 1


def test_mnist_pixel_means(mnist):
    assert mnist.train_x.double().mean().item() == pytest.approx(0.130961, abs=1e-5)
    whole_training_file = torch.cat([mnist.train_x, mnist.val_x]).double()
    assert whole_training_file.mean().item() == pytest.approx(0.130660, abs=1e-5)


def test_mnist_label_counts(mnist):
    # the published per-digit counts of MNIST's training and test files
    training_file = torch.bincount(torch.cat([mnist.train_y, mnist.val_y]), minlength=10)
    assert training_file.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(mnist.test_y, minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.bincount(mnist.train_y, minlength=10).sum() == 50000


@pytest.mark.skipif(not Path(DEBIAN_FASHION_DIR).is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_defaults_to_debian_dir(monkeypatch):
    monkeypatch.setenv("LOSSBENCH_DATA", "/nonexistent")  # LOSSBENCH_DATA is MNIST's, not Fashion-MNIST's
    split = load_split("fashion_mnist")
    assert (len(split.train_y), len(split.val_y), len(split.test_y)) == (50000, 10000, 10000)
    # Fashion-MNIST is balanced: 6000 of each class in the training file, 1000 in the test file
    assert torch.bincount(torch.cat([split.train_y, split.val_y])).tolist() == [6000] * 10
    assert torch.bincount(split.test_y).tolist() == [1000] * 10
