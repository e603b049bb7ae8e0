"""Shared test setup and fixtures: real MNIST from ../shared/data/mnist unless LOSSBENCH_DATA says otherwise
(tests marked `mnist` skip without it), a decoded-data cache inside pytest's temporary directory, never
~/.cache, and the fixtures several test files use."""

import logging
import math
import os
import sys
import types
import zlib
from pathlib import Path

import pandas as pd
import pytest
import torch

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


# --- hand-made sweep directories: runs.csv and epochs.csv with known answers ----------------------------------------
RUN_CONFIG = dict(sizes="784-30-10", init="large", batch_size=10, epochs=3, l2=0.0, dataset="mnist",
              train_size=1000, dtype="float32")
PAIR_PARTS = {"sigmoid_mse": ("sigmoid", "quadratic"), "sigmoid_ce": ("sigmoid", "cross_entropy"),
              "softmax_nll": ("softmax", "log_likelihood"), "linear_mse": ("linear", "quadratic")}


def _make_run(pair, lr, seed, test, val=None, diverged_at=0, out_grad=0.2, hidden_grad=0.05, **config):
    """(runs.csv row, epochs.csv rows) of one run; `test`/`val`: accuracies of epochs 1..E.

    Epoch 0 has accuracy 0.1 and no gradients; grad_b{L} = out_grad and grad_b1 = hidden_grad at every
    trained epoch; a diverged run's accuracies are NaN from epoch `diverged_at` on.
    """
    config = {**RUN_CONFIG, **config, "epochs": len(test)}
    val = test if val is None else val
    run_id = f"{pair}_lr{lr:g}_s{seed}_{zlib.crc32(repr(sorted(config.items())).encode()):08x}"
    if diverged_at:
        test = [acc if epoch < diverged_at else math.nan for epoch, acc in enumerate(test, 1)]
        val = [acc if epoch < diverged_at else math.nan for epoch, acc in enumerate(val, 1)]
    trained = [epoch for epoch, acc in enumerate(test) if not math.isnan(acc)]  # 0-based
    selected = max(trained, key=val.__getitem__, default=None)  # the first epoch with the best val_acc
    peak = max(trained, key=test.__getitem__, default=None)
    activation, cost = PAIR_PARTS[pair]
    row = dict(run_id=run_id, pair=pair, activation=activation, cost=cost, lr=lr, seed=seed,
               sizes=config["sizes"], init=config["init"], batch_size=config["batch_size"],
               epochs=config["epochs"], l2=config["l2"], dataset=config["dataset"],
               train_size=config["train_size"], status="diverged" if diverged_at else "ok",
               diverged_epoch=diverged_at or None, peak_test_acc=math.nan if peak is None else test[peak],
               peak_epoch=None if peak is None else peak + 1, final_test_acc=test[-1],
               val_selected_test_acc=math.nan if selected is None else test[selected],
               val_selected_epoch=None if selected is None else selected + 1, wall_time_s=1.0,
               device="cpu", dtype=config["dtype"], torch_version="2.13.0")
    depth = len(config["sizes"].split("-")) - 1
    saturated = 0.3 if activation == "sigmoid" else math.nan
    epochs = [dict(run_id=run_id, epoch=0, train_cost=math.nan, val_acc=0.1, val_cost=1.0, test_acc=0.1,
                   test_cost=1.0, test_saturated=saturated,
                   **{f"grad_{kind}{layer}": math.nan for layer in range(1, depth + 1) for kind in "bw"})]
    for epoch, (test_acc, val_acc) in enumerate(zip(test, val), 1):
        grads = {f"grad_{kind}{layer}": hidden_grad for layer in range(1, depth) for kind in "bw"}
        grads |= {f"grad_b{depth}": out_grad, f"grad_w{depth}": 2 * out_grad}
        if math.isnan(test_acc):
            grads = dict.fromkeys(grads, math.nan)
        epochs.append(dict(run_id=run_id, epoch=epoch, train_cost=0.5, val_acc=val_acc, val_cost=0.5,
                           test_acc=test_acc, test_cost=0.5, test_saturated=saturated / (epoch + 1), **grads))
    return row, epochs


def _write_sweep(directory, runs):
    """runs.csv and epochs.csv in `directory` from make_run results."""
    directory.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([row for row, _ in runs]).to_csv(directory / "runs.csv", index=False)
    pd.DataFrame([epoch for _, epochs in runs for epoch in epochs]).to_csv(directory / "epochs.csv", index=False)
    return directory


@pytest.fixture
def make_run():
    """make_run(pair, lr, seed, test, val=None, diverged_at=0, ...): one run's (runs.csv row, epochs.csv rows)."""
    return _make_run


@pytest.fixture
def write_sweep():
    """write_sweep(directory, runs): runs.csv and epochs.csv of make_run results in `directory`."""
    return _write_sweep


# --- the trainer's data: small, learnable, float64 -----------------------------------------------------------------
def _learnable_split(n_train: int, n_eval: int = 100, seed: int = 0, dtype=torch.float64):
    """Images with MNIST's shape and range, labels that a linear map can partly learn."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + 2 * n_eval
    x = torch.rand(n, 784, generator=g, dtype=dtype)
    y = (x[:, :10] * torch.arange(1, 11, dtype=dtype)).argmax(1)
    from lossbench.data import Split
    return Split("synthetic", x[:n_train], y[:n_train], x[n_train:n_train + n_eval], y[n_train:n_train + n_eval],
                 x[n_train + n_eval:], y[n_train + n_eval:])


@pytest.fixture
def learnable_split():
    """learnable_split(n_train, n_eval=100, seed=0, dtype=float64): a Split of MNIST's shape, learnable in part."""
    return _learnable_split
