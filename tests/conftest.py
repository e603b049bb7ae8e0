"""Shared test setup: real MNIST from ../shared/data/mnist unless LOSSBENCH_DATA says otherwise,
and a decoded-data cache inside pytest's temporary directory, never ~/.cache."""

import logging
import os
from pathlib import Path

import pytest

from lossbench import cli

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def pytest_configure(config):
    os.environ.setdefault("LOSSBENCH_DATA", str(SHARED_MNIST))


@pytest.fixture(autouse=True, scope="session")
def _decoded_data_cache(tmp_path_factory):
    if "LOSSBENCH_CACHE" not in os.environ:
        os.environ["LOSSBENCH_CACHE"] = str(tmp_path_factory.mktemp("lossbench-cache"))
    yield


def mnist_available() -> bool:
    return Path(os.environ["LOSSBENCH_DATA"]).is_dir()


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
