"""Tests of `python -m lossbench analyze` on small hand-made sweeps with known answers.

    python -m pytest tests/test_analysis.py
"""

import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest

from lossbench import analysis, cli, comparisons, plots, statistics, tables
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


def test_epochs_to_threshold_counts_runs_that_reach_it(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [make_run("softmax_nll", 0.1, 0, [0.85, 0.91, 0.96]),
                           make_run("softmax_nll", 0.1, 1, [0.92, 0.93, 0.94])])
    cell = summarize_dir(tmp_path).loc[("softmax_nll", 0.1)]
    assert (cell["reach90_n"], cell["reach90_epochs_mean"]) == (2, 1.5)
    assert (cell["reach95_n"], cell["reach95_epochs_mean"]) == (1, 3.0)


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


def test_duplicate_run_ids_across_dirs_and_nested_multirun_dirs_count_once(make_run, write_sweep, tmp_path):
    first = [make_run("sigmoid_ce", 0.5, seed, [0.9, 0.92 + seed / 100, 0.91]) for seed in range(2)]
    # seed 1 again (same run_id), with other numbers: the first directory's copy is the one kept
    second = [make_run("sigmoid_ce", 0.5, 1, [0.9, 0.99, 0.91]), make_run("sigmoid_ce", 0.5, 2, [0.9, 0.94, 0.91])]
    write_sweep(tmp_path / "a", first)
    write_sweep(tmp_path / "multirun" / "2024-01-01" / "12-00-00" / "0", second[:1])
    write_sweep(tmp_path / "multirun" / "2024-01-01" / "12-00-00" / "1", second[1:])
    runs, epochs = load.load_results([tmp_path / "a", tmp_path / "multirun"])
    assert sorted(runs["seed"]) == [0, 1, 2]
    assert len(epochs) == 3 * 4
    cell = statistics.summarize(runs, epochs).iloc[0]
    assert cell["seeds"] == 3 and cell["peak_mean"] == pytest.approx(0.93)


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


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no runs.csv"),
    (lambda d: (d / "runs.csv").write_text(""), "not a readable CSV"),
    (lambda d: (d / "runs.csv").write_text("run_id,pair,lr\nx,sigmoid_ce,0.5\n"), r"lacks column\(s\) seed, sizes, init"),
    (lambda d: [(d / name).write_text(",".join(columns) + "\n") for name, columns in
                [("runs.csv", load.RUNS_COLUMNS), ("epochs.csv", load.EPOCHS_COLUMNS)]],
     "no runs yet"),
])
def test_bad_directories_raise_user_errors_naming_the_path(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(UserError, match=message) as error:
        load.load_results([tmp_path])
    assert str(tmp_path) in str(error.value)


def test_missing_epochs_csv_bad_status_and_nonnumeric_column(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [make_run("sigmoid_ce", 0.5, 0, [0.9, 0.95, 0.95])])
    runs_csv = tmp_path / "runs.csv"
    good = runs_csv.read_text()
    runs_csv.write_text(good.replace(",ok,", ",done,"))
    with pytest.raises(UserError, match=r"runs.csv: status done is none of diverged, ok"):
        load.load_results([tmp_path])
    runs_csv.write_text(good.replace("0.5", "fast"))
    with pytest.raises(UserError, match=r"runs.csv: column lr holds non-numeric values"):
        load.load_results([tmp_path])
    runs_csv.write_text(good)
    (tmp_path / "epochs.csv").unlink()
    with pytest.raises(UserError, match="epochs.csv: missing"):
        load.load_results([tmp_path])


def test_cli_reports_nonexistent_directory(tmp_path, capsys):
    assert cli.main(["analyze", str(tmp_path / "nowhere")]) == 2
    assert f"error: {tmp_path / 'nowhere'}: no such directory" in capsys.readouterr().err


def test_cli_writes_tables_and_plots(make_run, write_sweep, tmp_path, capsys):
    runs = [make_run(pair, lr, seed, [0.6 + shift, 0.9 + shift, 0.93 + shift + seed / 200])
            for pair, grid in [("sigmoid_mse", [1.0, 3.0]), ("sigmoid_ce", [0.5, 1.0]), ("softmax_nll", [0.5])]
            for lr in grid for seed in range(3) for shift in [0.02 * (lr in (3.0, 0.5))]]
    write_sweep(tmp_path / "sweep", runs)
    out = tmp_path / "report"
    assert cli.main(["analyze", str(tmp_path / "sweep"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "g1: 784-30-10 init=large" in printed and "3 *" in printed and "0.5 *" in printed
    assert "g1: 3 / 0.5 = 6" in printed
    names = {path.name for path in out.iterdir()}
    assert {"summary.csv", "summary.md", "slowdown.csv", "slowdown.md", "accuracy_vs_epoch_g1.png",
            "peak_vs_lr_g1.png", "gradients_vs_epoch_g1.png", "saturation_vs_epoch_g1.png"} <= names
    assert all((out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in names if name.endswith(".png"))
    assert len(pd.read_csv(out / "summary.csv")) == 5
    assert re.search(r"\|\s*sigmoid_ce\s*\|\s*0\.5 \*\s*\|\s*3\s*\|\s*0\s*\|", (out / "summary.md").read_text())


def test_default_output_is_first_dir_analysis(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [make_run("sigmoid_ce", 0.5, 0, [0.9, 0.95, 0.95])])
    assert analysis.main([str(tmp_path), "--no-plots"]) == 0
    assert sorted(path.name for path in (tmp_path / "analysis").iterdir()) == [
        "comparison.csv", "comparison.md", "ranking.csv", "slowdown.csv", "slowdown.md", "summary.csv", "summary.md"]


def test_cli_plots_edge_groups(make_run, write_sweep, tmp_path):
    """One seed, no hidden layer, and a group whose every run diverged (no plots for it)."""
    write_sweep(tmp_path / "0", [make_run("sigmoid_ce", 0.5, 0, [0.9, 0.95, 0.95]),
                                 make_run("softmax_nll", 0.5, 0, [0.9, 0.96, 0.96], sizes="784-10")])
    write_sweep(tmp_path / "1", [make_run("linear_mse", 1.0, 0, [0.5, 0.5, 0.5], diverged_at=1, sizes="784-100-10")])
    assert analysis.main([str(tmp_path)]) == 0
    assert sorted(path.name for path in (tmp_path / "analysis").glob("*.png")) == [
        "accuracy_vs_epoch_g1.png", "accuracy_vs_epoch_g3.png", "gradients_vs_epoch_g1.png",
        "gradients_vs_epoch_g3.png", "peak_vs_lr_g1.png", "peak_vs_lr_g3.png", "saturation_vs_epoch_g3.png"]


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as done:
        analysis.main(["--help"])
    assert done.value.code == 0 and "--out" in capsys.readouterr().out


# --- paired comparisons, ranking, per-pair profiles ---------------------------------
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


def test_one_pair_or_one_matched_seed_gives_a_note_not_a_row(make_run, write_sweep, tmp_path, capsys):
    write_sweep(tmp_path / "sweep", [
        make_run("sigmoid_ce", 0.5, 0, [0.9, 0.95, 0.95]), make_run("sigmoid_ce", 0.5, 1, [0.9, 0.96, 0.96]),
        make_run("softmax_nll", 0.5, 1, [0.9, 0.94, 0.94]), make_run("softmax_nll", 0.5, 2, [0.9, 0.93, 0.93]),
        make_run("linear_mse", 0.1, 0, [0.8, 0.85, 0.85], sizes="784-100-10")])
    out = tmp_path / "out"
    assert cli.main(["analyze", str(tmp_path / "sweep"), "--out", str(out)]) == 0
    assert pd.read_csv(out / "comparison.csv").empty
    text = (out / "comparison.md").read_text()
    assert "Note: only linear_mse has a best lr" in text
    assert "Note: sigmoid_ce vs softmax_nll: 1 seed(s) with finished runs of both" in text
    assert len(pd.read_csv(out / "ranking.csv")) == 3 and not (out / "comparison_g1.png").exists()


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
    assert (profile["reach95_n"], profile["epochs_to_95"], profile["reach97_n"]) == (2, 2.0, 0)
    assert profile["rank_val_selected"] == 1 and profile["rank_peak"] == 1


def test_stuck_runs_in_the_band_count_as_unreliable(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [make_run("sigmoid_mse", 3.0, 0, [0.8, 0.95, 0.95]),
                           make_run("sigmoid_mse", 3.0, 1, [0.8, 0.95, 0.95]),
                           make_run("sigmoid_mse", 3.0, 2, [0.5, 0.6, 0.6])])
    runs, epochs = load.load_results([tmp_path])
    summary = statistics.summarize(runs, epochs)
    profile = comparisons.pair_profiles(runs, epochs, summary, pd.DataFrame(columns=comparisons.COMPARISON_COLUMNS)).iloc[0]
    assert (profile["band_runs"], profile["band_stuck"], profile["unreliable"]) == (3, 1, pytest.approx(1 / 3))


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
    figure = plots.plot_seed_distribution("test", runs, book=0.9542)
    ax = figure.axes[0]
    marks = [len(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "o"]
    assert sum(marks) == 5  # four learned, one stuck (a mark of its own colour)
    assert ax.collections[0].get_segments()[-1][1][1] == pytest.approx(-0.8)  # the likeliest best of 3: the top run
    # 0.6, 0.94, 0.95 of 5 at or below the book; best of 3 is 0.95 in 1 of the C(5, 3) = 10 triples
    assert "at or above 60% of our single runs and 10% of our best-of-3 draws" in figure.get_suptitle()
