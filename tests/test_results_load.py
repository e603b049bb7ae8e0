"""Tests of reading sweep directories as analyze does: every sweep below some directories, each line trusted or refused.

    python -m pytest tests/test_results_load.py
"""

import pytest

from lossbench import statistics
from lossbench.errors import UserError
from lossbench.results import load


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


def test_an_activation_or_cost_not_of_the_rows_pair_is_refused(make_run, write_sweep, tmp_path):
    write_sweep(tmp_path, [make_run("sigmoid_ce", 0.5, 0, [0.9, 0.95, 0.95])])
    runs_csv = tmp_path / "runs.csv"
    runs_csv.write_text(runs_csv.read_text().replace(",cross_entropy,", ",quadratic,"))
    with pytest.raises(UserError, match="activation sigmoid and cost quadratic are not pair sigmoid_ce's"):
        load.load_results([tmp_path])
