"""Tests of the literature's claims measured from the verdict's sweeps: hand-made settings with known answers.

    python -m pytest tests/test_literature.py

The settings are conftest's (write_setting, verdict_root, verdict_peaks, verdict_best).
"""

import numpy as np
import pandas as pd
import pytest

from lossbench import comparisons, literature, statistics
from lossbench.results import load


def setting_frames(directory):
    runs, epochs = load.load_results([directory])
    summary = statistics.summarize(runs, epochs)
    compared, _ = comparisons.paired_comparisons(runs, summary)
    return runs, epochs, summary, compared


def test_bootstrap_without_resampling_gives_the_summarys_best_lr(verdict_best, verdict_root):
    runs, epochs, summary, _ = setting_frames(verdict_root / "mnist_large")
    timed = statistics.with_run_stats(runs, epochs)
    identity = np.arange(3)[None, :]
    for pair, lr in verdict_best.items():
        assert literature.bootstrap_best_lrs(timed, pair, np.arange(3), identity).tolist() == [lr]
    # drawing seed 1 only: sigmoid_mse's lrs 0.5 and 1 score 0.91 and 0.945
    assert literature.bootstrap_best_lrs(timed, "sigmoid_mse", np.arange(3), np.array([[1, 1, 1]])).tolist() == [1.0]


def test_bootstrap_breaks_ties_toward_the_smaller_lr_and_avoids_divergence(verdict_peaks, write_setting, tmp_path):
    peaks = dict(verdict_peaks)
    peaks["sigmoid_ce", 1.0] = peaks["sigmoid_ce", 0.5]  # a tie: the smaller lr, 0.5, as best_lr_flags
    peaks["softmax_nll", 1.0] = [0.99, None, 0.99]  # better, but seed 1 diverged: 0.5 unless seed 1 is not drawn
    runs, epochs, summary, _ = setting_frames(write_setting(tmp_path / "s", peaks))
    assert set(summary.loc[summary["best_lr"], ["pair", "lr"]].itertuples(index=False)) >= {
        ("sigmoid_ce", 0.5), ("softmax_nll", 0.5)}
    timed = statistics.with_run_stats(runs, epochs)
    draws = np.array([[0, 1, 2], [0, 2, 2]])
    assert literature.bootstrap_best_lrs(timed, "sigmoid_ce", np.arange(3), draws).tolist() == [0.5, 0.5]
    assert literature.bootstrap_best_lrs(timed, "softmax_nll", np.arange(3), draws).tolist() == [0.5, 1.0]


def test_nielsen_ratio_claim(verdict_root):
    runs, epochs, summary, _ = setting_frames(verdict_root / "mnist_large")
    [claim] = literature.nielsen_lr_ratio("mnist_large", runs, epochs, summary)
    figures, holds = claim.evaluate()
    assert figures["ratio"] == 2.0 and figures["grid step"] == pytest.approx(2.0)
    # every resample keeps the best lrs (the fixture's margins exceed every seed's spread): [2, 2]. Within half a grid
    # step (sqrt 2) of 6 would need 4.24 or more: does not hold.
    assert (figures["bootstrap 2.5%"], figures["bootstrap 97.5%"]) == (2.0, 2.0) and holds is False


def test_hui_belkin_claims_orient_the_difference(paired, verdict_peaks, verdict_root):
    runs, _, summary, comparisons = setting_frames(verdict_root / "mnist_large")
    accuracy, sensitivity = literature.hui_belkin("mnist_large", runs, summary, comparisons)
    figures, holds = accuracy.evaluate()
    mean, low, high = paired(verdict_peaks["linear_mse", 0.5], verdict_peaks["softmax_nll", 0.5])
    assert figures["linear_mse - softmax_nll (points)"] == pytest.approx(100 * mean)
    assert (figures["95% CI low"], figures["95% CI high"]) == (pytest.approx(100 * low), pytest.approx(100 * high))
    assert holds is None  # the interval (-70, +20 points) reaches beyond +-1 point on both sides
    figures, holds = sensitivity.evaluate()
    assert figures["ratio"] == pytest.approx(np.std(verdict_peaks["linear_mse", 0.5], ddof=1) / np.std(verdict_peaks["softmax_nll", 0.5], ddof=1))


def test_golik_claim_counts_stuck_and_diverged_runs_at_the_best_lrs(verdict_peaks, write_setting, tmp_path):
    peaks = dict(verdict_peaks)
    peaks["sigmoid_mse", 1.0] = [0.5, 0.6, 0.55]  # now 0.5 is sigmoid_mse's best lr: all 3 runs stuck there
    peaks["sigmoid_mse", 0.5] = [0.8, 0.85, 0.82]
    runs, _, summary, _ = setting_frames(write_setting(tmp_path / "s", peaks))
    [claim] = literature.golik("s", runs, summary)
    figures, holds = claim.evaluate()
    assert (figures["sigmoid_mse failed"], figures["sigmoid_mse runs"], figures["sigmoid_ce failed"]) == (3, 3, 0)
    assert figures["p (Fisher, one-sided)"] == pytest.approx(0.05) and holds is None  # 1 / C(6, 3) = 0.05: not < 0.05
    runs, _, summary, _ = setting_frames(write_setting(tmp_path / "t"))
    assert literature.golik("t", runs, summary)[0].evaluate()[1] is False  # no failures at all
    # the same accuracies on Fashion-MNIST: sigmoid_mse's 80-85% is a run that learned (its level is 80%)
    runs, _, summary, _ = setting_frames(write_setting(tmp_path / "f", peaks, dataset="fashion_mnist"))
    [claim] = literature.golik("f", runs, summary)
    figures, holds = claim.evaluate()
    assert (figures["sigmoid_mse failed"], figures["sigmoid_ce failed"], holds) == (0, 0, False)
    assert "peaked below 80%" in claim.criterion


def test_plateau_epochs_count_stalls_below_the_learned_level():
    epochs = pd.DataFrame({"run_id": ["a"] * 5 + ["b"] * 3 + ["c"] * 3, "epoch": [0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2],
                           "val_acc": [0.1, 0.1005, 0.5, 0.5, 0.95, 0.1, 0.92, 0.92, 0.1, 0.85, 0.85]})
    # a: epoch 1 gains 0.05 points (a stall), 2 gains 40, 3 none (a stall), 4 reaches 95%; b: no stall below 90%;
    # c: stalls at 85%, below MNIST's 90% but above Fashion-MNIST's 80%
    assert literature.plateau_epochs(epochs, 0.90).to_dict() == {"a": 2, "b": 0, "c": 1}
    assert literature.plateau_epochs(epochs, 0.80).to_dict() == {"a": 2, "b": 0, "c": 0}


@pytest.mark.parametrize("dataset,softmax_plateaus,level", [("mnist", 1.0, "90%"), ("fashion_mnist", 0.0, "80%")])
def test_glorot_plateaus_are_counted_below_the_data_sets_learned_level(verdict_peaks, write_setting, tmp_path,
                                                                       dataset, softmax_plateaus, level):
    # a deep setting; softmax_nll's best lr is 0.5, where validation goes 0.4, p, p - 0.01 with p about 0.85:
    # its last epoch loses accuracy at about 84%, a stall on MNIST (below 90%), not on Fashion-MNIST (80%)
    peaks = dict(verdict_peaks) | {("softmax_nll", 0.5): [0.848, 0.862, 0.851], ("softmax_nll", 1.0): [0.82, 0.83, 0.825]}
    runs, epochs, summary, _ = setting_frames(write_setting(tmp_path, peaks, sizes="784-30-30-30-10", dataset=dataset))
    [claim] = literature.glorot_plateaus("deep", runs, epochs, summary)
    figures, _ = claim.evaluate()
    assert (figures["plateau epochs sigmoid_mse"], figures["plateau epochs softmax_nll"]) == (0.0, softmax_plateaus)
    assert f"validation accuracy while below {level}" in claim.criterion


def test_glorot_saturation_claim_from_the_study_table():
    rows = []
    for seed in range(3):
        for epoch in range(4):
            for layer in (1, 2, 3):
                saturated = 0.05 + (0.3 if layer == 3 and epoch >= 1 else 0.0) + 0.01 * seed
                rows.append({"pair": "softmax_nll", "lr": 0.5, "seed": seed, "epoch": epoch, "layer": layer,
                             "saturated": saturated, "mean_activation": 0.5 - 0.1 * epoch * (layer == 3)})
    frame = pd.DataFrame(rows)
    [claim] = literature.glorot_saturation("hidden_saturation", frame)
    figures, holds = claim.evaluate()
    assert figures["rise (median over seeds)"] == pytest.approx(0.3) and holds is True
    assert figures["top layer mean activation, min over epochs 1-5"] == pytest.approx(0.2)  # epoch 3: 0.5 - 0.3
    lower = frame.assign(saturated=np.where(frame["layer"] == 1, 0.2, 0.05))  # the first layer saturates, not the top
    assert literature.glorot_saturation("hidden_saturation", lower)[0].evaluate()[1] is False
    both = frame.assign(saturated=0.05)  # no rise, and no layer more saturated than the top one
    assert literature.glorot_saturation("hidden_saturation", both)[0].evaluate()[1] is None
