"""The runs and epochs of every sweep at or below some directories, as `analyze` reads them.

    python -c "from lossbench.results import load; runs, epochs = load.load_results(['results/default_comparison']); print(len(runs))"

Every runs.csv found (searched recursively, so a Hydra multirun directory with 0/, 1/, ... works)
is read with its epochs.csv through verify.verify_sweep: a damaged line stops the reading with
`error: line N of FILE: problem` (docs/reliability.md), never a silently dropped row. A run_id
seen twice counts once.
"""

from pathlib import Path

import pandas as pd

from lossbench.errors import UserError
from lossbench.results.columns import SETTINGS
from lossbench.results.verify import read_config, verify_sweep

# The columns analyze needs (hand-made CSVs may lack the others): the grid, the settings that group
# runs, the status and the accuracies; epochs.csv's output-layer gradients grad_b{L}, grad_w{L} too,
# once the network's depth is known.
RUNS_COLUMNS = ["run_id", "pair", "lr", "seed", *SETTINGS, "status", "peak_test_acc", "final_test_acc",
                "val_selected_test_acc"]
EPOCHS_COLUMNS = ["run_id", "epoch", "val_acc", "test_acc", "test_saturated", "grad_b1", "grad_w1"]


def find_sweeps(directory: Path) -> list[Path]:
    """The directories at or below `directory` that hold a runs.csv."""
    if directory.is_file():  # a sweep's own runs.csv, say: the directory holding it is what was meant
        meant = f": here {directory.parent}" if directory.name in ("runs.csv", "epochs.csv") else ""
        raise UserError(f"{directory}: a file, not a directory; pass a sweep output directory (holding runs.csv "
                        f"and epochs.csv) or a directory above sweep directories{meant}.")
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory; pass sweep output directories "
                        "(each holding runs.csv and epochs.csv, or subdirectories that do).")
    sweeps = sorted(path.parent for path in directory.rglob("runs.csv"))
    if not sweeps:
        raise UserError(f"{directory}: no runs.csv in it or any subdirectory; pass the output "
                        "directory of `python -m lossbench sweep`.")
    return sweeps


def read_sweep(sweep: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep directory's runs.csv and epochs.csv as frames, if every line of them can be trusted
    (verify_sweep; checked against config.yaml's data.val_size where there is one), else a
    UserError naming the first damaged line: analyze never uses a damaged row, nor drops one silently."""
    config = read_config(sweep / "config.yaml") or {}
    val_size = (config.get("data") or {}).get("val_size")
    found = verify_sweep(sweep, val_size=val_size if isinstance(val_size, int) else None,
                                 required=(RUNS_COLUMNS, EPOCHS_COLUMNS))
    if found.damage:
        more = len(found.damage) - 1
        raise UserError(f"{found.damage[0]}{f' (and {more} more damaged line(s))' if more else ''}. analyze "
                        f"uses no damaged file: the sweep run again into {sweep} (the same command) keeps the "
                        "damaged file beside as a backup and trains its damaged runs again; or restore the file.")
    runs = found.finished.reset_index(drop=True)
    return runs, found.epoch_values.reset_index(drop=True)


def load_results(dirs: list[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, epochs) from every sweep under `dirs`; a run_id seen twice counts once (first kept).

    Epoch rows of runs absent from runs.csv (a sweep cut off mid-run) are dropped.
    """
    frames = [read_sweep(sweep) for directory in dirs for sweep in find_sweeps(Path(directory))]
    runs = pd.concat([runs for runs, _ in frames], ignore_index=True).drop_duplicates("run_id")
    if runs.empty:
        raise UserError(f"{', '.join(map(str, dirs))}: the runs.csv files hold no runs yet.")
    epochs = pd.concat([epochs for _, epochs in frames], ignore_index=True)
    epochs = epochs.drop_duplicates(["run_id", "epoch"])
    epochs = epochs[epochs["run_id"].isin(runs["run_id"])]
    return runs.reset_index(drop=True), epochs.reset_index(drop=True)
