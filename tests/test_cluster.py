"""Tests of sweeps split into Hydra multirun jobs: shards, launchers, merging, a failed job, Slurm.

    python -m pytest tests/test_cluster.py

The sweeps need MNIST (LOSSBENCH_DATA) and the launcher tests the `cluster` extra
(pip install -e '.[dev,cluster]': hydra-submitit-launcher). Every sweep here
trains 2 pairs x 2 learning rates x 4 seeds of 784-8-10 in float64 on 300
images for 3 epochs, in subprocesses limited to one thread each (the machine
is shared). The single-process sweep of that grid is the reference: the jobs'
results, merged by `lossbench analyze`'s loader, must equal it to 1e-12.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from lossbench import cli, config
from lossbench.results import load

PAIRS = "sweep.pairs=[sigmoid_ce,softmax_nll]"
GRID = ["sweep.lrs=[0.5,3.0]", "sweep.seeds=4", "optim.epochs=3", "model.sizes=[784,8,10]",
        "data.train_size=300", "data.val_size=500", "dtype=float64"]
SHARDS = ["shard.count=2", "shard.index=range(2)"]
VOLATILE = ["wall_time_s"]  # the one column that may differ between equal runs
TOLERANCE = 1e-12


def needs_submitit():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the cluster extra: pip install -e '.[cluster]'")


def sweep(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m lossbench sweep ARGS` in a subprocess with one thread (launched jobs inherit it)."""
    return subprocess.run([sys.executable, "-m", "lossbench", "sweep", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def merged(directory: Path) -> dict[str, pd.DataFrame]:
    """runs and epochs of every sweep under `directory`, as `lossbench analyze` merges them, sorted by run."""
    runs, epochs = load.load_results([directory])
    assert runs["run_id"].is_unique and not epochs.duplicated(["run_id", "epoch"]).any()
    return {"runs": runs.drop(columns=VOLATILE).sort_values("run_id", ignore_index=True),
            "epochs": epochs.sort_values(["run_id", "epoch"], ignore_index=True)}


def assert_same_runs(a: Path, b: Path) -> None:
    """The same runs with the same values, floats to TOLERANCE (report whether they are bit-identical)."""
    left, right = merged(a), merged(b)
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], check_exact=False, rtol=0, atol=TOLERANCE, obj=name)
        numbers = left[name].select_dtypes("number").columns
        gap = (left[name][numbers] - right[name][numbers]).abs().max().max()
        print(f"{name}: {len(left[name])} rows, largest difference {gap:.3g}")


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> Path:
    """The grid swept by one process, no multirun: what every split of it must reproduce."""
    out = tmp_path_factory.mktemp("single") / "sweep"
    done = sweep(PAIRS, *GRID, f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("launcher,target", [("lossbench_slurm", "SlurmLauncher"), ("lossbench_local", "LocalLauncher")])
def test_launcher_configs_compose_with_their_values(launcher, target):
    needs_submitit()
    overrides = [f"hydra/launcher={launcher}", "hydra.launcher.timeout_min=30"]
    if launcher == "lossbench_slurm":
        overrides.append("hydra.launcher.partition=gpu")
    cfg = config.compose_config(overrides, hydra=True).hydra.launcher
    assert cfg._target_ == f"hydra_plugins.hydra_submitit_launcher.submitit_launcher.{target}"
    assert cfg.timeout_min == 30 and cfg.name == "lossbench"
    if launcher == "lossbench_slurm":
        assert (cfg.partition, cfg.gpus_per_task, cfg.cpus_per_task, cfg.max_num_timeout) == ("gpu", 1, 4, 3)
    else:
        assert cfg.gpus_per_node == 1


def test_a_launcher_without_multirun_or_its_plugin_is_one_message(monkeypatch, capsys):
    assert cli.main(["sweep", "hydra/launcher=lossbench_local", "sweep.seeds=1"]) == 2
    assert capsys.readouterr().err == (
        "error: hydra/launcher=lossbench_local launches the jobs of a multirun only; put --multirun before the "
        "overrides (without it the sweep would run here, in this process).\n")
    monkeypatch.setitem(sys.modules, "hydra_plugins.hydra_submitit_launcher", None)  # as if not installed
    assert cli.main(["sweep", "--multirun", "hydra/launcher=lossbench_slurm", "sweep.seeds=1"]) == 2
    assert capsys.readouterr().err == (
        "error: hydra/launcher=lossbench_slurm needs hydra-submitit-launcher, which is not installed; "
        "install lossbench with its cluster extra: pip install -e '.[cluster]'.\n")


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.parametrize("split", ["shards on submitit_local", "pairs on the basic launcher"])
def test_multirun_jobs_merge_into_the_single_process_results(tmp_path, single_process, split):
    both = {"sigmoid_ce", "softmax_nll"}
    if split == "shards on submitit_local":
        needs_submitit()
        jobs = {"0": (both, {0, 1}), "1": (both, {2, 3})}  # job number -> its pairs and seeds
        args = ["hydra/launcher=lossbench_local", PAIRS, *SHARDS]
    else:  # Hydra's own launcher: the jobs run one after the other in the launching process
        jobs = {"0": ({"sigmoid_ce"}, {0, 1, 2, 3}), "1": ({"softmax_nll"}, {0, 1, 2, 3})}
        args = ["pair=sigmoid_ce,softmax_nll"]
    out = tmp_path / "multirun"
    done = sweep("--multirun", *args, *GRID, f"hydra.sweep.dir={out}")
    assert done.returncode == 0, done.stderr
    for job, (pairs, seeds) in jobs.items():  # each job is a sweep directory of its own
        runs = pd.read_csv(out / job / "runs.csv")
        assert (set(runs["pair"]), set(runs["seed"])) == (pairs, seeds) and (out / job / "config.yaml").is_file()
    assert_same_runs(out, single_process)


@pytest.mark.mnist
@pytest.mark.slow
def test_a_failed_job_keeps_the_others_and_a_rerun_trains_only_it(tmp_path, single_process):
    needs_submitit()
    out = tmp_path / "multirun"
    args = ["--multirun", "hydra/launcher=lossbench_local", PAIRS, *SHARDS, *GRID, f"hydra.sweep.dir={out}"]
    obstacle = out / "1" / "checkpoints"  # a file where job 1 must make its checkpoint directory
    obstacle.parent.mkdir(parents=True)
    obstacle.write_text("not a directory")

    failed = sweep(*args)
    assert failed.returncode == 1
    assert "Error executing job with overrides" in failed.stderr and "shard.index=1" in failed.stderr
    assert f"error: cannot write {obstacle}/seeds_2-3.pt" in failed.stderr
    assert f"the same command plus hydra.sweep.dir={out}" in failed.stderr and "Traceback" not in failed.stderr
    assert len(pd.read_csv(out / "0" / "runs.csv")) == 8 and not (out / "1" / "runs.csv").exists()
    finished = {name: (out / "0" / name).stat() for name in ("runs.csv", "epochs.csv")}
    first_logs = set(out.glob(".submitit/*/*_log.out"))

    obstacle.unlink()
    again = sweep(*args)
    assert again.returncode == 0, again.stderr
    for name, before in finished.items():  # job 0 trained nothing and rewrote nothing
        after = (out / "0" / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    logs = sorted(path.read_text() for path in set(out.glob(".submitit/*/*_log.out")) - first_logs)
    assert len(logs) == 2
    assert sum(f"8 runs (8 already finished) on cpu -> {out / '0'}" in log for log in logs) == 1
    assert sum(f"8 runs (0 already finished) on cpu -> {out / '1'}" in log for log in logs) == 1
    assert_same_runs(out, single_process)


# A stand-in for Slurm: `sbatch` answers with a job id at once, as Slurm does, and leaves a runner
# that plays each array task once submitit has put its pickle in place; `srun` runs its command
# with its output files; `sacct` knows nothing (submitit then waits for the result files).
FAKE_SLURM = {
    "sbatch": """
        import os, re, subprocess, sys
        from pathlib import Path
        script = Path(sys.argv[1]).read_text()
        (Path(os.environ["FAKE_SLURM_LOG"]) / "sbatch.sh").write_text(script)
        tasks = int(re.search(r"--array=0-(\\d+)", script).group(1)) + 1
        runner = [sys.executable, str(Path(__file__).with_name("run_array")), sys.argv[1], str(tasks)]
        subprocess.Popen(runner, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print("Submitted batch job 4242")
    """,
    "run_array": """
        import os, re, subprocess, sys, time
        from pathlib import Path
        script, tasks = sys.argv[1], int(sys.argv[2])
        output = re.search(r"#SBATCH --output=(\\S+)", Path(script).read_text()).group(1)
        for task in range(tasks):
            job = f"4242_{task}"
            submitted = Path(output.replace("%A_%a", job)).parent / f"{job}_submitted.pkl"
            deadline = time.monotonic() + 120
            while not submitted.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            env = {**os.environ, "SLURM_JOB_ID": str(4243 + task), "SLURM_ARRAY_JOB_ID": "4242",
                   "SLURM_ARRAY_TASK_ID": str(task), "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1",
                   "SLURM_NODEID": "0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "localhost"}
            subprocess.run(["bash", script], env=env)
    """,
    "srun": """
        import os, subprocess, sys
        args, files = sys.argv[1:], {}
        while args[0].startswith("--"):
            flag = args.pop(0)
            if flag in ("--output", "--error"):
                name = args.pop(0)
                for key, var in (("%A", "SLURM_ARRAY_JOB_ID"), ("%a", "SLURM_ARRAY_TASK_ID"), ("%j", "SLURM_JOB_ID")):
                    name = name.replace(key, os.environ[var])
                files[flag] = open(name.replace("%t", "0"), "a")
        sys.exit(subprocess.run(args, stdout=files.get("--output"), stderr=files.get("--error")).returncode)
    """,
    "sacct": "",
}


@pytest.mark.mnist
@pytest.mark.slow
def test_the_slurm_launcher_config_runs_through_sbatch(tmp_path, single_process):
    needs_submitit()
    bin_dir, out = tmp_path / "bin", tmp_path / "multirun"
    bin_dir.mkdir()
    for name, source in FAKE_SLURM.items():
        (bin_dir / name).write_text(f"#!{sys.executable}\n{textwrap.dedent(source)}")
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_LOG": str(tmp_path)}

    done = sweep("--multirun", "hydra/launcher=lossbench_slurm", "hydra.launcher.partition=debug",
                 "hydra.launcher.timeout_min=30", PAIRS, *SHARDS, *GRID, f"hydra.sweep.dir={out}", env=env)
    assert done.returncode == 0, done.stderr
    script = (tmp_path / "sbatch.sh").read_text()
    for line in ("--partition=debug", "--time=30", "--gpus-per-task=1", "--cpus-per-task=4", "--mem=16GB",
                 "--job-name=lossbench", "--array=0-1%2", "--signal=USR2@120"):
        assert f"#SBATCH {line}\n" in script
    assert_same_runs(out, single_process)
