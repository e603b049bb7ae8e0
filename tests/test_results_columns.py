"""Tests of the sweep directory's contract: run ids and their hashes, the columns, the rows from the trainer's metrics.

    python -m pytest tests/test_results_columns.py
"""

import numpy as np
import pandas as pd

from lossbench.results import columns


def test_run_id_and_hash_are_deterministic():
    settings = {"sizes": "784-30-10", "init": "large", "epochs": 30}
    h = columns.config_hash(settings)
    assert len(h) == 8 and h == columns.config_hash(dict(reversed(settings.items())))
    assert h != columns.config_hash(settings | {"epochs": 31})
    assert columns.run_id("sigmoid_ce", 0.5, 3, h) == f"sigmoid_ce_lr0.5_s3_{h}"
    assert columns.run_id("sigmoid_mse", 3.0, 0, h) == f"sigmoid_mse_lr3_s0_{h}"


def test_metric_columns():
    assert columns.metric_columns(2) == ["train_cost", "val_acc", "val_cost", "test_acc", "test_cost",
                                         "test_saturated", "grad_b1", "grad_w1", "grad_b2", "grad_w2"]


def test_epoch_rows_are_run_major_with_nan_for_missing_metrics():
    metrics = [{"val_acc": np.array([0.1, 0.2])},  # epoch 0: no training metrics
               {"val_acc": np.array([0.3, 0.4]), "train_cost": np.array([1.0, 2.0])}]
    rows = columns.epoch_rows(["a", "b"], metrics, ["train_cost", "val_acc"])
    assert rows["run_id"].tolist() == ["a", "a", "b", "b"] and rows["epoch"].tolist() == [0, 1, 0, 1]
    assert rows["val_acc"].tolist() == [0.1, 0.3, 0.2, 0.4]
    assert np.isnan(rows["train_cost"][0]) and rows["train_cost"][3] == 2.0


def test_run_outcomes_first_best_epochs_and_all_nan_runs():
    test = np.array([[0.1, 0.5, 0.5, 0.2], [np.nan] * 4, [0.3, 0.4, np.nan, np.nan]])
    val = np.array([[0.2, 0.1, 0.3, 0.3], [np.nan] * 4, [0.5, 0.1, np.nan, np.nan]])
    out = columns.run_outcomes(test, val)
    assert out["peak_test_acc"].tolist()[0::2] == [0.5, 0.4] and np.isnan(out["peak_test_acc"][1])
    assert out["peak_epoch"].tolist() == [2, pd.NA, 2]  # the first epoch reaching the peak
    assert out["val_selected_epoch"].tolist() == [3, pd.NA, 1]  # the first epoch with the best val acc
    assert out["val_selected_test_acc"].tolist()[0::2] == [0.5, 0.3]
    assert out["final_test_acc"][0] == 0.2 and np.isnan(out["final_test_acc"][2])  # diverged: no final
