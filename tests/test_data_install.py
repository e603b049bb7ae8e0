"""Tests of `python -m lossbench data install`: copied or downloaded, checked against MNIST's md5, then installed.

    python -m pytest tests/test_data_install.py

The tests marked `mnist` copy the real files from LOSSBENCH_DATA (conftest.py defaults it to
../shared/data/mnist); none goes online (torchvision's downloaders are replaced).
"""

import gzip
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from lossbench import data_install
from lossbench.data import load_split
from lossbench.data_files import FILES
from lossbench.errors import UserError

pytestmark = pytest.mark.usefixtures("isolated_data")
MNIST_DIR = Path(os.environ["LOSSBENCH_DATA"])


def installed(tmp_path) -> Path:
    return tmp_path / "xdg" / "lossbench" / "mnist"


@pytest.mark.mnist
def test_install_copies_checks_and_reports(tmp_path, monkeypatch):
    monkeypatch.delenv("LOSSBENCH_DATA")
    monkeypatch.chdir(MNIST_DIR.parent)
    report = data_install.install(MNIST_DIR.name)  # a relative source
    target = installed(tmp_path)
    assert report.startswith(f"installed MNIST from {MNIST_DIR.name} into {target}; each file decodes and matches")
    assert "train-images-idx3-ubyte.gz: 60000 x 28 x 28" in report and "t10k-labels-idx1-ubyte.gz: 10000" in report
    assert sorted(path.name for path in target.iterdir()) == sorted(f"{name}.gz" for name in FILES.values())
    assert [path.name for path in target.parent.iterdir()] == ["mnist"]  # no staging directory left
    assert torch.bincount(load_split().test_y).tolist()[:2] == [980, 1135]  # found with no root, no env
    assert data_install.install(str(target)).startswith(f"installed MNIST from {target}")  # installing it again is harmless


@pytest.mark.mnist
def test_install_refuses_a_file_that_is_not_mnist_and_keeps_the_earlier_installation(tmp_path):
    source = tmp_path / "altered"
    source.mkdir()
    for path in MNIST_DIR.glob("*-ubyte.gz"):
        (source / path.name).write_bytes(path.read_bytes())
    labels = bytearray(gzip.decompress((source / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[-1] = (labels[-1] + 1) % 10  # still a valid IDX file of labels 0..9, but not MNIST's
    (source / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    earlier = installed(tmp_path)
    earlier.mkdir(parents=True)
    (earlier / "marker").write_text("an earlier installation")
    with pytest.raises(UserError, match=rf"{source}/t10k-labels-idx1-ubyte.gz: the md5 of its uncompressed bytes is "
                                        r"[0-9a-f]{32}, not MNIST's 27ae3e4e09519cfbb04c329615203637: .* nothing was installed"):
        data_install.install(str(source))
    assert [path.name for path in earlier.iterdir()] == ["marker"]
    assert [path.name for path in earlier.parent.iterdir()] == ["mnist"]


def test_install_from_a_directory_without_the_files_names_it_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=rf"cannot install MNIST from {tmp_path}/empty: it lacks train-images-idx3-ubyte"):
        data_install.install("empty")
    assert not (tmp_path / "xdg" / "lossbench" / "mnist").exists()


def install_fake_download_url(monkeypatch, fetch):
    """torchvision.datasets.utils.download_url that runs `fetch(url, path)` instead of going online."""
    utils = types.ModuleType("torchvision.datasets.utils")
    utils.download_url = lambda url, root, filename: fetch(url, Path(root) / filename)
    monkeypatch.setitem(sys.modules, "torchvision.datasets.utils", utils)


@pytest.mark.mnist
def test_install_from_a_url_downloads_with_torchvision(tmp_path, monkeypatch):
    urls = []

    def mirror(url, path):  # a mirror that serves the shared copy
        urls.append(url)
        path.write_bytes((MNIST_DIR / url.rsplit("/", 1)[1]).read_bytes())

    install_fake_download_url(monkeypatch, mirror)
    report = data_install.install("https://mirror.example/mnist/")
    assert urls == [f"https://mirror.example/mnist/{name}.gz" for name in FILES.values()]
    assert report.startswith(f"installed MNIST from https://mirror.example/mnist/ into {installed(tmp_path)}")


def test_install_from_a_url_offline_or_without_torchvision_says_so(tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r"cannot install MNIST from https://mirror.example/mnist: torchvision, which "
                                        r"downloads them, cannot be imported .*pip install lossbench\[download\]"):
        data_install.install("https://mirror.example/mnist")

    def offline(url, path):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    install_fake_download_url(monkeypatch, offline)
    with pytest.raises(UserError, match=r"downloading them with torchvision failed \(OSError: .*name resolution\)\. "
                                        r"Download the four files .* yourself"):
        data_install.install("https://mirror.example/mnist")
    assert not installed(tmp_path).exists()


@pytest.mark.mnist
def test_install_without_a_source_uses_torchvisions_mirrors(tmp_path, fake_torchvision):
    def download(root):  # torchvision.datasets.MNIST(root, download=True) puts them in ROOT/MNIST/raw
        (root / "MNIST" / "raw").mkdir(parents=True)
        for path in MNIST_DIR.glob("*-ubyte.gz"):
            (root / "MNIST" / "raw" / path.name).write_bytes(path.read_bytes())

    fake_torchvision(download)
    assert data_install.install(None).startswith(f"installed MNIST from torchvision's MNIST mirrors into {installed(tmp_path)}")


def test_data_install_without_the_files_is_one_message(run_cli, tmp_path):
    code, _, stderr = run_cli("data", "install", "nowhere")
    assert code == 2 and stderr == (f"error: cannot install MNIST from {tmp_path / 'nowhere'}: it does not exist. "
                                    "Give the directory that holds train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                                    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each raw or .gz).\n")
