"""`python -m lossbench verdict`: its table and prose against hand computation, partial results, --around, claims.

    python -m pytest tests/test_verdict.py
"""

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lossbench import cli, comparisons, literature, statistics, verdict
from lossbench.errors import UserError
from lossbench.studies import command, hidden_saturation
from lossbench.results import load

RESULTS = Path(__file__).resolve().parents[1] / "results" / "verdict"
# Peak test accuracy per (pair, lr) for seeds 0, 1, 2 (val = test, so the val-selected accuracy is the peak), or
# (peak, val-selected) where validation peaks an epoch later than test; None: the run diverged. The best lrs
# (validation): sigmoid_ce 0.5, softmax_nll 0.5, sigmoid_mse 1, linear_mse 0.5. sigmoid_mse peaks highest and
# ranks 2nd on val-selected accuracy.
PEAKS = {("sigmoid_ce", 0.5): [0.95, 0.96, 0.955], ("sigmoid_ce", 1.0): [0.93, 0.94, 0.935],
         ("softmax_nll", 0.5): [0.948, 0.962, 0.951], ("softmax_nll", 1.0): [0.92, 0.93, 0.925],
         ("sigmoid_mse", 0.5): [0.90, 0.91, 0.905], ("sigmoid_mse", 1.0): [(0.97, 0.94), (0.975, 0.945), (0.972, 0.942)],
         ("linear_mse", 0.5): [0.80, 0.50, 0.85], ("linear_mse", 1.0): [None, None, None]}
BEST = {"sigmoid_ce": 0.5, "softmax_nll": 0.5, "sigmoid_mse": 1.0, "linear_mse": 0.5}
CONFIG = "sweep:\n  pairs: [{pairs}]\n  lrs: [0.5, 1.0]\n  seeds: 3\nshard:\n  count: 1\n  index: 0\n"


def selected(values) -> list[float]:
    """The val-selected accuracies of a PEAKS entry."""
    return [value[1] if isinstance(value, tuple) else value for value in values]


@pytest.fixture
def write_setting(make_run, write_sweep):
    """write_setting(directory, peaks=PEAKS, keep=None, **config): a setting's sweep directory, config.yaml for the
    4 pairs x 2 lrs x 3 seeds grid and the first `keep` runs."""
    def run(pair, lr, seed, peak, **config):
        """make_run of one PEAKS entry: test accuracies 0.4, peak, then the val-selected one (or peak - 0.01)."""
        if peak is None:
            return make_run(pair, lr, seed, [0.4, 0.4, 0.4], diverged_at=2, **config)
        if isinstance(peak, tuple):
            return make_run(pair, lr, seed, [0.4, *peak], val=[0.4, 0.9, 0.95], **config)
        return make_run(pair, lr, seed, [0.4, peak, peak - 0.01], **config)

    def write(directory: Path, peaks=PEAKS, keep=None, **config) -> Path:
        runs = [run(pair, lr, seed, peak, **config) for (pair, lr), values in peaks.items()
                for seed, peak in enumerate(values)]
        write_sweep(directory, runs[:keep])
        (directory / "config.yaml").write_text(CONFIG.format(pairs=", ".join(dict.fromkeys(p for p, _ in peaks))))
        return directory

    return write


@pytest.fixture
def root(tmp_path, write_setting):
    write_setting(tmp_path / "mnist_large")
    write_setting(tmp_path / "mnist_default", keep=10)  # unfinished: 10 of 24 runs
    return tmp_path


def t_interval(values) -> tuple[float, float]:
    values = np.asarray(values)
    return values.mean(), stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))


def paired(a, b) -> tuple[float, float, float]:
    mean, half = t_interval(np.subtract(a, b))
    return mean, mean - half, mean + half


def hand_ranks() -> dict[str, int]:
    """1 + the pairs whose paired interval (over seeds 0-2 at the best lrs) lies entirely above this pair's."""
    best = {pair: selected(PEAKS[pair, lr]) for pair, lr in BEST.items()}
    return {pair: 1 + sum(paired(best[other], best[pair])[1] > 0 for other in best if other != pair) for pair in best}


def test_table_cells_are_recomputed_from_the_runs(root, capsys):
    assert cli.main(["verdict", str(root)]) == 0
    assert {path.name for path in (root / "mnist_large" / "analysis").glob("*.png")} >= {
        "comparison_g1.png", "peak_vs_lr_g1.png"}  # the plots the page links
    readme = (root / "README.md").read_text()
    row = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in readme.splitlines()
           if line.startswith("| ") and line.split("|")[1].strip() in BEST}
    ranks = hand_ranks()
    assert ranks == {"sigmoid_ce": 1, "softmax_nll": 1, "sigmoid_mse": 2, "linear_mse": 1}  # linear_mse: too noisy
    for pair, lr in BEST.items():
        mean, half = t_interval(selected(PEAKS[pair, lr]))
        assert row[pair] == f"{100 * mean:.2f} ± {100 * half:.2f} (rank {ranks[pair]}, η={lr:g})"
    assert "[mnist_default](mnist_default/) (unfinished: 10 of 24 runs)" in readme
    assert "wrote" in capsys.readouterr().out


def test_the_prose_numbers_come_from_the_runs(root):
    assert verdict.main([str(root), "--no-plots"]) == 0
    text = (root / "README.md").read_text().split("## The verdict")[1].split("## Claims")[0]
    assert "the 1 complete setting" in text and "mnist_default" not in text  # unfinished settings give no verdict
    # leaders: rank 1 by mean: softmax_nll 95.37, sigmoid_ce 95.50, linear_mse 71.67 -> sigmoid_ce first
    assert "**Verdict.** sigmoid_ce, softmax_nll and linear_mse rank first" in text
    ce = PEAKS["sigmoid_ce", 0.5]
    mean, low, high = paired(ce, PEAKS["softmax_nll", 0.5])
    assert f"sigmoid_ce over softmax_nll, {100 * mean:+.2f} points [{100 * low:+.2f}, {100 * high:+.2f}]" in text
    mean, low, high = paired(ce, selected(PEAKS["sigmoid_mse", 1.0]))  # the leader's most certain advantage
    assert f"Strongest: sigmoid_ce over sigmoid_mse in mnist_large, {100 * mean:+.2f} points" in text
    assert "stuck or diverged in the band: linear_mse 3/3." in text  # all peak below 90% at 0.5; lr 1 is not in the band


def test_check_fails_when_the_page_or_the_claims_were_edited(root):
    assert verdict.main([str(root), "--no-plots"]) == 0
    assert verdict.main([str(root), "--check"]) == 0
    readme = root / "README.md"
    text = readme.read_text()
    readme.write_text(re.sub(r"95\.50 ±", "99.99 ±", text, count=1))
    assert verdict.main([str(root), "--check"]) == 1
    readme.write_text("# My own title\n\nMy own words.\n\n" + text[text.index(verdict.START):])
    assert verdict.main([str(root), "--no-plots"]) == 0 and verdict.main([str(root), "--check"]) == 0
    assert readme.read_text().startswith("# My own title\n\nMy own words.")  # text outside the markers stays
    claims = root / "claims.csv"
    claims.write_text(claims.read_text().replace("does not hold", "holds"))
    assert verdict.main([str(root), "--check"]) == 1


def test_missing_and_unfinished_settings_are_marked_not_fatal(tmp_path):
    assert verdict.main([str(tmp_path)]) == 0  # with plots: none to draw
    readme = (tmp_path / "README.md").read_text()
    assert "No setting is complete yet, so there is no verdict" in readme
    assert "| mnist_large " in readme and "| missing " in readme
    (tmp_path / "fashion_large").mkdir()
    (tmp_path / "fashion_large" / "config.yaml").write_text(CONFIG.format(pairs="sigmoid_ce"))
    (tmp_path / "fashion_large" / "runs.csv").write_text(",".join(load.RUNS_COLUMNS) + "\n")
    (tmp_path / "fashion_large" / "epochs.csv").write_text(",".join(load.EPOCHS_COLUMNS + ["grad_b2", "grad_w2"]) + "\n")
    assert verdict.main([str(tmp_path), "--no-plots"]) == 0
    assert "unfinished: 0 of 6 runs, no sweep yet for sigmoid_mse, softmax_nll, linear_mse" in (
        tmp_path / "README.md").read_text()


def test_a_setting_with_two_config_groups_gets_a_column_and_claims_per_group(write_setting, tmp_path):
    write_setting(tmp_path / "mnist_large" / "a")
    golik = dict(PEAKS) | {("sigmoid_mse", 1.0): [0.5, 0.6, 0.55], ("sigmoid_mse", 0.5): [0.8, 0.85, 0.82]}
    write_setting(tmp_path / "mnist_large" / "b", golik, train_size=2000)  # g2: sigmoid_mse stuck at its best lr
    assert verdict.main([str(tmp_path), "--no-plots"]) == 0
    readme = (tmp_path / "README.md").read_text()
    assert "| [mnist_large g1](mnist_large/) " in readme and "| [mnist_large g2](mnist_large/) " in readme
    claims = pd.read_csv(tmp_path / "claims.csv").set_index(["setting", "source"])
    assert "sigmoid_mse failed = 0; sigmoid_mse runs = 3" in claims.loc[("mnist_large g1", literature.GOLIK), "measurement"]
    assert "sigmoid_mse failed = 3; sigmoid_mse runs = 3" in claims.loc[("mnist_large g2", literature.GOLIK), "measurement"]


def test_a_setting_missing_pairs_is_unfinished_even_with_every_run_of_its_grids(write_setting, tmp_path):
    write_setting(tmp_path / "mnist_large_h100" / "sigmoid_ce", {k: v for k, v in PEAKS.items() if k[0] == "sigmoid_ce"})
    setting = verdict.load_setting(tmp_path, "mnist_large_h100")
    assert (setting.finished, setting.expected, setting.complete) == (6, 6, False)
    assert setting.status == "unfinished: 6 of 6 runs, no sweep yet for sigmoid_mse, softmax_nll, linear_mse"


def test_around_prints_each_pairs_best_lr_and_its_neighbours(root, capsys):
    assert cli.main(["verdict", str(root), "--around", "mnist_large"]) == 0
    lines = capsys.readouterr().out.split()
    assert dict(zip(lines[::2], lines[1::2])) == {"linear_mse": "[0.5,1]", "sigmoid_ce": "[0.5,1]",
                                                  "sigmoid_mse": "[0.5,1]", "softmax_nll": "[0.5,1]"}
    with pytest.raises(UserError, match="unfinished: 10 of 24 runs"):
        verdict.main([str(root), "--around", "mnist_default"])
    assert cli.main(["verdict", str(root), "--around", "nowhere"]) == 2
    assert "error: --around nowhere: no such setting" in capsys.readouterr().err


def test_a_missing_root_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["verdict", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err


# --- claims -----------------------------------------------------------------------------
def setting_frames(directory):
    runs, epochs = load.load_results([directory])
    summary = statistics.summarize(runs, epochs)
    compared, _ = comparisons.paired_comparisons(runs, summary)
    return runs, epochs, summary, compared


def test_bootstrap_without_resampling_gives_the_summarys_best_lr(root):
    runs, epochs, summary, _ = setting_frames(root / "mnist_large")
    timed = statistics.with_run_stats(runs, epochs)
    identity = np.arange(3)[None, :]
    for pair, lr in BEST.items():
        assert literature.bootstrap_best_lrs(timed, pair, np.arange(3), identity).tolist() == [lr]
    # drawing seed 1 only: sigmoid_mse's lrs 0.5 and 1 score 0.91 and 0.945
    assert literature.bootstrap_best_lrs(timed, "sigmoid_mse", np.arange(3), np.array([[1, 1, 1]])).tolist() == [1.0]


def test_bootstrap_breaks_ties_toward_the_smaller_lr_and_avoids_divergence(write_setting, tmp_path):
    peaks = dict(PEAKS)
    peaks["sigmoid_ce", 1.0] = peaks["sigmoid_ce", 0.5]  # a tie: the smaller lr, 0.5, as best_lr_flags
    peaks["softmax_nll", 1.0] = [0.99, None, 0.99]  # better, but seed 1 diverged: 0.5 unless seed 1 is not drawn
    runs, epochs, summary, _ = setting_frames(write_setting(tmp_path / "s", peaks))
    assert set(summary.loc[summary["best_lr"], ["pair", "lr"]].itertuples(index=False)) >= {
        ("sigmoid_ce", 0.5), ("softmax_nll", 0.5)}
    timed = statistics.with_run_stats(runs, epochs)
    draws = np.array([[0, 1, 2], [0, 2, 2]])
    assert literature.bootstrap_best_lrs(timed, "sigmoid_ce", np.arange(3), draws).tolist() == [0.5, 0.5]
    assert literature.bootstrap_best_lrs(timed, "softmax_nll", np.arange(3), draws).tolist() == [0.5, 1.0]


def test_nielsen_ratio_claim(root):
    runs, epochs, summary, _ = setting_frames(root / "mnist_large")
    [claim] = literature.nielsen_lr_ratio("mnist_large", runs, epochs, summary)
    figures, holds = claim.evaluate()
    assert figures["ratio"] == 2.0 and figures["grid step"] == pytest.approx(2.0)
    # every resample keeps the best lrs (the fixture's margins exceed every seed's spread): [2, 2]. Within half a grid
    # step (sqrt 2) of 6 would need 4.24 or more: does not hold.
    assert (figures["bootstrap 2.5%"], figures["bootstrap 97.5%"]) == (2.0, 2.0) and holds is False


def test_hui_belkin_claims_orient_the_difference(root):
    runs, _, summary, comparisons = setting_frames(root / "mnist_large")
    accuracy, sensitivity = literature.hui_belkin("mnist_large", runs, summary, comparisons)
    figures, holds = accuracy.evaluate()
    mean, low, high = paired(PEAKS["linear_mse", 0.5], PEAKS["softmax_nll", 0.5])
    assert figures["linear_mse - softmax_nll (points)"] == pytest.approx(100 * mean)
    assert (figures["95% CI low"], figures["95% CI high"]) == (pytest.approx(100 * low), pytest.approx(100 * high))
    assert holds is None  # the interval (-70, +20 points) reaches beyond +-1 point on both sides
    figures, holds = sensitivity.evaluate()
    assert figures["ratio"] == pytest.approx(np.std(PEAKS["linear_mse", 0.5], ddof=1) / np.std(PEAKS["softmax_nll", 0.5], ddof=1))


def test_golik_claim_counts_stuck_and_diverged_runs_at_the_best_lrs(write_setting, tmp_path):
    peaks = dict(PEAKS)
    peaks["sigmoid_mse", 1.0] = [0.5, 0.6, 0.55]  # now 0.5 is sigmoid_mse's best lr: all 3 runs stuck there
    peaks["sigmoid_mse", 0.5] = [0.8, 0.85, 0.82]
    runs, _, summary, _ = setting_frames(write_setting(tmp_path / "s", peaks))
    [claim] = literature.golik("s", runs, summary)
    figures, holds = claim.evaluate()
    assert (figures["sigmoid_mse failed"], figures["sigmoid_mse runs"], figures["sigmoid_ce failed"]) == (3, 3, 0)
    assert figures["p (Fisher, one-sided)"] == pytest.approx(0.05) and holds is None  # 1 / C(6, 3) = 0.05: not < 0.05
    runs, _, summary, _ = setting_frames(write_setting(tmp_path / "t"))
    assert literature.golik("t", runs, summary)[0].evaluate()[1] is False  # no failures at all


def test_plateau_epochs_count_stalls_below_90_percent():
    epochs = pd.DataFrame({"run_id": ["a"] * 5 + ["b"] * 3, "epoch": [0, 1, 2, 3, 4, 0, 1, 2],
                           "val_acc": [0.1, 0.1005, 0.5, 0.5, 0.95, 0.1, 0.92, 0.92]})
    # a: epoch 1 gains 0.05 points (a stall), 2 gains 40, 3 none (a stall), 4 reaches 95%; b: no stall below 90%
    assert literature.plateau_epochs(epochs).to_dict() == {"a": 2, "b": 0}


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


def test_claims_csv_has_the_shared_record_columns(root):
    assert verdict.main([str(root), "--no-plots"]) == 0
    claims = pd.read_csv(root / "claims.csv")
    assert list(claims.columns) == ["setting", "text", "source", "criterion", "measurement", "verdict"]
    assert set(claims["verdict"]) <= {"holds", "does not hold", "inconclusive"}
    assert set(claims["setting"]) == {"mnist_large"}  # the unfinished setting measures nothing yet
    readme = (root / "README.md").read_text()
    assert "Not measured yet: Glorot & Bengio (plateaus)" in readme


def test_committed_verdict_matches_the_committed_csvs():
    """results/verdict/README.md and claims.csv, once committed, are what the CSVs beside them give."""
    if not (RESULTS / "README.md").exists():
        pytest.skip("results/verdict/README.md is not committed yet")
    assert verdict.main([str(RESULTS), "--check"]) == 0  # --check writes nothing


def test_check_on_a_copy_of_the_committed_verdict_catches_an_edit(tmp_path):
    if not (RESULTS / "README.md").exists():
        pytest.skip("results/verdict/README.md is not committed yet")
    copy = tmp_path / "verdict"
    shutil.copytree(RESULTS, copy)
    readme = copy / "README.md"
    edited = re.sub(r"\d\d\.\d\d ±", "99.99 ±", readme.read_text(), count=1)
    assert edited != readme.read_text()
    readme.write_text(edited)
    assert verdict.main([str(copy), "--check"]) == 1


def test_a_damaged_setting_is_a_clear_error_not_an_unfinished_one(root, capsys):
    (root / "mnist_default" / "runs.csv").write_text("run_id,pair\nx,sigmoid_ce\n")
    assert cli.main(["verdict", str(root), "--no-plots"]) == 2
    assert "runs.csv: the header lacks column(s)" in capsys.readouterr().err


def test_where_it_changes_breaks_a_tie_the_same_way_in_every_process():
    """Two settings, each with its own leaders: the sharper statement (fewer pairs) is the common one, whatever
    the order of the settings or the process's string hashing (a set's order changes with it)."""
    def profiles(*firsts):
        return pd.DataFrame({"pair": list(firsts) + ["linear_mse"], "rank_val_selected": [1] * len(firsts) + [2],
                             "val_selected_mean": [0.95] * len(firsts) + [0.9]})
    large = ("mnist_large", {"profiles": profiles("sigmoid_ce", "sigmoid_mse", "softmax_nll")})
    default = ("mnist_default", {"profiles": profiles("softmax_nll")})
    expected = ("**Where it changes.** First in most settings: softmax_nll; but in mnist_large: sigmoid_ce, "
                "sigmoid_mse and softmax_nll.")
    assert verdict.changes_text([large, default]) == verdict.changes_text([default, large]) == expected


def test_the_hidden_saturation_study_takes_best_lrs_from_a_complete_setting_only(tmp_path, write_setting):
    """`study hidden_saturation --best-lrs-from DIR` reads a verdict setting (here, as this file writes them)."""
    write_setting(tmp_path / "mnist_deep")
    runs = hidden_saturation.runs_at_best_lrs(tmp_path / "mnist_deep")
    assert {run.pair: run.lr for run in runs} == {"sigmoid_ce": 0.5, "softmax_nll": 0.5, "sigmoid_mse": 1.0,
                                                  "linear_mse": 0.5}
    write_setting(tmp_path / "half", keep=5)
    with pytest.raises(UserError, match="--best-lrs-from .*half: the sweep there is unfinished: 5 of 24 runs"):
        command.main(["hidden_saturation", "--best-lrs-from", str(tmp_path / "half"), "--out", str(tmp_path / "o")])
    with pytest.raises(UserError, match="--best-lrs-from does not apply to study toy_neuron"):
        command.main(["toy_neuron", "--best-lrs-from", str(tmp_path), "--out", str(tmp_path / "o")])
