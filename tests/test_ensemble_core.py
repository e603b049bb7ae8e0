"""Tests of the ensemble's training core: windows of steps, shards in threads, gradient norms and evaluation.

    python -m pytest tests/test_ensemble_core.py
"""

import numpy as np
import pytest
import torch

from lossbench.ensemble import Ensemble, RunSpec, TrainConfig, init_params
from lossbench.pairs import PAIRS

F64 = torch.float64


@pytest.mark.parametrize("sizes,init,l2", [((784, 12, 10), "large", 0.0), ((784, 16, 12, 10), "default", 5.0)])
def test_windows_of_steps_equal_one_step_at_a_time(learnable_split, sizes, init, l2):
    """The blocked first layer (Ensemble.window steps at once) is the same SGD as one step at a time, to
    rounding: every pair, two seed groups sharing a first layer; 2 epochs of 23 steps, the last one short."""
    data = learnable_split(227)
    cfg = TrainConfig(sizes=sizes, init=init, l2=l2, dtype=F64)
    specs = [RunSpec(pair, lr, seed) for seed in (3, 4) for lr in (0.3, 0.03) for pair in PAIRS]
    blocked, stepwise = Ensemble(specs, cfg, data), Ensemble(specs, cfg, data)
    stepwise.window = 1
    assert blocked.window > 1 and 227 // 10 % blocked.window  # several windows and a shorter one each epoch
    for _ in range(2):
        metrics, metrics_stepwise = blocked.train_epoch(), stepwise.train_epoch()
        for key, value in metrics_stepwise.items():
            np.testing.assert_allclose(metrics[key], value, rtol=1e-12, atol=1e-13, err_msg=key)
    for (w, b), (w1, b1) in zip(blocked.params(), stepwise.params()):
        np.testing.assert_allclose(w.numpy(), w1.numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(b.numpy(), b1.numpy(), rtol=0, atol=1e-12)


@pytest.fixture
def two_torch_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_shards_train_in_threads_of_one_torch_thread_that_flush_denormals(learnable_split, two_torch_threads):
    """On the CPU the groups are cut into one shard per torch thread, each trained in a thread of its own with
    one torch thread; those threads inherit the flush-to-zero mode that importing lossbench.ensemble set."""
    data = learnable_split(40)
    specs = [RunSpec("sigmoid_ce", 0.5, seed) for seed in range(5)]
    ens = Ensemble(specs, TrainConfig(sizes=(784, 4, 10)), data)
    assert [(shard.groups.start, shard.groups.stop) for shard in ens.shards] == [(0, 2), (2, 5)]
    seen = []
    tiny = torch.finfo(torch.float32).tiny
    for shard in ens.shards:
        shard._train = lambda batches, window: seen.append(
            (batches.shape[1], torch.get_num_threads(), bool(torch.tensor(4 * tiny) / 8 == 0)))
    ens.run_steps(ens.next_epoch_batches()[0])
    assert sorted(seen) == [(2, 1, True), (3, 1, True)]
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("pair", list(PAIRS))
def test_gradient_norm_metrics_equal_autograd_through_the_custom_function(learnable_split, pair):
    """With one mini-batch per epoch, grad_b/grad_w are the norms of the gradient of the batch-mean cost,
    which autograd computes here through the pair's custom Function (so from its hand-derived backward)."""
    data = learnable_split(10)
    cfg = TrainConfig(sizes=(784, 8, 6, 10), init="default", batch_size=10, dtype=F64)
    spec = RunSpec(pair, 0.1, 5)
    params = [(w.requires_grad_(), b.requires_grad_()) for w, b in init_params(spec.seed, cfg.sizes, cfg.init)]
    a = data.train_x
    for w, b in params[:-1]:
        a = torch.sigmoid(a @ w + b)
    z = a @ params[-1][0] + params[-1][1]
    y = torch.nn.functional.one_hot(data.train_y, 10).to(F64)
    cost = PAIRS[pair].per_example_cost(z, y).mean()
    grads = torch.autograd.grad(cost, [t for wb in params for t in wb])
    metrics = Ensemble([spec], cfg, data).train_epoch()
    for l in range(3):
        assert metrics[f"grad_w{l + 1}"][0] == pytest.approx(grads[2 * l].norm().item(), rel=1e-10)
        assert metrics[f"grad_b{l + 1}"][0] == pytest.approx(grads[2 * l + 1].norm().item(), rel=1e-10)
    assert metrics["train_cost"][0] == pytest.approx(cost.item(), rel=1e-12)


def test_evaluation_metrics_match_a_direct_computation(learnable_split):
    data = learnable_split(100, n_eval=300)
    cfg = TrainConfig(sizes=(784, 20, 10), batch_size=10, dtype=F64)
    spec = RunSpec("sigmoid_mse", 3.0, 11)
    ens = Ensemble([spec, RunSpec("sigmoid_mse", 0.3, 12)], cfg, data)
    metrics = ens.train_epoch()
    (w1, b1), (w2, b2) = ens.params()
    z = torch.sigmoid(data.test_x @ w1[0] + b1[0]) @ w2[0] + b2[0]
    y = torch.nn.functional.one_hot(data.test_y, 10).to(F64)
    assert metrics["test_acc"][0] == (z.argmax(1) == data.test_y).double().mean().item()
    assert metrics["test_cost"][0] == pytest.approx(PAIRS["sigmoid_mse"].cost_fn(z, y).mean().item(), rel=1e-12)
    sat = (torch.sigmoid(z) * torch.sigmoid(-z) < 0.01).double().mean().item()
    assert metrics["test_saturated"][0] == pytest.approx(sat, rel=1e-12)
    assert np.isnan(Ensemble([RunSpec("softmax_nll", 0.1, 1)], cfg, data).evaluate()["test_saturated"][0])
