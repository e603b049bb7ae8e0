"""Tests of `python -m lossbench sweep`: the CSVs, resuming after kill -9 / Ctrl-C, refusals, bad input.

    /work/venv/bin/python -m pytest tests/test_sweep.py

Needs MNIST (LOSSBENCH_DATA; conftest.py defaults it to ../shared/data/mnist) and
skips without it. Most runs train a few models on a few hundred images for one or
two epochs; bad-input checks call the CLI in-process, the smoke and resume tests
run it as a subprocess, as a user does.
"""

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lossbench import cli, results

pytestmark = pytest.mark.skipif(not Path(os.environ.get("LOSSBENCH_DATA", "")).is_dir(),
                                reason="needs MNIST: set LOSSBENCH_DATA or put it in ../shared/data/mnist")

TINY = ["sweep.pairs=[sigmoid_ce]", "sweep.lrs=[0.5]", "sweep.seeds=1", "optim.epochs=1",
        "data.train_size=100", "data.val_size=500"]


@pytest.fixture
def sweep_cli(capsys):
    """Run `python -m lossbench sweep ARGS` in-process: (exit status, stdout, stderr)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # Hydra configures logging for its job; give pytest's back

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(["sweep", *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


def run_subprocess(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lossbench", "sweep", *args],
                          capture_output=True, text=True, timeout=300, **kwargs)


def read_all(directory: Path) -> dict[str, pd.DataFrame]:
    """runs.csv and epochs.csv without wall_time_s, the one column that may differ between equal runs."""
    return {name: pd.read_csv(directory / name).drop(columns=["wall_time_s"], errors="ignore")
            for name in ("runs.csv", "epochs.csv")}


def assert_same_results(a: Path, b: Path):
    for name, frame in read_all(a).items():
        pd.testing.assert_frame_equal(frame, read_all(b)[name], check_exact=True, obj=name)


@pytest.mark.slow
def test_cli_smoke_writes_the_contracts_csvs_and_never_recomputes(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep.pairs=[sigmoid_ce,softmax_nll]", "sweep.lrs=[0.5,3.0]", "sweep.seeds=2", "optim.epochs=1",
            "data.train_size=1000", f"hydra.run.dir={out}"]
    started = time.perf_counter()
    done = run_subprocess(args)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    print(f"smoke sweep: {elapsed:.1f} s")

    runs, epochs = pd.read_csv(out / "runs.csv"), pd.read_csv(out / "epochs.csv")
    assert list(runs.columns) == results.RUN_COLUMNS
    assert list(epochs.columns) == ["run_id", "epoch", *results.metric_columns(2)]
    assert len(runs) == 8 and runs["run_id"].is_unique
    assert len(epochs) == 8 * 2 and sorted(epochs["epoch"].unique()) == [0, 1]
    assert set(epochs["run_id"]) == set(runs["run_id"])
    assert set(runs["pair"]) == {"sigmoid_ce", "softmax_nll"} and set(runs["lr"]) == {0.5, 3.0}
    assert set(runs["seed"]) == {0, 1}
    first = runs.iloc[0]
    assert first["run_id"].startswith("sigmoid_ce_lr0.5_s0_") and len(first["run_id"].rsplit("_", 1)[1]) == 8
    assert (first["activation"], first["cost"], first["sizes"], first["init"]) == ("sigmoid", "cross_entropy", "784-30-10", "large")
    assert (first["batch_size"], first["epochs"], first["l2"], first["dataset"], first["train_size"]) == (10, 1, 0.0, "mnist", 1000)
    assert (first["device"], first["dtype"]) == ("cpu", "float32")
    assert runs["status"].eq("ok").all() and runs["diverged_epoch"].isna().all()
    assert runs[["peak_test_acc", "final_test_acc", "val_selected_test_acc"]].apply(lambda c: c.between(0, 1)).all().all()
    assert runs["peak_epoch"].eq(1).all() and runs["val_selected_epoch"].eq(1).all()
    assert epochs.loc[epochs["epoch"] == 0, "train_cost"].isna().all()
    assert epochs.loc[epochs["epoch"] == 1, "train_cost"].notna().all()
    assert (out / "config.yaml").is_file() and not (out / "checkpoints").exists()
    assert "best lr" in done.stdout and "sigmoid_ce" in done.stdout and "softmax_nll" in done.stdout

    # the same command into the same directory: all runs are finished, nothing is trained or rewritten
    before = {name: (out / name).read_bytes() for name in ("runs.csv", "epochs.csv")}
    again = run_subprocess(args)
    assert again.returncode == 0, again.stderr
    assert "8 runs (8 already finished)" in again.stdout
    assert before == {name: (out / name).read_bytes() for name in ("runs.csv", "epochs.csv")}


def start_until_checkpoint(args: list[str], checkpoint: Path) -> subprocess.Popen:
    """Start the sweep; return once it has written `checkpoint` anew (a new file: they are replaced, not edited)."""
    before = checkpoint.stat().st_ino if checkpoint.exists() else None
    proc = subprocess.Popen([sys.executable, "-m", "lossbench", "sweep", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() or checkpoint.stat().st_ino == before:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    return proc


@pytest.mark.slow
def test_kill9_and_ctrl_c_then_resume_give_the_uninterrupted_numbers(tmp_path):
    grid = ["sweep.pairs=[sigmoid_ce,softmax_nll]", "sweep.lrs=[0.5,3.0]", "sweep.seeds=2", "optim.epochs=3",
            "data.train_size=300", "data.val_size=1000", "dtype=float64"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_subprocess([*grid, f"hydra.run.dir={whole}"]).returncode == 0

    args, checkpoint = [*grid, f"hydra.run.dir={cut}"], cut / "checkpoints" / "sigmoid_ce.pt"
    proc = start_until_checkpoint(args, checkpoint)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (cut / "runs.csv").exists()  # it was cut during the first pair
    cut_at = results.load_checkpoint(checkpoint)["ensemble"]["epoch"]

    # resume; interrupt with Ctrl-C as soon as it checkpoints its next epoch
    proc = start_until_checkpoint(args, checkpoint)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    assert f"resuming sigmoid_ce from its checkpoint after epoch {cut_at}" in err
    assert proc.returncode == 130 and "interrupted" in err and f"hydra.run.dir={cut}" in err
    assert "Traceback" not in err

    finished = run_subprocess(args)
    assert finished.returncode == 0, finished.stderr
    assert "resuming" in finished.stderr and "warning" not in finished.stderr
    assert_same_results(whole, cut)
    assert not (cut / "checkpoints").exists()
    assert not list(cut.glob(".*.tmp"))


def test_corrupt_checkpoint_is_not_used_and_the_pair_restarts(tmp_path, sweep_cli):
    reference, damaged = tmp_path / "reference", tmp_path / "damaged"
    args = [*TINY, "optim.epochs=2", "sweep.seeds=2"]
    assert sweep_cli(*args, f"hydra.run.dir={reference}")[0] == 0
    damaged.mkdir()
    shutil.copy(reference / "config.yaml", damaged / "config.yaml")
    (damaged / "checkpoints").mkdir()
    (damaged / "checkpoints" / "sigmoid_ce.pt").write_bytes(results.CHECKPOINT_MAGIC + b"0" * 64 + b"\ngarbage")
    code, _, err = sweep_cli(*args, f"hydra.run.dir={damaged}")
    assert code == 0
    assert "warning: not resuming from" in err and "fails its checksum" in err and "from scratch" in err
    assert_same_results(reference, damaged)


def test_other_config_into_the_same_directory_is_refused(tmp_path, sweep_cli):
    out = tmp_path / "sweep"
    assert sweep_cli(*TINY, f"hydra.run.dir={out}")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = sweep_cli(*TINY, "sweep.seeds=2", f"hydra.run.dir={out}")
    assert code == 2
    assert "error: config mismatch" in err and "sweep.seeds: 1 there, 2 now" in err and "Traceback" not in err
    assert before == {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_second_sweep_into_a_busy_directory_is_refused(tmp_path, sweep_cli):
    out = tmp_path / "sweep"
    out.mkdir()
    with results.directory_lock(out):  # what a running sweep holds for its whole life
        code, _, err = sweep_cli(*TINY, f"hydra.run.dir={out}")
    assert code == 2 and "error: another sweep" in err and str(out) in err and "Traceback" not in err
    assert not (out / "config.yaml").exists()


def corrupt_mnist(directory: Path) -> Path:
    source = Path(os.environ["LOSSBENCH_DATA"])
    directory.mkdir()
    for path in source.glob("*-ubyte.gz"):
        data = path.read_bytes()
        (directory / path.name).write_bytes(data[: len(data) // 2] if "train-images" in path.name else data)
    return directory


BAD_INPUT = {  # name -> (overrides, what the message must say)
    "unknown pair": (["sweep.pairs=[sigmoid]"], "unknown pair 'sigmoid' in sweep.pairs; the pairs are: sigmoid_mse, sigmoid_ce, softmax_nll, linear_mse"),
    "unknown pair option": (["pair=sigmoid"], "Could not find 'pair/sigmoid'"),
    "negative lr": (["sweep.lrs=[-0.5]"], "learning rate -0.5 in sweep.lrs is not a finite positive number"),
    "infinite lr": (["sweep.lrs=[inf]"], "learning rate inf in sweep.lrs is not a finite positive number"),
    "lr not a number": (["sweep.lrs=[fast]"], "Value 'fast' of type 'str' could not be converted to Float"),
    "no seeds": (["sweep.seeds=0"], "sweep.seeds=0 asks for no runs"),
    "zero batch": (["optim.batch_size=0"], "optim.batch_size=0"),
    "batch above training set": (["optim.batch_size=101"], "optim.batch_size=101 is larger than the training set (100 examples)"),
    "sizes off the data": (["model.sizes=[784,30,9]"], "model.sizes=[784, 30, 9] does not fit mnist"),
    "one size": (["model.sizes=[784]"], "model.sizes=[784] needs at least 2 layer sizes"),
    "zero width": (["model.sizes=[784,0,10]"], "has a layer of width 0"),
    "unknown init": (["model.init=huge"], "Invalid value 'huge', expected one of [large, default]"),
    "unknown key": (["optim.epoch=3"], "Key 'epoch' not in 'OptimConfig'"),
    "missing data": (["data.root={tmp}/nothing"], "{tmp}/nothing"),
    "corrupt data": (["data.root={corrupt}"], "train-images-idx3-ubyte.gz: truncated or corrupt gzip file"),
    "unwritable output": (["hydra.run.dir={tmp}/a_file/sweep"], "cannot write the output directory {tmp}/a_file/sweep"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_message_and_exit_2(tmp_path, sweep_cli, case):
    overrides, message = BAD_INPUT[case]
    (tmp_path / "a_file").write_text("not a directory")
    names = {"tmp": tmp_path, "corrupt": corrupt_mnist(tmp_path / "corrupt") if case == "corrupt data" else None}
    out = tmp_path / "out"
    args = [*TINY, f"hydra.run.dir={out}", *(o.format(**names) for o in overrides)]
    code, stdout, stderr = sweep_cli(*args)
    assert code == 2
    assert message.format(**names) in stderr
    assert "Traceback" not in stderr + stdout
    assert not out.exists()  # nothing written, not even an empty directory
