"""Tests of the statistics of a sweep's runs on small hand-made sweeps with known answers.

    python -m pytest tests/test_statistics.py
"""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from lossbench import data, statistics, tables
from lossbench.errors import UserError
from lossbench.results import load


def summarize_dir(directory):
    runs, epochs = load.load_results([directory])
    return statistics.summarize(runs, epochs).set_index(["pair", "lr"])


def test_mean_std_and_t_interval_match_hand_computation(make_run, write_sweep, tmp_path):
    # peaks 0.90, 0.92, 0.94: mean 0.92, sd 0.02, half-width t_{0.975,2} * sd / sqrt(3) = 4.302653 * 0.011547 = 0.049683
    write_sweep(tmp_path, [make_run("sigmoid_ce", 0.5, seed, [0.8, peak, peak - 0.01])
                           for seed, peak in enumerate([0.90, 0.92, 0.94])])
    cell = summarize_dir(tmp_path).loc[("sigmoid_ce", 0.5)]
    assert cell["seeds"] == 3 and cell["diverged"] == 0 and cell["n"] == 3
    assert cell["peak_mean"] == pytest.approx(0.92)
    assert cell["peak_std"] == pytest.approx(0.02)
    assert cell["peak_ci95"] == pytest.approx(0.049683, abs=1e-6)
    assert cell["final_mean"] == pytest.approx(0.91)
    assert cell["final_ci95"] == pytest.approx(0.049683, abs=1e-6)


def test_epochs_to_a_level_counts_runs_that_reach_it(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [make_run("softmax_nll", 0.1, 0, [0.85, 0.91, 0.96]),
                           make_run("softmax_nll", 0.1, 1, [0.92, 0.93, 0.94])])
    cell = summarize_dir(tmp_path).loc[("softmax_nll", 0.1)]
    assert (cell["learned_level"], cell["reach_learned_n"], cell["reach_learned_epochs_mean"]) == (0.90, 2, 1.5)
    assert (cell["good_level"], cell["reach_good_n"], cell["reach_good_epochs_mean"]) == (0.95, 1, 3.0)


def test_fashion_mnist_runs_are_measured_at_its_own_levels(make_run, write_sweep, tmp_path):
    # the MNIST test's accuracies less 10 points: on Fashion-MNIST they mean the same (levels 80% and 85%)
    write_sweep(tmp_path, [make_run("softmax_nll", 0.1, 0, [0.75, 0.81, 0.86], dataset="fashion_mnist"),
                           make_run("softmax_nll", 0.1, 1, [0.82, 0.83, 0.84], dataset="fashion_mnist")])
    cell = summarize_dir(tmp_path).loc[("softmax_nll", 0.1)]
    assert (cell["learned_level"], cell["reach_learned_n"], cell["reach_learned_epochs_mean"]) == (0.80, 2, 1.5)
    assert (cell["good_level"], cell["reach_good_n"], cell["reach_good_epochs_mean"]) == (0.85, 1, 3.0)
    text = tables.display_table(summarize_dir(tmp_path).reset_index())
    assert text[["epochs to 80%", "epochs to 85%"]].values.tolist() == [["2/2 at 1.5", "1/2 at 3.0"]]


def test_every_data_set_has_levels_and_an_unknown_one_is_a_clear_error(make_run, write_sweep, tmp_path):
    assert set(statistics.LEVELS) == set(data.DATASETS)
    assert statistics.LEVELS["mnist"] == statistics.Levels(learned=0.90, good=0.95, high=0.97)  # the issue's
    write_sweep(tmp_path, [make_run("softmax_nll", 0.1, 0, [0.85, 0.91, 0.96], dataset="kmnist")])
    with pytest.raises(UserError, match="dataset 'kmnist' in runs.csv has no accuracy levels.*mnist, fashion_mnist"):
        summarize_dir(tmp_path)


def test_one_seed_has_no_interval_and_says_so(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [make_run("sigmoid_ce", 0.5, 0, [0.9, 0.95, 0.94])])
    summary = statistics.summarize(*load.load_results([tmp_path]))
    assert summary["n"].tolist() == [1] and summary["peak_ci95"].isna().all()
    assert "95.00 (n=1, no CI)" in tables.terminal_summary(summary)


def test_diverged_runs_are_counted_and_excluded(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [make_run("sigmoid_mse", 3.0, 0, [0.9, 0.93, 0.94]),
                           make_run("sigmoid_mse", 3.0, 1, [0.9, 0.95, 0.96]),
                           make_run("sigmoid_mse", 3.0, 2, [0.99, 0.99, 0.99], diverged_at=2),
                           make_run("sigmoid_mse", 30.0, 0, [0.5, 0.6, 0.7], diverged_at=1)])
    summary = summarize_dir(tmp_path)
    cell = summary.loc[("sigmoid_mse", 3.0)]
    assert (cell["seeds"], cell["diverged"], cell["n"]) == (3, 1, 2)
    assert cell["peak_mean"] == pytest.approx(0.95)
    gone = summary.loc[("sigmoid_mse", 30.0)]
    assert (gone["seeds"], gone["diverged"], gone["n"]) == (1, 1, 0) and math.isnan(gone["peak_mean"])
    assert "all diverged" in tables.terminal_summary(summary.reset_index())


def test_best_lr_uses_validation_not_test_and_avoids_diverging_lrs(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [
        # lr 0.1: better test accuracy, worse validation accuracy
        make_run("sigmoid_ce", 0.1, 0, test=[0.90, 0.97, 0.97], val=[0.90, 0.94, 0.94]),
        make_run("sigmoid_ce", 0.5, 0, test=[0.90, 0.95, 0.95], val=[0.90, 0.96, 0.96]),
        # lr 2.0: the best validation accuracy, but one of its seeds diverged
        make_run("sigmoid_ce", 2.0, 0, test=[0.90, 0.95, 0.95], val=[0.90, 0.98, 0.98]),
        make_run("sigmoid_ce", 2.0, 1, test=[0.90, 0.95, 0.95], diverged_at=2)])
    summary = summarize_dir(tmp_path)
    assert summary.index[summary["best_lr"]].tolist() == [("sigmoid_ce", 0.5)]
    assert summary.loc[("sigmoid_ce", 0.5), "best_val_mean"] == pytest.approx(0.96)


def test_best_lr_falls_back_to_diverging_lrs_when_all_diverge_somewhere(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [make_run("linear_mse", lr, seed, [0.8, acc, acc], diverged_at=2 if seed else 0)
                           for lr, acc in [(0.01, 0.85), (0.1, 0.88)] for seed in (0, 1)])
    summary = summarize_dir(tmp_path)
    assert summary.index[summary["best_lr"]].tolist() == [("linear_mse", 0.1)]


def test_mixed_configs_are_grouped_not_pooled(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [make_run("sigmoid_ce", 0.5, 0, [0.9, 0.95, 0.95]),
                           make_run("sigmoid_ce", 0.5, 0, [0.9, 0.97, 0.97], sizes="784-100-10"),
                           make_run("sigmoid_ce", 0.5, 1, [0.9, 0.96, 0.96], sizes="784-100-10", train_size=None)])
    summary = statistics.summarize(*load.load_results([tmp_path]))
    assert len(summary) == 3 and summary["seeds"].tolist() == [1, 1, 1]
    assert summary["group"].tolist() == [
        "784-100-10 init=large batch=10 epochs=3 l2=0 mnist train=1000 float32",
        "784-100-10 init=large batch=10 epochs=3 l2=0 mnist train=all float32",
        "784-30-10 init=large batch=10 epochs=3 l2=0 mnist train=1000 float32"]
    assert summary["group_id"].tolist() == ["g1", "g2", "g3"]
    assert summary["best_lr"].all()


def test_slowdown_gradients_and_lr_ratio(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [
        make_run("sigmoid_mse", 3.0, 0, [0.9, 0.95, 0.95], out_grad=0.01, hidden_grad=0.04),
        make_run("sigmoid_mse", 3.0, 1, [0.9, 0.95, 0.95], out_grad=0.03, hidden_grad=0.04),
        make_run("sigmoid_mse", 1.0, 0, [0.9, 0.94, 0.94]),
        make_run("sigmoid_ce", 0.5, 0, [0.9, 0.96, 0.96], out_grad=0.3, hidden_grad=0.1),
        make_run("sigmoid_ce", 0.5, 1, [0.9, 0.96, 0.96], out_grad=0.3, hidden_grad=0.1, diverged_at=3),
        make_run("softmax_nll", 0.5, 0, [0.9, 0.96, 0.96], sizes="784-10")])
    runs, epochs = load.load_results([tmp_path])
    summary = statistics.summarize(runs, epochs)
    table = statistics.slowdown(runs, epochs, summary, first_epochs=2).set_index(["pair", "lr"])
    mse = table.loc[("sigmoid_mse", 3.0)]
    assert mse["n"] == 2 and mse["best_lr"]
    assert mse["out_grad_b"] == pytest.approx(0.02) and mse["out_grad_w"] == pytest.approx(0.04)
    assert mse["out_hidden_ratio"] == pytest.approx((0.25 + 0.75) / 2)
    assert mse["saturated_init"] == pytest.approx(0.3) and mse["saturated_first"] == pytest.approx((0.15 + 0.1) / 2)
    assert table.loc[("sigmoid_ce", 0.5), "n"] == 1  # the diverged seed is left out
    assert table.loc[("sigmoid_ce", 0.5), "out_hidden_ratio"] == pytest.approx(3.0)
    assert math.isnan(table.loc[("softmax_nll", 0.5), "out_hidden_ratio"])  # 784-10: no hidden layer
    ratios = statistics.best_lr_ratio(summary)
    assert ratios[["lr_sigmoid_mse", "lr_sigmoid_ce", "lr_ratio"]].values.tolist() == [[3.0, 0.5, 6.0]]


def test_seed_distribution_against_brute_force():
    peaks = [0.95, 0.97, 0.94, 0.96]
    runs = pd.DataFrame({"status": ["ok"] * 4 + ["diverged"], "peak_test_acc": peaks + [0.99],
                         "final_test_acc": [0.94] * 4 + [0.1], "val_selected_test_acc": [0.93] * 4 + [0.1]})
    stats = statistics.seed_distribution(runs, book=0.9542)
    assert (stats["n"], stats["n_diverged"]) == (4, 1)
    assert stats["mean"] == pytest.approx(0.955) and stats["median"] == pytest.approx(0.955)
    assert stats["std"] == pytest.approx(np.std(peaks, ddof=1))
    assert stats["book_percentile"] == 50.0  # two of four runs (0.94, 0.95) at or below 95.42%
    # the maxima of the four triples: 0.96 once, 0.97 three times
    assert stats["best_of_k_mean"] == pytest.approx(0.9675)
    triples = [max(t) for t in itertools.combinations(peaks, 3)]
    assert stats["best_of_k_std"] == pytest.approx(np.std(triples))
    assert stats["best_of_k_book_percentile"] == 0.0
    assert stats["final_mean"] == pytest.approx(0.94) and stats["val_selected_mean"] == pytest.approx(0.93)
    assert math.isnan(statistics.seed_distribution(runs.iloc[:2], best_of=3)["best_of_k_mean"])
