"""The hidden_saturation study: its per-layer statistics against a hand forward pass, a small run, its options.

    python -m pytest tests/test_studies_hidden_saturation.py
"""


import pandas as pd
import pytest
import torch

from lossbench.studies import command, hidden_saturation
from lossbench.ensemble import init_params
from lossbench.errors import UserError

SMALL = """command: study
study: {name: hidden_saturation, source: test}
sizes: [784, 8, 6, 10]
init: default
dataset: mnist
runs: [{pair: sigmoid_ce, lr: 0.5}, {pair: sigmoid_mse, lr: 3.0}]
seeds: 2
epochs: 2
images: 30
train_size: 200
"""


def test_layer_statistics_match_a_hand_forward_pass():
    sizes = (5, 4, 3, 2)
    models = [init_params(seed, sizes, "large") for seed in (0, 1)]
    params = [(torch.stack([m[l][0] for m in models]), torch.stack([m[l][1] for m in models])) for l in range(3)]
    x = torch.rand(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = hidden_saturation.layer_statistics(params, x)
    assert got.shape == (2, 2, 3)  # models, hidden layers, (mean, std, saturated)
    for m, layers in enumerate(models):
        a = x
        for l, (w, b) in enumerate(layers[:-1]):
            z = a @ w + b
            a = torch.sigmoid(z)
            saturated = (a * (1 - a) < 0.01).double().mean()
            assert got[m, l].tolist() == pytest.approx([a.mean().item(), a.std().item(), saturated.item()])


@pytest.mark.slow
@pytest.mark.mnist
def test_a_small_run_writes_each_layer_each_epoch(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("lossbench.studies.command.EXPERIMENTS_DIR", tmp_path)
    (tmp_path / "hidden_saturation.yaml").write_text(SMALL)
    out = tmp_path / "out"
    assert command.main(["hidden_saturation", "--out", str(out)]) == 0
    frame = pd.read_csv(out / "saturation.csv")
    assert len(frame) == 2 * 2 * 3 * 2  # pairs x seeds x epochs 0..2 x hidden layers
    assert frame[["mean_activation", "saturated"]].stack().between(0, 1).all()
    # a seed alone fixes the initialization: at epoch 0 both pairs' hidden layers are the same
    start = frame[frame["epoch"] == 0].pivot_table(index=["seed", "layer"], columns="pair", values="saturated")
    assert (start["sigmoid_ce"] == start["sigmoid_mse"]).all()
    assert (out / "saturation.png").is_file() and not (out / "claims.csv").exists()
    assert "lr: 3.0" in (out / "settings.yaml").read_text()


def test_best_lrs_come_from_a_complete_setting_only(tmp_path, write_setting):
    """`study hidden_saturation --best-lrs-from DIR` reads a verdict setting (conftest's write_setting)."""
    write_setting(tmp_path / "mnist_deep")
    runs = hidden_saturation.runs_at_best_lrs(tmp_path / "mnist_deep")
    assert {run.pair: run.lr for run in runs} == {"sigmoid_ce": 0.5, "softmax_nll": 0.5, "sigmoid_mse": 1.0,
                                                  "linear_mse": 0.5}
    write_setting(tmp_path / "half", keep=5)
    with pytest.raises(UserError, match="--best-lrs-from .*half: the sweep there is unfinished: 5 of 24 runs"):
        command.main(["hidden_saturation", "--best-lrs-from", str(tmp_path / "half"), "--out", str(tmp_path / "o")])
    with pytest.raises(UserError, match="--best-lrs-from does not apply to study toy_neuron"):
        command.main(["toy_neuron", "--best-lrs-from", str(tmp_path), "--out", str(tmp_path / "o")])


def test_bad_settings_are_user_errors(tmp_path, monkeypatch):
    monkeypatch.setattr("lossbench.studies.command.EXPERIMENTS_DIR", tmp_path)
    (tmp_path / "hidden_saturation.yaml").write_text(SMALL.replace("sizes: [784, 8, 6, 10]", "sizes: [784, 10]"))
    with pytest.raises(UserError, match=r"sizes=\[784, 10\] has no hidden layer"):
        command.main(["hidden_saturation", "--out", str(tmp_path / "o")])
    (tmp_path / "hidden_saturation.yaml").write_text(SMALL.replace("pair: sigmoid_ce", "pair: tanh_ce"))
    with pytest.raises(UserError, match="pair\\(s\\) tanh_ce unknown"):
        command.main(["hidden_saturation", "--out", str(tmp_path / "o")])
