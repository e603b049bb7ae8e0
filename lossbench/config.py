"""The sweep command's config: schema, named studies, and the checks Hydra cannot make.

    python -m lossbench sweep --cfg job

The config groups live in the repository's conf/ (data, model, optim, sweep, pair,
and hydra/launcher for cluster runs); named studies in experiments/NAME.yaml, selected
with `+experiment=NAME`; both ship inside the package (lossbench.conf, lossbench.experiments).
`register()` puts the schema below into Hydra's ConfigStore, listed first in
conf/config.yaml's defaults, so that a wrong type or an unknown key fails at
composition; and it adds every sweep study in experiments/ as an option of the group
`experiment`.
`validate()` then checks what a type cannot say (a learning rate must be positive).
`check_overrides()` composes the command line's overrides before Hydra runs and turns
the common mistakes into one paragraph with a hint (a scalar for a list, a key close
to a known one, a learning rate anywhere but sweep.lrs).

torch is imported by the functions that need it, not here: `sweep --help` and a bad
override compose the config without it, in well under a second.
"""

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any, List, Optional

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from lossbench import grid
from lossbench.errors import UserError
from lossbench.grid import seed_list  # noqa: F401 (bench.py's name for it, until issue 13's branch lands)

# conf/ and experiments/ are top-level in the repository and installed as the packages lossbench.conf
# and lossbench.experiments (pyproject.toml's package-dir): a wheel holds them inside lossbench/, an
# editable install maps them to the clone's folders. Either way a real directory, which Hydra wants.
CONF_DIR = Path(resources.files("lossbench.conf"))
EXPERIMENTS_DIR = Path(resources.files("lossbench.experiments"))
SCHEMA_NAME = "lossbench_schema"


class Init(Enum):
    large = "large"  # weights and biases N(0, 1) (ch. 1, network.py)
    default = "default"  # weights N(0, 1)/sqrt(n_in), biases N(0, 1) (ch. 3, network2.py)


class Device(Enum):
    auto = "auto"  # cuda when torch sees one, else cpu
    cpu = "cpu"
    cuda = "cuda"


class Engine(Enum):  # how an ensemble's steps run: lossbench.ensemble.choose_engine
    auto = "auto"  # triton on CUDA when it can train the models, else graphs on CUDA, eager on the CPU
    triton = "triton"  # the fused kernel, many steps a launch (lossbench/triton_train.py)
    graphs = "graphs"  # the eager steps replayed from CUDA graphs
    eager = "eager"  # one step at a time, a few batched ops each


class DType(Enum):
    float32 = "float32"
    float64 = "float64"


@dataclass
class DataConfig:
    name: str = MISSING
    root: Optional[str] = None  # None: env LOSSBENCH_DATA, else the default location (lossbench/data.py)
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


def register() -> None:
    """Put the schema and the sweep studies (group `experiment`) into Hydra's ConfigStore."""
    store = ConfigStore.instance()
    store.store(name=SCHEMA_NAME, node=SweepConfig)
    for name, study in sweep_studies().items():
        store.store(group="experiment", name=name, node=study, package="_global_")


def _added_keys(node: DictConfig, schema: type, prefix: str = "") -> list[str]:
    """Keys of `node` that `schema` lacks: Hydra's `+key=value` adds them despite the schema."""
    fields = {f.name: f.type for f in dataclasses.fields(schema)}
    added = []
    for key in node:
        if key not in fields:
            added.append(prefix + key)
        elif dataclasses.is_dataclass(fields[key]):
            added += _added_keys(node[key], fields[key], f"{prefix}{key}.")
    return added


def require_known_keys(cfg: DictConfig) -> None:
    """UserError for a key the schema lacks: Hydra's `+key=value` adds one despite the schema."""
    added = _added_keys(cfg, SweepConfig)
    if added:
        raise UserError(f"unknown config key {added[0]} (a `+` override adds a key, it does not make one "
                        f"known); {key_hint(added[0], OmegaConf.select(cfg, added[0]))}")


def validate(cfg: DictConfig) -> None:
    """Check the values that the schema's types allow but the sweep cannot use (UserError)."""
    import torch  # here, not at the top: see the module's docstring

    from lossbench.ensemble import TrainConfig, choose_engine
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
    if cfg.device == Device.cuda and not torch.cuda.is_available():
        raise UserError("device=cuda, but this torch build sees no CUDA device; use device=cpu or device=auto.")
    # an engine that cannot run here says so now, before the sweep directory is written
    choose_engine(TrainConfig(sizes=tuple(sizes), batch_size=cfg.optim.batch_size, device=resolve_device(cfg.device),
                              engine=cfg.engine.value), pairs)


# --- hints for the common override mistakes ----------------------------------
# Keys a newcomer writes for the learning rate; the sweep takes a list of them, sweep.lrs.
LEARNING_RATE_NAMES = {"lr", "lrs", "eta", "etas", "learning_rate", "learning_rates", "learningrate", "step_size"}
GROUPS = ("data", "model", "optim", "sweep", "pair", "experiment")  # conf/'s groups, + experiments/


def schema_keys(schema: type = SweepConfig, prefix: str = "") -> dict[str, Any]:
    """Every key of the schema, nested ones dotted ("optim", "optim.epochs", ...), -> its type."""
    keys = {}
    for f in dataclasses.fields(schema):
        keys[prefix + f.name] = f.type
        if dataclasses.is_dataclass(f.type):
            keys |= schema_keys(f.type, f"{prefix}{f.name}.")
    return keys


def as_list_text(value: Any) -> str:
    """`value` written as a list override: 0.5 -> [0.5], [0.5, 3.0] -> [0.5,3.0]."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    return "[" + ",".join(map(str, value if isinstance(value, (list, tuple)) else [value])) + "]"


def key_hint(key: str, value: Any) -> str:
    """What to write instead of the unknown key `key` (given `value`), as a sentence: sweep.lrs for
    a learning rate, else the known keys close to it, else where the known keys are listed."""
    leaf = key.rsplit(".", 1)[-1].lower().replace("-", "_")
    if leaf in LEARNING_RATE_NAMES:
        return (f"learning rates are one list for the whole sweep, the key sweep.lrs: write "
                f"sweep.lrs={as_list_text(value)}.")
    known = list(dict.fromkeys([*schema_keys(), *GROUPS]))
    # the whole key (optim.epoch -> optim.epochs), or its last part elsewhere (seeds -> sweep.seeds)
    close = difflib.get_close_matches(key, known, n=2, cutoff=0.8)
    close += [k for k in known if k not in close and k != key
              and difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1]], cutoff=0.8)]
    if close:
        return f"did you mean {' or '.join(close[:3])}?"
    return "`python -m lossbench sweep --cfg job` shows the keys there are."


def one_paragraph(message: str) -> str:
    """Hydra's or OmegaConf's message on one line, without its config search path and node types."""
    noise = ("full_key:", "reference_type=", "object_type=")
    kept = []
    for line in map(str.strip, message.splitlines()):
        if line.startswith("Config search path"):
            break
        if line and not line.startswith(noise):
            kept.append(line.rstrip(".:"))
    return "; ".join(kept)


def check_overrides(overrides: list[str], multirun: bool = False) -> None:
    """Compose the config from `overrides` as Hydra will, and raise a UserError with a hint for
    what it rejects: Hydra would print several lines with no hint and exit 1.

    Sweeps of values (a,b / glob() / range()) are each job's to compose in a multirun; without
    --multirun they are a mistake (most often a list without its brackets).
    """
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        raise UserError(f"cannot read the override {err.override}: {one_paragraph(str(err))}.") from None
    plain = {}  # key -> override text, of those composed here
    for override, text in zip(parsed, overrides):
        if override.is_hydra_override():
            continue
        if override.is_sweep_override():
            if multirun:
                continue
            key, value = override.key_or_group, override.value()
            as_list = (f"write {key}={as_list_text(value.list)} for one list, or "
                       if isinstance(value, ChoiceSweep) and typing.get_origin(schema_keys().get(key)) is list else "")
            raise UserError(f"{text} gives several values; {as_list}put --multirun before the overrides "
                            "to run one sweep per value.")
        plain[override.key_or_group] = text
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            cfg = compose(config_name="config", overrides=list(plain.values()))
        except MissingConfigException as err:
            raise UserError(_missing_option_message(err)) from None
        except HydraException as err:
            raise UserError(_composition_message(err, plain)) from None
    require_known_keys(cfg)


def _missing_option_message(err: MissingConfigException) -> str:
    group, _, option = (err.missing_cfg_file or "").rpartition("/")
    if not (group and err.options):
        return one_paragraph(str(err)) + "."
    close = difflib.get_close_matches(option, err.options, n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(f'{group}={c}' for c in close)}? " if close else ""
    return f"{group}={option}: the group {group} has no option {option!r}; {hint}its options: {', '.join(err.options)}."


def _composition_message(err: HydraException, plain: dict[str, str]) -> str:
    cause = err.__cause__
    key = getattr(cause, "full_key", None)
    text = plain.get(key) or next(iter(plain.values()), "")
    value = text.split("=", 1)[-1]
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key:
        return f"{text}: unknown config key {key}; {key_hint(key, value)}"
    if isinstance(cause, ValidationError) and key:
        if typing.get_origin(schema_keys().get(key)) is list and not value.startswith("["):
            return f"{text}: {key} is a list; write {key}={as_list_text(value)}."
        return f"{text}: {one_paragraph(cause.msg)}."
    return f"{one_paragraph(str(err))}."


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


def resolve_device(device: Device) -> str:
    """The torch device for `device` (auto: cuda when available)."""
    import torch  # here, not at the top: see the module's docstring

    if device == Device.auto:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device.value
