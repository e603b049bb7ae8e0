"""Shared test setup: real MNIST from ../shared/data/mnist unless LOSSBENCH_DATA says otherwise,
and a decoded-data cache inside pytest's temporary directory, never ~/.cache."""

import os
from pathlib import Path

import pytest

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
