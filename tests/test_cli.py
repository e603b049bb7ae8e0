"""Tests of the command line (lossbench/cli.py) as a newcomer meets it: help without torch, every command's help
under its own name, an unknown command, paths in errors shown absolute.

    python -m pytest tests/test_cli.py

No MNIST needed: every case stops before a command reads data. The hints for bad overrides are
tests/test_overrides.py's; each command's own behaviour, its module's test file's.
"""

import subprocess
import sys

import pytest

from lossbench import cli
from lossbench.cli import COMMANDS


# --- help, fast: without torch ------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--help"], ["sweep", "--help"], ["sweep", "-h", "model=book_h100"]])
def test_help_prints_without_importing_torch(args):
    code = f"import sys; from lossbench import cli; status = cli.main({args!r}); print(status, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("0 False")  # status 0, neither torch nor scipy.stats imported
    if args[0] == "sweep":  # Hydra's help as the app's template lays it out, the config composed
        for part in ("== Configuration groups ==", "pair: all, linear_mse, sigmoid_ce, sigmoid_mse, softmax_nll",
                     "experiment: nielsen_ch1_h100", "== Config ==", "ensemble_size: 160", "Examples:"):
            assert part in done.stdout
        assert ("- 100" in done.stdout) == ("model=book_h100" in args)  # overrides apply to the config shown
    else:
        assert "compare-runs" in done.stdout and "data " in done.stdout


@pytest.mark.parametrize("command", [name for name in COMMANDS if name != "sweep"])  # sweep: above
def test_every_commands_help_prints_without_importing_torch(command):
    """Nor scipy.stats (0.4 s of the 0.7 s that `analyze --help` took under load): issue 17's "under 1 s"."""
    code = (f"import sys; from lossbench import cli\ntry: cli.main([{command!r}, '--help'])\n"
            "except SystemExit as done: print(done.code, 'torch' in sys.modules or 'scipy.stats' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"usage: python -m lossbench {command} " in done.stdout
    assert done.stdout.rstrip().endswith("0 False")  # status 0, neither torch nor scipy.stats imported


@pytest.mark.parametrize("command", [name for name in COMMANDS if name != "sweep"])  # sweep's help is Hydra's: above
def test_every_command_answers_help_under_its_own_name(command, capsys):
    """`python -m lossbench COMMAND --help` reaches the command's module, which names itself as it is typed."""
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith(f"usage: python -m lossbench {command} ")
    assert {"analyze": "--out", "gradcheck": "--device {cpu,cuda,auto}"}.get(command, "") in out


def test_an_unknown_command_lists_the_commands(capsys):
    assert cli.main(["analyse"]) == 2
    assert capsys.readouterr().err == f"error: unknown command 'analyse'; choose one of: {', '.join(COMMANDS)}.\n"


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
