"""The ensemble trainer against the book's algorithm, per-example NumPy, and against itself.

    python -m pytest tests/test_ensemble.py
"""

import threading

import numpy as np
import pytest
import torch

from lossbench import ensemble
from lossbench.data import Split
from lossbench.ensemble import Ensemble, RunSpec, TrainConfig, init_params
from lossbench.pairs import PAIRS
from lossbench.reference import sgd_epoch

F64 = torch.float64


def reference_run(spec: RunSpec, cfg: TrainConfig, data: Split, epochs: int):
    """The same run in per-example NumPy: same initial weights, same batch order (the RNG protocol)."""
    g = torch.Generator().manual_seed(spec.seed)
    params = init_params(spec.seed, cfg.sizes, cfg.init, g)
    weights = [w.numpy() for w, _ in params]
    biases = [b.numpy()[0] for _, b in params]
    x, y = data.train_x.double().numpy(), np.eye(cfg.sizes[-1])[data.train_y.numpy()]
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g).numpy()
        weights, biases = sgd_epoch(weights, biases, x, y, order, cfg.batch_size, spec.lr, spec.pair, cfg.l2)
    return weights, biases


@pytest.mark.parametrize("pair", list(PAIRS))
@pytest.mark.parametrize("sizes,init,l2", [((784, 30, 10), "large", 0.0), ((784, 16, 12, 10), "default", 5.0)])
def test_matches_per_example_numpy_reference(learnable_split, pair, sizes, init, l2):
    """2 epochs on 500 examples, float64: every weight within 1e-9 of the book's per-example algorithm."""
    data = learnable_split(500)
    cfg = TrainConfig(sizes=sizes, init=init, batch_size=10, l2=l2, dtype=F64)
    # Two seeds x two learning rates: exercises the seed groups that share the first layer. Linear
    # outputs are unbounded: at eta = 0.5 they diverge, and rounding differences grow without bound.
    lrs = (0.01, 0.001) if pair == "linear_mse" else (0.5, 0.05)
    specs = [RunSpec(pair, lr, seed) for lr in lrs for seed in (3, 4)]
    ens = Ensemble(specs, cfg, data)
    assert ens.G == 2
    for _ in range(2):
        ens.train_epoch()
    for m, spec in enumerate(specs):
        weights, biases = reference_run(spec, cfg, data, epochs=2)
        for (w, b), w_ref, b_ref in zip(ens.params(), weights, biases):
            np.testing.assert_allclose(w[m].numpy(), w_ref, rtol=0, atol=1e-9)
            np.testing.assert_allclose(b[m, 0].numpy(), b_ref, rtol=0, atol=1e-9)


def test_strong_weight_decay_runs_one_step_at_a_time_and_stays_finite(learnable_split):
    """eta lambda / n = 0.999 shrinks the weights 1000x a step; a window's corrections would scale deltas
    by 1000^k, beyond float32 after 13 steps (20 steps here), so such an ensemble is not blocked."""
    data = learnable_split(200, dtype=torch.float32)
    ens = Ensemble([RunSpec("sigmoid_ce", 0.999, 0)], TrainConfig(sizes=(784, 8, 10), l2=200.0), data)
    ens.train_epoch()
    assert all(torch.isfinite(t).all() for layer in ens.params() for t in layer)
    assert ens.window == 1


def test_next_epoch_batches_are_what_train_epoch_trains_on(learnable_split):
    """The benchmark draws its batches with next_epoch_batches: run through run_steps they give train_epoch's
    parameters, bit for bit (n = 95: nine full mini-batches and the book's last one of 5)."""
    data = learnable_split(95)
    cfg = TrainConfig(sizes=(784, 6, 10), dtype=F64)
    specs = [RunSpec("softmax_nll", lr, seed) for lr in (0.1, 1.0) for seed in (0, 1)]
    trained, stepped = Ensemble(specs, cfg, data), Ensemble(specs, cfg, data)
    trained.train_epoch()
    full, last = stepped.next_epoch_batches()
    assert full.shape == (9, stepped.S, 10) and last.shape == (1, stepped.S, 5)
    stepped.run_steps(full)
    stepped.run_steps(last)
    for (w, b), (w1, b1) in zip(trained.params(), stepped.params()):
        assert torch.equal(w, w1) and torch.equal(b, b1)


def test_learning_rates_must_be_positive(learnable_split):
    data = learnable_split(20)
    with pytest.raises(ValueError, match="finite and > 0"):
        Ensemble([RunSpec("sigmoid_ce", 0.0, 0)], TrainConfig(sizes=(784, 4, 10)), data)


def test_last_partial_batch_follows_the_book(learnable_split):
    """n = 503 with m = 10: the last mini-batch has 3 examples and is averaged over 3, as in network.py."""
    data = learnable_split(503)
    cfg = TrainConfig(sizes=(784, 20, 10), batch_size=10, dtype=F64)
    spec = RunSpec("sigmoid_ce", 0.5, 7)
    ens = Ensemble([spec], cfg, data)
    ens.train_epoch()
    weights, _ = reference_run(spec, cfg, data, epochs=1)
    for (w, _), w_ref in zip(ens.params(), weights):
        np.testing.assert_allclose(w[0].numpy(), w_ref, rtol=0, atol=1e-9)


def assert_same_as_alone(specs, cfg, data, models, epochs=2):
    """Models `models` of an ensemble of `specs` against each trained alone: 1e-10 apart (float64)."""
    ens = Ensemble(specs, cfg, data)
    runs = [ens.train_epoch() for _ in range(epochs)]
    for m in models:
        alone = Ensemble([specs[m]], cfg, data)
        runs_alone = [alone.train_epoch() for _ in range(epochs)]
        for metrics, metrics_alone in zip(runs, runs_alone):
            for key, value in metrics_alone.items():
                np.testing.assert_allclose(metrics[key][m], value[0], rtol=0, atol=1e-10, err_msg=key)
        for (w, b), (w1, b1) in zip(ens.params(), alone.params()):
            np.testing.assert_allclose(w[m].numpy(), w1[0].numpy(), rtol=0, atol=1e-10)
            np.testing.assert_allclose(b[m].numpy(), b1[0].numpy(), rtol=0, atol=1e-10)
    return ens


def test_model_in_ensemble_of_160_equals_model_alone(learnable_split):
    """Model m's numbers depend only on its own spec, whatever shares its ensemble: 4 pairs x 2 lrs x 20 seeds."""
    data = learnable_split(200, n_eval=50)
    cfg = TrainConfig(sizes=(784, 12, 10), batch_size=10, dtype=F64)
    specs = [RunSpec(pair, lr, seed) for seed in range(20) for lr in (0.1, 0.5) for pair in PAIRS]
    ens = assert_same_as_alone(specs, cfg, data, models=(0, 57, 98, 159))
    assert (ens.S, ens.G) == (80, 2)


def test_irregular_ensemble_falls_back_to_one_model_per_group(learnable_split):
    """Seeds holding different pairs cannot share the first layer; the numbers stay the same."""
    data = learnable_split(100, n_eval=50)
    cfg = TrainConfig(sizes=(784, 12, 10), batch_size=10, dtype=F64)
    specs = [RunSpec("sigmoid_ce", 0.5, 0), RunSpec("softmax_nll", 0.5, 0), RunSpec("sigmoid_ce", 0.1, 1),
             RunSpec("linear_mse", 0.05, 2)]
    ens = assert_same_as_alone(specs, cfg, data, models=range(4))
    assert (ens.S, ens.G) == (4, 1)


def test_divergence_freezes_one_model_and_leaves_the_others_bit_identical(learnable_split):
    data = learnable_split(300)
    cfg = TrainConfig(sizes=(784, 10, 10), batch_size=10, dtype=torch.float32)
    good = [RunSpec("linear_mse", 0.01, 1), RunSpec("linear_mse", 0.02, 2)]
    with_bad = Ensemble(good + [RunSpec("linear_mse", 1e6, 3)], cfg, data)
    with_sane = Ensemble(good + [RunSpec("linear_mse", 0.03, 3)], cfg, data)
    for epoch in range(1, 4):
        bad_metrics, sane_metrics = with_bad.train_epoch(), with_sane.train_epoch()
        for key in sane_metrics:
            np.testing.assert_array_equal(bad_metrics[key][:2], sane_metrics[key][:2], err_msg=key)
            assert np.isnan(bad_metrics[key][2]), key
    assert with_bad.diverged_epoch.tolist() == [0, 0, 1]
    assert with_sane.diverged_epoch.tolist() == [0, 0, 0]
    for (w, _), (w_sane, _) in zip(with_bad.params(), with_sane.params()):
        assert torch.equal(w[:2], w_sane[:2])


def test_evaluation_runs_each_shard_on_one_torch_thread(learnable_split, monkeypatch):
    """On torch's thread pool the same evaluation gave other last bits in some processes (see
    Ensemble._evaluate_shards); each shard is evaluated in its own thread with one torch thread."""
    specs = [RunSpec(pair, 0.5, seed) for seed in (1, 2) for pair in PAIRS]
    ens = Ensemble(specs, TrainConfig(sizes=(784, 6, 10), dtype=F64), learnable_split(50))
    seen, evaluate = [], ensemble.Shard._evaluate_set

    def recorded(shard, x, labels):
        seen.append((shard.groups, torch.get_num_threads()))
        return evaluate(shard, x, labels)

    monkeypatch.setattr(ensemble.Shard, "_evaluate_set", recorded)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        metrics = ens.evaluate()
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    assert sorted((g.start, g.stop, n) for g, n in seen) == [(0, 4, 1)] * 2 + [(4, 8, 1)] * 2  # val and test
    monkeypatch.undo()
    acc, cost, _ = ens._evaluate_set(ens.data.val_x, ens.data.val_y)  # all models at once: the same numbers
    np.testing.assert_allclose(metrics["val_cost"], ens._to_spec_order(cost), rtol=1e-12)
    np.testing.assert_array_equal(metrics["val_acc"], ens._to_spec_order(acc))


def test_a_single_shard_trains_on_one_torch_thread_in_the_calling_thread(learnable_split, monkeypatch):
    """Two torch threads gave other weights in some processes (Ensemble._on_shards): one, even for one shard."""
    ens = Ensemble([RunSpec("sigmoid_ce", lr, 0) for lr in (0.1, 0.5)], TrainConfig(sizes=(784, 6, 10)),
                   learnable_split(40))
    seen, train = [], ensemble.Shard._train
    caller = threading.get_ident()

    def recorded(shard, batches, window):
        seen.append((threading.get_ident() == caller, torch.get_num_threads()))
        return train(shard, batches, window)

    monkeypatch.setattr(ensemble.Shard, "_train", recorded)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ens.train_epoch()
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    assert len(ens.shards) == 1 and seen and set(seen) == {(True, 1)}


def test_epoch_zero_row_has_eval_metrics_only(learnable_split):
    data = learnable_split(50)
    metrics = Ensemble([RunSpec("sigmoid_ce", 0.5, 0)], TrainConfig(sizes=(784, 5, 10)), data).evaluate()
    assert np.isnan(metrics["train_cost"][0]) and np.isnan(metrics["grad_b1"][0])
    assert 0 <= metrics["test_acc"][0] <= 1 and np.isfinite(metrics["val_cost"][0])


def test_checkpoint_resume_gives_the_uninterrupted_numbers(learnable_split):
    data = learnable_split(200)
    cfg = TrainConfig(sizes=(784, 12, 10), batch_size=10, dtype=torch.float32)
    specs = [RunSpec("softmax_nll", lr, seed) for lr in (0.1, 1.0) for seed in (0, 1, 2)]
    straight = Ensemble(specs, cfg, data)
    expected = [straight.train_epoch() for _ in range(3)][-1]
    first = Ensemble(specs, cfg, data)
    first.train_epoch()
    state = first.state_dict()
    first.train_epoch()  # training on must not change the state already taken (no shared memory)
    resumed = Ensemble(specs, cfg, data)
    resumed.load_state_dict(state)
    resumed.train_epoch()
    got = resumed.train_epoch()
    assert resumed.epoch == 3
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    with pytest.raises(ValueError, match="different ensemble"):
        Ensemble(specs[:2], cfg, data).load_state_dict(state)


def test_float32_run_learns_and_spec_order_is_kept(learnable_split):
    data = learnable_split(1000, dtype=torch.float32)
    specs = [RunSpec("sigmoid_ce", 0.5, 2), RunSpec("sigmoid_ce", 0.5, 1), RunSpec("sigmoid_ce", 1e-9, 2)]
    ens = Ensemble(specs, TrainConfig(sizes=(784, 20, 10)), data)
    before = ens.evaluate()["val_acc"]
    after = [ens.train_epoch() for _ in range(3)][-1]["val_acc"]
    assert after[0] > before[0] + 0.1 and after[1] > before[1] + 0.1
    assert after[2] == pytest.approx(before[2], abs=0.02)  # eta ~ 0: model 2 barely moves
    assert before[0] == before[2]  # same seed, same initialization, whatever the order of the specs


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graphs_agree_with_cpu(learnable_split, monkeypatch):
    """The graphed CUDA path against the CPU path, float64. 1,205 examples are 120 steps of 10 and one
    of 5: with GRAPH_STEPS = 50, an epoch replays the one captured graph twice, runs 20 steps eagerly
    and then the short batch."""
    from lossbench import ensemble

    monkeypatch.setattr(ensemble, "GRAPH_STEPS", 50)
    replays, replay = [], torch.cuda.CUDAGraph.replay

    def counted_replay(graph):
        replays.append(graph)
        return replay(graph)

    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", counted_replay)
    data = learnable_split(1205)
    specs = [RunSpec("sigmoid_ce", lr, seed) for lr in (0.1, 0.5) for seed in (0, 1)]
    cpu = Ensemble(specs, TrainConfig(sizes=(784, 20, 10), dtype=F64), data)
    gpu = Ensemble(specs, TrainConfig(sizes=(784, 20, 10), dtype=F64, device="cuda", engine="graphs"), data)
    for _ in range(2):
        m_cpu, m_gpu = cpu.train_epoch(), gpu.train_epoch()
    assert list(gpu._graphs) == [50]  # captured once, for 50 steps
    assert len(replays) == 4 and all(graph is gpu._graphs[50][1] for graph in replays)
    for key in m_cpu:
        np.testing.assert_allclose(m_gpu[key], m_cpu[key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_the_ensemble_reports_progress_every_graph_of_steps_and_trains_the_same(learnable_split, monkeypatch):
    data, specs = learnable_split(21, n_eval=50), [RunSpec("sigmoid_ce", 0.5, 0), RunSpec("softmax_nll", 3.0, 1)]
    cfg = TrainConfig(sizes=(784, 8, 10), batch_size=2, dtype=torch.float64)  # 10 full steps and a last one of 1
    monkeypatch.setattr(ensemble, "WINDOW", 2)  # CPU windows of 2 steps, so that 4 steps are whole windows
    quiet, reporting, calls = Ensemble(specs, cfg, data), Ensemble(specs, cfg, data), []
    plain = quiet.train_epoch()  # all 10 steps in one run_steps call (GRAPH_STEPS = 500)
    monkeypatch.setattr(ensemble, "GRAPH_STEPS", 4)  # a few steps show what 500 do
    reported = reporting.train_epoch(calls.append)
    assert calls == [4, 8, 10]
    for key, value in plain.items():
        np.testing.assert_array_equal(value, reported[key], err_msg=key)
