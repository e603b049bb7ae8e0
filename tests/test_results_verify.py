"""Reading result files back: the committed ones whole, and files damaged from outside, each case through `sweep`
(repair or stop) and `analyze` (read or stop).

    python -m pytest tests/test_results_verify.py

A reference sweep (2 pairs x 1 lr x 2 seeds, 2 epochs, float64, one ensemble per seed) is
copied, one file of the copy is damaged as an editor, a spreadsheet, a sync tool or a git
merge would, and then:
- analyze on the damaged copy either reads exactly the reference's numbers (harmless cases)
  or stops with `error: line N of FILE: problem` (status 2, no traceback);
- the sweep into the damaged copy either finishes with the reference's numbers and writes
  nothing (harmless), repairs (a warning names each damaged line and the backup, which holds
  the damaged bytes; only the damaged runs are trained again; the end result equals the
  reference, in float64 to 1e-10), or stops with one message and changes no file.
docs/reliability.md lists the cases and what happens in each. The damage tests need MNIST (LOSSBENCH_DATA).
"""

import csv
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from lossbench import cli
from lossbench.results import load, verify, write

# 4 runs; runs.csv lines 2-5: sigmoid_ce s0, softmax_nll s0, sigmoid_ce s1, softmax_nll s1;
# epochs.csv lines 2-13: the same runs, epochs 0, 1, 2 each
GRID = ["sweep.pairs=[sigmoid_ce,softmax_nll]", "sweep.lrs=[0.5]", "sweep.seeds=2", "optim.epochs=2",
        "data.train_size=100", "data.val_size=500", "dtype=float64", "sweep.ensemble_size=2"]
RUN_ON_LINE = {2: "sigmoid_ce_lr0.5_s0", 3: "softmax_nll_lr0.5_s0", 4: "sigmoid_ce_lr0.5_s1",
               5: "softmax_nll_lr0.5_s1"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, logging_kept) -> Path:
    out = tmp_path_factory.mktemp("reference") / "sweep"
    with logging_kept():
        assert cli.main(["sweep", *GRID, f"hydra.run.dir={out}"]) == 0
    assert [line.split(",")[0][:-9] for line in (out / "runs.csv").read_text().splitlines()[1:]] == list(
        RUN_ON_LINE.values())
    return out


def numbers(directory: Path) -> dict[str, pd.DataFrame]:
    """Both CSVs by run (and epoch), without wall_time_s (the one column that differs between equal runs)."""
    read = {name: pd.read_csv(directory / name, encoding="utf-8-sig").drop(columns=["wall_time_s"], errors="ignore")
            .drop_duplicates() for name in ("runs.csv", "epochs.csv")}  # an exact copy of a row is harmless
    return {"runs.csv": read["runs.csv"].sort_values("run_id", ignore_index=True),
            "epochs.csv": read["epochs.csv"].sort_values(["run_id", "epoch"], ignore_index=True)}


def assert_same_numbers(a: Path, b: Path) -> None:
    """The same rows with the same numbers: to 1e-10, since a run trained again in a smaller ensemble
    may differ in the last bits of its train_cost (ensemble.py: model alone vs in an ensemble)."""
    for name, frame in numbers(a).items():
        pd.testing.assert_frame_equal(frame, numbers(b)[name], check_exact=False, rtol=1e-10, atol=0, obj=name)


# --- ways to damage a CSV: each takes and returns the file's text ------------------
def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def joined(rows: list[list[str]], **options) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", **options).writerows(rows)
    return buffer.getvalue()


def set_cell(line: int, column: str, value) -> Callable[[str], str]:
    def damage(text):
        rows = rows_of(text)
        cell = rows[0].index(column)
        rows[line - 1][cell] = value(rows[line - 1][cell]) if callable(value) else value
        return joined(rows)
    return damage


def drop_cell(line: int, column: str) -> Callable[[str], str]:
    def damage(text):
        rows = rows_of(text)
        del rows[line - 1][rows[0].index(column)]
        return joined(rows)
    return damage


def copy_line(line: int, column: str = "", value: str = "") -> Callable[[str], str]:
    """Append a copy of a line (as a sync tool or merge may), with one cell changed if `column`."""
    def damage(text):
        rows = rows_of(text)
        copy = list(rows[line - 1])
        if column:
            copy[rows[0].index(column)] = value
        return joined(rows + [copy])
    return damage


def delete_line(line: int) -> Callable[[str], str]:
    return lambda text: "".join(text.splitlines(keepends=True)[:line - 1] + text.splitlines(keepends=True)[line:])


def rename_column(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new, 1)


def merge_conflict(line: int) -> Callable[[str], str]:
    """Both sides of a merge changed a line: git keeps both between conflict markers."""
    def damage(text):
        lines = text.splitlines(keepends=True)
        theirs = lines[line - 1].replace(",0.", ",0.0", 1)
        return "".join(lines[:line - 1] + ["<<<<<<< HEAD\n", lines[line - 1], "=======\n", theirs,
                                           ">>>>>>> their-branch\n"] + lines[line:])
    return damage


def spreadsheet_save(text: str) -> str:
    """What a spreadsheet's CSV export may do: a UTF-8 byte-order mark, CRLF, every cell quoted."""
    return "\ufeff" + joined(rows_of(text), quoting=csv.QUOTE_ALL).replace("\n", "\r\n")


def cut_last_line(text: str) -> str:
    return text[:-12]


def directory_instead(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "something.txt").write_text("a user's file")


def read_only(path: Path) -> None:
    path.chmod(0o444)


def read_only_with_a_run_to_train(path: Path) -> None:
    runs = path.parent / "runs.csv"
    runs.write_text(delete_line(5)(runs.read_text()))  # that run is unfinished: the sweep must write
    path.chmod(0o444)


# --- the cases ------------------------------------------------------------------------
@dataclass
class Case:
    """A damaged file: `damage` maps its text to the damaged text (or acts on its path). What the sweep
    does ("repair": the damaged runs are trained again; "stop": exit 2, nothing written; "harmless": read
    as meant, nothing trained) and what analyze does ("stop" or "harmless"); the message both give:
    `where: problem` where `where` is "line N of PATH" (line None: "PATH"; named: the file it names, if
    not the damaged one), problem a regex; for the sweep's repair, how many runs are trained again."""

    file: str
    damage: Callable
    sweep: str
    analyze: str
    problem: str = ""
    line: int | None = None
    named: str = ""
    retrained: int = 1


ON_PATH = {directory_instead, read_only, read_only_with_a_run_to_train}
CUT = "cut off: the file ends inside this line \\(it has no line end\\)"
EMPTY = "not a readable CSV: the file is empty \\(cut off before its header\\)"
READ_ONLY = r"read-only \(mode 0444\), and the sweep must replace it"
CSV_CASES = {
    "runs.csv: truncated last line": Case("runs.csv", cut_last_line, "repair", "stop", CUT, 5),
    "runs.csv: emptied": Case("runs.csv", lambda text: "", "repair", "stop", EMPTY, retrained=4),
    "runs.csv: row missing a field": Case("runs.csv", drop_cell(3, "peak_epoch"), "repair", "stop",
                                          "23 fields where the header has 24", 3),
    "runs.csv: status emptied (NaN)": Case("runs.csv", set_cell(3, "status", ""), "repair", "stop",
                                           "status \\(empty\\) is none of diverged, ok", 3),
    "runs.csv: garbled number": Case("runs.csv", set_cell(4, "peak_test_acc", lambda acc: f"{float(acc) - 0.01:g}"),
                                     "repair", "stop", "peak_test_acc 0.[0-9]+ disagrees with its epochs in epochs.csv, "
                                                       "which give 0.[0-9]+", 4),
    "runs.csv: garbled run_id": Case("runs.csv", set_cell(2, "run_id", lambda rid: rid.replace("_s0_", "_s9_")),
                                     "repair", "stop", "run_id sigmoid_ce_lr0.5_s9_[0-9a-f]{8} does not name its row's "
                                                       "pair, lr and seed", 2),
    "runs.csv: garbled setting": Case("runs.csv", set_cell(2, "l2", "0.5"), "repair", "stop",
                                      r"its settings \(.*l2 0.5.*\) with config.yaml's data\.val_size 500 do not "
                                      "give the hash in its run_id", 2),
    "runs.csv: non-numeric value": Case("runs.csv", set_cell(4, "lr", "#VALUE!"), "repair", "stop",
                                        r"column lr holds non-numeric values \('#VALUE!'\)", 4),
    "runs.csv: duplicated row": Case("runs.csv", copy_line(2), "harmless", "harmless"),
    "runs.csv: duplicated row, other values": Case("runs.csv", copy_line(2, "device", "cuda"), "repair", "stop",
                                                   "line 6 holds the same run_id with other values", 2),
    "runs.csv: changed header": Case("runs.csv", rename_column("peak_test_acc", "Peak test acc"), "stop", "stop",
                                     "the header lacks column\\(s\\) peak_test_acc; has unknown column\\(s\\) "
                                     "'Peak test acc'", 1),
    "runs.csv: git merge-conflict markers": Case("runs.csv", merge_conflict(3), "stop", "stop",
                                                 "a git merge-conflict marker \\('<<<<<<< HEAD'\\)", 3),
    "runs.csv: spreadsheet save (BOM, CRLF, quoted numbers)": Case("runs.csv", spreadsheet_save, "harmless", "harmless"),
    "runs.csv: replaced by a directory": Case("runs.csv", directory_instead, "stop", "stop",
                                              "a directory, where the sweep keeps a file"),
    "runs.csv: read-only": Case("runs.csv", read_only, "harmless", "harmless"),
    "runs.csv: read-only, with a run to train": Case("runs.csv", read_only_with_a_run_to_train, "stop", "harmless",
                                                     READ_ONLY),
    "epochs.csv: truncated last line": Case("epochs.csv", cut_last_line, "repair", "stop", CUT, 13),
    "epochs.csv: emptied": Case("epochs.csv", lambda text: "", "repair", "stop", EMPTY, retrained=4),
    "epochs.csv: row missing a field": Case("epochs.csv", drop_cell(6, "test_cost"), "repair", "stop",
                                            "11 fields where the header has 12", 6),
    "epochs.csv: row deleted": Case("epochs.csv", delete_line(9), "repair", "stop", "epochs.csv holds 2 rows of this "
                                    "run, of epochs 0-2, not one for each of its epochs 0-2", 4, "runs.csv"),
    "epochs.csv: garbled accuracy": Case("epochs.csv", set_cell(3, "test_acc", "0.99"), "repair", "stop",
                                         "peak_test_acc 0.[0-9]+ disagrees with its epochs in epochs.csv, which give "
                                         "0.99", 2, "runs.csv"),
    "epochs.csv: accuracy emptied": Case("epochs.csv", set_cell(3, "val_acc", ""), "repair", "stop",
                                         "line 3 of epochs.csv has accuracies missing at epoch 1 of a run that did "
                                         "not diverge", 2, "runs.csv"),
    "epochs.csv: non-numeric value": Case("epochs.csv", set_cell(7, "val_cost", "abc"), "repair", "stop",
                                          r"column val_cost holds non-numeric values \('abc'\)", 7),
    "epochs.csv: duplicated row": Case("epochs.csv", copy_line(3), "harmless", "harmless"),
    "epochs.csv: duplicated row, other values": Case("epochs.csv", copy_line(3, "train_cost", "0.5"), "repair", "stop",
                                                     "line 14 holds the same run_id and epoch with other values", 3),
    "epochs.csv: changed header": Case("epochs.csv", rename_column("test_acc", "test acc"), "stop", "stop",
                                       "the header lacks column\\(s\\) test_acc; has unknown column\\(s\\) 'test acc'", 1),
    "epochs.csv: git merge-conflict markers": Case("epochs.csv", merge_conflict(8), "stop", "stop",
                                                   "a git merge-conflict marker \\('<<<<<<< HEAD'\\)", 8),
    "epochs.csv: spreadsheet save (BOM, CRLF, quoted numbers)": Case("epochs.csv", spreadsheet_save, "harmless",
                                                                     "harmless"),
    "epochs.csv: replaced by a directory": Case("epochs.csv", directory_instead, "stop", "stop",
                                                "a directory, where the sweep keeps a file"),
    "epochs.csv: read-only": Case("epochs.csv", read_only, "harmless", "harmless"),
    "epochs.csv: read-only, with a run to train": Case("epochs.csv", read_only_with_a_run_to_train, "stop", "harmless",
                                                       READ_ONLY),
}


def config_line(text: str, find: str) -> int:
    return text.splitlines().index(find) + 1


def mismatch(key_there_now: str) -> str:
    return f"config mismatch: .* holds a sweep with another config \\(.*{key_there_now}.*\\)"


CONFIG_CASES = {
    "config.yaml: truncated last line": Case("config.yaml", lambda text: text[:-5], "stop", "stop", CUT),
    "config.yaml: emptied": Case("config.yaml", lambda text: "", "stop", "stop", "empty"),
    "config.yaml: a key deleted": Case("config.yaml", lambda text: text.replace("  epochs: 2\n", ""), "stop", "harmless",
                                       mismatch("optim.epochs: \\(absent\\) there, 2 now")),
    "config.yaml: garbled value": Case("config.yaml", lambda text: text.replace("  epochs: 2\n", "  epochs: 3\n"),
                                       "stop", "harmless", mismatch("optim.epochs: 3 there, 2 now")),
    "config.yaml: non-numeric value": Case("config.yaml", lambda text: text.replace("  epochs: 2\n", "  epochs: two\n"),
                                           "stop", "harmless", mismatch("optim.epochs: two there, 2 now")),
    "config.yaml: duplicated line": Case("config.yaml", lambda text: text.replace("  epochs: 2\n", "  epochs: 2\n" * 2),
                                         "stop", "stop", "not YAML lossbench can read \\(found duplicate key epochs\\)"),
    "config.yaml: changed header (a top-level key renamed)": Case(
        "config.yaml", lambda text: text.replace("optim:\n", "optimizer:\n"), "stop", "harmless",
        mismatch("optim.epochs: \\(absent\\) there, 2 now")),
    "config.yaml: git merge-conflict markers": Case(
        "config.yaml", lambda text: text.replace("  epochs: 2\n", "<<<<<<< HEAD\n  epochs: 2\n=======\n  epochs: 3\n"
                                                                   ">>>>>>> their-branch\n"),
        "stop", "stop", "a git merge-conflict marker \\('<<<<<<< HEAD'\\)"),
    "config.yaml: BOM and CRLF": Case("config.yaml", lambda text: "\ufeff" + text.replace("\n", "\r\n"),
                                      "harmless", "harmless"),
    "config.yaml: keys added since, at their defaults": Case(
        "config.yaml", lambda text: text.replace("shard:\n  count: 1\n  index: 0\n", ""), "harmless", "harmless"),
    "config.yaml: replaced by a directory": Case("config.yaml", directory_instead, "stop", "stop",
                                                 "a directory, where the sweep keeps a file"),
    "config.yaml: read-only": Case("config.yaml", read_only, "harmless", "harmless"),
}
CONFIG_LINES = {  # the line each config.yaml case names, found in the reference's text
    "config.yaml: truncated last line": lambda text: len(text.splitlines()),
    "config.yaml: duplicated line": lambda text: config_line(text, "  epochs: 2") + 1,
    "config.yaml: git merge-conflict markers": lambda text: config_line(text, "  epochs: 2"),
}


def damage_copy(reference: Path, into: Path, case: Case) -> Path:
    shutil.copytree(reference, into)
    path = into / case.file
    if case.damage in ON_PATH:
        case.damage(path)
    else:
        path.write_text(case.damage(path.read_text()))
    return path


def snapshot(directory: Path) -> dict[str, bytes | str]:
    """Every file's bytes (and each directory), but the lock, which each run takes."""
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else "directory"
            for p in sorted(directory.rglob("*")) if p.name != ".lock"}


def message(case: Case, path: Path, line: int | None) -> str:
    """The regex of `where: problem` for the case (config mismatches name the directory only)."""
    if case.problem.startswith("config mismatch"):
        return case.problem
    named = path.with_name(case.named) if case.named else path
    return re.escape(str(named) if line is None else f"line {line} of {named}") + ": " + case.problem


def check_analyze(run_cli, case: Case, directory: Path, reference: Path, expected: str) -> None:
    before = snapshot(directory)
    code, out, err = run_cli("analyze", str(directory), "--no-plots", "--out", str(directory.parent / "analysis"))
    assert "Traceback" not in out + err
    assert snapshot(directory) == before  # analyze only reads
    if case.analyze == "stop":
        assert code == 2 and re.search("^error: " + expected, err, re.MULTILINE), err
        return
    assert code == 0, err
    mine, theirs = load.load_results([directory]), load.load_results([reference])
    listed = set(mine[0]["run_id"])  # a case may have taken a run out of runs.csv
    for got, want in zip(mine, theirs):
        want = want[want["run_id"].isin(listed)]
        keys = list(got.columns[:2])
        pd.testing.assert_frame_equal(got.sort_values(keys, ignore_index=True), want.sort_values(keys, ignore_index=True),
                                      check_exact=True)


def check_sweep(run_cli, case: Case, directory: Path, reference: Path, path: Path, expected: str) -> None:
    before = snapshot(directory)
    code, out, err = run_cli("sweep", *GRID, f"hydra.run.dir={directory}")
    assert "Traceback" not in out + err
    if case.sweep == "stop":
        assert code == 2 and re.search("^error: " + expected, err, re.MULTILINE), err
        assert snapshot(directory) == before  # nothing written, not even a backup
        return
    assert code == 0, err
    if case.sweep == "harmless":
        assert "4 runs (4 already finished)" in out and "warning" not in err
        assert {name: before[name] for name in ("runs.csv", "epochs.csv")} == {
            name: (directory / name).read_bytes() for name in ("runs.csv", "epochs.csv")}
    else:
        assert re.search("^warning: " + expected, err, re.MULTILINE), err
        assert f"warning: kept {path} as it was in {path}.damaged-1" in err
        assert (directory / f"{case.file}.damaged-1").read_bytes() == before[case.file]  # nothing lost
        assert f"4 runs ({4 - case.retrained} already finished)" in out
        assert not list(directory.glob("*.damaged-2"))
    assert_same_numbers(directory, reference)  # no damaged row left, none twice, the numbers exact
    assert run_cli("analyze", str(directory), "--no-plots", "--out", str(directory.parent / "after"))[0] == 0


@pytest.mark.mnist
@pytest.mark.parametrize("name", list(CSV_CASES))
def test_a_damaged_csv_is_read_as_meant_repaired_or_refused(tmp_path, reference, run_cli, name):
    case = CSV_CASES[name]
    directory = tmp_path / "sweep"
    path = damage_copy(reference, directory, case)
    expected = message(case, path, case.line)
    check_analyze(run_cli, case, directory, reference, expected)
    check_sweep(run_cli, case, directory, reference, path, expected)


@pytest.mark.mnist
@pytest.mark.parametrize("name", list(CONFIG_CASES))
def test_a_damaged_config_is_read_as_meant_or_refused(tmp_path, reference, run_cli, name):
    case = CONFIG_CASES[name]
    directory = tmp_path / "sweep"
    line = CONFIG_LINES.get(name, lambda text: None)((reference / "config.yaml").read_text())
    path = damage_copy(reference, directory, case)
    expected = message(case, path, line)
    check_analyze(run_cli, case, directory, reference, expected)
    check_sweep(run_cli, case, directory, reference, path, expected)


@pytest.mark.mnist
@pytest.mark.parametrize("damage", [directory_instead, read_only])
def test_a_checkpoint_replaced_by_a_directory_or_made_read_only_stops_the_sweep(tmp_path, reference, run_cli,
                                                                                 monkeypatch, damage):
    """(Damaged checkpoint bytes are tests/test_sweep.py's: never used, the ensemble restarts.)"""
    out = tmp_path / "sweep"
    save = write.save_checkpoint

    def save_then_interrupt(path, state):  # as if Ctrl-C came right after the first checkpoint
        save(path, state)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(write, "save_checkpoint", save_then_interrupt)
        assert run_cli("sweep", *GRID, f"hydra.run.dir={out}")[0] == 130
    checkpoint = out / "checkpoints" / "seeds_0.pt"
    damage(checkpoint)
    before = snapshot(out)
    code, stdout, err = run_cli("sweep", *GRID, f"hydra.run.dir={out}")
    problem = "a directory, where the sweep keeps a file" if damage is directory_instead else READ_ONLY
    assert code == 2 and re.search(f"^error: {re.escape(str(checkpoint))}: {problem}", err, re.MULTILINE), err
    assert "Traceback" not in stdout + err and snapshot(out) == before  # nothing trained, nothing written

    if damage is directory_instead:  # mended, the sweep finishes with the reference's numbers
        shutil.rmtree(checkpoint)
    else:
        checkpoint.chmod(0o644)
    assert run_cli("sweep", *GRID, f"hydra.run.dir={out}")[0] == 0
    assert_same_numbers(out, reference)


COMMITTED = sorted(path.parent for path in (Path(__file__).resolve().parents[1] / "results").glob("*/runs.csv"))


@pytest.mark.parametrize("directory", COMMITTED, ids=[path.name for path in COMMITTED])
def test_committed_sweep_directories_read_back_whole(directory):
    """Directories written before runs were verified on reading (results/) hold no damage: every run finished."""
    val_size = verify.read_config(directory / "config.yaml")["data"]["val_size"]
    found = verify.verify_sweep(directory, val_size=val_size)
    assert found.damage == [] and len(found.finished) == len(pd.read_csv(directory / "runs.csv")) > 0
