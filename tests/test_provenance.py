"""Tests of what `sweep` and `study` record about how a result was made (run_info.json).

    python -m pytest tests/test_provenance.py
"""

import json
import subprocess

import pytest

import lossbench
from lossbench import provenance


def read_info(directory):
    return json.loads((directory / "run_info.json").read_text())


def test_a_resumed_study_adds_its_wall_time(tmp_path):
    provenance.write_run_info(tmp_path, ["sweep"], "cpu", 10.0, "abc1234")
    provenance.write_run_info(tmp_path, ["sweep"], "cpu", 5.5, "abc1234")
    assert '"wall_time_s": 15.5' in (tmp_path / "run_info.json").read_text()


def test_run_info_names_the_command_the_code_and_the_machine(tmp_path):
    provenance.write_run_info(tmp_path, ["study", "toy_neuron"], "cpu", 1.0, "abc1234+dirty")
    info = read_info(tmp_path)
    assert info["command"] == "python -m lossbench study toy_neuron"
    assert info["code_version"] == "abc1234+dirty"
    assert info["device"] == "cpu" and info["hardware"] == provenance.hardware("cpu")
    assert info["hardware"].endswith(" cores")


def test_a_resume_by_other_code_adds_its_version_and_an_old_run_info_without_one_resumes(tmp_path):
    (tmp_path / "run_info.json").write_text(json.dumps({"command": "python -m lossbench sweep", "hardware": "x",
                                                        "torch": "2.13.0", "wall_time_s": 4.0}))
    provenance.write_run_info(tmp_path, ["sweep"], "cpu", 1.0, "abc1234")
    assert read_info(tmp_path)["code_version"] == "abc1234" and read_info(tmp_path)["wall_time_s"] == 5.0
    for code in ("def5678", "abc1234", "def5678"):
        provenance.write_run_info(tmp_path, ["sweep"], "cpu", 1.0, code)
    assert read_info(tmp_path)["code_version"] == "abc1234, def5678"


def test_tables_name_the_recorded_code_or_say_it_was_not_recorded(tmp_path):
    assert provenance.recorded_code_version({"command": "x"}) == "not recorded"  # a run_info.json from before it
    provenance.write_run_info(tmp_path, ["sweep"], "cpu", 1.0, "abc1234+dirty")
    assert provenance.recorded_code_version(read_info(tmp_path)) == "abc1234+dirty"


# --- code_version: the commit of a checkout, else the package's version -------------------------------------------
def git(directory, *args):
    return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git checkout with lossbench/, conf/ and results/ committed, as the one lossbench runs from."""
    repo = tmp_path / "repo"
    for path in ("lossbench/sweep.py", "conf/config.yaml", "results/runs.csv"):
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text("v1\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    monkeypatch.setattr(provenance, "CHECKOUT", repo)
    return repo


def test_code_version_is_the_checkouts_commit_dirty_only_when_its_code_changed(checkout):
    commit = git(checkout, "rev-parse", "--short", "HEAD")
    assert provenance.code_version() == commit
    (checkout / "results" / "runs.csv").write_text("a sweep writing its results\n")
    (checkout / "lossbench" / "new.py").write_text("untracked\n")
    assert provenance.code_version() == commit  # results and untracked files are not the code
    (checkout / "conf" / "config.yaml").write_text("v2\n")
    assert provenance.code_version() == commit + "+dirty"


def test_code_version_without_a_checkout_is_the_packages_version(checkout, tmp_path, monkeypatch):
    package = f"lossbench {lossbench.__version__}"
    monkeypatch.setattr(provenance, "CHECKOUT", checkout / "lossbench")  # an installed copy inside a repository
    assert provenance.code_version() == package
    monkeypatch.setattr(provenance, "CHECKOUT", tmp_path / "site-packages")  # no repository at all
    (tmp_path / "site-packages").mkdir()
    assert provenance.code_version() == package
    monkeypatch.setattr(provenance, "CHECKOUT", checkout)
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # git is not installed
    assert provenance.code_version() == package
