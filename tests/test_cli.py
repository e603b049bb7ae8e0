"""Tests of the command line as a newcomer meets it: help without torch, hints for the common Hydra
mistakes, `data install` and `compare-runs` through the CLI.

    python -m pytest tests/test_cli.py

No MNIST needed: the hints stop a sweep before it reads data, compare-runs reads hand-made CSVs.
"""

import subprocess
import sys

import pandas as pd
import pytest
from test_analysis import make_run, write_sweep


# --- help, fast: without torch ------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--help"], ["sweep", "--help"], ["sweep", "-h", "model=book_h100"]])
def test_help_prints_without_importing_torch(args):
    code = f"import sys; from lossbench import cli; status = cli.main({args!r}); print(status, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("0 False")  # status 0, torch not imported
    if args[0] == "sweep":  # Hydra's help as the app's template lays it out, the config composed
        for part in ("== Configuration groups ==", "pair: all, linear_mse, sigmoid_ce, sigmoid_mse, softmax_nll",
                     "experiment: nielsen_ch1_h100", "== Config ==", "ensemble_size: 160", "Examples:"):
            assert part in done.stdout
        assert ("- 100" in done.stdout) == ("model=book_h100" in args)  # overrides apply to the config shown
    else:
        assert "compare-runs" in done.stdout and "data " in done.stdout


def test_a_launchers_config_prints_without_multirun(run_cli):
    """The README's `sweep hydra/launcher=lossbench_slurm --cfg hydra -p hydra.launcher` only prints."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the cluster extra")
    code, stdout, _ = run_cli("sweep", "hydra/launcher=lossbench_slurm", "--cfg", "hydra", "-p", "hydra.launcher")
    assert code == 0 and "timeout_min: 720" in stdout and "array_parallelism: 64" in stdout


@pytest.mark.parametrize("args", [["analyze", "nothere"], ["report", "nothere"], ["compare-runs", "nothere", "b"],
                                  ["data", "install", "nothere"], ["sweep", "data.root=nothere", "sweep.seeds=1"]])
def test_a_relative_path_in_an_error_is_shown_absolute(run_cli, tmp_path, args):
    code, _, stderr = run_cli(*args)
    assert code == 2 and str(tmp_path / "nothere") in stderr and " nothere" not in stderr


# --- compare-runs ---------------------------------------------------------------------------------------------------
def two_sweeps(tmp_path, changed_seed_peak=None, **config):
    """Sweep A (2 pairs x 2 lrs x 2 seeds, 3 epochs) and B, a copy whose sigmoid_ce lr 3 seed 1 run may differ."""
    def runs(changed):
        return [make_run(pair, lr, seed, [0.8, 0.85 + 0.01 * seed + 0.001 * lr, 0.86], **config)
                if not (changed and (pair, lr, seed) == ("sigmoid_ce", 3.0, 1))
                else make_run(pair, lr, seed, [0.8, changed, 0.86], **config)
                for pair in ("sigmoid_ce", "softmax_nll") for lr in (0.5, 3.0) for seed in (0, 1)]

    return write_sweep(tmp_path / "a", runs(None)), write_sweep(tmp_path / "b", runs(changed_seed_peak))


def test_compare_runs_finds_identical_sweeps_identical(run_cli, tmp_path):
    a, b = two_sweeps(tmp_path)
    code, stdout, _ = run_cli("compare-runs", str(a), str(b))
    assert code == 0
    assert "identical (status and every metric of every epoch, to the last bit): 8 of 8" in stdout
    assert "largest peak test accuracy difference" not in stdout
    assert "the same in both: sigmoid_ce 3, softmax_nll 3" in stdout


def test_compare_runs_reports_the_run_that_differs_by_lr(run_cli, tmp_path):
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


@pytest.mark.parametrize("problem", ["no run shared", "same directory", "not a sweep"])
def test_compare_runs_refuses_what_is_not_comparable(run_cli, tmp_path, problem):
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
