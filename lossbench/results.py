"""A sweep directory's files: runs.csv, epochs.csv, config.yaml, checkpoints, the lock.

    python -c "import pandas as pd; print(pd.read_csv('outputs/sweep/DIR/runs.csv'))"

Every file is written atomically (a temporary file in the same directory, fsync,
os.replace, fsync of the directory), so a kill at any moment leaves either the old
or the new version, never half of one; a write that fails (a full disk) raises
WriteError and leaves the old version too. Rows are keyed by run_id: writing a run's
rows again replaces them, so a sweep that resumes never duplicates a run.
The columns are documented in docs/results.md ("Result files").

Read back, no file is trusted (verify_sweep): editors, spreadsheets, sync tools and git
merges change them from outside. A run counts as finished only if its runs.csv row is
well-formed, epochs.csv holds exactly its epochs 0..E, each well-formed, and the row's
outcome columns agree with what those epochs give. docs/reliability.md says what
happens in each case of damage.
"""

import csv
import fcntl
import hashlib
import io
import json
import math
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lossbench.config import SweepConfig
from lossbench.errors import UserError
from lossbench.pairs import PAIRS


@dataclass(frozen=True)
class Cell:
    """What a CSV column may hold: text (one of `choices`, or matching `pattern`; never empty), or
    a number in [low, high] (`above`: low itself excluded), whole if `whole`, empty only if `empty`."""

    number: bool = True
    whole: bool = False
    low: float = -math.inf
    high: float = math.inf
    above: bool = False
    empty: bool = False
    choices: tuple[str, ...] = ()
    pattern: str = ""


TEXT = Cell(number=False)
FRACTION = Cell(low=0.0, high=1.0, empty=True)  # an accuracy or a share of units; empty once diverged
MEASURE = Cell(low=0.0, empty=True)  # a cost or a gradient norm; empty at epoch 0 and once diverged
EPOCH = Cell(whole=True, low=1, empty=True)  # an epoch 1..E; empty where there is none
RUN_CELLS = {
    "run_id": TEXT, "pair": Cell(number=False, choices=tuple(sorted(PAIRS))), "activation": TEXT, "cost": TEXT,
    "lr": Cell(low=0.0, above=True), "seed": Cell(whole=True, low=0),
    "sizes": Cell(number=False, pattern=r"[0-9]+(-[0-9]+)+"),
    "init": Cell(number=False, choices=("default", "large")), "batch_size": Cell(whole=True, low=1),
    "epochs": Cell(whole=True, low=1), "l2": Cell(low=0.0), "dataset": TEXT,
    "train_size": Cell(whole=True, low=1, empty=True),  # empty in hand-made CSVs; a sweep writes it
    "status": Cell(number=False, choices=("diverged", "ok")), "diverged_epoch": EPOCH,
    "peak_test_acc": FRACTION, "peak_epoch": EPOCH, "final_test_acc": FRACTION,
    "val_selected_test_acc": FRACTION, "val_selected_epoch": EPOCH,
    "wall_time_s": Cell(low=0.0), "device": TEXT, "dtype": Cell(number=False, choices=("float32", "float64")),
    "torch_version": TEXT,
}
RUN_COLUMNS = list(RUN_CELLS)
# The settings every run of a sweep shares, as the schema types them: with data.val_size they
# give the hash in a run_id (run_hash), so a run's row can be checked against its own id.
SETTINGS = {"sizes": str, "init": str, "batch_size": int, "epochs": int, "l2": float, "dataset": str,
            "train_size": int, "dtype": str}
BASE_METRICS = ["train_cost", "val_acc", "val_cost", "test_acc", "test_cost", "test_saturated"]
CHECKPOINT_MAGIC = b"lossbench-checkpoint-v1\n"
_UMASK = os.umask(0o022)  # read it (the only way) and put it back: mkstemp's files are 0600,
os.umask(_UMASK)  # the sweep's files get the mode that open() would give them


def metric_columns(n_layers: int) -> list[str]:
    """epochs.csv's metric columns for a network with n_layers weight layers (len(sizes) - 1)."""
    grads = [f"grad_{kind}{layer}" for layer in range(1, n_layers + 1) for kind in ("b", "w")]
    return BASE_METRICS + grads


def epoch_cells(n_layers: int) -> dict[str, Cell]:
    """epochs.csv's columns and what each may hold."""
    shares = {"val_acc", "test_acc", "test_saturated"}
    return {"run_id": TEXT, "epoch": Cell(whole=True, low=0)} | {
        column: FRACTION if column in shares else MEASURE for column in metric_columns(n_layers)}


def config_hash(settings: dict) -> str:
    """8 hex digits naming the non-grid settings (sizes, init, data, schedule, dtype) of a run."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def run_hash(settings: dict, val_size: int) -> str:
    """The hash in a run's id: its SETTINGS and the validation-set size, which changes its
    validation-selected numbers (so it is part of what the run is)."""
    return config_hash(settings | {"val_size": val_size})


def run_id(pair: str, lr: float, seed: int, settings_hash: str) -> str:
    return f"{pair}_lr{lr:g}_s{seed}_{settings_hash}"


# --- atomic files ------------------------------------------------------------
def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteError(UserError):
    """A file of the sweep could not be written (a full disk, a read-only or broken directory)."""


class DamagedFile(UserError):
    """A file of the sweep that its owner must see to, since no retraining mends it: a directory or a
    read-only file in its place, git merge-conflict markers, another header, an unreadable config.yaml."""


def _refuse_directory(path: Path) -> None:
    if path.is_dir():
        raise DamagedFile(f"{path}: a directory, where the sweep keeps a file; move it away (or rename "
                          "it), then run again.")


def require_replaceable(path: Path) -> None:
    """DamagedFile if `path` is a directory or a read-only file: someone made it so, and os.replace
    would replace it all the same (read-only means the mode bits: root passes every access check)."""
    _refuse_directory(path)
    if path.exists() and not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise DamagedFile(f"{path}: read-only (mode {stat.S_IMODE(path.stat().st_mode):04o}), and the sweep "
                          f"must replace it; make it writable (chmod u+w {path}) and run again, or write this "
                          "sweep elsewhere (hydra.run.dir=PATH).")


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` by `data` (creating its directory) so that no reader and no kill ever sees
    a partial file; WriteError if that fails, with the old version of `path` left as it was;
    DamagedFile if `path` is a directory or a read-only file (require_replaceable)."""
    require_replaceable(path)
    try:
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err}. The files written before it are intact.") from None


def remove_stale_temp_files(directory: Path) -> None:
    """Delete temporary files that a killed sweep left (call with the directory's lock held)."""
    for folder in (directory, directory / "checkpoints"):  # not nested sweeps: they may be running
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink()


def _as_text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as its CSV text cells: what is already written is copied, never re-parsed."""
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)), dtype=str, keep_default_na=False)


def read_text(path: Path) -> pd.DataFrame | None:
    """The CSV's cells as written (a spreadsheet's byte-order mark, CRLF and quotes undone)."""
    if not path.exists():
        return None
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def write_rows(path: Path, rows: pd.DataFrame) -> None:
    """Add `rows` to the CSV at `path`, replacing any rows there with the same run_id (and
    dropping exact copies of a row, which a sync or a merge may leave: they hold nothing more)."""
    new = _as_text_frame(rows)
    old = read_text(path)
    if old is not None:
        old = old.drop_duplicates()
        new = pd.concat([old[~old["run_id"].isin(new["run_id"])], new], ignore_index=True).fillna("")
    atomic_write(path, new.to_csv(index=False).encode())


def finished_run_ids(directory: Path) -> set[str]:
    """The run ids that runs.csv lists, as written (verify_sweep tells which runs are finished)."""
    runs = read_text(directory / "runs.csv")
    return set() if runs is None else set(runs["run_id"])


# --- reading back: each line checked -------------------------------------------
@dataclass(frozen=True)
class Damage:
    """A damaged line of a result file (line None: the whole file), and the run it belongs to."""

    path: Path
    line: int | None
    problem: str
    run_id: str = ""  # "" where the line names no run

    def __str__(self) -> str:
        return f"{self.path if self.line is None else f'line {self.line} of {self.path}'}: {self.problem}"


# What `git merge` writes around a conflict: <<<<<<< ours, ||||||| base, =======, >>>>>>> theirs
CONFLICT_MARKER = re.compile(r"(<{7}|\|{7}|={7}|>{7})( |$)")


def read_bytes(path: Path) -> bytes | None:
    """The bytes of `path`, None if there is no such file; DamagedFile if it cannot be read."""
    _refuse_directory(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise DamagedFile(f"{path}: cannot be read ({err.strerror or err}).") from None


def text_lines(path: Path, data: bytes) -> tuple[list[str], bool]:
    """`data`, the bytes of `path`, as lines without their ends, and whether the last line is cut off
    (every file the sweep writes ends with a line end). A spreadsheet's byte-order mark and CRLF are
    read as meant; bytes that are not UTF-8 become U+FFFD. DamagedFile at a git merge-conflict marker."""
    text = data.decode("utf-8-sig", errors="replace")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    cut = lines[-1] != ""
    if not cut:
        lines.pop()
    for number, line in enumerate(lines, 1):
        if CONFLICT_MARKER.match(line):
            raise DamagedFile(f"line {number} of {path}: a git merge-conflict marker ({line[:40]!r}); finish "
                              "the merge and delete the marker lines (in a CSV, keep each row once: both sides' "
                              "runs may stay), then run again.")
    return lines, cut


@dataclass
class Table:
    """A result CSV read back: its well-formed rows as text cells (index: the line each is on), and
    its damaged lines."""

    path: Path
    data: bytes  # the file's bytes: kept beside it as a backup if it is rewritten
    header: list[str]
    rows: pd.DataFrame
    values: pd.DataFrame  # the same rows, typed
    damage: list[Damage] = field(default_factory=list)


def _header_problem(header: list[str], cells: dict[str, Cell], required: list[str]) -> str:
    missing = [column for column in required if column not in header]
    unknown = [column for column in header if column not in cells]
    twice = sorted({column for column in header if header.count(column) > 1})
    return "; ".join([f"lacks column(s) {', '.join(missing)}"] * bool(missing)
                     + [f"has unknown column(s) {', '.join(map(repr, unknown))}"] * bool(unknown)
                     + [f"names column(s) {', '.join(twice)} twice"] * bool(twice))


def _records(lines: list[str], cut: bool, width: int) -> tuple[list[list[str]], list[int], list[tuple[int, str, str]]]:
    """The body of a CSV (its lines after the header) as rows of `width` fields, with the line each
    is on, and (line, problem, first field) for each line that is not such a row."""
    records, numbers, damaged = [], [], []
    undecodable = {number for number, line in enumerate(lines, 1) if "\ufffd" in line}
    reader, number = csv.reader(lines[1:]), 2  # reader.line_num counts the body lines read so far
    while True:
        try:
            fields, problem = next(reader), ""
        except StopIteration:
            break
        except csv.Error as err:
            fields, problem = [], f"not a CSV row ({err})"
        last, next_number = reader.line_num + 1, reader.line_num + 2
        if problem:
            pass
        elif cut and last == len(lines):
            problem = "cut off: the file ends inside this line (it has no line end)"
        elif len(fields) < 2 and not (fields and fields[0].strip()):
            number = next_number  # a blank line holds nothing
            continue
        elif last > number:
            problem = f"a quoted cell runs on to line {last}"
        elif number in undecodable:
            problem = "holds bytes that are not UTF-8 text"
        elif len(fields) != width:
            problem = f"{len(fields)} fields where the header has {width}"
        if problem:
            damaged.append((number, problem, fields[0] if fields else ""))
        else:
            records.append(fields)
            numbers.append(number)
        number = next_number
    return records, numbers, damaged


def read_table(path: Path, cells: dict[str, Cell], required: list[str], key: list[str]) -> Table | None:
    """The CSV at `path` (None if absent) with every line checked. Damage: a line cut off, one with
    the wrong number of fields, a cell its column does not allow (cell_problems), and each copy of a
    row whose `key` appears again with other cells (an exact copy is dropped: it holds nothing more).
    DamagedFile if the header lacks a `required` column or names an unknown one, unless the header
    is all the file holds and is cut off (then the file is cut off before its first row)."""
    data = read_bytes(path)
    if data is None:
        return None
    lines, cut = text_lines(path, data)
    table = Table(path, data, list(cells), pd.DataFrame(columns=list(cells), dtype=str),
                  pd.DataFrame(columns=list(cells)))
    if not lines:
        table.damage.append(Damage(path, None, "not a readable CSV: the file is empty (cut off before its header)"))
        return table
    header = next(csv.reader(lines[:1]), [])
    problem = _header_problem(header, cells, required)
    if problem and cut and len(lines) == 1:
        table.damage.append(Damage(path, 1, "cut off within the header (the file ends inside its first line)"))
        return table
    if problem:
        raise DamagedFile(f"line 1 of {path}: the header {problem}; runs.csv and epochs.csv have the columns of "
                          "the README's 'Result files' section. Restore the header (e.g. git checkout), then run again.")
    records, numbers, damaged = _records(lines, cut, len(header))
    table.damage += [Damage(path, number, problem, run) for number, problem, run in damaged]
    rows = pd.DataFrame(records, columns=header, index=pd.Index(numbers, name="line"), dtype=str)
    values = typed(rows, cells)
    problems = cell_problems(rows, values, cells)
    table.damage += [Damage(path, number, problem, rows.at[number, "run_id"])
                     for number, problem in problems[problems != ""].items()]
    rows, values = rows[problems == ""], values[problems == ""]
    twice = rows[values[key].duplicated(keep=False)]
    copies = twice.index[twice.duplicated()]  # exact copies of a row, as a sync or merge may leave: dropped
    rows, values = rows.drop(copies), values.drop(copies)
    clash = values[key].duplicated(keep=False)  # the same run (and epoch) with other cells: which is right?
    for _, lines_of_key in values[key][clash].reset_index().groupby(key)["line"]:
        for number in lines_of_key:
            others = ", ".join(str(other) for other in lines_of_key if other != number)
            table.damage.append(Damage(path, number, f"line {others} holds the same {' and '.join(key)} with "
                                                     "other values", rows.at[number, "run_id"]))
    table.header, table.rows, table.values = header, rows[~clash], values[~clash]
    table.damage.sort(key=lambda damage: damage.line or 0)
    return table


def typed(rows: pd.DataFrame, cells: dict[str, Cell]) -> pd.DataFrame:
    """Text cells as values: numbers where `cells` says so (NaN where a cell is not one), text as it is."""
    return rows.apply(lambda column: pd.to_numeric(column, errors="coerce") if cells[column.name].number else column)


def _note(problems: pd.Series, bad: pd.Series, describe: Callable[[object], str]) -> None:
    """Give each row of `bad` that has no problem yet the problem describe(its label), in place."""
    for label in bad.index[bad.to_numpy(dtype=bool)]:
        if problems[label] == "":
            problems[label] = describe(label)


def _column_problems(column: str, text: pd.Series, values: pd.Series, cell: Cell) -> pd.Series:
    """Per row: what is wrong with its cell of `column` ("" if nothing), the first check first.
    `values`: the cells as numbers (typed)."""
    problems = pd.Series("", index=text.index, dtype=object)

    def shown(at) -> str:
        return repr(text[at]) if text[at] else "(empty)"
    if cell.choices:
        _note(problems, ~text.isin(cell.choices),
              lambda at: f"{column} {text[at] or '(empty)'} is none of {', '.join(cell.choices)}")
    elif cell.pattern:
        _note(problems, ~text.str.fullmatch(cell.pattern),
              lambda at: f"column {column} holds {shown(at)}, not layer sizes such as 784-30-10")
    elif not cell.number:
        _note(problems, text.eq("") | text.str.isspace(), lambda at: f"column {column} is empty")
    else:
        # empty: "", blanks or "nan" (any case), which the few cells that are no number are checked for
        strange = values.isna() & text.ne("")
        empty = values.isna() & ~strange
        blank = text[strange].str.strip().str.lower().isin(["", "nan"])
        strange[blank.index[blank]], empty[blank.index[blank]] = False, True
        _note(problems, strange, lambda at: f"column {column} holds non-numeric values ({shown(at)})")
        if not cell.empty:
            _note(problems, empty, lambda at: f"column {column} is empty")
        if cell.whole:
            _note(problems, values % 1 > 0, lambda at: f"column {column} holds {shown(at)}, not a whole number")
        low = values <= cell.low if cell.above else values < cell.low
        bounds = f"{'above' if cell.above else 'at least'} {cell.low:g}" + (
            f" and at most {cell.high:g}" if cell.high < math.inf else "")
        _note(problems, low | (values > cell.high), lambda at: f"column {column} holds {shown(at)}, not {bounds}")
    return problems


def cell_problems(rows: pd.DataFrame, values: pd.DataFrame, cells: dict[str, Cell]) -> pd.Series:
    """Per row: the first of its cells, in column order, that its column does not allow ("" if none)."""
    problems = pd.Series("", index=rows.index, dtype=object)
    for column in rows.columns:
        problems = problems.where(problems != "", _column_problems(column, rows[column], values[column], cells[column]))
    return problems


# --- which runs are finished -----------------------------------------------------
@dataclass
class Verified:
    """A sweep directory's CSVs read back: what can be trusted, and every damaged line."""

    runs: Table | None
    epochs: Table | None
    finished: pd.DataFrame  # runs.csv's rows of the finished runs, typed; index: their lines
    epoch_values: pd.DataFrame  # epochs.csv's well-formed rows, typed (of unfinished runs too)
    damage: list[Damage]


def verify_sweep(directory: Path, n_layers: int | None = None, val_size: int | None = None,
                 required: tuple[list[str], list[str]] | None = None) -> Verified:
    """`directory`'s runs.csv and epochs.csv read back: which runs are finished, and what is damaged.

    A run is finished if its runs.csv row is well-formed, epochs.csv holds each of its epochs 0..E
    once, well-formed, and the two agree (run_problems); any other line is damage. n_layers: the
    network's weight layers (None: the deepest of runs.csv's sizes). val_size: the sweep's
    data.val_size, with which each row's settings must give the hash in its run_id (None: not
    checked). required: the columns runs.csv and epochs.csv must have (None: all; analyze reads
    hand-made CSVs too), epochs.csv's output-layer gradients always. DamagedFile for what only the
    files' owner can mend (read_table).
    """
    runs = read_table(directory / "runs.csv", RUN_CELLS, required[0] if required else RUN_COLUMNS, ["run_id"])
    run_values = runs.values if runs else pd.DataFrame(columns=RUN_COLUMNS)
    if n_layers is None:  # no run: nothing in epochs.csv can be checked, nor would be used
        n_layers = max((len(sizes.split("-")) - 1 for sizes in run_values["sizes"]), default=0)
    cells = epoch_cells(n_layers)
    output = [f"grad_b{n_layers}", f"grad_w{n_layers}"]
    epochs = None if runs is None or not n_layers else read_table(
        directory / "epochs.csv", cells, required[1] + output if required else list(cells), ["run_id", "epoch"])
    epoch_values = epochs.values if epochs else pd.DataFrame(columns=list(cells))
    damage = (runs.damage if runs else []) + (epochs.damage if epochs else [])
    if runs is not None and epochs is None and not runs.rows.empty:
        damage.append(Damage(directory / "epochs.csv", None, "missing; a sweep directory holds both runs.csv "
                                                             "and epochs.csv"))
    tainted = run_values["run_id"].isin({entry.run_id for entry in damage}) | (epochs is None)
    problems = run_problems(run_values[~tainted], epoch_values, val_size)
    damage += [Damage(runs.path, line, problem, run_values.at[line, "run_id"])
               for line, problem in problems[problems != ""].items()]
    finished = run_values.loc[problems.index[problems == ""]]
    return Verified(runs, epochs, finished, epoch_values, damage)


def run_problems(runs: pd.DataFrame, epochs: pd.DataFrame, val_size: int | None) -> pd.Series:
    """Per well-formed runs.csv row (typed): the first way it disagrees with itself or with epochs.csv
    ("" if none). Its run_id must name its pair, lr and seed (and, given val_size, carry the hash of
    its settings); its activation and cost must be its pair's; diverged_epoch must be set exactly when
    its status is diverged; epochs.csv must hold its epochs 0..E, with both accuracies up to the
    epoch it diverged and neither from there on; and its outcome columns must be what run_outcomes
    gives for those epochs (to 1e-12: a spreadsheet keeps 15 significant digits)."""
    problems = pd.Series("", index=runs.index, dtype=object)
    if runs.empty:
        return problems
    row = runs.to_dict("index")
    _note(problems, pd.Series({at: r["run_id"] != run_id(r["pair"], r["lr"], int(r["seed"]), r["run_id"][-8:])
                               or not re.fullmatch(r"_[0-9a-f]{8}", r["run_id"][-9:]) for at, r in row.items()}),
          lambda at: f"run_id {row[at]['run_id']} does not name its row's pair, lr and seed")
    if val_size is not None and set(SETTINGS) <= set(runs.columns):
        def settings_hash(r: dict) -> str:
            return "" if pd.isna(r["train_size"]) else run_hash(
                {key: kind(r[key]) for key, kind in SETTINGS.items()}, val_size)
        _note(problems, pd.Series({at: settings_hash(r) != r["run_id"][-8:] for at, r in row.items()}),
              lambda at: f"its settings ({', '.join(f'{key} {row[at][key]}' for key in SETTINGS)}) do not "
                         f"give the hash in its run_id")
    if {"activation", "cost"} <= set(runs.columns):
        pairs = runs["pair"].map(PAIRS)
        _note(problems, (runs["activation"] != pairs.map(lambda p: p.activation)) |
              (runs["cost"] != pairs.map(lambda p: p.cost)),
              lambda at: f"activation {row[at]['activation']} and cost {row[at]['cost']} are not pair "
                         f"{row[at]['pair']}'s")
    diverged_at = runs["diverged_epoch"] if "diverged_epoch" in runs else pd.Series(np.nan, index=runs.index)
    if "diverged_epoch" in runs:
        _note(problems, runs["diverged_epoch"].notna().ne(runs["status"] == "diverged")
              | (runs["diverged_epoch"] > runs["epochs"]),
              lambda at: f"status {row[at]['status']} with diverged_epoch {row[at]['diverged_epoch']:g} "
                         f"(epochs {row[at]['epochs']:g})")
    ours = epochs[epochs["run_id"].isin(runs["run_id"])]
    held = ours.groupby("run_id")["epoch"].agg(["count", "min", "max"]).reindex(runs["run_id"]).set_axis(runs.index)
    _note(problems, (held["count"] != runs["epochs"] + 1) | (held["min"] != 0) | (held["max"] != runs["epochs"]),
          lambda at: (f"epochs.csv holds {held.at[at, 'count']:g} rows of this run, of epochs "
                      f"{held.at[at, 'min']:g}-{held.at[at, 'max']:g}, not one for each of its epochs 0-"
                      f"{row[at]['epochs']:g}" if held.at[at, "count"] > 0 else "epochs.csv holds no rows of this run"))
    # both accuracies at the epochs before it diverged, neither from then on (the trainer writes NaN)
    limit = ours["run_id"].map(dict(zip(runs["run_id"], diverged_at.fillna(np.inf))))
    before = ours["epoch"] < limit
    scored, unscored = (ours[["test_acc", "val_acc"]].notna().all(axis=1), ours[["test_acc", "val_acc"]].isna().all(axis=1))
    odd = ours[np.where(before, ~scored, ~unscored)].groupby("run_id").head(1)  # each run's first odd line
    said = {rid: f"line {line} of epochs.csv has accuracies {'missing' if early else 'present'} at epoch {epoch:g}"
            for line, rid, epoch, early in zip(odd.index, odd["run_id"], odd["epoch"], before[odd.index])}
    _note(problems, runs["run_id"].isin(said),
          lambda at: said[row[at]["run_id"]] + " of a run that " + (
              f"diverged at epoch {diverged_at[at]:g}" if pd.notna(diverged_at[at]) else "did not diverge"))
    # the outcome columns, recomputed from the accuracies (as the trainer computed them)
    checked = [column for column in ["peak_test_acc", "peak_epoch", "final_test_acc", "val_selected_test_acc",
                                     "val_selected_epoch"] if column in runs]
    for _, part in runs[problems == ""].groupby("epochs"):  # runs of as many epochs: one array
        curves = ours[ours["run_id"].isin(part["run_id"])].pivot(index="run_id", columns="epoch")
        test, val = (curves[name].reindex(part["run_id"]).to_numpy(np.float64)[:, 1:] for name in ("test_acc", "val_acc"))
        given = run_outcomes(test, val).set_axis(part.index).astype(np.float64)
        for column in checked:
            agree = np.isclose(part[column].astype(np.float64), given[column], rtol=1e-12, atol=0, equal_nan=True)
            _note(problems, pd.Series(~agree, index=part.index),
                  lambda at, column=column: f"{column} {row[at][column]:g} disagrees with its epochs in epochs.csv, "
                                            f"which give {given.at[at, column]:g}")
    return problems


def _backup_path(path: Path) -> Path:
    number = 1
    while path.with_name(f"{path.name}.damaged-{number}").exists():
        number += 1
    return path.with_name(f"{path.name}.damaged-{number}")


def repair(found: Verified) -> list[tuple[Path, Path]]:
    """Keep each CSV's bytes beside it as FILE.damaged-N (nothing is lost), then rewrite it with only
    the rows of the finished runs; (file, backup) for each. Runs that are not finished are trained
    again and get fresh rows, so no damaged row is ever mixed with them."""
    finished = set(found.finished["run_id"])
    tables = [table for table in (found.runs, found.epochs) if table is not None]
    for table in tables:
        require_replaceable(table.path)
    done = []
    for table in tables:
        backup = _backup_path(table.path)
        atomic_write(backup, table.data)
        rows = table.rows[table.rows["run_id"].isin(finished)]
        atomic_write(table.path, rows[table.header].to_csv(index=False).encode())
        done.append((table.path, backup))
    return done


# --- config.yaml -------------------------------------------------------------
def _flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _flatten(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def read_config(path: Path) -> dict | None:
    """config.yaml as a nested dict (None if there is none); DamagedFile, naming the line, if it is not
    the YAML mapping a sweep writes: empty, cut off, with merge-conflict markers, duplicate keys."""
    data = read_bytes(path)
    if data is None:
        return None
    lines, cut = text_lines(path, data)
    line, problem, tree = None, "", None
    if not lines:
        problem = "empty"
    elif cut:
        line, problem = len(lines), "cut off: the file ends inside this line (it has no line end)"
    else:
        try:
            tree = OmegaConf.to_container(OmegaConf.create("\n".join(lines) + "\n"), resolve=True)
        except yaml.MarkedYAMLError as err:
            line = err.problem_mark.line + 1 if err.problem_mark else None
            problem = f"not YAML lossbench can read ({err.problem})"
        except (OmegaConfBaseException, yaml.YAMLError) as err:
            problem = f"not a config lossbench can read ({err})"
        else:
            problem = "" if isinstance(tree, dict) else "not a mapping of config keys"
    if problem:
        raise DamagedFile(f"{Damage(path, line, problem)}; restore it (e.g. git checkout), or write this sweep "
                          "elsewhere (hydra.run.dir=PATH).")
    return tree


def schema_defaults() -> dict:
    """The config keys that the schema gives a default, flattened: {"sweep.ensemble_size": 160, ...}."""
    tree = OmegaConf.to_container(OmegaConf.structured(SweepConfig), enum_to_str=True)  # MISSING: "???"
    return {key: value for key, value in _flatten(tree).items() if value != "???"}


def claim_directory(directory: Path, cfg) -> None:
    """Write config.yaml, or refuse if the directory already holds a sweep with another config.

    A key that config.yaml lacks is no difference if its value now is the schema's default: the
    directory was written before the key existed, and the sweep then did what the default does.
    """
    path = directory / "config.yaml"
    mine = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    theirs = read_config(path)
    if theirs is None:
        atomic_write(path, OmegaConf.to_yaml(mine).encode())
        return
    a, b, defaults, absent = _flatten(theirs), _flatten(mine), schema_defaults(), object()
    diff = [f"{key}: {a.get(key, '(absent)')} there, {b.get(key, '(absent)')} now" for key in sorted(a.keys() | b.keys())
            if a.get(key, absent) != b.get(key, absent)
            and not (key not in a and key in defaults and b[key] == defaults[key])]
    if diff:
        raise UserError(f"config mismatch: {directory} holds a sweep with another config "
                        f"({'; '.join(diff)}). Resume it with the same overrides, or write "
                        "this sweep elsewhere (hydra.run.dir=PATH).")


# --- checkpoints -------------------------------------------------------------
class CorruptCheckpoint(Exception):
    """A checkpoint file that fails its checksum or cannot be loaded."""


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save `state` behind a magic line and the SHA-256 of its bytes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    atomic_write(path, CHECKPOINT_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def load_checkpoint(path: Path) -> dict:
    """The state saved at `path`; CorruptCheckpoint if its bytes are not what was saved."""
    data = path.read_bytes()
    header, rest = data[:len(CHECKPOINT_MAGIC)], data[len(CHECKPOINT_MAGIC):]
    digest, payload = rest[:64], rest[65:]  # 64 hex digits, a newline, the torch.save bytes
    if header != CHECKPOINT_MAGIC or hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CorruptCheckpoint(f"{path} fails its checksum")
    try:
        # the file is the sweep's own and its checksum holds; it pickles numpy arrays
        return torch.load(io.BytesIO(payload), weights_only=False)
    except Exception as err:  # any unpickling failure means: do not use it
        raise CorruptCheckpoint(f"{path} cannot be loaded ({err})") from err


# --- the lock ----------------------------------------------------------------
@contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive flock on directory/.lock; UserError if another sweep holds it.

    The file exists only while a sweep holds it: the holder deletes it before letting go. A sweep
    that opened the file just before that deletion would lock a file no longer in the directory,
    so a lock counts only if the path still names the locked file; if not, it locks the new one.
    """
    path = directory / ".lock"
    while True:
        lock = open(path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise UserError(f"another sweep (pid {holder}) is writing {directory}; wait for it to end, "
                            "or write this sweep elsewhere (hydra.run.dir=PATH).") from None
        if path.exists() and os.path.samestat(path.stat(), os.fstat(lock.fileno())):
            break
        lock.close()
    with lock:  # closing the file releases the lock, also when the process is killed
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # still locked: no other sweep holds or deletes it now


# --- rows --------------------------------------------------------------------
def metric_table(metrics: list[dict[str, np.ndarray]], key: str, n_models: int) -> np.ndarray:
    """[M, E+1]: model m's `key` after epoch e (NaN where an epoch has no such metric, e.g. epoch 0's costs)."""
    return np.stack([np.asarray(m[key], dtype=np.float64) if key in m else np.full(n_models, np.nan)
                     for m in metrics], axis=1)


def epoch_rows(run_ids: list[str], metrics: list[dict[str, np.ndarray]], columns: list[str]) -> pd.DataFrame:
    """epochs.csv rows, run by run, epoch 0 (initialization) first; metrics[e] is epoch e's dict."""
    n_models, n_epochs = len(run_ids), len(metrics)
    rows = {"run_id": np.repeat(run_ids, n_epochs), "epoch": np.tile(np.arange(n_epochs), n_models)}
    return pd.DataFrame(rows | {key: metric_table(metrics, key, n_models).reshape(-1) for key in columns})


def _first_best(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of [M, E]: the first column holding the row's maximum (-1 if all NaN) and that maximum."""
    empty = np.isnan(values).all(axis=1)
    index = np.where(np.isnan(values), -np.inf, values).argmax(axis=1)
    best = np.take_along_axis(values, index[:, None], axis=1)[:, 0]
    return np.where(empty, -1, index), best


def run_outcomes(test_acc: np.ndarray, val_acc: np.ndarray) -> pd.DataFrame:
    """runs.csv's accuracy columns from [M, E] accuracies after epochs 1..E.

    peak = the best test accuracy and its first epoch; val-selected = the test accuracy
    at the first epoch with the best validation accuracy (early stopping on validation).
    """
    peak_index, peak = _first_best(test_acc)
    val_index, _ = _first_best(val_acc)
    val_selected = np.take_along_axis(test_acc, val_index[:, None], axis=1)[:, 0]

    def epoch(index: np.ndarray) -> pd.Series:  # column index -> epoch number; none if all NaN
        return pd.Series(index + 1, dtype="Int64").where(index >= 0)

    return pd.DataFrame({
        "peak_test_acc": np.where(peak_index >= 0, peak, np.nan),
        "peak_epoch": epoch(peak_index),
        "final_test_acc": test_acc[:, -1],
        "val_selected_test_acc": np.where(val_index >= 0, val_selected, np.nan),
        "val_selected_epoch": epoch(val_index),
    })
