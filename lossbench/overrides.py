"""Hints for the common override mistakes: one paragraph that says what to write instead.

    python -m lossbench sweep optim.lr=0.5     # error: ... write sweep.lrs=[0.5].

`check_overrides()` composes the command line's overrides before Hydra runs (config.compose_config)
and turns what Hydra or the schema rejects into one paragraph with a hint: a scalar for a list,
a key close to a known one, a learning rate anywhere but sweep.lrs, several values without
--multirun. Hydra would print several lines with no hint and exit 1. `require_known_keys()`
refuses the keys that a `+key=value` override adds despite the schema (validate() calls it too).
"""

import dataclasses
import difflib
import re
import typing
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from lossbench.config import SweepConfig, compose_config
from lossbench.errors import UserError

# Keys a newcomer writes for the learning rate; the sweep takes a list of them, sweep.lrs.
LEARNING_RATE_NAMES = {"lr", "lrs", "eta", "etas", "learning_rate", "learning_rates", "learningrate", "step_size"}
GROUPS = ("data", "model", "optim", "sweep", "pair", "experiment")  # conf/'s groups, + experiments/
# Layer sizes written as one word, as runs.csv and the book write them (784-30-10, 784x30x10):
# Hydra reads that as one string, so a list needs commas.
ONE_WORD_SIZES = re.compile(r"[0-9]+(?:[-x][0-9]+)+")
ELEMENT_INDEX = re.compile(r"(\[[0-9]+\])+$")  # an error inside a list names the element: model.sizes[0]


def schema_keys(schema: type = SweepConfig, prefix: str = "") -> dict[str, Any]:
    """Every key of the schema, nested ones dotted ("optim", "optim.epochs", ...), -> its type."""
    keys = {}
    for f in dataclasses.fields(schema):
        keys[prefix + f.name] = f.type
        if dataclasses.is_dataclass(f.type):
            keys |= schema_keys(f.type, f"{prefix}{f.name}.")
    return keys


def as_list_text(value: Any) -> str:
    """`value` written as a list override: 0.5 -> [0.5], [0.5, 3.0] -> [0.5,3.0], "784-30-10" ->
    [784,30,10]. A string is an override's text: already bracketed, it stays one list."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    if isinstance(value, str):
        text = value.strip()
        text = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        value = [part for item in text.split(",")
                 for part in (re.split("[-x]", item.strip()) if ONE_WORD_SIZES.fullmatch(item.strip()) else [item])]
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
    try:
        cfg = compose_config(list(plain.values()))
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


def override_of(key: str, plain: dict[str, str]) -> str:
    """The override in `plain` (key -> text) that set `key` (without an element's index), or one
    above it: a group's option (model=book_h30) sets the keys below the group."""
    while key not in plain and "." in key:
        key = key.rsplit(".", 1)[0]
    return plain.get(key) or next(iter(plain.values()), "")


def _composition_message(err: HydraException, plain: dict[str, str]) -> str:
    cause = err.__cause__
    key = getattr(cause, "full_key", None)
    setting = ELEMENT_INDEX.sub("", key or "")
    text = override_of(setting, plain)
    value = text.split("=", 1)[-1]
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key:
        return f"{text}: unknown config key {key}; {key_hint(key, value)}"
    if isinstance(cause, ValidationError) and key:
        if typing.get_origin(schema_keys().get(setting)) is list:
            if not value.startswith("["):
                return f"{text}: {setting} is a list; write {setting}={as_list_text(value)}."
            if any(ONE_WORD_SIZES.fullmatch(item.strip()) for item in value.strip("[]").split(",")):
                return (f"{text}: {one_paragraph(cause.msg)}; a list needs commas: "
                        f"write {setting}={as_list_text(value)}.")
        return f"{text}: {one_paragraph(cause.msg)}."
    return f"{one_paragraph(str(err))}."


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
