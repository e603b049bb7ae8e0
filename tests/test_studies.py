"""The studies: the toy neuron against the book's ch. 3 statements and the hand formulas, ch. 5's gradients, the CLI.

    /work/venv/bin/python -m pytest tests/test_studies.py

The ch. 5 tests read MNIST from LOSSBENCH_DATA (conftest.py defaults it to
../shared/data/mnist) and skip when it is absent.
"""

import math
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from lossbench import cli
from lossbench.studies import (STUDIES, GradientSettings, ToyNeuronSettings, Update, bias_gradient_norms,
                               epochs_to_move, load_settings, main, train_neuron)
from lossbench.ensemble import init_params
from lossbench.errors import UserError

EPOCHS = 300
needs_mnist = pytest.mark.skipif(not Path(os.environ.get("LOSSBENCH_DATA", "")).is_dir(),
                                 reason="MNIST not found (LOSSBENCH_DATA)")


def neuron(pair, start, lr, update=Update.gradient, epochs=EPOCHS):
    return train_neuron(pair, *start, lr, epochs, update)


# --- the book's ch. 3 statements, with the tolerance of their wording -----------
def test_quadratic_from_0p6_0p9_starts_at_0p82_and_ends_at_about_0p09():
    t = neuron("sigmoid_mse", (0.6, 0.9), 0.15)
    assert round(t.activation[0], 2) == 0.82  # "The initial output from the neuron is 0.82"
    assert round(t.activation[EPOCHS], 2) == 0.09  # "an output from the neuron of about 0.09"


def test_quadratic_from_2_2_barely_moves_for_about_150_epochs_then_learns():
    t = neuron("sigmoid_mse", (2.0, 2.0), 0.15)
    assert round(t.activation[0], 2) == 0.98
    assert t.activation[100] > 0.95 and t.activation[150] > 0.9  # "for the first 150 or so learning epochs"
    assert 100 <= epochs_to_move(t) <= 200
    assert t.activation[EPOCHS] < 0.5  # "Then the learning kicks in"
    fast = neuron("sigmoid_mse", (0.6, 0.9), 0.15)
    assert epochs_to_move(fast) < epochs_to_move(t) / 5  # slower when badly wrong


def test_cross_entropy_learns_faster_at_first_from_2_2():
    quadratic, cross_entropy = neuron("sigmoid_mse", (2.0, 2.0), 0.15), neuron("sigmoid_ce", (2.0, 2.0), 0.005)
    for epoch in (1, 10, 50, 100):
        assert cross_entropy.activation[epoch] < quadratic.activation[epoch]
    drop = lambda t, k: t.cost[0] - t.cost[k]  # noqa: E731
    assert drop(cross_entropy, 10) > 10 * drop(quadratic, 10)


def test_the_book_widgets_dC_da_step_is_eta_over_1_minus_a_and_learns_fast():
    t = neuron("sigmoid_ce", (2.0, 2.0), 0.005, Update.dC_da, epochs=1)
    a = torch.sigmoid(torch.tensor(4.0, dtype=torch.float64)).item()
    assert t.w[1] == pytest.approx(2.0 - 0.005 / (1 - a), rel=1e-12)  # js/saturation4.js: derivative 1/(1-a)
    assert neuron("sigmoid_ce", (2.0, 2.0), 0.005, Update.dC_da).activation[EPOCHS] < 0.1
    assert neuron("sigmoid_ce", (2.0, 2.0), 0.005).activation[EPOCHS] > 0.7  # the true gradient at eta 0.005


@pytest.mark.parametrize("pair, hand", [
    ("sigmoid_mse", lambda a, y, z: (a - y) * a * (1 - a)),  # ch. 3 eqs. 55-56
    ("sigmoid_ce", lambda a, y, z: a - y),  # eqs. 61-62
])
@pytest.mark.parametrize("w0, b0, x, y", [(0.6, 0.9, 1.0, 0.0), (2.0, 2.0, 1.0, 0.0), (-1.5, 0.3, 0.7, 1.0)])
def test_one_step_follows_the_hand_formula(pair, hand, w0, b0, x, y):
    """w_1 = w_0 - eta x dC/dz and b_1 = b_0 - eta dC/dz, with dC/dz written out here, not taken from pairs."""
    lr = 0.3
    t = train_neuron(pair, w0, b0, lr, 1, Update.gradient, x, y)
    z = w0 * x + b0
    a = 1 / (1 + math.exp(-z))
    dc_dz = hand(a, y, z)
    assert t.activation[0] == pytest.approx(a, rel=1e-14)
    assert t.w[1] == pytest.approx(w0 - lr * x * dc_dz, rel=1e-13, abs=1e-15)
    assert t.b[1] == pytest.approx(b0 - lr * dc_dz, rel=1e-13, abs=1e-15)


def test_toy_neuron_cli_writes_the_tidy_csv_the_plot_and_the_claims(tmp_path, capsys):
    assert main(["toy_neuron", "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "toy_neuron.csv")
    assert list(df.columns) == ["run", "pair", "update", "w0", "b0", "lr", "epoch", "w", "b", "activation", "cost"]
    cfg = load_settings("toy_neuron", ToyNeuronSettings)
    assert df.run.nunique() == len(cfg.starts) * len(cfg.runs) and len(df) == df.run.nunique() * (cfg.epochs + 1)
    assert (tmp_path / "toy_neuron.png").read_bytes()[:4] == b"\x89PNG"
    claims = pd.read_csv(tmp_path / "claims.csv")
    assert claims.holds.any() and not claims.holds.all()  # the gradient at eta 0.005 is not the widget's step
    out = capsys.readouterr().out
    assert "0.09" in out and "DOES NOT HOLD" in out


# --- ch. 5 --------------------------------------------------------------------
def test_bias_gradient_is_the_mean_over_examples_of_the_backpropagated_delta():
    """BP1-BP3 by hand on a tiny net: dC/db^l = mean_x delta^l_x."""
    sizes, gen = (4, 3, 2), torch.Generator().manual_seed(0)
    params = init_params(0, sizes, "default")
    x = torch.rand(5, 4, generator=gen, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0, 1]), 2).double()
    h = torch.sigmoid(x @ params[0][0] + params[0][1])
    a = torch.sigmoid(h @ params[1][0] + params[1][1])
    delta2 = a - y  # cross-entropy, eq. 66
    delta1 = (delta2 @ params[1][0].T) * h * (1 - h)  # BP2
    expected = [delta1.mean(0).norm().item(), delta2.mean(0).norm().item()]
    assert bias_gradient_norms(params, "sigmoid_ce", x, y) == pytest.approx(expected, rel=1e-12)


@needs_mnist
def test_ch5_norms_on_a_few_seeds_are_finite_and_grow_toward_the_output(tmp_path):
    assert main(["nielsen_ch5_gradients", "--seeds", "4", "--out", str(tmp_path)]) == 0
    norms = pd.read_csv(tmp_path / "gradient_norms.csv")
    hidden = norms[["grad_b1", "grad_b2", "grad_b3"]]
    assert len(norms) == 4 and hidden.notna().all().all() and (hidden > 0).all().all()
    assert (hidden.grad_b1 < hidden.grad_b2).all() and (hidden.grad_b2 < hidden.grad_b3).all()  # vanishing gradient
    assert hidden.grad_b1.between(0.002, 0.05).all()  # the book's 0.012, give or take the spread over seeds
    summary = pd.read_csv(tmp_path / "summary.csv", index_col="layer")
    assert list(summary.book) == [0.012, 0.060, 0.283]
    assert (tmp_path / "gradient_norms.png").is_file() and (tmp_path / "summary.md").is_file()


# --- settings and errors ----------------------------------------------------------
def test_every_study_has_valid_settings_that_the_sweep_skips():
    from lossbench.config import sweep_studies
    for name, study in STUDIES.items():
        assert load_settings(name, study.settings).command == "study"
        assert name not in sweep_studies()
    assert load_settings("nielsen_ch5_gradients", GradientSettings).seeds == 100


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
    monkeypatch.setattr("lossbench.studies.EXPERIMENTS_DIR", tmp_path)
    (tmp_path / "toy_neuron.yaml").write_text("command: study\nepochs: many\n")
    with pytest.raises(UserError, match="toy_neuron.yaml.*epochs"):
        load_settings("toy_neuron", ToyNeuronSettings)
