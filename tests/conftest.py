"""Shared test setup and fixtures: real MNIST from ../shared/data/mnist unless LOSSBENCH_DATA says otherwise
(tests marked `mnist` skip without it), a decoded-data cache inside pytest's temporary directory, never
~/.cache, and the fixtures several test files use."""

import logging
import math
import os
import re
import shutil
import signal
import sys
import types
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from lossbench import cli
from lossbench.choices import PAIR_PARTS

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def pytest_configure(config):
    os.environ.setdefault("LOSSBENCH_DATA", str(SHARED_MNIST))
    # A shell starts a background job (`cmd &` without job control, nohup) with SIGINT ignored, and
    # an ignored signal stays ignored in every child: the sweeps that the Ctrl-C tests start would
    # never see it (seen: exit 0 instead of 130, a launcher still waiting 60 s later). A handler,
    # unlike SIG_IGN, is reset by exec, so the children get Python's usual KeyboardInterrupt.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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


@contextmanager
def _logging_kept():
    """Hydra configures logging for its job; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def logging_kept():
    """For a fixture wider than a test that runs lossbench in-process: `with logging_kept(): cli.main(...)`."""
    return _logging_kept


@pytest.fixture
def run_cli(capsys, tmp_path, monkeypatch):
    """`python -m lossbench ARGS` in-process, in an empty working directory: (status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    with _logging_kept():
        yield run


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


# --- verdict settings: hand-made sweeps of 4 pairs x 2 lrs x 3 seeds --------------------------------------------
# A verdict setting (tests/test_verdict.py, test_literature.py): peak test accuracy per (pair, lr) for seeds 0, 1, 2 (val = test, so the val-selected accuracy is the peak), or
# (peak, val-selected) where validation peaks an epoch later than test; None: the run diverged. The best lrs
# (validation): sigmoid_ce 0.5, softmax_nll 0.5, sigmoid_mse 1, linear_mse 0.5. sigmoid_mse peaks highest and
# ranks 2nd on val-selected accuracy.
VERDICT_PEAKS = {("sigmoid_ce", 0.5): [0.95, 0.96, 0.955], ("sigmoid_ce", 1.0): [0.93, 0.94, 0.935],
         ("softmax_nll", 0.5): [0.948, 0.962, 0.951], ("softmax_nll", 1.0): [0.92, 0.93, 0.925],
         ("sigmoid_mse", 0.5): [0.90, 0.91, 0.905], ("sigmoid_mse", 1.0): [(0.97, 0.94), (0.975, 0.945), (0.972, 0.942)],
         ("linear_mse", 0.5): [0.80, 0.50, 0.85], ("linear_mse", 1.0): [None, None, None]}
VERDICT_BEST = {"sigmoid_ce": 0.5, "softmax_nll": 0.5, "sigmoid_mse": 1.0, "linear_mse": 0.5}
VERDICT_CONFIG = "sweep:\n  pairs: [{pairs}]\n  lrs: [0.5, 1.0]\n  seeds: 3\nshard:\n  count: 1\n  index: 0\n"


@pytest.fixture
def write_setting(make_run, write_sweep):
    """write_setting(directory, peaks=verdict_peaks, keep=None, **config): a setting's sweep directory, config.yaml for the
    4 pairs x 2 lrs x 3 seeds grid and the first `keep` runs."""
    def run(pair, lr, seed, peak, **config):
        """make_run of one PEAKS entry: test accuracies 0.4, peak, then the val-selected one (or peak - 0.01)."""
        if peak is None:
            return make_run(pair, lr, seed, [0.4, 0.4, 0.4], diverged_at=2, **config)
        if isinstance(peak, tuple):
            return make_run(pair, lr, seed, [0.4, *peak], val=[0.4, 0.9, 0.95], **config)
        return make_run(pair, lr, seed, [0.4, peak, peak - 0.01], **config)

    def write(directory: Path, peaks=None, keep=None, **config) -> Path:
        peaks = VERDICT_PEAKS if peaks is None else peaks
        runs = [run(pair, lr, seed, peak, **config) for (pair, lr), values in peaks.items()
                for seed, peak in enumerate(values)]
        write_sweep(directory, runs[:keep])
        (directory / "config.yaml").write_text(VERDICT_CONFIG.format(pairs=", ".join(dict.fromkeys(p for p, _ in peaks))))
        return directory

    return write


@pytest.fixture
def verdict_root(tmp_path, write_setting):
    """A verdict results directory: mnist_large complete, mnist_default unfinished (10 of 24 runs)."""
    write_setting(tmp_path / "mnist_large")
    write_setting(tmp_path / "mnist_default", keep=10)  # unfinished: 10 of 24 runs
    return tmp_path




@pytest.fixture
def verdict_peaks():
    """The settings' accuracies per (pair, lr): a copy, for a test to change."""
    return dict(VERDICT_PEAKS)


@pytest.fixture
def verdict_best():
    """Each pair's best lr in a setting written with verdict_peaks."""
    return dict(VERDICT_BEST)


def _t_interval(values) -> tuple[float, float]:
    values = np.asarray(values)
    return values.mean(), stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))


@pytest.fixture
def t_interval():
    """t_interval(values): (mean, half-width of the two-sided 95% t-interval), by hand."""
    return _t_interval


@pytest.fixture
def paired():
    """paired(a, b): (mean, low, high) of a - b matched by index, with its 95% t-interval, by hand."""
    def interval(a, b) -> tuple[float, float, float]:
        mean, half = _t_interval(np.subtract(a, b))
        return mean, mean - half, mean + half

    return interval


# --- committed results, edited ---------------------------------------------------------------------------------------
@pytest.fixture
def edited_copy(tmp_path):
    """edited_copy(directory, pattern, replacement): a copy of `directory` whose README.md has its first match of
    `pattern` replaced (asserted to change it): what a hand edit of a generated table looks like."""
    def copy(directory: Path, pattern: str, replacement: str) -> Path:
        target = tmp_path / directory.name
        shutil.copytree(directory, target)
        readme = target / "README.md"
        edited = re.sub(pattern, replacement, readme.read_text(), count=1)
        assert edited != readme.read_text()
        readme.write_text(edited)
        return target

    return copy
