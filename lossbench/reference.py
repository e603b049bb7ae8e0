"""The book's SGD, per example, in plain NumPy: the independent reference.

    python -m lossbench bench

Written from Nielsen's equations (ch. 1-3) with no torch and no batching, the
way `network.py` does it: backprop one example at a time (BP1-BP4), sum the
gradients over the mini-batch, then w <- (1 - eta lambda / n) w - (eta / m) sum
nabla_w (ch. 3 eq. 93). Row-vector convention, as in lossbench: z = a W + b.
The tests compare the ensemble trainer with it; the benchmark times it as
"the book's code".
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def output_delta(pair: str, z, y):
    """dC/dz at the output for one example, from the book's formulas (not lossbench.pairs)."""
    if pair == "sigmoid_mse":  # (a - y) sigma'(z), ch. 1 / ch. 3 eq. 65
        a = sigmoid(z)
        return (a - y) * a * (1 - a)
    if pair == "sigmoid_ce":  # a - y, eq. 66
        return sigmoid(z) - y
    if pair == "softmax_nll":  # a - y with a = softmax(z), eq. 84
        e = np.exp(z - z.max())
        return e / e.sum() - y
    if pair == "linear_mse":  # z - y, eq. 68
        return z - y
    raise ValueError(f"unknown pair {pair!r}")


def backprop(weights, biases, x, y, pair: str):
    """(nabla_w, nabla_b) of one example's cost: BP1-BP4 of ch. 2."""
    activations, zs = [x], []
    for w, b in zip(weights, biases):
        zs.append(activations[-1] @ w + b)
        activations.append(sigmoid(zs[-1]))
    delta = output_delta(pair, zs[-1], y)  # BP1
    nabla_w, nabla_b = [None] * len(weights), [None] * len(weights)
    for l in reversed(range(len(weights))):
        nabla_b[l] = delta  # BP3
        nabla_w[l] = np.outer(activations[l], delta)  # BP4
        if l:
            s = sigmoid(zs[l - 1])
            delta = (weights[l] @ delta) * s * (1 - s)  # BP2
    return nabla_w, nabla_b


def sgd_epoch(weights, biases, x, y_onehot, order, batch_size: int, lr: float, pair: str, l2: float = 0.0):
    """One epoch over x[order] in mini-batches; returns the new (weights, biases) lists."""
    n = len(x)
    for k in range(0, n, batch_size):
        batch = order[k:k + batch_size]
        sum_w = [np.zeros_like(w) for w in weights]
        sum_b = [np.zeros_like(b) for b in biases]
        for i in batch:
            nabla_w, nabla_b = backprop(weights, biases, x[i], y_onehot[i], pair)
            sum_w = [s + g for s, g in zip(sum_w, nabla_w)]
            sum_b = [s + g for s, g in zip(sum_b, nabla_b)]
        m = len(batch)
        weights = [(1 - lr * l2 / n) * w - (lr / m) * g for w, g in zip(weights, sum_w)]
        biases = [b - (lr / m) * g for b, g in zip(biases, sum_b)]
    return weights, biases
