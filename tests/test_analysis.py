"""Tests of `python -m lossbench analyze` on small hand-made sweeps with known answers.

    python -m pytest tests/test_analysis.py
"""

import re

import pandas as pd

from lossbench import analysis, cli


def test_cli_reports_nonexistent_directory(tmp_path, capsys):
    assert cli.main(["analyze", str(tmp_path / "nowhere")]) == 2
    assert f"error: {tmp_path / 'nowhere'}: no such directory" in capsys.readouterr().err


def test_cli_given_a_file_names_it_and_asks_for_a_sweep_directory(make_run, write_sweep, tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep", [make_run("sigmoid_ce", 0.5, 0, [0.9, 0.95])])
    (tmp_path / "notes.txt").write_text("a file beside the sweep\n")
    for given, meant in [(sweep / "runs.csv", f": here {sweep}."), (tmp_path / "notes.txt", "sweep directories.")]:
        assert cli.main(["analyze", str(given)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {given}: a file, not a directory; pass a sweep output directory "
                              "(holding runs.csv and epochs.csv)") and err.rstrip().endswith(meant), err
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["epochs.csv", "notes.txt", "runs.csv", "sweep"]


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




def test_a_data_set_without_accuracy_levels_is_an_error_that_keeps_the_old_analysis(make_run, write_sweep, tmp_path,
                                                                                   capsys):
    write_sweep(tmp_path, [make_run("sigmoid_ce", 0.5, 0, [0.9, 0.95, 0.95], dataset="kmnist")])
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "summary.md").write_text("an earlier analysis")
    assert cli.main(["analyze", str(tmp_path)]) == 2
    assert "error: dataset 'kmnist' in runs.csv has no accuracy levels" in capsys.readouterr().err
    assert [path.name for path in (tmp_path / "analysis").iterdir()] == ["summary.md"]
    assert (tmp_path / "analysis" / "summary.md").read_text() == "an earlier analysis"
