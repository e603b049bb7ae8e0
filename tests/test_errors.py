"""Tests of the contract lossbench/errors.py states: a UserError is one paragraph and exit status 2; any other
exception is a bug and keeps its traceback.

    python -m pytest tests/test_errors.py
"""

import sys
import types

import pytest

from lossbench import cli
from lossbench.errors import UserError


@pytest.fixture
def failing_command(monkeypatch):
    """A command `fail` whose main raises the exception given to it."""
    module = types.ModuleType("lossbench_test_failing")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "fail", (module.__name__, "raises what it is given"))

    def raising(error: Exception):
        def main(argv):
            raise error
        module.main = main

    return raising


def test_a_user_error_is_one_paragraph_and_status_2(failing_command, capsys):
    failing_command(UserError("--steps=0: give a count >= 1."))
    assert cli.main(["fail"]) == 2
    assert capsys.readouterr().err == "error: --steps=0: give a count >= 1.\n"


def test_any_other_exception_is_a_bug_and_keeps_its_traceback(failing_command):
    failing_command(KeyError("bug"))
    with pytest.raises(KeyError, match="bug"):
        cli.main(["fail"])
