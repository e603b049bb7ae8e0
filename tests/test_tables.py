"""Tests of the statistics as text: how an accuracy, an interval, a count reaching a threshold and a ratio read.

    python -m pytest tests/test_tables.py
"""

import math

import pandas as pd

from lossbench import tables


def test_an_accuracy_reads_in_percent_with_its_interval_or_why_it_has_none():
    assert tables.percent_stat(0.95123, 0.00456, 3) == "95.12 ± 0.46"
    assert tables.percent_stat(0.95123, math.nan, 1) == "95.12 (n=1, no CI)"
    assert tables.percent_stat(math.nan, math.nan, 0) == "all diverged"


def test_differences_are_signed_points_and_missing_numbers_a_dash():
    assert (tables.points(0.0125), tables.points(-0.003)) == ("+1.25", "-0.30")
    assert (tables.number(math.nan, ".2f"), tables.number(0.1234, ".2f")) == ("-", "0.12")
    assert (tables.reach(2, 3.5, 3), tables.reach(0, math.nan, 3), tables.reach(0, math.nan, 0)) == (
        "2/3 at 3.5", "0/3", "-")


def test_the_summary_table_marks_the_best_lr_and_counts_runs_reaching_a_threshold():
    cells = pd.DataFrame({"pair": ["sigmoid_ce"] * 2, "lr": [0.5, 3.0], "best_lr": [True, False], "seeds": [3, 3],
                          "diverged": [0, 3], "n": [3, 0], "best_val_mean": [0.951, math.nan],
                          **{f"{name}_mean": [0.95, math.nan] for name in ("peak", "final", "val_selected")},
                          **{f"{name}_ci95": [0.01, math.nan] for name in ("peak", "final", "val_selected")},
                          "learned_level": [0.9, 0.9], "reach_learned_n": [3, 0], "reach_learned_epochs_mean": [1.0, math.nan],
                          "good_level": [0.95, 0.95], "reach_good_n": [2, 0], "reach_good_epochs_mean": [4.5, math.nan]})
    text = tables.display_table(cells)
    assert text["lr"].tolist() == ["0.5 *", "3"]
    assert text["peak %"].tolist() == ["95.00 ± 1.00", "all diverged"]
    assert text["best val %"].tolist() == ["95.10", "-"]
    assert text["epochs to 95%"].tolist() == ["2/3 at 4.5", "-"]


def test_the_lr_ratio_says_when_it_could_not_be_measured():
    assert tables.lr_ratio_text(pd.DataFrame()).startswith("Not measured")
    ratios = pd.DataFrame({"group_id": ["g1"], "lr_sigmoid_mse": [3.0], "lr_sigmoid_ce": [0.5], "lr_ratio": [6.0]})
    assert tables.lr_ratio_text(ratios).splitlines()[0] == "g1: 3 / 0.5 = 6"


def takeaway_profiles(pairs, means, ranks):
    return pd.DataFrame({"pair": pairs, "val_selected_mean": means, "rank_val_selected": ranks})


def test_a_first_place_without_a_paired_interval_is_undecided_not_tied():
    # one seed: every pair ranks 1 because no comparison could be made, not because an interval covers 0
    profiles = takeaway_profiles(["sigmoid_ce", "softmax_nll", "sigmoid_mse"], [0.95, 0.96, 0.94], [1, 1, 1])
    no_rows = pd.DataFrame(columns=["metric", "pair", "other", "mean_diff", "ci_low", "ci_high"])
    assert tables.ranking_takeaway(profiles, no_rows) == (
        "val-selected: softmax_nll has the highest mean (96.00%); undecided against sigmoid_ce, sigmoid_mse (fewer "
        "than 2 matched seeds, so no paired interval: the comparison needs 2 or more seeds)")
    # softmax_nll and sigmoid_ce compared (a tie), sigmoid_mse not (its matched seeds are missing)
    tie = pd.DataFrame({"metric": ["val_selected_test_acc"], "pair": ["softmax_nll"], "other": ["sigmoid_ce"],
                        "mean_diff": [0.01], "ci_low": [-0.01], "ci_high": [0.03]})
    assert tables.ranking_takeaway(profiles, tie) == (
        "val-selected: softmax_nll has the highest mean (96.00%), tied with sigmoid_ce (intervals cover 0); undecided "
        "against sigmoid_mse (fewer than 2 matched seeds, so no paired interval: the comparison needs 2 or more seeds)")


def test_a_tie_and_the_last_pairs_gap_come_from_the_intervals():
    profiles = takeaway_profiles(["sigmoid_ce", "softmax_nll", "linear_mse"], [0.95, 0.96, 0.90], [1, 1, 3])
    rows = pd.DataFrame({"metric": "val_selected_test_acc", "pair": ["softmax_nll", "softmax_nll", "sigmoid_ce"],
                         "other": ["sigmoid_ce", "linear_mse", "linear_mse"], "mean_diff": [0.01, 0.06, 0.05],
                         "ci_low": [-0.01, 0.05, 0.04], "ci_high": [0.03, 0.07, 0.06]})
    assert tables.ranking_takeaway(profiles, rows) == (
        "val-selected: softmax_nll leads (96.00%), tied with sigmoid_ce (intervals cover 0); linear_mse is 6.00 "
        "points behind [5.00, 7.00]")
