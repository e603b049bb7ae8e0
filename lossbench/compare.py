"""How far two sweeps of the same config differ, run by run (docs/reproducibility.md).

    python -m lossbench compare-runs results/default_comparison outputs/sweep/DIR

Reads both directories as `analyze` does (every runs.csv and epochs.csv at or below each, so a
multirun directory works) and compares the runs they share: the same run_id, which is the same
pair, learning rate, seed and settings. A run is identical when its status and every metric of
every epoch are equal to the last bit (the CSVs hold each float exactly). Printed by (pair, lr):
identical runs, the first epoch that differs, the largest differences of test accuracy over
epochs and of peak test accuracy; then each pair's best learning rate in each sweep (`analyze`'s
rule, on validation accuracy, over the shared runs only) and, per metric, the largest difference.
--out FILE.csv writes the comparison of each run.
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from lossbench import statistics
from lossbench.errors import UserError
from lossbench.results.load import load_results
from lossbench.tables import number

KEYS = ["run_id", "epoch"]


def points_text(value: float) -> str:
    """An accuracy (a fraction) in percentage points, unsigned; "-" for none."""
    return number(100 * value, ".2f")


def load_sweep(directory: str) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    path = Path(os.path.abspath(directory))  # absolute: it appears in messages and the report
    return (path, *load_results([path]))


def describe_sweep(path: Path, runs: pd.DataFrame) -> str:
    """What a sweep directory holds and where it ran: for the header, and for 'not comparable'."""
    settings = "; ".join(sorted(statistics.label_groups(runs)["group"].unique()))
    counts = ", ".join(f"{k} {c}{'s' * (k != 1)}" for c in ("pair", "lr", "seed") for k in [runs[c].nunique()])
    where = sorted(set(runs["device"].astype(str) + ", torch " + runs["torch_version"].astype(str))
                   if {"device", "torch_version"} <= set(runs.columns) else [])
    info = path / "run_info.json"
    if info.is_file():  # code_version: which code trained the runs; older run_info.json files lack it
        recorded = json.loads(info.read_text())
        code = [f"code {recorded['code_version']}"] if "code_version" in recorded else []
        where = [recorded.get("hardware", "?"), *where, *code]
    return f"{len(runs)} runs ({counts}) of {settings}; ran on {'; '.join(where)}"


def compare(runs_a: pd.DataFrame, epochs_a: pd.DataFrame, runs_b: pd.DataFrame,
            epochs_b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per shared run: pair, lr, seed, identical, first_diff_epoch, peak_a, peak_b, peak_diff,
    max_diff_test_acc; and per shared run and metric, the largest |B - A| over epochs (inf where one
    sweep has a number and the other NaN: a run that diverged in one only)."""
    shared = sorted(set(runs_a["run_id"]) & set(runs_b["run_id"]))
    metrics = [c for c in epochs_a.columns if c in epochs_b.columns and c not in KEYS]

    def rows(epochs: pd.DataFrame) -> pd.DataFrame:
        return epochs[epochs["run_id"].isin(shared)].set_index(KEYS)[metrics].astype(float)

    a, b = rows(epochs_a).align(rows(epochs_b), join="outer")  # an epoch in one only: NaN in the other
    both_nan = a.isna() & b.isna()
    diff = (b - a).abs().mask(a.isna() != b.isna(), np.inf).mask(both_nan, 0.0)
    epoch_differs = (diff > 0).any(axis=1)
    per_run = diff.groupby(level="run_id").max()
    first = epoch_differs[epoch_differs].reset_index("epoch").groupby("run_id")["epoch"].min()

    run_a, run_b = (runs.set_index("run_id").loc[shared] for runs in (runs_a, runs_b))
    table = run_a[["pair", "lr", "seed"]].copy()
    table["first_diff_epoch"] = first.reindex(shared).astype("Int64")
    table["identical"] = table["first_diff_epoch"].isna() & (run_a["status"] == run_b["status"])
    table["peak_a"], table["peak_b"] = run_a["peak_test_acc"], run_b["peak_test_acc"]
    table["peak_diff"] = table["peak_b"] - table["peak_a"]
    table["max_diff_test_acc"] = per_run["test_acc"].reindex(shared)
    return table.reset_index(), per_run.reindex(shared)


def best_lrs(runs: pd.DataFrame, epochs: pd.DataFrame, shared: pd.Series) -> pd.Series:
    """pair -> best lr by `analyze`'s rule, over the shared runs only (like is compared with like)."""
    summary = statistics.summarize(runs[runs["run_id"].isin(shared)], epochs[epochs["run_id"].isin(shared)])
    return summary[summary["best_lr"]].set_index("pair")["lr"]


def by_cell(table: pd.DataFrame) -> pd.DataFrame:
    cells = table.groupby(["pair", "lr"])
    return pd.DataFrame({
        "runs": cells.size(),
        "identical": cells["identical"].sum(),
        "first diff. epoch": cells["first_diff_epoch"].min().map(lambda e: "-" if pd.isna(e) else str(e)),
        "max |Δ test acc| (points)": cells["max_diff_test_acc"].max().map(points_text),
        "max |Δ peak| (points)": cells["peak_diff"].apply(lambda d: d.abs().max()).map(points_text),
    }).reset_index().assign(lr=lambda t: t["lr"].map("{:g}".format))


def report_text(a: tuple, b: tuple, table: pd.DataFrame, per_metric: pd.DataFrame) -> str:
    (path_a, runs_a, epochs_a), (path_b, runs_b, epochs_b) = a, b
    n, same = len(table), int(table["identical"].sum())
    only_a, only_b = len(runs_a) - n, len(runs_b) - n
    lines = [f"A: {path_a}\n   {describe_sweep(path_a, runs_a)}", f"B: {path_b}\n   {describe_sweep(path_b, runs_b)}",
             f"compared: the {n} runs in both" + (f" ({only_a} only in A, {only_b} only in B, not compared)"
                                                  if only_a or only_b else ""),
             f"identical (status and every metric of every epoch, to the last bit): {same} of {n}"]
    worst = table["peak_diff"].abs().idxmax() if table["peak_diff"].abs().max() > 0 else None
    if worst is not None:
        row = table.loc[worst]
        lines.append(f"largest peak test accuracy difference: {points_text(abs(row['peak_diff']))} points "
                     f"({row['pair']}, lr {row['lr']:g}, seed {row['seed']})")
    lines += ["", "by pair and lr (Δ = B - A):", by_cell(table).to_string(index=False), ""]
    best_a, best_b = (best_lrs(runs, epochs, table["run_id"]) for runs, epochs in ((runs_a, epochs_a), (runs_b, epochs_b)))
    differ = [p for p in best_a.index.union(best_b.index) if best_a.get(p) != best_b.get(p)]
    chosen = ", ".join(f"{p} {best_a[p]:g}" for p in best_a.index if p not in differ)
    lines.append("best lr per pair (analyze's rule, on the runs compared): "
                 + (f"the same in both: {chosen}" if not differ else
                    "differs for " + ", ".join(f"{p} ({best_a.get(p, '-')} in A, {best_b.get(p, '-')} in B)"
                                               for p in differ) + (f"; the same for {chosen}" if chosen else "")))
    lines += ["", "per-epoch metric: runs that differ, largest |B - A| (inf: a number in one, NaN in the other)",
              pd.DataFrame({"runs differing": (per_metric > 0).sum(), "max |Δ|": per_metric.max().map("{:.3g}".format)})
              .to_string()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench compare-runs",
        description="How far two sweeps of the same config differ, run by run: identical runs, the first "
                    "epoch that differs, differences of per-epoch metrics and of peak accuracy, by learning rate.")
    parser.add_argument("dir_a", metavar="DIR_A", help="a sweep directory (or a multirun directory)")
    parser.add_argument("dir_b", metavar="DIR_B", help="another sweep of the same config")
    parser.add_argument("--out", type=Path, metavar="FILE.csv", help="write the comparison of each run here")
    args = parser.parse_args(argv)
    a, b = load_sweep(args.dir_a), load_sweep(args.dir_b)
    if a[0] == b[0]:
        raise UserError(f"DIR_A and DIR_B are both {a[0]}; give two sweep directories to compare.")
    table, per_metric = compare(a[1], a[2], b[1], b[2])
    if table.empty:
        raise UserError(f"{a[0]} and {b[0]} share no run, so there is nothing to compare run by run: runs "
                        "compare when their run_ids are equal (the same pair, lr, seed and settings). "
                        f"A holds {describe_sweep(*a[:2])}. B holds {describe_sweep(*b[:2])}.")
    print(report_text(a, b, table, per_metric))
    if args.out:
        try:
            per_run = table.drop(columns="max_diff_test_acc").join(per_metric.add_prefix("max_diff_"), on="run_id")
            per_run.to_csv(args.out, index=False)
        except OSError as err:
            raise UserError(f"cannot write {os.path.abspath(args.out)} ({err.strerror or err}).") from None
        print(f"\nper run: {os.path.abspath(args.out)}")
    return 0
