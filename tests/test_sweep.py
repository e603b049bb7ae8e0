"""Tests of `python -m lossbench sweep`: the CSVs, resuming after kill -9 / Ctrl-C, damaged checkpoints,
a full disk, refusals, bad input.

    python -m pytest tests/test_sweep.py

Needs MNIST (LOSSBENCH_DATA; conftest.py defaults it to ../shared/data/mnist) and
skips without it. Most runs train a few models on a few hundred images for one or
two epochs; bad-input and fault checks call the CLI in-process, the smoke and
kill tests run it as a subprocess, as a user does.
"""

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from omegaconf import OmegaConf

from lossbench import provenance, statistics, sweep
from lossbench.results import columns, load, write

pytestmark = pytest.mark.mnist

TINY = ["sweep.pairs=[sigmoid_ce]", "sweep.lrs=[0.5]", "sweep.seeds=1", "optim.epochs=1",
        "data.train_size=100", "data.val_size=500"]


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
    assert list(runs.columns) == columns.RUN_COLUMNS
    assert list(epochs.columns) == ["run_id", "epoch", *columns.metric_columns(2)]
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


def written(out: Path) -> tuple:
    """What the sweep in `out` has written so far: every write replaces a file, so this changes with each."""
    state = []
    for path in (out / "runs.csv", out / "epochs.csv", *sorted((out / "checkpoints").glob("*.pt"))):
        try:
            stat = path.stat()
        except FileNotFoundError:  # deleted meanwhile: a pair's spent checkpoint
            continue
        state.append((path.name, stat.st_ino, stat.st_mtime_ns))
    return tuple(state)


def runs_listed(out: Path) -> int:
    """How many runs the sweep in `out` has written to runs.csv so far (each write is whole: atomic)."""
    rows = write.read_text(out / "runs.csv")
    return 0 if rows is None else len(rows)


def start_until_written(args: list[str], out: Path, writes: int = 1) -> subprocess.Popen:
    """Start the sweep; return once it has written `writes` times (checkpoints, rows), or has ended."""
    seen = written(out)
    proc = subprocess.Popen([sys.executable, "-m", "lossbench", "sweep", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while writes > 0 and proc.poll() is None:
        assert time.monotonic() < deadline, "nothing written within 120 s"
        time.sleep(0.002)
        now = written(out)
        writes -= now != seen
        seen = now
    return proc


KILLS = 6


@pytest.mark.slow
def test_kill9_at_random_moments_and_ctrl_c_then_resume_give_the_uninterrupted_numbers(tmp_path, run_cli):
    # two ensembles (one per seed, of 2 pairs x 2 lrs), each checkpointed after every epoch
    grid = ["sweep.pairs=[sigmoid_ce,softmax_nll]", "sweep.lrs=[0.5,3.0]", "sweep.seeds=2", "optim.epochs=12",
            "model.sizes=[784,8,10]", "data.train_size=300", "data.val_size=500", "dtype=float64",
            "sweep.ensemble_size=4"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli("sweep", *grid, f"hydra.run.dir={whole}")[0] == 0
    args = [*grid, f"hydra.run.dir={cut}"]

    # SIGKILL (no cleanup at all) at seeded random moments: 1 to 3 writes (checkpoints, rows) into
    # each run, then a random part of an epoch (about 25 ms here)
    rng, errs = random.Random(9), []
    for kill in range(KILLS):
        proc = start_until_written(args, cut, writes=rng.randint(1, 3))
        time.sleep(rng.uniform(0.0, 0.03))
        assert proc.poll() is None, f"the sweep finished before kill {kill + 1} of {KILLS}: give it more epochs"
        proc.kill()
        errs.append(proc.communicate()[1])
        assert proc.returncode == -signal.SIGKILL
        print(f"kill {kill + 1}: {runs_listed(cut)} runs finished, files {[w[0] for w in written(cut)]}")
    assert runs_listed(cut) < 8  # the kills fell before the end
    assert any("from its checkpoint after epoch" in err for err in errs)  # some run resumed an ensemble

    # Ctrl-C once it writes again: a clean stop with the resume override
    proc = start_until_written(args, cut)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate()
    assert proc.returncode == 130 and "interrupted" in err and f"hydra.run.dir={cut}" in err
    assert "Traceback" not in err

    finished = run_subprocess(args)
    assert finished.returncode == 0, finished.stderr
    assert "warning" not in finished.stderr + "".join(errs)  # no kill left a checkpoint that fails to load
    assert_same_results(whole, cut)
    runs, epochs = pd.read_csv(cut / "runs.csv"), pd.read_csv(cut / "epochs.csv")
    assert len(runs) == 8 and runs["run_id"].is_unique
    assert len(epochs) == 8 * 13 and not epochs.duplicated(["run_id", "epoch"]).any()
    assert not (cut / "checkpoints").exists()
    assert not list(cut.rglob(".*.tmp"))


def interrupt_after_first_checkpoint(monkeypatch):
    """Make the in-process sweep stop (as on Ctrl-C) right after it writes its first checkpoint."""
    save = write.save_checkpoint

    def save_then_interrupt(path, state):
        save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(write, "save_checkpoint", save_then_interrupt)


DAMAGE = {  # name -> what becomes of a checkpoint's bytes
    "intact": lambda data: data,
    "truncated to half": lambda data: data[: len(data) // 2],
    "truncated to its header": lambda data: data[: len(write.CHECKPOINT_MAGIC) + 65],
    "one bit flipped": lambda data: data[:-10] + bytes([data[-10] ^ 1]) + data[-9:],
    "empty": lambda data: b"",
    "foreign bytes": lambda data: write.CHECKPOINT_MAGIC + b"0" * 64 + b"\ngarbage",
    "changed header": lambda data: data.replace(b"-v1\n", b"-v0\n", 1),
    "duplicated": lambda data: data + data,
    "git merge-conflict markers": lambda data: b"<<<<<<< HEAD\n" + data + b"=======\n" + data + b">>>>>>> b\n",
    "CRLF line ends (a text tool)": lambda data: data.replace(b"\n", b"\r\n"),
    "byte-order mark (a text tool)": lambda data: b"\xef\xbb\xbf" + data,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_never_used_and_its_ensemble_restarts(tmp_path, run_cli, monkeypatch, damage):
    reference, damaged = tmp_path / "reference", tmp_path / "damaged"
    args = [*TINY, "optim.epochs=2", "sweep.seeds=2"]
    assert run_cli("sweep", *args, f"hydra.run.dir={reference}")[0] == 0
    with monkeypatch.context() as patch:
        interrupt_after_first_checkpoint(patch)
        assert run_cli("sweep", *args, f"hydra.run.dir={damaged}")[0] == 130
    checkpoint = damaged / "checkpoints" / "seeds_0-1.pt"
    checkpoint.write_bytes(DAMAGE[damage](checkpoint.read_bytes()))

    code, _, err = run_cli("sweep", *args, f"hydra.run.dir={damaged}")
    assert code == 0
    if damage == "intact":  # the control: a sound checkpoint is used
        assert "resuming seeds_0-1 from its checkpoint after epoch 1" in err and "warning" not in err
    else:
        assert f"warning: not resuming from {checkpoint}" in err and "from scratch" in err
        assert "fails its checksum" in err and "resuming seeds_0-1 from its checkpoint" not in err
    assert_same_results(reference, damaged)


@pytest.mark.parametrize("target", ["seeds_1.pt", "epochs.csv", "runs.csv"])
def test_a_full_disk_stops_with_a_clear_error_and_keeps_what_was_written(tmp_path, run_cli, monkeypatch, target):
    """The disk fills up while the second ensemble (seed 1's) writes `target`; we run as root, so a
    read-only directory would not stop us: os.replace fails instead, as on a full disk."""
    reference, full = tmp_path / "reference", tmp_path / "full"
    # ensembles of 2 models: one per seed, each holding both pairs
    args = ["sweep.pairs=[sigmoid_ce,softmax_nll]", *TINY[1:], "optim.epochs=2", "sweep.seeds=2",
            "sweep.ensemble_size=2"]
    assert run_cli("sweep", *args, f"hydra.run.dir={reference}")[0] == 0
    replace = os.replace

    def full_disk(src, dst):
        if Path(dst).name == target and (target.endswith(".pt") or Path(dst).exists()):  # the second ensemble's write
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", full_disk)
        code, stdout, stderr = run_cli("sweep", *args, f"hydra.run.dir={full}")
    path = full / "checkpoints" / target if target.endswith(".pt") else full / target
    assert code == 2 and "Traceback" not in stdout + stderr
    assert f"error: cannot write {path}: [Errno 28] No space left on device. The files written before it are intact." in stderr
    assert f"resume: the same command plus hydra.run.dir={full}" in stderr
    first_block = read_all(reference)["runs.csv"].query("seed == 0")
    pd.testing.assert_frame_equal(read_all(full)["runs.csv"], first_block, check_exact=True)
    assert not list(full.rglob(".*.tmp"))

    code, stdout, _ = run_cli("sweep", *args, f"hydra.run.dir={full}")
    assert code == 0 and "4 runs (2 already finished)" in stdout
    assert_same_results(reference, full)


def test_other_config_into_the_same_directory_is_refused(tmp_path, run_cli):
    out = tmp_path / "sweep"
    assert run_cli("sweep", *TINY, f"hydra.run.dir={out}")[0] == 0
    assert not (out / ".lock").exists()  # only while a sweep runs
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run_cli("sweep", *TINY, "sweep.seeds=2", f"hydra.run.dir={out}")
    assert code == 2
    assert "error: config mismatch" in err and "sweep.seeds: 1 there, 2 now" in err and "Traceback" not in err
    assert before == {p.name: p.read_bytes() for p in out.iterdir()}  # .lock is gone again too


def test_run_info_names_the_code_of_each_session(tmp_path, run_cli, monkeypatch):
    versions = iter(["abc1234", "def5678+dirty"])  # the code as each session found it; one call per session
    monkeypatch.setattr(provenance, "code_version", lambda: next(versions))
    out = tmp_path / "sweep"
    assert run_cli("sweep", *TINY, f"hydra.run.dir={out}")[0] == 0
    assert json.loads((out / "run_info.json").read_text())["code_version"] == "abc1234"
    assert run_cli("sweep", *TINY, f"hydra.run.dir={out}")[0] == 0  # a resume, by other code
    assert json.loads((out / "run_info.json").read_text())["code_version"] == "abc1234, def5678+dirty"


def test_the_first_line_names_the_engine_and_why_auto_fell_back_to_eager(tmp_path, run_cli):
    code, out, _ = run_cli("sweep", *TINY, f"hydra.run.dir={tmp_path / 'one'}")
    assert code == 0 and "(engine c)" in out.splitlines()[0]
    code, out, _ = run_cli("sweep", *TINY, "model.sizes=[784,6,6,10]", f"hydra.run.dir={tmp_path / 'deep'}")
    assert code == 0 and out.splitlines()[0].endswith(
        "(engine eager: engine c cannot train here, it trains nets with one hidden layer, not sizes [784, 6, 6, 10])")


def test_a_second_sweep_into_a_busy_directory_is_refused(tmp_path, run_cli):
    out = tmp_path / "sweep"
    out.mkdir()
    with write.directory_lock(out):  # what a running sweep holds for its whole life
        code, _, err = run_cli("sweep", *TINY, f"hydra.run.dir={out}")
    assert code == 2 and "error: another sweep" in err and str(out) in err and "Traceback" not in err
    assert not (out / "config.yaml").exists()


# --- the lock, progress and the end summary ---------------------------------------------------------------------


def test_the_bar_moves_within_an_epoch_and_the_expected_time_is_printed_once(capsys):
    with sweep.Progress(total=320, done=0) as progress:
        progress.evaluation_s_per_model = 0.01
        progress.begin_epoch(models=160, steps=5000)
        progress.steps_done(500)
        assert progress.bar.n == 16  # 160 models x 500 / 5000 steps
        progress.steps_done(1000)
        progress.steps_done(5000)
        assert progress.bar.n == 160
        progress.end_epoch()
        assert progress.bar.n == 160
        progress.begin_epoch(models=160, steps=3)  # whole model-epochs only: 53, 106, 160
        progress.steps_done(1)
        assert progress.bar.n == 213
    err = capsys.readouterr().err
    assert err.count("expected time: ") == 1
    assert re.search(r"for the 304 model-epochs left \(\S+ model-epochs/s over the first 500 steps, "
                     r"evaluation 1.60 s per epoch\)", err)


@pytest.mark.parametrize("rate,expected", [(1000.0, "under 1 s"), (1.0, "about 10 s"), (0.1, "about 2 min")])
def test_the_expected_time_is_true_for_tiny_sweeps_too(capsys, rate, expected):
    with sweep.Progress(total=10, done=0) as progress:  # 10 model-epochs at `rate` model-epochs/s
        progress.begin_epoch(models=10, steps=100)
        progress.print_estimate(rate, step=100)
    assert f"expected time: {expected} for the 10 model-epochs left" in capsys.readouterr().err


@pytest.mark.parametrize("experiment,overrides,title", [
    ("nielsen_ch3_h30", ["sweep.seeds=3", "optim.epochs=1"], "nielsen_ch3_h30"),
    (None, ["device=cpu", "sweep.seeds=20", "data.root=/data"], "default_comparison"),
    (None, ["sweep.lrs=[0.5]"], None),
    (None, ["+experiment=nothing_known", "pair=sigmoid_ce"], None),
])
def test_the_summary_is_titled_with_the_study_only_for_a_named_study(monkeypatch, experiment, overrides, title):
    hydra_cfg = SimpleNamespace(runtime=SimpleNamespace(choices={"experiment": experiment} if experiment else {}),
                                overrides=SimpleNamespace(task=overrides))
    monkeypatch.setattr(sweep.HydraConfig, "get", lambda: hydra_cfg)
    name = experiment or "default_comparison"
    assert sweep.study_title(OmegaConf.create({"study": {"name": name}})) == title


def test_the_end_summary_says_what_plus_minus_means_and_matches_analyze(tmp_path, run_cli):
    out = tmp_path / "sweep"
    code, stdout, stderr = run_cli("sweep", *TINY, "sweep.seeds=3", f"hydra.run.dir={out}")
    assert code == 0 and "expected time: " in stderr
    assert "this sweep: per pair," in stdout
    assert "mean over its non-diverged seeds ± the half-width of the 95% t-interval, as `analyze` prints it" in stdout
    row = statistics.summarize(*load.read_sweep(out)).iloc[0]
    assert row["n"] == 3 and f"{100 * row['peak_mean']:.2f} ± {100 * row['peak_ci95']:.2f}" in stdout
    assert f"{100 * row['peak_std']:.2f}" != f"{100 * row['peak_ci95']:.2f}"  # the two meanings tell apart


def test_readme_main_job_block_is_what_the_committed_csvs_give():
    """README.md's "What that run printed at its end" is summary_text's table for results/default_comparison."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    block = readme.split("```\ndefault_comparison: per pair")[1].split("```")[0]
    rows = [line.split() for line in block.splitlines()[2:] if line.strip()]
    table = statistics.summarize(*load.read_sweep(root / "results" / "default_comparison"))
    best = table[table["best_lr"]].set_index("pair")
    assert sorted(row[0] for row in rows) == sorted(best.index)
    for pair, lr, seeds, diverged, peak, _, peak_ci, val, _, val_ci in rows:
        cell = best.loc[pair]
        assert (lr, int(seeds), int(diverged)) == (f"{cell['lr']:g}", cell["seeds"], cell["diverged"])
        assert (float(peak), float(peak_ci)) == pytest.approx((100 * cell["peak_mean"], 100 * cell["peak_ci95"]), abs=0.005)
        assert (float(val), float(val_ci)) == pytest.approx(
            (100 * cell["val_selected_mean"], 100 * cell["val_selected_ci95"]), abs=0.005)
