"""Shared test setup and fixtures: real MNIST from ../shared/data/mnist unless LOSSBENCH_DATA says otherwise
(tests marked `mnist` skip without it), a decoded-data cache inside pytest's temporary directory, never
~/.cache, and the fixtures several test files use."""

import logging
import os
import sys
import types
from pathlib import Path

import pytest

from lossbench import cli

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def pytest_configure(config):
    os.environ.setdefault("LOSSBENCH_DATA", str(SHARED_MNIST))


def pytest_collection_modifyitems(config, items):
    """Tests marked `mnist` read the MNIST files: skipped, saying where they were looked for, without them."""
    if Path(os.environ["LOSSBENCH_DATA"]).is_dir():
        return
    skip = pytest.mark.skip(reason=f"MNIST not found at {os.environ['LOSSBENCH_DATA']} (set LOSSBENCH_DATA)")
    for item in items:
        if item.get_closest_marker("mnist"):
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _decoded_data_cache(tmp_path_factory):
    if "LOSSBENCH_CACHE" not in os.environ:
        os.environ["LOSSBENCH_CACHE"] = str(tmp_path_factory.mktemp("lossbench-cache"))
    yield


@pytest.fixture
def run_cli(capsys, tmp_path, monkeypatch):
    """`python -m lossbench ARGS` in-process, in an empty working directory: (status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # Hydra configures logging; give pytest's back

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


# --- the benchmark's data: MNIST's shape, a few hundred examples --------------------------------------------------
def _shrunk(split):
    return type(split)("synthetic", split.train_x[:300], split.train_y[:300], split.val_x[:50], split.val_y[:50],
                       split.test_x[:50], split.test_y[:50])


@pytest.fixture
def small_split():
    """A few hundred synthetic examples instead of 70,000: a run's shape, not its timing, is under test."""
    from lossbench import timing
    return _shrunk(timing.synthetic_split())


@pytest.fixture
def small_data(monkeypatch):
    """The benchmark's synthetic data (timing.synthetic_split), shrunk as small_split."""
    from lossbench import timing
    full = timing.synthetic_split
    monkeypatch.setattr(timing, "synthetic_split", lambda: _shrunk(full()))


@pytest.fixture
def default_sweep():
    """The default sweep's ensembles, as `python -m lossbench sweep` builds them."""
    from lossbench import config, timing
    return timing.sweep_ensembles(config.compose_config())


# --- the data layer: isolated caches and a torchvision that never goes online ------------------------------------
@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """A fresh disk cache and default data location under tmp_path, an empty in-process cache, and no
    torchvision (CI's offline path)."""
    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` raise ImportError
    from lossbench import data
    data._decoded.cache_clear()


@pytest.fixture
def fake_torchvision(monkeypatch):
    """install(download): a torchvision.datasets.MNIST whose constructor runs `download(root)` instead of going
    online."""
    def install(download):
        datasets = types.ModuleType("torchvision.datasets")
        datasets.MNIST = lambda root, **kwargs: download(Path(root))
        torchvision = types.ModuleType("torchvision")
        torchvision.datasets = datasets
        monkeypatch.setitem(sys.modules, "torchvision", torchvision)
        monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)

    return install
