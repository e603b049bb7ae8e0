"""A sweep directory's CSVs read back, no file trusted: each line checked, which runs are finished.

    python -c "from pathlib import Path; from lossbench.results import verify; print(verify.verify_sweep(Path('results/default_comparison')).damage)"

Editors, spreadsheets, sync tools and git merges change the files from outside. A run counts as
finished only if its runs.csv row is well-formed, epochs.csv holds exactly its epochs 0..E, each
well-formed, and the row's outcome columns agree with what those epochs give. repair() keeps a
damaged file beside as a backup and rewrites it with the finished runs' rows only; config.yaml
is read with the same care (read_config). docs/reliability.md says what happens in each case.
"""

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lossbench.atomic import DamagedFile, atomic_write, refuse_directory, require_replaceable
from lossbench.choices import PAIR_PARTS
from lossbench.results.columns import (RUN_CELLS, RUN_COLUMNS, SETTINGS, Cell, epoch_cells, run_hash, run_id,
                                       run_outcomes)


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
    refuse_directory(path)
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
              lambda at: f"its settings ({', '.join(f'{key} {row[at][key]}' for key in SETTINGS)}) with "
                         f"config.yaml's data.val_size {val_size} do not give the hash in its run_id")
    if {"activation", "cost"} <= set(runs.columns):
        parts = pd.DataFrame(runs["pair"].map(PAIR_PARTS).tolist(), index=runs.index, columns=["activation", "cost"])
        _note(problems, (runs[["activation", "cost"]] != parts).any(axis=1),
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
def flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flatten(sub, f"{prefix}{key}.").items()}
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
