"""Tests of the benchmark's harness: the FLOP count by hand, and the layouts' ensembles. No timings.

    python -m pytest tests/test_timing.py
"""

import pytest

from lossbench import timing
from lossbench.ensemble import Ensemble, TrainConfig


def test_flop_count_by_hand():
    # 784-30-10: forward 2(784*30 + 30*10) = 47,640; weight gradients the same; deltas back into
    # the hidden layer 2*30*10 = 600. Total 95,880 per example, 4.794 GFLOP per model-epoch.
    assert timing.train_flops_per_example((784, 30, 10)) == 95_880
    assert timing.train_gflop_per_model_epoch((784, 30, 10)) == pytest.approx(4.794)
    # 784-100-10: 2 * 2(78,400 + 1,000) + 2,000 = 319,600
    assert timing.train_flops_per_example((784, 100, 10)) == 319_600
    # two hidden layers: layers 2 and 3 pass deltas back, layer 1 does not
    forward = 2 * (784 * 16 + 16 * 12 + 12 * 10)
    assert timing.train_flops_per_example((784, 16, 12, 10)) == 2 * forward + 2 * (16 * 12 + 12 * 10)


def test_layouts_name_and_build_the_ensembles_they_say(default_sweep, small_data):
    sweep = default_sweep
    lrs = [0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 3.0, 10.0]
    assert list(timing.layouts(10, sweep, lrs)) == ["10 seeds"]
    found = timing.layouts(160, sweep, lrs)
    assert list(found) == ["160 seeds", "20 seeds x 8 lrs", "sweep: 1 ensemble of 4 pairs x 5 seeds x 8 lrs",
                           "4 ensembles of 1 pair x 5 seeds x 8 lrs"]
    data = timing.synthetic_split()
    built = {}
    for label, ensembles in found.items():
        assert sum(map(len, ensembles)) == 160
        built[label] = [Ensemble(specs, TrainConfig(sizes=(784, 2, 10)), data) for specs in ensembles]
    shapes = {label: [(e.M, len({s.pair for s in e.specs})) for e in ensembles] for label, ensembles in built.items()}
    assert shapes == {"160 seeds": [(160, 1)], "20 seeds x 8 lrs": [(160, 1)],
                      "sweep: 1 ensemble of 4 pairs x 5 seeds x 8 lrs": [(160, 4)],
                      "4 ensembles of 1 pair x 5 seeds x 8 lrs": [(40, 1)] * 4}
    # the layouts' point: how many models share a seed group, hence the first layer's work
    assert [e.G for e in built["160 seeds"] + built["20 seeds x 8 lrs"]] == [1, 8]
