"""Tests of `python -m lossbench compare-runs`: identical sweeps, a run that differs, what cannot be compared.

    python -m pytest tests/test_compare.py

Hand-made sweeps (conftest's make_run, write_sweep): no MNIST needed.
"""

import pandas as pd
import pytest


@pytest.fixture
def two_sweeps(make_run, write_sweep):
    """two_sweeps(tmp_path, changed_seed_peak=None): sweep A (2 pairs x 2 lrs x 2 seeds, 3 epochs) and B, a copy
    whose sigmoid_ce lr 3 seed 1 run may differ."""
    def write(tmp_path, changed_seed_peak=None, **config):
        return write_sweep(tmp_path / "a", runs(None, config)), write_sweep(tmp_path / "b", runs(changed_seed_peak, config))

    def runs(changed, config):
        return [make_run(pair, lr, seed, [0.8, 0.85 + 0.01 * seed + 0.001 * lr, 0.86], **config)
                if not (changed and (pair, lr, seed) == ("sigmoid_ce", 3.0, 1))
                else make_run(pair, lr, seed, [0.8, changed, 0.86], **config)
                for pair in ("sigmoid_ce", "softmax_nll") for lr in (0.5, 3.0) for seed in (0, 1)]

    return write


def test_compare_runs_finds_identical_sweeps_identical(run_cli, tmp_path, two_sweeps):
    a, b = two_sweeps(tmp_path)
    code, stdout, _ = run_cli("compare-runs", str(a), str(b))
    assert code == 0
    assert "identical (status and every metric of every epoch, to the last bit): 8 of 8" in stdout
    assert "largest peak test accuracy difference" not in stdout
    assert "the same in both: sigmoid_ce 3, softmax_nll 3" in stdout


def test_compare_runs_reports_the_run_that_differs_by_lr(run_cli, tmp_path, two_sweeps):
    a, b = two_sweeps(tmp_path, changed_seed_peak=0.9)  # 0.863 in A: 3.7 points
    code, stdout, _ = run_cli("compare-runs", str(a), str(b), "--out", "per_run.csv")
    assert code == 0
    assert "identical (status and every metric of every epoch, to the last bit): 7 of 8" in stdout
    assert "largest peak test accuracy difference: 3.70 points (sigmoid_ce, lr 3, seed 1)" in stdout
    table = stdout.split("by pair and lr")[1].splitlines()
    row = next(line.split() for line in table if line.split()[:2] == ["sigmoid_ce", "3"])
    assert row[2:] == ["2", "1", "2", "3.70", "3.70"]  # runs, identical, first diff. epoch, max |Δ test acc|, peak
    per_run = pd.read_csv(tmp_path / "per_run.csv").set_index("run_id")
    assert per_run["identical"].sum() == 7 and per_run["max_diff_test_acc"].max() == pytest.approx(0.037)


def test_compare_runs_says_where_and_by_which_code_each_sweep_ran(run_cli, tmp_path, two_sweeps):
    a, b = two_sweeps(tmp_path)
    (a / "run_info.json").write_text('{"hardware": "Intel Xeon, 2 cores"}')  # written before code_version existed
    (b / "run_info.json").write_text('{"hardware": "AMD EPYC, 2 cores", "code_version": "abc1234+dirty"}')
    code, stdout, _ = run_cli("compare-runs", str(a), str(b))
    assert code == 0
    assert "ran on Intel Xeon, 2 cores; cpu, torch 2.13.0\n" in stdout
    assert "ran on AMD EPYC, 2 cores; cpu, torch 2.13.0; code abc1234+dirty\n" in stdout


@pytest.mark.parametrize("problem", ["no run shared", "same directory", "not a sweep"])
def test_compare_runs_refuses_what_is_not_comparable(make_run, write_sweep, run_cli, tmp_path, problem, two_sweeps):
    a, _ = two_sweeps(tmp_path)
    other = {"no run shared": write_sweep(tmp_path / "c", [make_run("sigmoid_ce", 0.5, 0, [0.8, 0.9], l2=5.0)]),
             "same directory": a, "not a sweep": tmp_path / "empty"}[problem]
    (tmp_path / "empty").mkdir()
    code, _, stderr = run_cli("compare-runs", "a", str(other))
    assert code == 2 and stderr.startswith("error: ") and stderr.count("\n") == 1
    expected = {"no run shared": f"{a} and {other} share no run, so there is nothing to compare run by run",
                "same directory": f"DIR_A and DIR_B are both {a}",
                "not a sweep": f"{other}: no runs.csv in it or any subdirectory"}[problem]
    assert expected in stderr
    if problem == "no run shared":  # says what each holds
        assert "A holds 8 runs (2 pairs, 2 lrs, 2 seeds) of 784-30-10" in stderr and "l2=5" in stderr
