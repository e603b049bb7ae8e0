"""Tests of the plots: what each figure shows, read back from its axes.

    python -m pytest tests/test_plots.py
"""

import numpy as np
import pandas as pd
import pytest

from lossbench import plots


def test_peak_plot_clips_intervals_and_says_who_peaks_highest(tmp_path):
    errors = plots.clipped_errors(pd.Series([0.05, 0.99, 0.5]), pd.Series([0.2, 0.05, np.nan]))
    assert errors.tolist() == [[pytest.approx(5), pytest.approx(5), 0], [pytest.approx(20), pytest.approx(1), 0]]
    cells = pd.DataFrame({"pair": ["sigmoid_ce", "softmax_nll", "softmax_nll"], "lr": [0.5, 1.0, 3.0],
                          "best_lr": [True, True, False], "n": [3, 3, 3], "peak_mean": [0.9549, 0.9527, 0.99],
                          "peak_ci95": [0.003, 0.003, 0.01]})
    assert plots.peak_takeaway(cells) == ("At the best lrs: sigmoid_ce peaks highest, 95.49% (η=0.5); "
                                             "softmax_nll -0.22 points")
    # the zoom spans the best-lr cells with their intervals (94.97..95.79) and 0.25 point more; lr 3 (99%) is out
    (x_low, x_high), (y_low, y_high) = plots.zoom_window(cells)
    assert (y_low, y_high) == (pytest.approx(94.72), pytest.approx(96.04))
    assert (x_low, x_high) == (pytest.approx(0.5 / 1.5), pytest.approx(1.0 * 1.5))


def test_seed_distribution_plot_marks_every_run(tmp_path):
    peaks = [0.95, 0.97, 0.94, 0.96, 0.6]
    runs = pd.DataFrame({"status": "ok", "peak_test_acc": peaks, "final_test_acc": peaks, "val_selected_test_acc": peaks})
    figure = plots.plot_seed_distribution("test", runs, book=0.9542, stuck_below=0.90)
    ax = figure.axes[0]
    marks = [len(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "o"]
    assert sum(marks) == 5  # four learned, one stuck (a mark of its own colour)
    assert ax.collections[0].get_segments()[-1][1][1] == pytest.approx(-0.8)  # the likeliest best of 3: the top run
    # 0.6, 0.94, 0.95 of 5 at or below the book; best of 3 is 0.95 in 1 of the C(5, 3) = 10 triples
    assert "at or above 60% of our single runs and 10% of our best-of-3 draws" in figure.get_suptitle()


def test_the_accuracy_plot_names_who_reaches_the_data_sets_good_level_first(make_run):
    made = [make_run("sigmoid_ce", 0.5, 0, [0.84, 0.86, 0.86], dataset="fashion_mnist"),
            make_run("softmax_nll", 0.5, 0, [0.85, 0.86, 0.86], dataset="fashion_mnist")]
    runs = pd.DataFrame([row for row, _ in made])
    epochs = pd.DataFrame([epoch for _, rows in made for epoch in rows])
    figure = plots.plot_accuracy("g1", runs, epochs, plots.pair_colors(runs["pair"]))
    assert "First to 85% on average: softmax_nll, epoch 1.0 (1 of 1 runs reach it)" in figure.get_suptitle()
