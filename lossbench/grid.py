"""The grid of a sweep: which runs its config asks for, which of them this job trains, and in which ensembles.

    python -c "from lossbench import grid; print(grid.shard_seeds(grid.seed_list(5), 2, 1))"   # [2, 3, 4]

A sweep trains every (pair, learning rate, seed) of sweep.pairs x sweep.lrs x sweep.seeds.
A multirun job trains one shard of the seeds (shard.count, shard.index), and a job trains its
seeds in blocks of whole seeds, each block one Ensemble of every pair and learning rate of at
most sweep.ensemble_size models: run ids depend on neither, so any split merges into the
results of one sweep. The settings every run shares (run_settings) are runs.csv's grouping
columns. torch is imported only by ensembles(): config.py checks the grid without it.
"""

from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from lossbench.errors import UserError

if TYPE_CHECKING:
    from lossbench.ensemble import RunSpec


def seed_list(seeds: Any) -> list[int]:
    """sweep.seeds as the list of seeds: an int n means 0..n-1."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise UserError(f"sweep.seeds={seeds} asks for no runs; give a count >= 1 (seeds 0..n-1) "
                            "or a list of seeds, e.g. sweep.seeds=[0,1,2].")
        return list(range(seeds))
    listed = OmegaConf.to_object(seeds) if OmegaConf.is_list(seeds) else None
    ok = listed and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in listed)
    if not ok:
        raise UserError(f"sweep.seeds={seeds} is neither a count >= 1 nor a non-empty list of seeds "
                        "(integers >= 0); e.g. sweep.seeds=5 or sweep.seeds=[0,1,2].")
    require_unique("sweep.seeds", listed)
    return listed


def seed_blocks(seeds: list[int], per_seed: int, ensemble_size: int) -> list[list[int]]:
    """`seeds` in consecutive blocks of as many seeds as keep a block's per_seed x len(block) models
    within ensemble_size (at least one seed a block): a block is one ensemble."""
    size = max(1, ensemble_size // per_seed)
    return [seeds[i:i + size] for i in range(0, len(seeds), size)]


def shard_seeds(seeds: list[int], count: int, index: int) -> list[int]:
    """Block `index` of `seeds` cut into `count` contiguous blocks whose sizes differ by at most
    one (shard.count, shard.index; e.g. 5 seeds in 2 blocks: [0, 1] and [2, 3, 4])."""
    if count < 1 or not 0 <= index < count:
        raise UserError(f"shard.index={index} with shard.count={count}: the index must be in 0..count-1 "
                        "(count >= 1), e.g. --multirun shard.count=4 'shard.index=range(4)'.")
    if count > len(seeds):
        raise UserError(f"shard.count={count} is more than the {len(seeds)} seeds in sweep.seeds; "
                        f"seeds are what shards split, so use at most {len(seeds)} shards.")
    start, stop = (len(seeds) * k // count for k in (index, index + 1))
    return seeds[start:stop]


def require_unique(key: str, values: list) -> None:
    """UserError if `values` (of config key `key`) lists a value twice: it would give the same runs twice."""
    seen = set()
    for value in values:
        if value in seen:
            raise UserError(f"{key} lists {value!r} twice; each value gives one set of runs, list it once.")
        seen.add(value)


def job_seeds(cfg: DictConfig) -> list[int]:
    """The seeds this job trains: its shard of sweep.seeds."""
    return shard_seeds(seed_list(cfg.sweep.seeds), cfg.shard.count, cfg.shard.index)


def run_settings(cfg: DictConfig, n_train: int) -> dict:
    """The runs.csv columns that every run of this sweep shares, results.columns.SETTINGS (statistics
    groups runs by them)."""
    return {"sizes": "-".join(map(str, cfg.model.sizes)), "init": cfg.model.init.value,
            "batch_size": cfg.optim.batch_size, "epochs": cfg.optim.epochs, "l2": cfg.optim.l2,
            "dataset": cfg.data.name, "train_size": n_train, "dtype": cfg.dtype.value}


def ensembles(cfg: DictConfig, seeds: list[int]) -> dict[str, list["RunSpec"]]:
    """The ensembles that train `seeds`, by name: blocks of whole seeds, each with every pair and
    learning rate, of at most sweep.ensemble_size models (a block's name also names its checkpoint)."""
    from lossbench.ensemble import RunSpec  # the trainer, and torch with it: only once ensembles are built

    per_seed = len(cfg.sweep.pairs) * len(cfg.sweep.lrs)
    blocks = seed_blocks(seeds, per_seed, cfg.sweep.ensemble_size)
    return {f"seeds_{b[0]}" if len(b) == 1 else f"seeds_{b[0]}-{b[-1]}":
            [RunSpec(pair, lr, seed) for pair in cfg.sweep.pairs for lr in cfg.sweep.lrs for seed in b]
            for b in blocks}
