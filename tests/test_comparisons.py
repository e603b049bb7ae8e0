"""Tests of the paired comparisons, their ranking and the per-pair profiles, against hand computation.

    python -m pytest tests/test_comparisons.py
"""

import numpy as np
import pandas as pd
import pytest

from lossbench import comparisons, statistics
from lossbench.results import load


def test_paired_comparison_matches_hand_computation_matched_on_seed_not_row_order(make_run, write_sweep, tmp_path):
    # peaks by seed; seed 4 of softmax_nll diverged and seed 5 exists for softmax_nll only: matched seeds 0-3.
    # differences 0.01, 0.03, -0.01, 0.02: mean 0.0125, sd 0.0170783, t = 1.46385 on 3 df, two-sided p = 0.239443,
    # half-width t_{0.975,3} sd / 2 = 3.182446 * 0.0085391 = 0.0271753: interval [-0.0146753, 0.0396753].
    # Rows are written out of seed order: pairing by row order would give other differences.
    ce = {3: 0.97, 0: 0.95, 2: 0.94, 1: 0.96, 4: 0.99}
    nll = {5: 0.90, 1: 0.93, 0: 0.94, 3: 0.95, 2: 0.95}
    runs = [make_run("sigmoid_ce", 0.5, seed, [0.8, peak, peak - 0.01]) for seed, peak in ce.items()]
    runs += [make_run("softmax_nll", 1.0, seed, [0.8, peak, peak - 0.01]) for seed, peak in nll.items()]
    runs.insert(3, make_run("softmax_nll", 1.0, 4, [0.8, 0.99, 0.99], diverged_at=3))
    write_sweep(tmp_path, runs)
    runs, epochs = load.load_results([tmp_path])
    assert runs["seed"].tolist() == [3, 0, 2, 4, 1, 4, 5, 1, 0, 3, 2]
    compared, notes = comparisons.paired_comparisons(runs, statistics.summarize(runs, epochs))
    assert notes.empty and sorted(compared["metric"]) == ["peak_test_acc", "val_selected_test_acc"]
    for row in compared.itertuples():  # val = test here, so both metrics give the same numbers
        assert (row.group_id, row.pair, row.other, row.lr, row.other_lr, row.n) == ("g1", "sigmoid_ce", "softmax_nll",
                                                                                    0.5, 1.0, 4)
        assert row.mean_diff == pytest.approx(0.0125)
        assert (row.ci_low, row.ci_high) == (pytest.approx(-0.0146753, abs=1e-6), pytest.approx(0.0396753, abs=1e-6))
        assert row.p_value == pytest.approx(0.239443, abs=1e-6) and row.p_holm == pytest.approx(row.p_value)


def test_holm_adjusts_within_the_family_and_leaves_nan_out():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, 0.04 -> running maximum 0.03, 0.06, 0.06
    adjusted = comparisons.holm([0.04, 0.01, np.nan, 0.03])
    assert adjusted[[0, 1, 3]].tolist() == pytest.approx([0.06, 0.03, 0.06]) and np.isnan(adjusted[2])
    assert comparisons.holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_ranks_count_only_intervals_that_exclude_zero():
    rows = pd.DataFrame([("a", "b", -0.001, 0.02), ("a", "c", 0.01, 0.03), ("b", "c", -0.005, 0.02),
                         ("d", "a", 0.001, 0.002)], columns=["pair", "other", "ci_low", "ci_high"])
    rows["metric"] = "peak_test_acc"
    # d beats a; a beats c; a-b and b-c tie: d and b are not shown worse than anyone
    assert comparisons.ranks(rows, ["a", "b", "c", "d"], "peak_test_acc") == {"a": 2, "b": 1, "c": 2, "d": 1}
    flipped = rows.assign(ci_low=-rows["ci_high"], ci_high=-rows["ci_low"])  # other - pair: the other way round
    assert comparisons.ranks(flipped, ["a", "b", "c", "d"], "peak_test_acc") == {"a": 2, "b": 1, "c": 1, "d": 2}


def test_pair_profile_robustness_speed_and_reliability(make_run, write_sweep, tmp_path):
    # mean peaks: lr 0.1 0.946, 0.3 0.955 (best, also on validation), 1 0.9475 (seed 2 diverged), 3 0.55:
    # band = lrs within 1 point of 0.955 = 0.1..1 (half a point would keep 0.3 alone), robustness 10; in it
    # 7 runs, 1 diverged, 0 stuck. At lr 0.3 both runs first reach 95% at epoch 2 and never 97%.
    peaks = {0.1: [0.946, 0.946], 0.3: [0.955, 0.955], 1.0: [0.955, 0.94], 3.0: [0.5, 0.6]}
    runs = [make_run("sigmoid_ce", lr, seed, [0.8, peak, peak - 0.01]) for lr, values in peaks.items()
            for seed, peak in enumerate(values)]
    write_sweep(tmp_path, runs + [make_run("sigmoid_ce", 1.0, 2, [0.8, 0.97, 0.9], diverged_at=3)])
    runs, epochs = load.load_results([tmp_path])
    summary = statistics.summarize(runs, epochs)
    profile = comparisons.pair_profiles(runs, epochs, summary, pd.DataFrame(columns=comparisons.COMPARISON_COLUMNS)).iloc[0]
    assert (profile["lr"], profile["band_lr_low"], profile["band_lr_high"]) == (0.3, 0.1, 1.0)
    assert profile["robustness"] == pytest.approx(10.0) and profile["band_lrs"] == 3
    assert (profile["band_runs"], profile["band_stuck"], profile["band_diverged"]) == (7, 0, 1)
    assert profile["unreliable"] == pytest.approx(1 / 7)
    assert (profile["good_level"], profile["reach_good_n"], profile["reach_good_epochs_mean"]) == (0.95, 2, 2.0)
    assert (profile["high_level"], profile["reach_high_n"], profile["learned_level"]) == (0.97, 0, 0.90)
    assert profile["rank_val_selected"] == 1 and profile["rank_peak"] == 1


def test_stuck_runs_in_the_band_count_as_unreliable(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [make_run("sigmoid_mse", 3.0, 0, [0.8, 0.95, 0.95]),
                           make_run("sigmoid_mse", 3.0, 1, [0.8, 0.95, 0.95]),
                           make_run("sigmoid_mse", 3.0, 2, [0.5, 0.6, 0.6])])
    runs, epochs = load.load_results([tmp_path])
    summary = statistics.summarize(runs, epochs)
    profile = comparisons.pair_profiles(runs, epochs, summary, pd.DataFrame(columns=comparisons.COMPARISON_COLUMNS)).iloc[0]
    assert (profile["band_runs"], profile["band_stuck"], profile["unreliable"]) == (3, 1, pytest.approx(1 / 3))


@pytest.mark.parametrize("dataset,accuracies,levels", [
    ("mnist", [0.95, 0.95, 0.6, 0.91], (0.90, 0.95, 0.97)),
    ("fashion_mnist", [0.85, 0.85, 0.5, 0.81], (0.80, 0.85, 0.87)),  # MNIST's less 10 points: the same profile
])
def test_stuck_and_speed_are_measured_at_the_data_sets_levels(make_run, write_sweep, tmp_path, dataset, accuracies,
                                                              levels):
    # one lr, 4 runs: two reach the good level at epoch 2, one is stuck, one learned but is not good
    write_sweep(tmp_path, [make_run("sigmoid_mse", 3.0, seed, [0.3, acc, acc], dataset=dataset)
                           for seed, acc in enumerate(accuracies)])
    runs, epochs = load.load_results([tmp_path])
    summary = statistics.summarize(runs, epochs)
    profile = comparisons.pair_profiles(runs, epochs, summary, pd.DataFrame(columns=comparisons.COMPARISON_COLUMNS)).iloc[0]
    assert tuple(profile[["learned_level", "good_level", "high_level"]]) == levels
    assert (profile["band_runs"], profile["band_stuck"], profile["unreliable"]) == (4, 1, 0.25)
    assert (profile["reach_good_n"], profile["reach_good_epochs_mean"], profile["reach_high_n"]) == (2, 2.0, 0)
