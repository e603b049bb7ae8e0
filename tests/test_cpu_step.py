"""engine=c (lossbench/cpu_step.c) against the eager engine it replaces, in float64.

    python -m pytest tests/test_cpu_step.py
"""

import re

import numpy as np
import pytest
import torch

from lossbench import cpu_step
from lossbench.ensemble import Ensemble, RunSpec, TrainConfig, choose_engine
from lossbench.errors import UserError
from lossbench.pairs import PAIR_CODES, PAIRS

F64 = torch.float64


def assert_engines_agree(data, sizes, batch_size=10, l2=0.0, epochs=2, tol=1e-12):
    """Every pair, two seeds sharing a first layer, two lrs: the c engine's parameters and epoch
    metrics equal the eager engine's to rounding, epoch by epoch."""
    specs = [RunSpec(pair, lr, seed) for seed in (3, 4) for lr in (0.3, 0.03) for pair in PAIRS]
    engines = {}
    for engine in ("eager", "c"):
        cfg = TrainConfig(sizes=sizes, batch_size=batch_size, l2=l2, dtype=F64, engine=engine)
        engines[engine] = Ensemble(specs, cfg, data)
        assert engines[engine].engine == engine
    eager, fused = engines["eager"], engines["c"]
    for _ in range(epochs):
        expected, got = eager.train_epoch(), fused.train_epoch()
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, rtol=tol, atol=tol, err_msg=key)
    for (w, b), (w_c, b_c) in zip(eager.params(), fused.params()):
        np.testing.assert_allclose(w_c.numpy(), w.numpy(), rtol=0, atol=tol)
        np.testing.assert_allclose(b_c.numpy(), b.numpy(), rtol=0, atol=tol)


@pytest.mark.parametrize("hidden", [12, 30, 37])  # less than, not a multiple of, more than the kernel's 16 lanes
@pytest.mark.parametrize("l2", [0.0, 5.0])
def test_c_engine_equals_eager_engine(learnable_split, hidden, l2):
    """227 examples: 22 windows' worth of steps, the last window short and the last mini-batch of 7."""
    assert_engines_agree(learnable_split(227), (784, hidden, 10), l2=l2)


def test_c_engine_equals_eager_engine_with_an_odd_batch_and_few_outputs(learnable_split):
    """Batch 7 (the kernel pads examples to an even count) and 4 output classes (padded to 16 lanes)."""
    data = learnable_split(150)
    for labels in (data.train_y, data.val_y, data.test_y):
        labels.remainder_(4)
    # One model here (softmax_nll, eta 0.3, seed 4) amplifies rounding: measured, the eager engine's
    # own windows and single steps end 2e-10 apart on it, the two engines 1.1e-11.
    assert_engines_agree(data, (784, 20, 4), batch_size=7, tol=1e-10)


def test_auto_picks_c_on_the_cpu_where_it_can_and_eager_where_it_cannot():
    def engine(sizes, batch_size=10, **kw):
        return choose_engine(TrainConfig(sizes=sizes, batch_size=batch_size, **kw), list(PAIRS))

    assert engine((784, 30, 10)) == "c"
    assert engine((784, 30, 30, 10)) == "eager"  # more than one hidden layer
    assert engine((784, 30, 10), batch_size=33) == "eager"  # beyond the kernel's stack buffers
    with pytest.raises(UserError, match=r"engine=c cannot train here: it trains nets with one hidden layer"):
        engine((784, 30, 30, 10), engine="c")
    with pytest.raises(UserError, match=r"its batch size is at most 32, not 33"):
        engine((784, 30, 10), batch_size=33, engine="c")


@pytest.fixture
def rebuild(tmp_path, monkeypatch):
    """A fresh build of cpu_step.c into tmp_path; the process's own build is restored afterwards."""
    monkeypatch.setenv("LOSSBENCH_CACHE", str(tmp_path))
    cpu_step.library.cache_clear()
    yield tmp_path
    cpu_step.library.cache_clear()


def test_without_a_compiler_auto_trains_eagerly_and_c_says_why(rebuild, monkeypatch):
    monkeypatch.setenv("CC", "no-such-cc")
    assert choose_engine(TrainConfig(sizes=(784, 30, 10)), ["sigmoid_ce"]) == "eager"
    with pytest.raises(UserError, match=r"no C compiler: 'no-such-cc' is not on PATH \(set CC to one\)"):
        choose_engine(TrainConfig(sizes=(784, 30, 10), engine="c"), ["sigmoid_ce"])
    assert not list(rebuild.iterdir())


def test_scalar_exp_build_where_libmvec_does_not_link(rebuild, monkeypatch, learnable_split):
    """The second variant (-DNO_MVEC) builds, and trains as the eager engine does."""
    monkeypatch.setattr(cpu_step, "VARIANTS", [["-lno-such-library"], *cpu_step.VARIANTS[1:]])
    assert cpu_step.unsupported((784, 30, 10), 10, torch.device("cpu"), F64, ["sigmoid_ce"]) is None
    assert len(list(rebuild.glob("cpu_step-*.so"))) == 1
    assert_engines_agree(learnable_split(100), (784, 30, 10), epochs=1)


def test_the_kernels_pair_numbers_are_pair_codes():
    enum = re.search(r"enum \{ (SIGMOID_MSE.*?) \};", cpu_step.SOURCE.read_text()).group(1)
    numbers = {name.lower(): int(value) for name, value in re.findall(r"(\w+) = (\d+)", enum)}
    assert numbers == PAIR_CODES
    assert set(PAIR_CODES) == set(PAIRS)


def test_limits_are_the_kernels():
    source = cpu_step.SOURCE.read_text()
    assert re.search(r"MAX_B = (\d+), MAX_H = (\d+)", source).groups() == (
        str(cpu_step.LIMITS["batch size"]), str(cpu_step.LIMITS["hidden width"]))
    assert "VEC __attribute__((vector_size(16 * sizeof(real))))" in source and cpu_step.LIMITS["output width"] == 16
