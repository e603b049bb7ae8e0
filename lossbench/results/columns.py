"""The sweep directory's contract: runs.csv's and epochs.csv's columns, what each cell may hold, the run id.

    python -c "from lossbench.results import columns; print(columns.RUN_COLUMNS, columns.metric_columns(2))"

A run's id names its pair, learning rate and seed and the hash of its settings (run_hash), so
equal settings give equal ids in any directory and a row can be checked against its own id.
epoch_rows and run_outcomes turn the trainer's per-epoch metrics into the CSVs' rows; the
columns are documented in docs/results.md ("Result files").
"""

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lossbench.choices import PAIR_PARTS, Init


@dataclass(frozen=True)
class Cell:
    """What a CSV column may hold: text (one of `choices`, or matching `pattern`; never empty), or
    a number in [low, high] (`above`: low itself excluded), whole if `whole`, empty only if `empty`."""

    number: bool = True
    whole: bool = False
    low: float = -math.inf
    high: float = math.inf
    above: bool = False
    empty: bool = False
    choices: tuple[str, ...] = ()
    pattern: str = ""


TEXT = Cell(number=False)
FRACTION = Cell(low=0.0, high=1.0, empty=True)  # an accuracy or a share of units; empty once diverged
MEASURE = Cell(low=0.0, empty=True)  # a cost or a gradient norm; empty at epoch 0 and once diverged
EPOCH = Cell(whole=True, low=1, empty=True)  # an epoch 1..E; empty where there is none
RUN_CELLS = {
    "run_id": TEXT, "pair": Cell(number=False, choices=tuple(sorted(PAIR_PARTS))), "activation": TEXT, "cost": TEXT,
    "lr": Cell(low=0.0, above=True), "seed": Cell(whole=True, low=0),
    "sizes": Cell(number=False, pattern=r"[0-9]+(-[0-9]+)+"),
    "init": Cell(number=False, choices=tuple(sorted(init.value for init in Init))),
    "batch_size": Cell(whole=True, low=1),
    "epochs": Cell(whole=True, low=1), "l2": Cell(low=0.0), "dataset": TEXT,
    "train_size": Cell(whole=True, low=1, empty=True),  # empty in hand-made CSVs; a sweep writes it
    "status": Cell(number=False, choices=("diverged", "ok")), "diverged_epoch": EPOCH,
    "peak_test_acc": FRACTION, "peak_epoch": EPOCH, "final_test_acc": FRACTION,
    "val_selected_test_acc": FRACTION, "val_selected_epoch": EPOCH,
    "wall_time_s": Cell(low=0.0), "device": TEXT, "dtype": Cell(number=False, choices=("float32", "float64")),
    "torch_version": TEXT,
}
RUN_COLUMNS = list(RUN_CELLS)
# The settings every run of a sweep shares, as the schema types them: with data.val_size they
# give the hash in a run_id (run_hash), so a run's row can be checked against its own id.
SETTINGS = {"sizes": str, "init": str, "batch_size": int, "epochs": int, "l2": float, "dataset": str,
            "train_size": int, "dtype": str}
BASE_METRICS = ["train_cost", "val_acc", "val_cost", "test_acc", "test_cost", "test_saturated"]


def metric_columns(n_layers: int) -> list[str]:
    """epochs.csv's metric columns for a network with n_layers weight layers (len(sizes) - 1)."""
    grads = [f"grad_{kind}{layer}" for layer in range(1, n_layers + 1) for kind in ("b", "w")]
    return BASE_METRICS + grads


def epoch_cells(n_layers: int) -> dict[str, Cell]:
    """epochs.csv's columns and what each may hold."""
    shares = {"val_acc", "test_acc", "test_saturated"}
    return {"run_id": TEXT, "epoch": Cell(whole=True, low=0)} | {
        column: FRACTION if column in shares else MEASURE for column in metric_columns(n_layers)}


def config_hash(settings: dict) -> str:
    """8 hex digits naming the non-grid settings (sizes, init, data, schedule, dtype) of a run."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def run_hash(settings: dict, val_size: int) -> str:
    """The hash in a run's id: its SETTINGS and the validation-set size, which changes its
    validation-selected numbers (so it is part of what the run is)."""
    return config_hash(settings | {"val_size": val_size})


def run_id(pair: str, lr: float, seed: int, settings_hash: str) -> str:
    return f"{pair}_lr{lr:g}_s{seed}_{settings_hash}"


# --- rows --------------------------------------------------------------------
def metric_table(metrics: list[dict[str, np.ndarray]], key: str, n_models: int) -> np.ndarray:
    """[M, E+1]: model m's `key` after epoch e (NaN where an epoch has no such metric, e.g. epoch 0's costs)."""
    return np.stack([np.asarray(m[key], dtype=np.float64) if key in m else np.full(n_models, np.nan)
                     for m in metrics], axis=1)


def epoch_rows(run_ids: list[str], metrics: list[dict[str, np.ndarray]], columns: list[str]) -> pd.DataFrame:
    """epochs.csv rows, run by run, epoch 0 (initialization) first; metrics[e] is epoch e's dict."""
    n_models, n_epochs = len(run_ids), len(metrics)
    rows = {"run_id": np.repeat(run_ids, n_epochs), "epoch": np.tile(np.arange(n_epochs), n_models)}
    return pd.DataFrame(rows | {key: metric_table(metrics, key, n_models).reshape(-1) for key in columns})


def _first_best(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of [M, E]: the first column holding the row's maximum (-1 if all NaN) and that maximum."""
    empty = np.isnan(values).all(axis=1)
    index = np.where(np.isnan(values), -np.inf, values).argmax(axis=1)
    best = np.take_along_axis(values, index[:, None], axis=1)[:, 0]
    return np.where(empty, -1, index), best


def run_outcomes(test_acc: np.ndarray, val_acc: np.ndarray) -> pd.DataFrame:
    """runs.csv's accuracy columns from [M, E] accuracies after epochs 1..E.

    peak = the best test accuracy and its first epoch; val-selected = the test accuracy
    at the first epoch with the best validation accuracy (early stopping on validation).
    """
    peak_index, peak = _first_best(test_acc)
    val_index, _ = _first_best(val_acc)
    val_selected = np.take_along_axis(test_acc, val_index[:, None], axis=1)[:, 0]

    def epoch(index: np.ndarray) -> pd.Series:  # column index -> epoch number; none if all NaN
        return pd.Series(index + 1, dtype="Int64").where(index >= 0)

    return pd.DataFrame({
        "peak_test_acc": np.where(peak_index >= 0, peak, np.nan),
        "peak_epoch": epoch(peak_index),
        "final_test_acc": test_acc[:, -1],
        "val_selected_test_acc": np.where(val_index >= 0, val_selected, np.nan),
        "val_selected_epoch": epoch(val_index),
    })
