"""Tests of the grid: seeds, shards of them, blocks of them as ensembles, the settings runs share.

    python -m pytest tests/test_grid.py
"""

import pytest
from omegaconf import OmegaConf

from lossbench import config, grid
from lossbench.errors import UserError
from lossbench.results.columns import SETTINGS


def test_seed_list():
    assert grid.seed_list(3) == [0, 1, 2]
    assert grid.seed_list(OmegaConf.create([7, 0])) == [7, 0]
    for bad in (0, True, 1.5, "2", OmegaConf.create([1.5])):
        with pytest.raises(UserError):
            grid.seed_list(bad)


def test_shards_cut_the_seeds_into_contiguous_blocks():
    seeds = [3, 1, 4, 1_000, 5, 9, 2]
    for count in range(1, len(seeds) + 1):
        blocks = [grid.shard_seeds(seeds, count, index) for index in range(count)]
        assert sum(blocks, []) == seeds
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    assert grid.shard_seeds([0, 1, 2, 3, 4], 2, 1) == [2, 3, 4]
    for count, index in ((2, 2), (2, -1), (0, 0)):
        with pytest.raises(UserError, match=rf"shard.index={index} with shard.count={count}: the index must be in"):
            grid.shard_seeds(seeds, count, index)
    with pytest.raises(UserError, match="shard.count=8 is more than the 7 seeds"):
        grid.shard_seeds(seeds, 8, 0)



def grid_config(seeds, ensemble_size=160, count=1, index=0):
    return OmegaConf.create({"sweep": {"pairs": ["sigmoid_ce", "softmax_nll"], "lrs": [0.5, 3.0], "seeds": seeds,
                                       "ensemble_size": ensemble_size},
                             "shard": {"count": count, "index": index}})


def test_a_job_trains_its_shard_in_blocks_of_whole_seeds_with_every_pair_and_lr():
    cfg = grid_config(5, ensemble_size=9, count=2, index=1)  # 4 runs a seed: 2 seeds a block of at most 9
    assert grid.job_seeds(cfg) == [2, 3, 4]
    blocks = grid.ensembles(cfg, grid.job_seeds(cfg))
    assert list(blocks) == ["seeds_2-3", "seeds_4"]
    assert [(s.pair, s.lr, s.seed) for s in blocks["seeds_4"]] == [
        ("sigmoid_ce", 0.5, 4), ("sigmoid_ce", 3.0, 4), ("softmax_nll", 0.5, 4), ("softmax_nll", 3.0, 4)]
    assert sorted({s.seed for s in blocks["seeds_2-3"]}) == [2, 3] and len(blocks["seeds_2-3"]) == 8
    assert list(grid.ensembles(grid_config(5, ensemble_size=2), [0, 1])) == ["seeds_0", "seeds_1"]  # a seed at least


def test_run_settings_are_the_columns_that_group_runs():
    cfg = OmegaConf.merge(OmegaConf.structured(config.SweepConfig), {
        "model": {"sizes": [784, 30, 10], "init": "default"}, "optim": {"batch_size": 10, "epochs": 30, "l2": 5.0},
        "data": {"name": "mnist", "val_size": 10000}, "dtype": "float64"})
    settings = grid.run_settings(cfg, 50000)
    assert list(settings) == list(SETTINGS)  # the grouping columns, in runs.csv's order
    assert settings == {"sizes": "784-30-10", "init": "default", "batch_size": 10, "epochs": 30, "l2": 5.0,
                        "dataset": "mnist", "train_size": 50000, "dtype": "float64"}
