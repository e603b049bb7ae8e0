"""The sweep command's config: schema, named studies, and the checks Hydra cannot make.

    python -m lossbench sweep --cfg job

The config groups live in the repository's conf/ (data, model, optim, sweep, pair,
and hydra/launcher for cluster runs); named studies in experiments/NAME.yaml, selected
with `+experiment=NAME`; both ship inside the package (lossbench.conf, lossbench.experiments).
`register()` puts the schema below into Hydra's ConfigStore, listed first in
conf/config.yaml's defaults, so that a wrong type or an unknown key fails at
composition; and it adds every sweep study in experiments/ as an option of the group
`experiment`.
`compose_config()` composes it as the sweep does, for every other user (bench, the docs'
reference tables, the tests); `validate()` then checks what a type cannot say (a learning
rate must be positive). The hints for bad overrides are lossbench/overrides.py's.

torch is imported by the functions that need it, not here: `sweep --help` and a bad
override compose the config without it, in well under a second.
"""

import functools
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, List, Optional

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lossbench import grid
from lossbench.choices import Engine, Init
from lossbench.errors import UserError

# conf/ and experiments/ are top-level in the repository and installed as the packages lossbench.conf
# and lossbench.experiments (pyproject.toml's package-dir): a wheel holds them inside lossbench/, an
# editable install maps them to the clone's folders. Either way a real directory, which Hydra wants.
CONF_DIR = Path(resources.files("lossbench.conf"))
EXPERIMENTS_DIR = Path(resources.files("lossbench.experiments"))
SCHEMA_NAME = "lossbench_schema"


class Device(Enum):
    auto = "auto"  # cuda when torch sees one, else cpu
    cpu = "cpu"
    cuda = "cuda"


class DType(Enum):
    float32 = "float32"
    float64 = "float64"


@dataclass
class DataConfig:
    name: str = MISSING
    root: Optional[str] = None  # None: env LOSSBENCH_DATA, else the default location (lossbench/data_files.py)
    train_size: Optional[int] = None  # None: all that val_size leaves (50,000 for MNIST)
    val_size: int = MISSING


@dataclass
class ModelConfig:
    sizes: List[int] = MISSING
    init: Init = MISSING


@dataclass
class OptimConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    l2: float = MISSING


@dataclass
class GridConfig:
    pairs: List[str] = MISSING
    lrs: List[float] = MISSING
    seeds: Any = MISSING  # int n (seeds 0..n-1) or a list of seeds: a union OmegaConf cannot type
    ensemble_size: int = 160  # most models trained at once: blocks of whole seeds, all pairs and lrs


@dataclass
class ShardConfig:
    """One job's part of the grid: block `index` of the seeds cut into `count` contiguous blocks.

    A multirun sweeps the index (`shard.count=4 'shard.index=range(4)'`); run ids do not
    depend on it, so the jobs' results merge into those of one unsharded sweep.
    """

    count: int = 1
    index: int = 0


@dataclass
class StudyConfig:
    """What a named study reproduces: printed beside the sweep's summary."""

    name: str = MISSING
    chapter: Optional[int] = None
    section: str = ""
    book_test_acc: List[float] = field(default_factory=list)  # the book's numbers, as fractions
    setting: str = ""


@dataclass
class SweepConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sweep: GridConfig = field(default_factory=GridConfig)
    shard: ShardConfig = field(default_factory=ShardConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    device: Device = MISSING
    dtype: DType = MISSING
    # Not a run's identity (numbers agree to rounding), and absent from sweep directories written
    # before it: its default keeps them resuming.
    engine: Engine = Engine.auto


def sweep_studies() -> dict[str, DictConfig]:
    """experiments/NAME.yaml -> its config, for the files that configure a sweep.

    A study file may name its command (`command: toy`); those for other commands are
    left to them, and the key itself is dropped since the sweep's schema has no such key.
    """
    studies = {}
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        try:
            study = OmegaConf.load(path)
        except (OSError, OmegaConfBaseException, yaml.YAMLError) as err:
            raise UserError(f"cannot read the study {path}: {err}") from err
        if not isinstance(study, DictConfig):
            raise UserError(f"the study {path} is not a mapping of config keys.")
        if study.pop("command", "sweep") == "sweep":
            studies[path.stem] = study
    return studies


@functools.cache  # once a process: the ConfigStore keeps what it holds, and experiments/ does not change
def register() -> None:
    """Put the schema and the sweep studies (group `experiment`) into Hydra's ConfigStore."""
    store = ConfigStore.instance()
    store.store(name=SCHEMA_NAME, node=SweepConfig)
    for name, study in sweep_studies().items():
        store.store(group="experiment", name=name, node=study, package="_global_")


@contextmanager
def hydra_on_conf() -> Iterator[None]:
    """Hydra initialized on conf/ with the schema and the sweep studies registered, cleared before and
    after: inside, hydra.compose(config_name="config", ...) composes as `python -m lossbench sweep` does."""
    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().clear()


def compose_config(overrides: list[str] = (), hydra: bool = False) -> DictConfig:
    """conf/config.yaml with `overrides`, as `python -m lossbench sweep OVERRIDES` composes it, and with
    Hydra's own node if `hydra`. Hydra's exceptions pass through (overrides.py turns them into hints)."""
    with hydra_on_conf():
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


def validate(cfg: DictConfig) -> None:
    """Check the values that the schema's types allow but the sweep cannot use (UserError)."""
    import torch  # here, not at the top: see the module's docstring

    from lossbench.devices import resolve_device
    from lossbench.ensemble import TrainConfig, choose_engine
    from lossbench.overrides import require_known_keys  # it imports this module
    from lossbench.pairs import PAIRS

    require_known_keys(cfg)
    pairs = list(cfg.sweep.pairs)
    if not pairs:
        raise UserError(f"sweep.pairs is empty; list one or more of: {', '.join(PAIRS)}.")
    for name in pairs:
        if name not in PAIRS:
            raise UserError(f"unknown pair {name!r} in sweep.pairs; the pairs are: {', '.join(PAIRS)}.")
    grid.require_unique("sweep.pairs", pairs)

    lrs = list(cfg.sweep.lrs)
    if not lrs:
        raise UserError("sweep.lrs is empty; give one or more learning rates, e.g. sweep.lrs=[0.5,3.0].")
    dtype = getattr(torch, cfg.dtype.value)
    for lr in lrs:
        as_trained = torch.tensor(lr, dtype=dtype).item() if math.isfinite(lr) else lr  # 1e-300 is 0 in float32
        if not (math.isfinite(as_trained) and as_trained > 0):
            raise UserError(f"learning rate {lr} in sweep.lrs is not a finite positive number in {cfg.dtype.value}; "
                            "give learning rates > 0, e.g. sweep.lrs=[0.5,3.0].")
    # run ids spell the rate with 6 significant digits ({lr:g}): two rates must not collide there
    grid.require_unique("sweep.lrs (to 6 significant digits)", [f"{lr:g}" for lr in lrs])
    grid.job_seeds(cfg)
    if cfg.sweep.ensemble_size < 1:
        raise UserError(f"sweep.ensemble_size={cfg.sweep.ensemble_size}: an ensemble holds at least 1 model.")

    sizes = list(cfg.model.sizes)
    if len(sizes) < 2:
        raise UserError(f"model.sizes={sizes} needs at least 2 layer sizes (input and output), "
                        "e.g. model.sizes=[784,30,10].")
    if min(sizes) < 1:
        raise UserError(f"model.sizes={sizes} has a layer of width {min(sizes)}; every width must be >= 1.")

    if cfg.optim.epochs < 1:
        raise UserError(f"optim.epochs={cfg.optim.epochs}: train for at least 1 epoch.")
    if cfg.optim.batch_size < 1:
        raise UserError(f"optim.batch_size={cfg.optim.batch_size}: a mini-batch holds at least 1 example.")
    if not (math.isfinite(cfg.optim.l2) and cfg.optim.l2 >= 0):
        raise UserError(f"optim.l2={cfg.optim.l2} is not a finite number >= 0 (the L2 weight lambda).")
    device = resolve_device(cfg.device.value)  # cuda without a CUDA device: a UserError
    # an engine that cannot run here says so now, before the sweep directory is written
    choose_engine(TrainConfig(sizes=tuple(sizes), batch_size=cfg.optim.batch_size, device=device,
                              engine=cfg.engine.value), pairs)


def validate_against_data(cfg: DictConfig, n_inputs: int, n_classes: int, n_train: int) -> None:
    """Check the network's ends and the batch size against the loaded data set (UserError)."""
    sizes = list(cfg.model.sizes)
    if (sizes[0], sizes[-1]) != (n_inputs, n_classes):
        raise UserError(f"model.sizes={sizes} does not fit {cfg.data.name}: the first size must be its "
                        f"{n_inputs} inputs and the last its {n_classes} classes, e.g. "
                        f"model.sizes=[{n_inputs},30,{n_classes}].")
    if cfg.optim.batch_size > n_train:
        raise UserError(f"optim.batch_size={cfg.optim.batch_size} is larger than the training set "
                        f"({n_train} examples); use 1..{n_train}.")
