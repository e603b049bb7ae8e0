"""A real Slurm: `sweep --multirun hydra/launcher=lossbench_slurm` on a one-node cluster on this machine.

    sudo .ci/slurm_setup.sh && python -m pytest tests/test_slurm.py -s

.ci/slurm_setup.sh installs Debian's slurm-wlm and munge and starts munged, slurmctld and slurmd
(CI runs it, as root, before the tests). Where no Slurm controller answers, the tests skip and
say why. The grid: 2 pairs x 2 learning rates x 4 seeds of 784-8-10 in float64, 1 epoch on 100
images, split into 2 jobs by seeds; each job asks Slurm for 1 CPU and no GPU. The proof that
Slurm ran them (array job ids, each task's JobState from `scontrol show job`) is printed (-s).
Needs MNIST (LOSSBENCH_DATA) and the cluster extra (hydra-submitit-launcher).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lossbench.results import load

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not Path(os.environ.get("LOSSBENCH_DATA", "")).is_dir(),
    reason="needs MNIST: set LOSSBENCH_DATA or put it in ../shared/data/mnist")]

GRID = ["sweep.pairs=[sigmoid_ce,softmax_nll]", "sweep.lrs=[0.5,3.0]", "sweep.seeds=4", "optim.epochs=1",
        "model.sizes=[784,8,10]", "data.train_size=100", "data.val_size=500", "dtype=float64"]
SHARDS = ["shard.count=2", "shard.index=range(2)"]
# this node has no GPU and 2 cores: each job asks for 1 core (the launcher's defaults are for GPU nodes)
SLURM = ["hydra/launcher=lossbench_slurm", "hydra.launcher.gpus_per_task=null", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10"]
WAIT_S = 300


def command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def slurm() -> None:
    """Skip, saying why, unless a Slurm controller answers and has a node to run jobs."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the cluster extra: pip install -e '.[cluster]'")
    if not shutil.which("sbatch"):
        pytest.skip("no Slurm here (no sbatch); as root on Debian/Ubuntu, .ci/slurm_setup.sh sets one up")
    try:  # a broken setup makes scontrol retry for a minute
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.skip("the Slurm controller does not answer within 15 s; as root, .ci/slurm_setup.sh starts it")
    if "UP" not in ping.stdout:
        pytest.skip(f"the Slurm controller does not answer ({(ping.stdout + ping.stderr).strip()}); "
                    "as root, .ci/slurm_setup.sh starts it")
    nodes = command("sinfo", "-h", "-o", "%T").stdout.split()
    if not {"idle", "mixed", "allocated"} & set(nodes):
        pytest.skip(f"no Slurm node takes jobs (sinfo: {' '.join(nodes) or 'no nodes'})")


def sweep(*args: str) -> subprocess.CompletedProcess:
    """`python -m lossbench sweep ARGS` with one thread per process (the jobs inherit the environment)."""
    return subprocess.run([sys.executable, "-m", "lossbench", "sweep", *args], capture_output=True, text=True,
                          timeout=WAIT_S, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def single_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "sweep"
    done = sweep(*GRID, f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr
    return out


def assert_same_runs(a: Path, b: Path) -> None:
    """The runs `analyze` merges from the jobs equal the single process's (float64, to 1e-12)."""
    left, right = load.load_results([a]), load.load_results([b])
    for mine, theirs, keys in zip(left, right, (["run_id"], ["run_id", "epoch"])):
        mine, theirs = (frame.drop(columns=["wall_time_s"], errors="ignore").sort_values(keys, ignore_index=True)
                        for frame in (mine, theirs))
        pd.testing.assert_frame_equal(mine, theirs, check_exact=False, rtol=0, atol=1e-12)


def array_jobs(out: Path) -> list[str]:
    """The Slurm array job ids that submitit recorded under the multirun directory, oldest first."""
    return sorted({match.group(1) for path in (out / ".submitit").iterdir()
                   if (match := re.fullmatch(r"(\d+)_\d+", path.name))}, key=int)


def task_states(job: str, show: bool = False) -> dict[int, str]:
    """Array task -> JobState, from `scontrol show job` (Slurm keeps ended jobs for MinJobAge, 300 s);
    `show`: print what Slurm says of each task, the proof that Slurm ran it."""
    shown = command("scontrol", "-o", "show", "job", job).stdout
    if show:
        print(f"\n$ scontrol -o show job {job}  (abridged)\n" + "\n".join(
            " ".join(re.findall(r"(?<!\S)(?:JobId|ArrayJobId|ArrayTaskId|JobState|ExitCode|RunTime|NodeList|"
                                r"Command|WorkDir)=\S+", line)) for line in shown.splitlines()))
    return {int(task): state for task, state in re.findall(r"ArrayTaskId=(\d+) .*?JobState=(\S+)", shown)}


def ended(job: str) -> dict[int, str]:
    """Array task -> JobState once no task runs any more: the command may return (its jobs' results
    are written) a moment before Slurm has seen the jobs' processes end."""
    wait_for(lambda: not {"PENDING", "RUNNING", "COMPLETING"} & set(task_states(job).values()), f"job {job} to end")
    return task_states(job, show=True)


def log(out: Path, job: str, task: int) -> str:
    return (out / ".submitit" / f"{job}_{task}" / f"{job}_{task}_0_log.out").read_text()


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"waited {WAIT_S} s for {what}"
        time.sleep(0.5)


def test_two_slurm_jobs_merge_into_the_single_process_results(tmp_path, slurm, single_process):
    out = tmp_path / "multirun"
    done = sweep("--multirun", *SLURM, *SHARDS, *GRID, f"hydra.sweep.dir={out}")
    assert done.returncode == 0, done.stderr
    [job] = array_jobs(out)
    assert ended(job) == {0: "COMPLETED", 1: "COMPLETED"}
    for task in (0, 1):  # each task ran in Slurm: its log has Slurm's job id and the job's sweep
        assert f"8 runs (0 already finished) on cpu -> {out / str(task)}" in log(out, job, task)
    assert_same_runs(out, single_process)


def test_a_job_cancelled_with_scancel_is_trained_by_the_rerun_and_the_other_job_left_alone(tmp_path, slurm,
                                                                                            single_process):
    out = tmp_path / "multirun"
    # job 1 waits at the start of its batch script, so that it is surely running, and unfinished, when cancelled
    hold = 'hydra.launcher.setup=["if [ $SLURM_ARRAY_TASK_ID = 1 ]; then sleep 600; fi"]'
    launcher = subprocess.Popen([sys.executable, "-m", "lossbench", "sweep", "--multirun", *SLURM, hold, *SHARDS,
                                 *GRID, f"hydra.sweep.dir={out}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        wait_for(lambda: (out / ".submitit").is_dir() and array_jobs(out), "the array job to be submitted")
        [job] = array_jobs(out)
        wait_for(lambda: task_states(job).get(0) == "COMPLETED", "job 0 to finish")
        running = command("squeue", "-h", "-j", f"{job}_1", "-o", "%i %T").stdout.split()
        assert running == [f"{job}_1", "RUNNING"], running
        assert command("scancel", f"{job}_1").returncode == 0
        assert ended(job) == {0: "COMPLETED", 1: "CANCELLED"}
        # Without an accounting database (slurmdbd), submitit cannot learn that a job was cancelled and
        # the command keeps waiting for it: stop it as a user would, with Ctrl-C
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)
        _, err = launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    print(f"the launching command: exit {launcher.returncode}; {err.strip().splitlines()[-1]}")
    assert launcher.returncode in (1, 130) and "Traceback" not in err, err
    assert launcher.returncode == 1 or f"the same command plus hydra.sweep.dir={out}" in err
    assert not (out / "1" / "runs.csv").exists()
    kept = {name: ((out / "0" / name).read_bytes(), (out / "0" / name).stat().st_mtime_ns, (out / "0" / name).stat().st_ino)
            for name in ("config.yaml", "runs.csv", "epochs.csv")}

    again = sweep("--multirun", *SLURM, *SHARDS, *GRID, f"hydra.sweep.dir={out}")
    assert again.returncode == 0, again.stderr
    rerun = array_jobs(out)[-1]
    assert rerun != job and ended(rerun) == {0: "COMPLETED", 1: "COMPLETED"}
    assert f"8 runs (8 already finished) on cpu -> {out / '0'}" in log(out, rerun, 0)
    assert f"8 runs (0 already finished) on cpu -> {out / '1'}" in log(out, rerun, 1)
    for name, before in kept.items():  # job 0's results: not trained again, not even rewritten
        path = out / "0" / name
        assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino) == before, name
    assert_same_runs(out, single_process)
