"""Summary tables with confidence intervals, learning-slowdown measurements and plots from sweep CSVs.

    python -m lossbench analyze outputs/sweep [more sweep dirs ...] [--out DIR]

Reads every runs.csv and its epochs.csv found under the given directories (searched
recursively, so a Hydra multirun directory with 0/, 1/, ... works; a damaged line stops
it with `error: line N of FILE: problem`, see docs/reliability.md), merges them (a
run_id seen twice counts once), groups runs by their configuration (CONFIG_COLUMNS:
different experiments are never pooled) and writes to DIR/analysis/ (first DIR) or --out:

  summary.csv, summary.md    per (config group, pair, lr): seeds, diverged, mean / std /
                             95% t-interval of peak, final and validation-selected test
                             accuracy, epochs to 90% / 95%, the best learning rate
  slowdown.csv, slowdown.md  output- and hidden-layer gradient norms over the first epochs,
                             their ratio, the share of saturated outputs, and the ratio of the
                             best learning rates of sigmoid_mse and sigmoid_ce (book: about 6)
  comparison.csv, .md        per config group and metric (val-selected and peak test accuracy), every two
                             pairs at their best lrs, matched on seed: the mean paired difference, its 95%
                             t-interval, the paired t-test's p and Holm's correction; the .md adds the ranking
  ranking.csv                per (config group, pair): its best lr, accuracies with their rank (1 + the
                             pairs shown better: pairs whose interval covers 0 tie), robustness (the lr band
                             within 1 point of its best mean peak), speed (epochs to 95% / 97%), reliability
                             (stuck or diverged runs in that band); columns in docs/verdict.md
  *_g<k>.png                 per config group k: accuracy_vs_epoch, peak_vs_lr (with a zoom on the top
                             pairs), gradients_vs_epoch, saturation_vs_epoch (sigmoid pairs only), and the
                             forest plot of the paired differences, comparison

Diverged runs are counted and excluded from every accuracy and gradient statistic.
The best learning rate of a (group, pair) is chosen on validation accuracy only: among
its learning rates where no seed diverged (all of them, if every one had a divergence),
the one with the highest mean over seeds of each run's best validation accuracy over
epochs 1..E; ties go to the smaller learning rate.

Python API: load_results(dirs), summarize(runs, epochs), slowdown(runs, epochs, summary),
best_lr_ratio(summary), paired_comparisons(runs, summary), pair_profiles(runs, epochs, summary,
comparisons), seed_distribution(runs, book=...).
"""

import argparse
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.ticker import MaxNLocator
from scipy import special, stats

from lossbench import results
from lossbench.errors import UserError

CONFIG_COLUMNS = ["sizes", "init", "batch_size", "epochs", "l2", "dataset", "train_size", "dtype"]
ACCURACIES = {"peak": "peak_test_acc", "final": "final_test_acc", "val_selected": "val_selected_test_acc"}
# The columns analyze needs (hand-made CSVs may lack the others); epochs.csv's output-layer
# gradients grad_b{L}, grad_w{L} too, once the network's depth is known.
RUNS_COLUMNS = ["run_id", "pair", "lr", "seed", *CONFIG_COLUMNS, "status", *ACCURACIES.values()]
EPOCHS_COLUMNS = ["run_id", "epoch", "val_acc", "test_acc", "test_saturated", "grad_b1", "grad_w1"]
THRESHOLDS = (0.90, 0.95)
CONFIDENCE = 0.95
STUCK = 0.90  # a run whose peak stays below this learned only some of the digits (a stuck run)
# Ch. 3: the quadratic cost's gradient carries sigma'(z) = a(1 - a), whose mean over a in [0, 1]
# is 1/6, so its learning rate should be about 6x cross-entropy's (the book's 3.0 vs 0.5).
BOOK_LR_RATIO = 6.0
CELL = ["group_id", "pair", "lr"]


# --- loading -----------------------------------------------------------------
def find_sweeps(directory: Path) -> list[Path]:
    """The directories at or below `directory` that hold a runs.csv."""
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory; pass sweep output directories "
                        "(each holding runs.csv and epochs.csv, or subdirectories that do).")
    sweeps = sorted(path.parent for path in directory.rglob("runs.csv"))
    if not sweeps:
        raise UserError(f"{directory}: no runs.csv in it or any subdirectory; pass the output "
                        "directory of `python -m lossbench sweep`.")
    return sweeps


def output_layer(sizes: str) -> int:
    """L, the index of the output layer: the number of weight layers, len(sizes) - 1."""
    return len(str(sizes).split("-")) - 1


def read_sweep(sweep: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep directory's runs.csv and epochs.csv as frames, if every line of them can be trusted
    (results.verify_sweep; checked against config.yaml's data.val_size where there is one), else a
    UserError naming the first damaged line: analyze never uses a damaged row, nor drops one silently."""
    config = results.read_config(sweep / "config.yaml") or {}
    val_size = (config.get("data") or {}).get("val_size")
    found = results.verify_sweep(sweep, val_size=val_size if isinstance(val_size, int) else None,
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


# --- per-run and per-cell statistics -----------------------------------------
def config_label(row: pd.Series) -> str:
    """A readable name for a configuration, e.g. '784-30-10 init=large batch=10 epochs=30 l2=0 mnist train=50000 float32'."""
    train = "all" if pd.isna(row["train_size"]) else f"{row['train_size']:g}"  # empty in hand-made CSVs
    return (f"{row['sizes']} init={row['init']} batch={row['batch_size']:g} epochs={row['epochs']:g} "
            f"l2={row['l2']:g} {row['dataset']} train={train} {row['dtype']}")


def label_groups(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` plus group (config label), group_id (g1, g2, ... in label order) and diverged (bool)."""
    runs = runs.copy()
    runs["group"] = runs.apply(config_label, axis=1)
    codes, _ = pd.factorize(runs["group"], sort=True)
    runs["group_id"] = [f"g{code + 1}" for code in codes]
    runs["diverged"] = runs["status"].eq("diverged")
    return runs


def with_run_stats(runs: pd.DataFrame, epochs: pd.DataFrame, thresholds=THRESHOLDS) -> pd.DataFrame:
    """label_groups(runs) plus best_val_acc (max val_acc over epochs >= 1) and, per threshold,
    epochs_to_90, epochs_to_95, ... (first epoch whose test_acc reaches it; NaN if none)."""
    runs = label_groups(runs)
    trained = epochs[epochs["epoch"] >= 1]
    runs["best_val_acc"] = runs["run_id"].map(trained.groupby("run_id")["val_acc"].max())
    for threshold in thresholds:
        reached = trained[trained["test_acc"] >= threshold].groupby("run_id")["epoch"].min()
        runs[f"epochs_to_{threshold * 100:.0f}"] = runs["run_id"].map(reached)
    return runs


def ci_halfwidth(values: pd.Series) -> float:
    """Half-width of the two-sided 95% t-interval for the mean; NaN below two values."""
    values = values.dropna()
    if len(values) < 2:
        return np.nan
    with warnings.catch_warnings():  # identical values: scipy warns, and the interval is (mean, mean)
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = stats.ttest_1samp(values, popmean=0.0).confidence_interval(CONFIDENCE)
    return float(interval.high - interval.low) / 2


def summarize(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per (config group, pair, lr); columns are defined in docs/analysis.md.

    seeds counts all runs, diverged the diverged ones, n = seeds - diverged the runs behind every
    accuracy statistic; best_lr marks each (group, pair)'s best learning rate (module docstring).
    """
    runs = with_run_stats(runs, epochs)
    counts = runs.groupby(CELL).agg(group=("group", "first"), seeds=("run_id", "size"),
                                    diverged=("diverged", "sum"))
    aggregations = {"best_val_mean": ("best_val_acc", "mean")}
    for name, column in ACCURACIES.items():
        aggregations |= {f"{name}_mean": (column, "mean"), f"{name}_std": (column, "std"),
                         f"{name}_ci95": (column, ci_halfwidth)}
    for threshold in THRESHOLDS:
        percent = f"{threshold * 100:.0f}"
        aggregations |= {f"reach{percent}_n": (f"epochs_to_{percent}", "count"),
                         f"reach{percent}_epochs_mean": (f"epochs_to_{percent}", "mean")}
    accuracy = runs[~runs["diverged"]].groupby(CELL).agg(**aggregations)
    table = counts.join(accuracy)  # a cell whose runs all diverged keeps its counts, NaN statistics
    table.insert(3, "n", table["seeds"] - table["diverged"])
    reach_counts = [f"reach{threshold * 100:.0f}_n" for threshold in THRESHOLDS]
    table[reach_counts] = table[reach_counts].fillna(0).astype(int)
    table["best_lr"] = best_lr_flags(table)
    config = runs.groupby("group_id")[CONFIG_COLUMNS].first()
    return table.reset_index().join(config, on="group_id")


def best_lr_flags(table: pd.DataFrame) -> np.ndarray:
    """True at each (group, pair)'s best lr: no divergence first, then best_val_mean, then smaller lr."""
    candidates = table[table["best_val_mean"].notna()].reset_index()
    candidates["unstable"] = candidates["diverged"] > 0
    ranked = candidates.sort_values(["unstable", "best_val_mean", "lr"], ascending=[True, False, True])
    best = ranked.groupby(["group_id", "pair"]).head(1).set_index(CELL).index
    return table.index.isin(best)


def best_runs(runs: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The non-diverged runs at each (group, pair)'s best lr, with group_id."""
    runs = label_groups(runs)
    best = summary.loc[summary["best_lr"], CELL]
    return runs[~runs["diverged"]].merge(best, on=CELL)


# --- learning slowdown --------------------------------------------------------
def slowdown(runs: pd.DataFrame, epochs: pd.DataFrame, summary: pd.DataFrame, first_epochs: int = 3) -> pd.DataFrame:
    """Per (group, pair, lr), over non-diverged runs: the output layer L's gradient norms
    out_grad_b = grad_b{L}, out_grad_w = grad_w{L} and the first hidden layer's hidden_grad_b =
    grad_b1 (NaN without a hidden layer), each the mean over epochs 1..first_epochs, then over seeds;
    out_hidden_ratio = mean over seeds of each run's out_grad_b / hidden_grad_b; saturated_init and
    saturated_first = test_saturated at epoch 0 and its mean over epochs 1..first_epochs."""
    runs = label_groups(runs)
    rows = epochs.merge(runs.loc[~runs["diverged"], ["run_id", *CELL, "group", "sizes"]], on="run_id")
    depth = rows["sizes"].map(output_layer)
    rows[["out_grad_b", "out_grad_w"]] = np.nan
    for layer in depth.unique():  # the output layer's columns differ between network depths
        rows.loc[depth == layer, ["out_grad_b", "out_grad_w"]] = rows.loc[
            depth == layer, [f"grad_b{layer}", f"grad_w{layer}"]].to_numpy()
    rows["hidden_grad_b"] = rows["grad_b1"].where(depth > 1)  # without a hidden layer, layer 1 is the output
    early = rows[rows["epoch"].between(1, first_epochs)]
    per_run = early.groupby(["run_id", *CELL, "group"])[
        ["out_grad_b", "out_grad_w", "hidden_grad_b", "test_saturated"]].mean().reset_index()
    per_run["out_hidden_ratio"] = per_run["out_grad_b"] / per_run["hidden_grad_b"]
    per_run["saturated_init"] = per_run["run_id"].map(rows[rows["epoch"] == 0].set_index("run_id")["test_saturated"])
    table = per_run.groupby([*CELL, "group"]).agg(
        n=("run_id", "size"), out_grad_b=("out_grad_b", "mean"), out_grad_w=("out_grad_w", "mean"),
        hidden_grad_b=("hidden_grad_b", "mean"), out_hidden_ratio=("out_hidden_ratio", "mean"),
        saturated_init=("saturated_init", "mean"), saturated_first=("test_saturated", "mean"))
    best = summary.set_index(CELL)["best_lr"]
    return table.reset_index().join(best, on=CELL)


def best_lr_ratio(summary: pd.DataFrame) -> pd.DataFrame:
    """Per group holding both sigmoid pairs: their best lrs and lr_ratio = sigmoid_mse's / sigmoid_ce's
    (the book's heuristic says about 6; the ratio is only as fine as the swept lr grid)."""
    best = summary[summary["best_lr"]].pivot_table(index=["group_id", "group"], columns="pair", values="lr")
    if not {"sigmoid_mse", "sigmoid_ce"} <= set(best.columns):
        return pd.DataFrame(columns=["group_id", "group", "lr_sigmoid_mse", "lr_sigmoid_ce", "lr_ratio"])
    ratio = best[["sigmoid_mse", "sigmoid_ce"]].dropna().add_prefix("lr_")
    ratio["lr_ratio"] = ratio["lr_sigmoid_mse"] / ratio["lr_sigmoid_ce"]
    return ratio.reset_index()


# --- paired comparisons, ranking, per-pair profiles -------------------------------
# Paired comparisons (comparison.csv): the runs of two pairs with the same seed share their initialization
# and batch order (ensemble.py: the seed alone fixes both), so they are matched on seed, never on row order.
COMPARED = {"val_selected_test_acc": "val_selected", "peak_test_acc": "peak"}  # runs.csv column -> summary prefix
PAIRED_TEST = "paired t-test (scipy.stats.ttest_rel, two-sided)"
COMPARISON_COLUMNS = ["group_id", "pair", "other", "lr", "other_lr", "metric", "n", "mean_diff", "ci_low",
                      "ci_high", "p_value", "p_holm"]
ROBUST_BAND = 0.01  # one accuracy point: the lrs whose mean peak is this close to the pair's best form its band
SPEED_THRESHOLDS = (0.95, 0.97)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest of m p-values times (m - i + 1), made monotone
    by a running maximum and capped at 1. NaN stays NaN and does not count in m."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    known = np.flatnonzero(~np.isnan(p))
    order = known[np.argsort(p[known], kind="stable")]
    factors = len(order) - np.arange(len(order))
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(factors * p[order]))
    return adjusted


def paired_difference(ours: pd.Series, theirs: pd.Series) -> dict:
    """n, mean_diff, ci_low, ci_high, p_value of ours - theirs over the seeds (index) where both have a value."""
    matched = ours.notna() & theirs.notna()
    a, b = ours[matched], theirs[matched]
    with warnings.catch_warnings():  # identical differences: scipy warns; the interval is (mean, mean)
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_rel(a, b)
        interval = test.confidence_interval(CONFIDENCE)
    return {"n": int(matched.sum()), "mean_diff": float((a - b).mean()), "ci_low": float(interval.low),
            "ci_high": float(interval.high), "p_value": float(test.pvalue)}


def by_seed(best: pd.DataFrame, metric: str) -> pd.DataFrame:
    """[seed x pair] table of `metric` of one group's best-lr runs: the pairing is the seed index."""
    return best.pivot_table(index="seed", columns="pair", values=metric, aggfunc="mean")


def paired_comparisons(runs: pd.DataFrame, summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comparisons, notes): the comparison.csv rows (docs/verdict.md), and (group_id, note) rows for
    every group or two pairs that could not be compared, saying why."""
    best = best_runs(runs, summary)
    lrs = summary[summary["best_lr"]].set_index(["group_id", "pair"])["lr"]
    rows, notes = [], []
    for group_id in sorted(summary["group_id"].unique()):
        runs_of_group = best[best["group_id"] == group_id]
        pairs = sorted(runs_of_group["pair"].unique())
        if len(pairs) < 2:
            having = f"only {pairs[0]} has" if pairs else "no pair has"
            notes.append((group_id, f"{having} a best lr (a learning rate with finished runs): nothing to compare."))
            continue
        for metric in COMPARED:
            table = by_seed(runs_of_group, metric)
            ordered = table.mean().sort_values(ascending=False, kind="stable").index
            family = []
            for i, pair in enumerate(ordered):
                for other in ordered[i + 1:]:
                    row = paired_difference(table[pair], table[other])
                    if row["n"] < 2:  # one note for both metrics: the same runs are missing
                        first, second = sorted([pair, other])
                        notes.append((group_id, f"{first} vs {second}: {row['n']} seed(s) with finished runs of "
                                                "both at their best lrs; a paired interval needs 2 or more."))
                        continue
                    family.append({"group_id": group_id, "pair": pair, "other": other, "lr": lrs[group_id, pair],
                                   "other_lr": lrs[group_id, other], "metric": metric, **row})
            for row, p_holm in zip(family, holm([row["p_value"] for row in family])):
                rows.append(row | {"p_holm": p_holm})
    notes = pd.DataFrame(notes, columns=["group_id", "note"]).drop_duplicates()
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS), notes


def ranks(comparisons: pd.DataFrame, pairs: list[str], metric: str) -> dict[str, int]:
    """Per pair: 1 + the number of pairs whose advantage over it has an interval entirely above 0."""
    rows = comparisons[comparisons["metric"] == metric]
    better = {pair: 0 for pair in pairs}
    for row in rows.itertuples():
        if row.ci_low > 0:
            better[row.other] += 1
        elif row.ci_high < 0:
            better[row.pair] += 1
    return {pair: 1 + count for pair, count in better.items()}


def pair_profiles(runs: pd.DataFrame, epochs: pd.DataFrame, summary: pd.DataFrame,
                  comparisons: pd.DataFrame) -> pd.DataFrame:
    """ranking.csv: one row per (group, pair) with a best lr; columns in docs/verdict.md."""
    timed = with_run_stats(runs, epochs, SPEED_THRESHOLDS)
    rows = []
    for (group_id, pair), cells in summary.groupby(["group_id", "pair"]):
        chosen = cells[cells["best_lr"]]
        if chosen.empty:
            continue
        best = chosen.iloc[0]
        top = cells["peak_mean"].max()
        band = cells[cells["peak_mean"] >= top - ROBUST_BAND - 1e-12]  # 1e-12: the best cell itself, despite rounding
        in_band = timed[(timed["group_id"] == group_id) & (timed["pair"] == pair) & timed["lr"].isin(band["lr"])]
        stuck = (~in_band["diverged"] & (in_band["peak_test_acc"] < STUCK)).sum()
        at_best = timed[(timed["group_id"] == group_id) & (timed["pair"] == pair) & (timed["lr"] == best["lr"])
                        & ~timed["diverged"]]
        row = {"group_id": group_id, "group": best["group"], "pair": pair, "lr": best["lr"], "n": best["n"]}
        for prefix in COMPARED.values():
            row |= {f"{prefix}_mean": best[f"{prefix}_mean"], f"{prefix}_ci95": best[f"{prefix}_ci95"]}
        row |= {"band_lr_low": band["lr"].min(), "band_lr_high": band["lr"].max(),
                "robustness": band["lr"].max() / band["lr"].min(), "band_lrs": len(band)}
        for threshold in SPEED_THRESHOLDS:
            percent = f"{threshold * 100:.0f}"
            reached = at_best[f"epochs_to_{percent}"]
            row |= {f"reach{percent}_n": int(reached.count()), f"epochs_to_{percent}": reached.mean()}
        row |= {"band_runs": len(in_band), "band_stuck": int(stuck), "band_diverged": int(in_band["diverged"].sum()),
                "unreliable": (stuck + in_band["diverged"].sum()) / len(in_band)}
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for metric, prefix in COMPARED.items():
        by_group = {group_id: ranks(comparisons[comparisons["group_id"] == group_id], list(part["pair"]), metric)
                    for group_id, part in table.groupby("group_id")}
        table.insert(table.columns.get_loc(f"{prefix}_ci95") + 1, f"rank_{prefix}",
                     [by_group[group_id][pair] for group_id, pair in zip(table["group_id"], table["pair"])])
    return table


# --- seed distributions (for results tables) -----------------------------------
def seed_distribution(runs: pd.DataFrame, book: float | None = None, metric: str = "peak_test_acc",
                      best_of: int = 3) -> pd.Series:
    """Statistics of `metric` over the non-diverged runs of one study (the caller picks the runs).

    n, n_diverged; mean, std (ddof 1), median; book_percentile = scipy.stats.percentileofscore(
    values, book, kind="weak"), the % of runs at or below the book's number. best_of_k_mean /
    best_of_k_std / best_of_k_book_percentile describe the best of k runs, max(metric) over k
    distinct seeds, over all C(n, k) such sets exactly (the i-th smallest of n values is the
    maximum of C(i-1, k-1) of them), i.e. what the book's "best of three runs" would give on
    average here; NaN if n < k. final_mean and val_selected_mean: mean final and
    validation-selected test accuracy.
    """
    ok = runs[runs["status"] == "ok"]
    series = ok[metric].dropna()
    values = np.sort(series.to_numpy())
    result = {"n": len(values), "n_diverged": int((runs["status"] == "diverged").sum()),
              "mean": series.mean(), "std": series.std(), "median": series.median(), "book_percentile": np.nan, "best_of_k": best_of, "best_of_k_mean": np.nan,
              "best_of_k_std": np.nan, "best_of_k_book_percentile": np.nan,
              "final_mean": ok["final_test_acc"].mean(), "val_selected_mean": ok["val_selected_test_acc"].mean()}
    if book is not None and len(values):
        result["book_percentile"] = stats.percentileofscore(values, book, kind="weak")
    if len(values) >= best_of:
        weights = best_of_weights(len(values), best_of)
        mean = np.average(values, weights=weights)
        result["best_of_k_mean"] = mean
        result["best_of_k_std"] = np.sqrt(np.average((values - mean) ** 2, weights=weights))
        if book is not None:
            result["best_of_k_book_percentile"] = 100 * weights[values <= book].sum()
    return pd.Series(result)


def best_of_weights(n: int, k: int) -> np.ndarray:
    """P(the i-th smallest of n values is the best of k distinct ones drawn at random): it is the
    maximum of C(i-1, k-1) of the C(n, k) sets of k."""
    return special.comb(np.arange(n), k - 1) / special.comb(n, k)


# --- tables as text -------------------------------------------------------------
def number(value: float, spec: str) -> str:
    return "-" if pd.isna(value) else format(value, spec)


def percent_stat(mean: float, ci: float, n: int) -> str:
    if n == 0:
        return "all diverged"
    if n == 1:
        return f"{100 * mean:.2f} (n=1, no CI)"
    return f"{100 * mean:.2f} ± {100 * ci:.2f}"


def reach(count: int, mean_epochs: float, n: int) -> str:
    return "-" if n == 0 else f"{count}/{n}" + (f" at {mean_epochs:.1f}" if count else "")


def display_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Summary rows as strings: accuracies in %, ± the 95% CI half-width, * on the best lr."""
    text = pd.DataFrame({
        "pair": cells["pair"],
        "lr": [f"{lr:g}" + (" *" if best else "") for lr, best in zip(cells["lr"], cells["best_lr"])],
        "seeds": cells["seeds"], "diverged": cells["diverged"]})
    for name, header in [("peak", "peak %"), ("final", "final %"), ("val_selected", "val-selected %")]:
        text[header] = [percent_stat(*row) for row in zip(cells[f"{name}_mean"], cells[f"{name}_ci95"], cells["n"])]
    text["best val %"] = [number(100 * value, ".2f") for value in cells["best_val_mean"]]
    for threshold in THRESHOLDS:
        percent = f"{threshold * 100:.0f}"
        text[f"epochs to {percent}%"] = [reach(*row) for row in zip(
            cells[f"reach{percent}_n"], cells[f"reach{percent}_epochs_mean"], cells["n"])]
    return text


def markdown_table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False)  # pandas, with the tabulate package


LEGEND = ("Accuracies in %, mean over the non-diverged seeds (n = seeds - diverged) ± the half-width of "
          "the 95% t-interval; diverged runs are counted and excluded from every statistic. "
          "* = best lr of the pair: highest mean best validation accuracy among lrs with no diverged seed.")


def terminal_summary(summary: pd.DataFrame) -> str:
    compact = ["pair", "lr", "seeds", "diverged", "peak %", "final %", "val-selected %"]
    parts = []
    for group_id, cells in summary.groupby("group_id"):
        text = display_table(cells)[compact].astype(str)
        left = {column: f"{{:<{text[column].str.len().max()}}}".format for column in compact}
        table = text.to_string(index=False, formatters=left, justify="left")
        parts.append(f"{group_id}: {cells['group'].iloc[0]}\n{table}")
    return "\n\n".join(parts + [textwrap.fill(LEGEND, 100)])


def summary_markdown(summary: pd.DataFrame) -> str:
    parts = ["# Sweep summary", "", LEGEND, "'epochs to 90%': runs reaching 90% test accuracy / n, at the "
             "mean over those runs of the first epoch that does.", ""]
    for group_id, cells in summary.groupby("group_id"):
        parts += [f"## {group_id}: {cells['group'].iloc[0]}", "", markdown_table(display_table(cells)), ""]
    return "\n".join(parts)


def slowdown_markdown(table: pd.DataFrame, ratios: pd.DataFrame, first_epochs: int) -> str:
    parts = ["# Learning slowdown", "",
             f"Gradient norms at each pair's best lr, mean over epochs 1-{first_epochs} (those the runs have) and over non-diverged seeds "
             "(each epoch's value: mean over its mini-batch steps of the L2 norm of dC/db or dC/dw). "
             "Output = layer L, hidden = layer 1. Saturated: share of output units with sigma'(z) < 0.01 on the "
             "test set. Every lr is in slowdown.csv.", ""]
    for group_id, cells in table[table["best_lr"]].groupby("group_id"):
        text = pd.DataFrame({
            "pair": cells["pair"], "lr": cells["lr"].map("{:g}".format), "n": cells["n"],
            "output dC/db": [number(value, ".3g") for value in cells["out_grad_b"]],
            "output dC/dw": [number(value, ".3g") for value in cells["out_grad_w"]],
            "hidden dC/db": [number(value, ".3g") for value in cells["hidden_grad_b"]],
            "output / hidden": [number(value, ".3g") for value in cells["out_hidden_ratio"]],
            "saturated at init": [number(value, ".1%") for value in cells["saturated_init"]],
            f"saturated ep 1-{first_epochs}": [number(value, ".1%") for value in cells["saturated_first"]]})
        parts += [f"## {group_id}: {cells['group'].iloc[0]}", "", markdown_table(text), ""]
    parts += ["## Best learning rates: sigmoid_mse / sigmoid_ce", "", lr_ratio_text(ratios), ""]
    return "\n".join(parts)


def lr_ratio_text(ratios: pd.DataFrame) -> str:
    if ratios.empty:
        return "Not measured: no config group has a best lr for both sigmoid_mse and sigmoid_ce."
    lines = [f"{row.group_id}: {row.lr_sigmoid_mse:g} / {row.lr_sigmoid_ce:g} = {row.lr_ratio:.3g}"
             for row in ratios.itertuples()]
    return "\n".join(lines + [f"(the book's heuristic: about {BOOK_LR_RATIO:g}, its 3.0 / 0.5; "
                              "the measured ratio is only as fine as the swept lr grid)"])


def points(value: float) -> str:
    """A difference of accuracies (fractions) in percentage points, signed."""
    return f"{100 * value:+.2f}"


def comparison_text(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "pair - other": [f"{row.pair} (η={row.lr:g}) - {row.other} (η={row.other_lr:g})" for row in rows.itertuples()],
        "n": rows["n"],
        "mean diff (points)": rows["mean_diff"].map(points),
        "95% CI": [f"[{points(lo)}, {points(hi)}]" for lo, hi in zip(rows["ci_low"], rows["ci_high"])],
        "p": rows["p_value"].map(lambda p: number(p, ".2g")),
        "p (Holm)": rows["p_holm"].map(lambda p: number(p, ".2g"))})


def profile_text(profiles: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "pair": profiles["pair"], "best lr": profiles["lr"].map("{:g}".format),
        "val-selected % (rank)": [f"{percent_stat(m, c, n)} ({r})" for m, c, n, r in zip(
            profiles["val_selected_mean"], profiles["val_selected_ci95"], profiles["n"], profiles["rank_val_selected"])],
        "peak % (rank)": [f"{percent_stat(m, c, n)} ({r})" for m, c, n, r in zip(
            profiles["peak_mean"], profiles["peak_ci95"], profiles["n"], profiles["rank_peak"])],
        "lr band (robustness)": [f"{lo:g}-{hi:g} (x{f:.3g})" for lo, hi, f in zip(
            profiles["band_lr_low"], profiles["band_lr_high"], profiles["robustness"])],
        **{f"epochs to {t * 100:.0f}%": [reach(c, m, n) for c, m, n in zip(
            profiles[f"reach{t * 100:.0f}_n"], profiles[f"epochs_to_{t * 100:.0f}"], profiles["n"])]
           for t in SPEED_THRESHOLDS},
        "stuck or diverged in band": [f"{s + d}/{r} ({(s + d) / r:.0%})" for s, d, r in zip(
            profiles["band_stuck"], profiles["band_diverged"], profiles["band_runs"])]})


COMPARISON_LEGEND = (f"Each comparison: both pairs at their best lr (chosen on validation), matched on seed (same "
          f"initialization and batch order); mean difference in accuracy points over the matched seeds, 95% "
          f"t-interval, {PAIRED_TEST}, p Holm-corrected within the group and metric. Rank: 1 + the number "
          f"of pairs whose advantage has an interval entirely above 0 (an interval covering 0 is a tie). "
          f"lr band: the lrs whose mean peak is within {100 * ROBUST_BAND:g} point of the pair's best, "
          f"robustness = largest / smallest lr in it; epochs to 95% / 97% at the best lr (runs reaching it / "
          f"runs, at the mean first epoch); stuck = peak below {STUCK:.0%}.")


def comparison_markdown(comparisons: pd.DataFrame, notes: pd.DataFrame, profiles: pd.DataFrame,
                        summary: pd.DataFrame) -> str:
    parts = ["# Paired comparisons at each pair's best learning rate", "", COMPARISON_LEGEND, ""]
    for group_id, cells in summary.groupby("group_id"):
        parts += [f"## {group_id}: {cells['group'].iloc[0]}", ""]
        group_profiles = profiles[profiles["group_id"] == group_id] if len(profiles) else profiles
        if len(group_profiles):
            ranked = group_profiles.sort_values(["rank_val_selected", "val_selected_mean"], ascending=[True, False])
            parts += [markdown_table(profile_text(ranked)), ""]
        for metric in COMPARED:
            rows = comparisons[(comparisons["group_id"] == group_id) & (comparisons["metric"] == metric)]
            if len(rows):
                parts += [f"### {metric}", "", markdown_table(comparison_text(rows)), ""]
        parts += [f"Note: {note}" for note in notes.loc[notes["group_id"] == group_id, "note"]]
        parts += [""]
    return "\n".join(parts)


def ranking_takeaway(profiles: pd.DataFrame, comparisons: pd.DataFrame, metric: str = "val_selected_test_acc") -> str:
    """One line, from the numbers: who ranks first on `metric` (and who ties), and the last pair's gap."""
    prefix = COMPARED[metric]
    ranked = profiles.sort_values([f"rank_{prefix}", f"{prefix}_mean"], ascending=[True, False])
    first = ranked[ranked[f"rank_{prefix}"] == 1]
    leader = first.iloc[0]
    name = prefix.replace("_", "-")
    text = f"{name}: {leader['pair']} leads ({100 * leader[f'{prefix}_mean']:.2f}%)"
    if len(first) > 1:
        text += f", tied with {', '.join(first['pair'].iloc[1:])} (intervals cover 0)"
    last = ranked.iloc[-1]
    gap = comparisons[(comparisons["metric"] == metric) & (comparisons["pair"] == leader["pair"])
                      & (comparisons["other"] == last["pair"])]
    if last[f"rank_{prefix}"] > 1 and len(gap):
        row = gap.iloc[0]
        text += (f"; {last['pair']} is {100 * row['mean_diff']:.2f} points behind "
                 f"[{100 * row['ci_low']:.2f}, {100 * row['ci_high']:.2f}]")
    return text


# --- plots ----------------------------------------------------------------------
BAND = "mean; band: min-max over seeds"


def pair_colors(pairs) -> dict[str, str]:
    return {pair: f"C{i}" for i, pair in enumerate(sorted(set(pairs)))}


def new_figure(title: str, group: str, ncols: int = 1, takeaway: str = "") -> tuple[Figure, list]:
    # a bare Figure renders with the Agg canvas: no GUI backend, no pyplot state
    figure = Figure(figsize=(7 * ncols, 4.8), layout="constrained")
    figure.suptitle(f"{title}\n{group}" + (f"\n{takeaway}" if takeaway else ""), fontsize=11)
    return figure, list(figure.subplots(1, ncols, squeeze=False)[0])


def plot_curves(ax, runs: pd.DataFrame, epochs: pd.DataFrame, column: str, colors: dict, scale: float = 1.0):
    """One line per pair: mean of `column` over its runs per epoch, a band from min to max over seeds."""
    rows = epochs.merge(runs[["run_id", "pair", "lr"]], on="run_id").dropna(subset=[column])
    for (pair, lr), part in rows.groupby(["pair", "lr"]):
        curve = part.groupby("epoch")[column].agg(["mean", "min", "max"]) * scale
        seeds = part["run_id"].nunique()
        ax.plot(curve.index, curve["mean"], color=colors[pair], marker=".",
                label=f"{pair} (η={lr:g}, {seeds} seed{'s' * (seeds > 1)})")
        ax.fill_between(curve.index, curve["min"], curve["max"], color=colors[pair], alpha=0.2, linewidth=0)
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def accuracy_takeaway(runs: pd.DataFrame, epochs: pd.DataFrame, threshold: float = 0.95) -> str:
    """One line from the best-lr runs: who reaches `threshold` test accuracy first on average, and how many runs do."""
    reached = epochs[(epochs["epoch"] >= 1) & (epochs["test_acc"] >= threshold)].groupby("run_id")["epoch"].min()
    first_epoch = runs.assign(epoch=runs["run_id"].map(reached)).groupby("pair")["epoch"].agg(["mean", "count", "size"])
    percent = f"{100 * threshold:g}%"
    if not first_epoch["count"].any():
        return f"No run reaches {percent} test accuracy at its pair's best lr."
    reaching = first_epoch[first_epoch["count"] > 0].assign(share=lambda t: t["count"] / t["size"])
    first = reaching.sort_values(["share", "mean"], ascending=[False, True]).iloc[0]  # most runs reaching it, then soonest
    return (f"First to {percent} on average: {first.name}, epoch {first['mean']:.1f} "
            f"({first['count']:g} of {first['size']:g} runs reach it)")


def plot_accuracy(group: str, runs: pd.DataFrame, epochs: pd.DataFrame, colors: dict) -> Figure:
    figure, [ax] = new_figure("Test accuracy at each pair's best learning rate", group,
                              takeaway=accuracy_takeaway(runs, epochs))
    plot_curves(ax, runs, epochs[epochs["epoch"] >= 1], "test_acc", colors, scale=100)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(title=BAND, fontsize=8, title_fontsize=8)
    return figure


# Best-lr markers, one shape per pair, so that two pairs whose best lr and accuracy coincide stay apart.
BEST_MARKERS = ["*", "D", "^", "s", "P", "X", "v", "h"]
ZOOM_POINTS = 3.0  # the zoomed panel shows the pairs whose best-lr mean peak is within this of the best


def clipped_errors(mean: pd.Series, ci: pd.Series) -> np.ndarray:
    """[2, n] error bar lengths of mean ± ci, in %, cut at the possible range [0, 100]."""
    mean, ci = 100 * mean.to_numpy(), 100 * ci.fillna(0).to_numpy()
    return np.vstack([np.minimum(ci, mean), np.minimum(ci, 100 - mean)])


def peak_takeaway(cells: pd.DataFrame) -> str:
    """One line from the best-lr cells: the highest mean peak and every other pair's distance from it."""
    best = cells[cells["best_lr"] & (cells["n"] > 0)].sort_values("peak_mean", ascending=False)
    if best.empty:
        return ""
    top = best.iloc[0]
    behind = ", ".join(f"{row.pair} {100 * (row.peak_mean - top['peak_mean']):+.2f}" for row in best.iloc[1:].itertuples())
    return (f"At the best lrs: {top['pair']} peaks highest, {100 * top['peak_mean']:.2f}% (η={top['lr']:g})"
            + (f"; {behind} points" if behind else ""))


def zoom_window(cells: pd.DataFrame) -> tuple[tuple[float, float], tuple[float, float]]:
    """(x, y) ranges of the zoomed panel: y (%) spans the best-lr cells of the pairs within ZOOM_POINTS of the
    best, intervals included; x spans those pairs' lrs whose mean peak falls in that y range, half a grid
    step (a factor 1.5) beyond."""
    best = cells[cells["best_lr"] & (cells["n"] > 0)]
    top = best[best["peak_mean"] >= best["peak_mean"].max() - ZOOM_POINTS / 100]
    low = 100 * (top["peak_mean"] - top["peak_ci95"].fillna(0)).min()
    high = 100 * (top["peak_mean"] + top["peak_ci95"].fillna(0)).max()
    margin = max(0.25, 0.1 * (high - low))
    low, high = max(0.0, low - margin), min(100.0, high + margin)
    shown = cells[cells["pair"].isin(top["pair"]) & (100 * cells["peak_mean"]).between(low, high)]
    return (shown["lr"].min() / 1.5, shown["lr"].max() * 1.5), (low, high)


def plot_peak_vs_lr(group: str, cells: pd.DataFrame, colors: dict) -> Figure:
    figure, axes = new_figure("Peak test accuracy vs learning rate (diverged runs excluded)", group, ncols=2,
                              takeaway=peak_takeaway(cells))
    markers = {pair: BEST_MARKERS[i % len(BEST_MARKERS)] for i, pair in enumerate(sorted(colors))}
    handles, labels = [], []
    for pair, part in cells.groupby("pair"):
        ok, chosen, lost = part[part["n"] > 0], part[part["best_lr"] & (part["n"] > 0)], part[part["n"] == 0]
        for ax in axes:
            line = ax.errorbar(ok["lr"], 100 * ok["peak_mean"], yerr=clipped_errors(ok["peak_mean"], ok["peak_ci95"]),
                               capsize=3, marker=".", color=colors[pair])
            star, = ax.plot(chosen["lr"], 100 * chosen["peak_mean"], markers[pair], color=colors[pair],
                            markersize=13, markeredgecolor="black", zorder=3)
        # an lr where every seed diverged has no accuracy: an x on the bottom edge, at that lr
        axes[0].plot(lost["lr"], [0.03] * len(lost), "x", color=colors[pair], markersize=9, markeredgewidth=2,
                     transform=axes[0].get_xaxis_transform())
        handles.append((line, star) if len(chosen) else line)
        labels.append(pair + "".join(f": best η={row.lr:g}, {100 * row.peak_mean:.2f}%" for row in chosen.itertuples()))
    if (cells["n"] == 0).any():
        handles.append(axes[0].plot([], [], "x", color="gray", markeredgewidth=2)[0])
        labels.append("every seed diverged")
    axes[0].set_ylim(0, 100)
    axes[0].set_title("all learning rates; 95% CI cut at [0, 100]", fontsize=10)
    if cells["best_lr"].any() and (cells["n"] > 0).any():
        xlim, ylim = zoom_window(cells)
        axes[1].set_xlim(*xlim)
        axes[1].set_ylim(*ylim)
    axes[1].set_title(f"zoom: the pairs within {ZOOM_POINTS:g} points of the best at their best lr", fontsize=10)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("learning rate η (log scale)")
        ax.set_ylabel("peak test accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=None)}, loc="lower left", fontsize=8,
                   title="mean ± 95% CI over seeds; big marker: best lr (validation)", title_fontsize=8)
    return figure


def plot_gradients(group: str, depth: int, runs: pd.DataFrame, epochs: pd.DataFrame, colors: dict) -> Figure:
    layers = [(depth, "output")] + [(1, "first hidden")] * (depth > 1)
    figure, axes = new_figure("Gradient norms at each pair's best learning rate", group, ncols=len(layers))
    for ax, (layer, name) in zip(axes, layers):
        plot_curves(ax, runs, epochs[epochs["epoch"] >= 1], f"grad_b{layer}", colors)
        ax.set_yscale("log")
        ax.set_title(f"{name} layer (layer {layer})", fontsize=10)
        ax.set_ylabel(f"‖∂C/∂b{layer}‖ (L2 norm, mean over the epoch's steps)")
    # below the panels: the curves fill them from top to bottom
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2 * len(layers),
                  fontsize=8, title=BAND, title_fontsize=8)
    return figure


def plot_saturation(group: str, runs: pd.DataFrame, epochs: pd.DataFrame, colors: dict) -> Figure:
    figure, [ax] = new_figure("Saturated output units (σ'(z) < 0.01) on the test set", group)
    plot_curves(ax, runs, epochs, "test_saturated", colors, scale=100)
    ax.set_xlabel("epoch (0 = at initialization)")
    ax.set_ylabel("saturated output units (%)")
    ax.legend(title=BAND, fontsize=8, title_fontsize=8)
    return figure


def plot_forest(group: str, comparisons: pd.DataFrame, profiles: pd.DataFrame):
    """comparison_g<k>.png: per metric, each comparison's mean difference and 95% interval, 0 marked."""
    metrics = [m for m in COMPARED if (comparisons["metric"] == m).any()]
    figure, axes = new_figure("Paired differences at the best learning rates (matched seeds)", group,
                                       ncols=len(metrics))
    height = max(3.5, 0.5 * comparisons.groupby("metric").size().max() + 2.4)
    figure.set_size_inches(7 * len(metrics), height)
    for ax, metric in zip(axes, metrics):
        rows = comparisons[comparisons["metric"] == metric].iloc[::-1]  # the first comparison on top
        for y, row in enumerate(rows.itertuples()):
            shown = row.ci_low > 0 or row.ci_high < 0
            ax.errorbar(100 * row.mean_diff, y, xerr=[[100 * (row.mean_diff - row.ci_low)], [100 * (row.ci_high - row.mean_diff)]],
                        fmt="o", color="C3" if shown else "0.4", capsize=3)
            ax.annotate(f"p_Holm={number(row.p_holm, '.2g')}", (1.0, y), xycoords=("axes fraction", "data"),
                        xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
        ax.axvline(0, color="black", lw=1)
        ax.set_yticks(range(len(rows)), [f"{r.pair} − {r.other}\n(η {r.lr:g} vs {r.other_lr:g}, n={r.n})"
                                         for r in rows.itertuples()], fontsize=8)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel("mean paired difference in test accuracy (points) with its 95% CI\n"
                      "red: the interval excludes 0; grey: a tie")
        ax.set_title(f"{metric}\n" + textwrap.fill(ranking_takeaway(profiles, comparisons, metric), 90), fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    return figure


def plot_seed_distribution(title: str, runs: pd.DataFrame, book: float, best_of: int = 3) -> Figure:
    """Of one study's runs (seed_distribution's): every run's peak test accuracy a mark (jittered strip), the exact
    distribution of the best of `best_of` runs (stems: the chance that a run is the best of a random set of
    `best_of`), the book's number across both; left: all runs, right: zoomed on the book's number and our top."""
    d = seed_distribution(runs, book=book, best_of=best_of)
    values = 100 * np.sort(runs.loc[runs["status"] == "ok", "peak_test_acc"].dropna().to_numpy())
    book = 100 * book
    takeaway = (f"book {book:.2f}%: at or above {d['book_percentile']:.0f}% of our single runs and "
                f"{d['best_of_k_book_percentile']:.0f}% of our best-of-{best_of} draws"
                if not np.isnan(d["best_of_k_book_percentile"]) else f"book {book:.2f}%")
    figure = Figure(figsize=(13, 4.6), layout="constrained")
    figure.suptitle(f"{title}: peak test accuracy of {len(values)} seeds\n{takeaway}", fontsize=11)
    axes = figure.subplots(1, 2, sharey=True)
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(values))  # fixed: the picture is reproducible
    stuck = values < 100 * STUCK
    weights = best_of_weights(len(values), best_of) if len(values) >= best_of else np.zeros(len(values))
    for ax in axes:
        ax.plot(values[~stuck], 1 + jitter[~stuck], "o", color="C0", alpha=0.6, markersize=5, label="one run (seed)")
        ax.plot(values[stuck], 1 + jitter[stuck], "o", color="C3", alpha=0.8, markersize=5,
                label=f"one run peaking below {STUCK:.0%}")
        ax.vlines(values, 0, -0.8 * weights / max(weights.max(), 1e-12), color="C2", lw=1.2,
                  label=f"chance that the run is the best of {best_of} (height)")
        ax.axvline(book, color="black", ls="--", lw=1.5, label=f"the book: {book:.2f}%")
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_xlabel("peak test accuracy (%)")
    axes[0].plot([100 * d["median"]], [1.45], "v", color="C0", markersize=9, label=f"our median: {100 * d['median']:.2f}%")
    axes[0].set_yticks([1, -0.4], ["single runs", f"best of {best_of}"])
    axes[0].set_ylim(-1.0, 1.6)
    axes[0].set_title("all runs", fontsize=10)
    learned = values[~stuck] if (~stuck).any() else values  # the zoom leaves out the stuck runs
    axes[1].set_xlim(min(learned.min(), book) - 0.1, max(learned.max(), book) + 0.1)
    axes[1].set_title(f"zoom: the runs peaking at {STUCK:.0%} or more, and the book's number", fontsize=10)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=5, fontsize=8)
    return figure


def write_plots(summary: pd.DataFrame, runs: pd.DataFrame, epochs: pd.DataFrame, out: Path,
                comparisons: pd.DataFrame, profiles: pd.DataFrame) -> list[Path]:
    """Each config group's PNGs (curves only where some pair has a best lr, the forest plot only where
    some comparison was made); returns their paths."""
    colors = pair_colors(summary["pair"])
    best = best_runs(runs, summary)
    saturating = epochs.dropna(subset=["test_saturated"])["run_id"]
    figures = {}
    for group_id, cells in summary.groupby("group_id"):
        group, chosen = cells["group"].iloc[0], best[best["group_id"] == group_id]
        if chosen.empty:  # every run of the group diverged: the tables say so, a plot would be empty
            continue
        figures[f"peak_vs_lr_{group_id}"] = plot_peak_vs_lr(group, cells, colors)
        figures[f"accuracy_vs_epoch_{group_id}"] = plot_accuracy(group, chosen, epochs, colors)
        depth = output_layer(cells["sizes"].iloc[0])
        figures[f"gradients_vs_epoch_{group_id}"] = plot_gradients(group, depth, chosen, epochs, colors)
        sigmoid = chosen[chosen["run_id"].isin(saturating)]
        if not sigmoid.empty:
            figures[f"saturation_vs_epoch_{group_id}"] = plot_saturation(group, sigmoid, epochs, colors)
        compared = comparisons[comparisons["group_id"] == group_id]
        if len(compared):
            figures[f"comparison_{group_id}"] = plot_forest(
                group, compared, profiles[profiles["group_id"] == group_id])
    for name, figure in figures.items():
        figure.savefig(out / f"{name}.png", dpi=110)
    return [out / f"{name}.png" for name in figures]


# --- command line ---------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench analyze",
        description="Summary tables with 95% confidence intervals, learning-slowdown measurements, paired "
                    "comparisons of the pairs at their best lrs (matched on seed) with a ranking, and plots, from the "
                    "runs.csv / epochs.csv of one or more sweep directories (searched recursively).")
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="sweep output directories (or parents of them)")
    parser.add_argument("--out", type=Path, help="output directory (default: DIR/analysis of the first DIR)")
    parser.add_argument("--first-epochs", type=int, default=3, metavar="K",
                        help="gradient norms are averaged over epochs 1..K (default 3)")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    args = parser.parse_args(argv)
    if args.first_epochs < 1:
        raise UserError(f"--first-epochs {args.first_epochs}: must be at least 1.")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    dirs = [Path(directory).absolute() for directory in args.dirs]  # errors name the paths they tried
    runs, epochs = load_results(dirs)
    out = (args.out or dirs[0] / "analysis").absolute()
    try:
        return write_analysis(args, runs, epochs, out)
    except OSError as err:
        raise UserError(f"cannot write the analysis to {out} ({err.strerror or err}); choose a writable "
                        "directory with --out DIR.") from None


def write_analysis(args, runs: pd.DataFrame, epochs: pd.DataFrame, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)

    summary = summarize(runs, epochs)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(summary_markdown(summary))
    gradients = slowdown(runs, epochs, summary, args.first_epochs)
    ratios = best_lr_ratio(summary)
    gradients.to_csv(out / "slowdown.csv", index=False)
    (out / "slowdown.md").write_text(slowdown_markdown(gradients, ratios, args.first_epochs))
    comparisons, notes = paired_comparisons(runs, summary)
    profiles = pair_profiles(runs, epochs, summary, comparisons)
    comparisons.to_csv(out / "comparison.csv", index=False)
    profiles.to_csv(out / "ranking.csv", index=False)
    (out / "comparison.md").write_text(comparison_markdown(comparisons, notes, profiles, summary))
    plots = [] if args.no_plots else write_plots(summary, runs, epochs, out, comparisons, profiles)

    print(f"{len(runs)} runs in {summary['group_id'].nunique()} config group(s)\n")
    print(terminal_summary(summary))
    print(f"\nbest lr sigmoid_mse / sigmoid_ce:\n{lr_ratio_text(ratios)}")
    for group_id, part in profiles.groupby("group_id") if len(profiles) else []:
        print(f"{group_id}: {ranking_takeaway(part, comparisons[comparisons['group_id'] == group_id])}")
    for note in notes.itertuples():
        print(f"{note.group_id}: {note.note}")
    written = ["summary.csv", "summary.md", "slowdown.csv", "slowdown.md", "comparison.csv", "comparison.md",
               "ranking.csv"] + [path.name for path in plots]
    print(f"\nwrote to {out}/: {' '.join(written)}")
    return 0
