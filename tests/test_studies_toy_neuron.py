"""The toy neuron study against the book's ch. 3 statements and the hand formulas, and its run through the command.

    python -m pytest tests/test_studies_toy_neuron.py
"""

import math

import pandas as pd
import pytest
import torch

from lossbench.studies.command import main, study_settings
from lossbench.studies.toy_neuron import ToyNeuronSettings, Update, epochs_to_move, train_neuron

EPOCHS = 300


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
    cfg = study_settings("toy_neuron", ToyNeuronSettings)
    assert df.run.nunique() == len(cfg.starts) * len(cfg.runs) and len(df) == df.run.nunique() * (cfg.epochs + 1)
    assert (tmp_path / "toy_neuron.png").read_bytes()[:4] == b"\x89PNG"
    claims = pd.read_csv(tmp_path / "claims.csv")
    assert claims.holds.any() and not claims.holds.all()  # the gradient at eta 0.005 is not the widget's step
    out = capsys.readouterr().out
    assert "0.09" in out and "DOES NOT HOLD" in out
