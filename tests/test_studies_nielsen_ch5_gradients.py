"""The ch. 5 study: |dC/db| per hidden layer at initialization, by hand on a tiny net and on MNIST.

    python -m pytest tests/test_studies_nielsen_ch5_gradients.py

The MNIST test reads LOSSBENCH_DATA (conftest.py defaults it to ../shared/data/mnist) and skips
when it is absent.
"""


import pandas as pd
import pytest
import torch

from lossbench.ensemble import init_params
from lossbench.studies.command import main
from lossbench.studies.nielsen_ch5_gradients import bias_gradient_norms



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


@pytest.mark.mnist
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
