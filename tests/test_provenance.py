"""Tests of what `sweep` and `study` record about how a result was made (run_info.json).

    python -m pytest tests/test_provenance.py
"""

import json

from lossbench import provenance


def test_a_resumed_study_adds_its_wall_time(tmp_path):
    provenance.write_run_info(tmp_path, ["sweep"], "cpu", 10.0)
    provenance.write_run_info(tmp_path, ["sweep"], "cpu", 5.5)
    assert '"wall_time_s": 15.5' in (tmp_path / "run_info.json").read_text()


def test_run_info_names_the_command_and_the_machine(tmp_path):
    provenance.write_run_info(tmp_path, ["study", "toy_neuron"], "cpu", 1.0)
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["command"] == "python -m lossbench study toy_neuron"
    assert info["device"] == "cpu" and info["hardware"] == provenance.hardware("cpu")
    assert info["hardware"].endswith(" cores")
