"""The `study` command: every study's settings, the errors for a bad name, option or setting.

    python -m pytest tests/test_studies_command.py
"""

import pytest

from lossbench import cli
from lossbench.errors import UserError
from lossbench.studies.command import STUDIES, main, study_module, study_settings
from lossbench.studies.nielsen_ch5_gradients import GradientSettings
from lossbench.studies.toy_neuron import ToyNeuronSettings


def test_every_study_has_valid_settings_that_the_sweep_skips():
    from lossbench.config import sweep_studies
    for name, study in STUDIES.items():
        assert study_settings(name, getattr(study_module(name), study.settings)).command == "study"
        assert name not in sweep_studies()
    assert study_settings("nielsen_ch5_gradients", GradientSettings).seeds == 100


def test_a_bad_study_name_is_a_user_error_listing_the_studies(capsys):
    with pytest.raises(UserError, match="'toy'.*toy_neuron, nielsen_ch5_gradients"):
        main(["toy"])
    assert cli.main(["study", "toy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown study 'toy'") and "Traceback" not in err


def test_options_a_study_does_not_take_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="--seeds does not apply to study toy_neuron"):
        main(["toy_neuron", "--seeds", "3", "--out", str(tmp_path)])
    with pytest.raises(UserError, match="seeds=0"):
        main(["nielsen_ch5_gradients", "--seeds", "0", "--out", str(tmp_path)])


def test_settings_of_the_wrong_type_are_user_errors(tmp_path, monkeypatch):
    monkeypatch.setattr("lossbench.studies.command.EXPERIMENTS_DIR", tmp_path)
    (tmp_path / "toy_neuron.yaml").write_text("command: study\nepochs: many\n")
    with pytest.raises(UserError, match="toy_neuron.yaml.*epochs"):
        study_settings("toy_neuron", ToyNeuronSettings)
