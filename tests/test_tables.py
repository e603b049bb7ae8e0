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
