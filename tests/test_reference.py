"""Tests of the book's per-example NumPy SGD (lossbench/reference.py), the independent reference of the trainer.

    python -m pytest tests/test_reference.py

The reference is checked against what it must be by definition, with nothing of lossbench's: its
gradients against central differences of each pair's cost written out here, and one mini-batch
step of sgd_epoch against network2's update rule (ch. 3 eq. 93) written out here.
"""

import numpy as np
import pytest

from lossbench import reference

SIZES = (5, 4, 3)


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


# Each pair's per-example cost C(z, y), from the book's formulas (ch. 1 eq. 6, ch. 3 eqs. 57, 80, 6)
COSTS = {
    "sigmoid_mse": lambda z, y: 0.5 * np.sum((reference.sigmoid(z) - y) ** 2),
    "sigmoid_ce": lambda z, y: -np.sum(y * np.log(reference.sigmoid(z)) + (1 - y) * np.log(1 - reference.sigmoid(z))),
    "softmax_nll": lambda z, y: -np.log(softmax(z)[y.argmax()]),
    "linear_mse": lambda z, y: 0.5 * np.sum((z - y) ** 2),
}


def network(seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(n_in, n_out)) for n_in, n_out in zip(SIZES[:-1], SIZES[1:])]
    biases = [rng.normal(size=n_out) for n_out in SIZES[1:]]
    return weights, biases, rng.uniform(size=SIZES[0]), np.eye(SIZES[-1])[1]


def cost(pair, weights, biases, x, y) -> float:
    a = x
    for w, b in zip(weights[:-1], biases[:-1]):
        a = reference.sigmoid(a @ w + b)
    return COSTS[pair](a @ weights[-1] + biases[-1], y)


@pytest.mark.parametrize("pair", list(COSTS))
def test_backprop_is_the_gradient_of_the_pairs_cost(pair):
    weights, biases, x, y = network()
    nabla_w, nabla_b = reference.backprop(weights, biases, x, y, pair)
    h = 1e-6
    for params, grads in ((weights, nabla_w), (biases, nabla_b)):
        for layer, (p, g) in enumerate(zip(params, grads)):
            numeric = np.zeros_like(p)
            for index in np.ndindex(p.shape):
                saved = p[index]
                p[index] = saved + h
                up = cost(pair, weights, biases, x, y)
                p[index] = saved - h
                down = cost(pair, weights, biases, x, y)
                p[index] = saved
                numeric[index] = (up - down) / (2 * h)
            np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8, err_msg=f"{pair} layer {layer}")


def test_one_mini_batch_follows_network2s_update():
    """w <- (1 - eta lambda / n) w - (eta / m) sum_x nabla_w C_x; b <- b - (eta / m) sum_x nabla_b C_x (eq. 93)."""
    weights, biases, _, _ = network(1)
    rng = np.random.default_rng(2)
    x, y = rng.uniform(size=(3, SIZES[0])), np.eye(SIZES[-1])[[0, 2, 1]]
    lr, l2, n = 0.5, 2.0, len(x)
    grads = [reference.backprop(weights, biases, x[i], y[i], "sigmoid_ce") for i in range(n)]
    new_w, new_b = reference.sgd_epoch(weights, biases, x, y, np.arange(n), batch_size=n, lr=lr, pair="sigmoid_ce",
                                       l2=l2)
    for layer in range(len(weights)):
        sum_w = sum(g[0][layer] for g in grads)
        sum_b = sum(g[1][layer] for g in grads)
        np.testing.assert_allclose(new_w[layer], (1 - lr * l2 / n) * weights[layer] - lr / n * sum_w, rtol=1e-14)
        np.testing.assert_allclose(new_b[layer], biases[layer] - lr / n * sum_b, rtol=1e-14)  # biases not decayed


def test_an_unknown_pair_is_refused():
    with pytest.raises(ValueError, match="unknown pair 'tanh_ce'"):
        reference.output_delta("tanh_ce", np.zeros(3), np.zeros(3))
