"""The benchmark's peers (torch.func, JAX) take the same SGD step as the Ensemble, in float64.

    python -m pytest tests/test_peers.py
"""

import numpy as np
import pytest
import torch

from lossbench import peers
from lossbench.ensemble import Ensemble, RunSpec, TrainConfig
from lossbench.pairs import PAIRS

F64 = torch.float64


@pytest.fixture
def ensemble_and_batches(learnable_split):
    """Every pair, two learning rates and two seeds (so groups share batch orders), 784-12-7-10, float64."""
    data = learnable_split(60, n_eval=30)
    specs = [RunSpec(pair, lr, seed) for seed in (5, 6) for lr in (0.3, 0.05) for pair in PAIRS]
    ensemble = Ensemble(specs, TrainConfig(sizes=(784, 12, 7, 10), init="default", dtype=F64), data)
    return ensemble, ensemble.next_epoch_batches()[0][:3]


def assert_same_steps(peer, ensemble, batches):
    """Three steps one at a time in the peer, and as one call of run_steps in the Ensemble."""
    for k in range(len(batches)):
        peer.run_steps(batches[k:k + 1])
    ensemble.run_steps(batches)
    for (w, b), (w_peer, b_peer) in zip(ensemble.params(), peer.params()):
        np.testing.assert_allclose(w_peer.numpy(), w.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(b_peer.numpy(), b.numpy(), rtol=0, atol=1e-12)
    evaluated, peer_evaluated = ensemble.evaluate(), peer.evaluate()
    for key, values in peer_evaluated.items():
        np.testing.assert_allclose(values, evaluated[key], rtol=1e-12, atol=0, err_msg=key)


def test_torch_func_steps_equal_the_ensembles(ensemble_and_batches):
    ensemble, batches = ensemble_and_batches
    assert_same_steps(peers.TorchFunc(ensemble), ensemble, batches)


def test_jax_steps_equal_the_ensembles(ensemble_and_batches):
    jax = pytest.importorskip("jax")
    ensemble, batches = ensemble_and_batches
    with jax.enable_x64(True):
        assert_same_steps(peers.Jax(ensemble), ensemble, batches)
