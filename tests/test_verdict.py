"""`python -m lossbench verdict`: its table and prose against hand computation, partial results, --around, claims.

    python -m pytest tests/test_verdict.py
"""

import re
from pathlib import Path

import pandas as pd
import pytest

from lossbench import cli, literature, verdict
from lossbench.errors import UserError
from lossbench.results import load

RESULTS = Path(__file__).resolve().parents[1] / "results" / "verdict"
def selected(values) -> list[float]:
    """The val-selected accuracies of a verdict_peaks entry."""
    return [value[1] if isinstance(value, tuple) else value for value in values]


def hand_ranks(verdict_peaks: dict, verdict_best: dict, paired) -> dict[str, int]:
    """1 + the pairs whose paired interval (over seeds 0-2 at the best lrs) lies entirely above this pair's."""
    best = {pair: selected(verdict_peaks[pair, lr]) for pair, lr in verdict_best.items()}
    return {pair: 1 + sum(paired(best[other], best[pair])[1] > 0 for other in best if other != pair) for pair in best}


def test_table_cells_are_recomputed_from_the_runs(paired, t_interval, verdict_best, verdict_peaks, verdict_root, capsys):
    assert cli.main(["verdict", str(verdict_root)]) == 0
    assert {path.name for path in (verdict_root / "mnist_large" / "analysis").glob("*.png")} >= {
        "comparison_g1.png", "peak_vs_lr_g1.png"}  # the plots the page links
    readme = (verdict_root / "README.md").read_text()
    row = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in readme.splitlines()
           if line.startswith("| ") and line.split("|")[1].strip() in verdict_best}
    ranks = hand_ranks(verdict_peaks, verdict_best, paired)
    assert ranks == {"sigmoid_ce": 1, "softmax_nll": 1, "sigmoid_mse": 2, "linear_mse": 1}  # linear_mse: too noisy
    for pair, lr in verdict_best.items():
        mean, half = t_interval(selected(verdict_peaks[pair, lr]))
        assert row[pair] == f"{100 * mean:.2f} ± {100 * half:.2f} (rank {ranks[pair]}, η={lr:g})"
    assert "[mnist_default](mnist_default/) (unfinished: 10 of 24 runs)" in readme
    assert re.search(r"\| torch +\| code +\| wall time +\|", readme)  # which code made each setting
    assert "wrote" in capsys.readouterr().out


def test_the_prose_numbers_come_from_the_runs(paired, verdict_peaks, verdict_root):
    assert verdict.main([str(verdict_root), "--no-plots"]) == 0
    text = (verdict_root / "README.md").read_text().split("## The verdict")[1].split("## Claims")[0]
    assert "the 1 complete setting" in text and "mnist_default" not in text  # unfinished settings give no verdict
    # leaders: rank 1 by mean: softmax_nll 95.37, sigmoid_ce 95.50, linear_mse 71.67 -> sigmoid_ce first
    assert "**Verdict.** sigmoid_ce, softmax_nll and linear_mse rank first" in text
    ce = verdict_peaks["sigmoid_ce", 0.5]
    mean, low, high = paired(ce, verdict_peaks["softmax_nll", 0.5])
    assert f"sigmoid_ce over softmax_nll, {100 * mean:+.2f} points [{100 * low:+.2f}, {100 * high:+.2f}]" in text
    mean, low, high = paired(ce, selected(verdict_peaks["sigmoid_mse", 1.0]))  # the leader's most certain advantage
    assert f"Strongest: sigmoid_ce over sigmoid_mse in mnist_large, {100 * mean:+.2f} points" in text
    # all of linear_mse's runs peak below 90% at 0.5; lr 1 is not in its band
    assert "first to 95% sigmoid_ce (mean epoch 2.0, 3 of 3 runs); stuck (peak below 90%) or diverged in the band: " \
           "linear_mse 3/3." in text


def less_ten_points(peaks: dict) -> dict:
    """verdict_peaks 10 points lower (rounded: 0.95 - 0.10 must be 0.85, not 0.8499...), None staying None."""
    def lower(value):
        return None if value is None else tuple(lower(v) for v in value) if isinstance(value, tuple) else round(value - 0.1, 6)
    return {cell: [lower(value) for value in values] for cell, values in peaks.items()}


def robustness_part(readme: str, setting: str) -> str:
    """The setting's part of the page's robustness, speed and reliability paragraph."""
    paragraph = next(line for line in readme.splitlines() if line.startswith("**Robustness, speed, reliability**"))
    return re.search(rf"{setting}: (.*?)(; \w+_\w+: |\.$)", paragraph)[1]


def test_fashion_mnist_is_read_at_its_own_levels(verdict_peaks, write_setting, tmp_path):
    """The fixture's accuracies, and the same 10 points lower on Fashion-MNIST: the same speed and reliability, at
    95% and 90% on MNIST, at 85% and 80% on Fashion-MNIST (at MNIST's levels every Fashion-MNIST run is stuck)."""
    write_setting(tmp_path / "mnist_large")
    write_setting(tmp_path / "fashion_large", less_ten_points(verdict_peaks), dataset="fashion_mnist")
    assert verdict.main([str(tmp_path), "--no-plots"]) == 0
    readme = (tmp_path / "README.md").read_text()
    mnist, fashion = robustness_part(readme, "mnist_large"), robustness_part(readme, "fashion_large")
    assert "first to 85% sigmoid_ce (mean epoch 2.0, 3 of 3 runs); stuck (peak below 80%) or diverged in the band: " \
           "linear_mse 3/3" in fashion
    assert fashion == mnist.replace("95%", "85%").replace("90%", "80%")
    claims = pd.read_csv(tmp_path / "claims.csv").set_index(["setting", "source"])
    assert "sigmoid_mse failed = 0" in claims.loc[("fashion_large", literature.GOLIK), "measurement"]


def test_a_level_no_run_reaches_is_said_in_words_never_nan(verdict_peaks, write_setting, tmp_path):
    """Every accuracy 6 points lower: no run reaches 95%, and the page says so."""
    lower = {cell: [None if value is None else tuple(v - 0.06 for v in value) if isinstance(value, tuple)
                    else value - 0.06 for value in values] for cell, values in verdict_peaks.items()}
    write_setting(tmp_path / "mnist_large", lower)
    assert verdict.main([str(tmp_path), "--no-plots"]) == 0
    readme = (tmp_path / "README.md").read_text()
    assert "no run reaches 95% at its pair's best lr" in robustness_part(readme, "mnist_large")
    assert not re.search(r"\bnan\b", readme, re.IGNORECASE)


def test_check_fails_when_the_page_or_the_claims_were_edited(verdict_root):
    assert verdict.main([str(verdict_root), "--no-plots"]) == 0
    assert verdict.main([str(verdict_root), "--check"]) == 0
    readme = verdict_root / "README.md"
    text = readme.read_text()
    readme.write_text(re.sub(r"95\.50 ±", "99.99 ±", text, count=1))
    assert verdict.main([str(verdict_root), "--check"]) == 1
    readme.write_text("# My own title\n\nMy own words.\n\n" + text[text.index(verdict.START):])
    assert verdict.main([str(verdict_root), "--no-plots"]) == 0 and verdict.main([str(verdict_root), "--check"]) == 0
    assert readme.read_text().startswith("# My own title\n\nMy own words.")  # text outside the markers stays
    claims = verdict_root / "claims.csv"
    claims.write_text(claims.read_text().replace("does not hold", "holds"))
    assert verdict.main([str(verdict_root), "--check"]) == 1


def test_missing_and_unfinished_settings_are_marked_not_fatal(tmp_path):
    assert verdict.main([str(tmp_path)]) == 0  # with plots: none to draw
    readme = (tmp_path / "README.md").read_text()
    assert "No setting is complete yet, so there is no verdict" in readme
    assert "| mnist_large " in readme and "| missing " in readme
    (tmp_path / "fashion_large").mkdir()
    (tmp_path / "fashion_large" / "config.yaml").write_text(
        "sweep:\n  pairs: [sigmoid_ce]\n  lrs: [0.5, 1.0]\n  seeds: 3\nshard:\n  count: 1\n  index: 0\n")
    (tmp_path / "fashion_large" / "runs.csv").write_text(",".join(load.RUNS_COLUMNS) + "\n")
    (tmp_path / "fashion_large" / "epochs.csv").write_text(",".join(load.EPOCHS_COLUMNS + ["grad_b2", "grad_w2"]) + "\n")
    assert verdict.main([str(tmp_path), "--no-plots"]) == 0
    assert "unfinished: 0 of 6 runs, no sweep yet for sigmoid_mse, softmax_nll, linear_mse" in (
        tmp_path / "README.md").read_text()


def test_a_setting_with_two_config_groups_gets_a_column_and_claims_per_group(verdict_peaks, write_setting, tmp_path):
    write_setting(tmp_path / "mnist_large" / "a")
    golik = dict(verdict_peaks) | {("sigmoid_mse", 1.0): [0.5, 0.6, 0.55], ("sigmoid_mse", 0.5): [0.8, 0.85, 0.82]}
    write_setting(tmp_path / "mnist_large" / "b", golik, train_size=2000)  # g2: sigmoid_mse stuck at its best lr
    assert verdict.main([str(tmp_path), "--no-plots"]) == 0
    readme = (tmp_path / "README.md").read_text()
    assert "| [mnist_large g1](mnist_large/) " in readme and "| [mnist_large g2](mnist_large/) " in readme
    claims = pd.read_csv(tmp_path / "claims.csv").set_index(["setting", "source"])
    assert "sigmoid_mse failed = 0; sigmoid_mse runs = 3" in claims.loc[("mnist_large g1", literature.GOLIK), "measurement"]
    assert "sigmoid_mse failed = 3; sigmoid_mse runs = 3" in claims.loc[("mnist_large g2", literature.GOLIK), "measurement"]


def test_a_setting_missing_pairs_is_unfinished_even_with_every_run_of_its_grids(verdict_peaks, write_setting, tmp_path):
    write_setting(tmp_path / "mnist_large_h100" / "sigmoid_ce", {k: v for k, v in verdict_peaks.items() if k[0] == "sigmoid_ce"})
    setting = verdict.load_setting(tmp_path, "mnist_large_h100")
    assert (setting.finished, setting.expected, setting.complete) == (6, 6, False)
    assert setting.status == "unfinished: 6 of 6 runs, no sweep yet for sigmoid_mse, softmax_nll, linear_mse"


def test_around_prints_each_pairs_best_lr_and_its_neighbours(verdict_root, capsys):
    assert cli.main(["verdict", str(verdict_root), "--around", "mnist_large"]) == 0
    lines = capsys.readouterr().out.split()
    assert dict(zip(lines[::2], lines[1::2])) == {"linear_mse": "[0.5,1]", "sigmoid_ce": "[0.5,1]",
                                                  "sigmoid_mse": "[0.5,1]", "softmax_nll": "[0.5,1]"}
    with pytest.raises(UserError, match="unfinished: 10 of 24 runs"):
        verdict.main([str(verdict_root), "--around", "mnist_default"])
    assert cli.main(["verdict", str(verdict_root), "--around", "nowhere"]) == 2
    assert "error: --around nowhere: no such setting" in capsys.readouterr().err


def test_a_missing_root_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["verdict", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_claims_csv_has_the_shared_record_columns(verdict_root):
    assert verdict.main([str(verdict_root), "--no-plots"]) == 0
    claims = pd.read_csv(verdict_root / "claims.csv")
    assert list(claims.columns) == ["setting", "text", "source", "criterion", "measurement", "verdict"]
    assert set(claims["verdict"]) <= {"holds", "does not hold", "inconclusive"}
    assert set(claims["setting"]) == {"mnist_large"}  # the unfinished setting measures nothing yet
    readme = (verdict_root / "README.md").read_text()
    assert "Not measured yet: Glorot & Bengio (plateaus)" in readme


def test_committed_verdict_matches_the_committed_csvs():
    """results/verdict/README.md and claims.csv, once committed, are what the CSVs beside them give."""
    if not (RESULTS / "README.md").exists():
        pytest.skip("results/verdict/README.md is not committed yet")
    assert verdict.main([str(RESULTS), "--check"]) == 0  # --check writes nothing
    assert not re.search(r"\bnan\b", (RESULTS / "README.md").read_text(), re.IGNORECASE)


def test_check_on_a_copy_of_the_committed_verdict_catches_an_edit(edited_copy):
    if not (RESULTS / "README.md").exists():
        pytest.skip("results/verdict/README.md is not committed yet")
    copy = edited_copy(RESULTS, r"\d\d\.\d\d ±", "99.99 ±")
    assert verdict.main([str(copy), "--check"]) == 1


def test_a_damaged_setting_is_a_clear_error_not_an_unfinished_one(verdict_root, capsys):
    (verdict_root / "mnist_default" / "runs.csv").write_text("run_id,pair\nx,sigmoid_ce\n")
    assert cli.main(["verdict", str(verdict_root), "--no-plots"]) == 2
    assert "runs.csv: the header lacks column(s)" in capsys.readouterr().err
