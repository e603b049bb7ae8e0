"""Statistics of a sweep's runs: per-cell means with t-intervals, the best learning rate, the slowdown, seeds.

    python -c "from lossbench import statistics; from lossbench.results.load import load_results; print(statistics.summarize(*load_results(['results/default_comparison'])))"

Runs are grouped by their configuration (CONFIG_COLUMNS: different experiments are never
pooled) into cells of (config group, pair, lr). Diverged runs are counted and excluded from
every accuracy and gradient statistic. The best learning rate of a (group, pair) is chosen on
validation accuracy only: among its learning rates where no seed diverged (all of them, if
every one had a divergence), the one with the highest mean over seeds of each run's best
validation accuracy over epochs 1..E; ties go to the smaller learning rate. The accuracy levels
(below which a run is stuck, to which speed is measured) are the data set's (LEVELS): MNIST's
90%, 95% and 97% mean on Fashion-MNIST 80%, 85% and 87%. The columns are defined in
docs/analysis.md; paired comparisons of the pairs are lossbench/comparisons.py's.
"""

import warnings
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from lossbench.errors import UserError
from lossbench.results.columns import SETTINGS

CONFIG_COLUMNS = list(SETTINGS)  # the settings every run of a sweep shares: what groups runs
ACCURACIES = {"peak": "peak_test_acc", "final": "final_test_acc", "val_selected": "val_selected_test_acc"}
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Levels:
    """A data set's test-accuracy levels (fractions): when a run is stuck, and the two marks of speed."""

    learned: float  # a run whose peak stays below it learned only some of the classes: a stuck run
    good: float  # what the good pairs' runs reach at their best lrs in both inits: epochs to it = speed
    high: float  # at or above the best of those runs: epochs to it = speed at the top


LEVELS = {
    # The issue's levels. At 784-30-10 (results/verdict/mnist_*) the good pairs' best-lr mean peaks are
    # 95.3-95.4% (init=large) and 96.2-96.6% (init=default); linear_mse at init=large peaks near 90%.
    "mnist": Levels(learned=0.90, good=0.95, high=0.97),
    # The same pairs peak about 10 points lower on Fashion-MNIST (results/verdict/fashion_*: best mean peak
    # 85.6% vs MNIST's 95.4% at init=large, 87.3% vs 96.6% at init=default), so MNIST's levels less 10
    # points: the good pairs reach 85% at both inits, as they reach 95% on MNIST. 87% is reached at
    # init=default only, where no 784-30-10 MNIST run reaches 97%: a level is a distance from the best, not a share.
    "fashion_mnist": Levels(learned=0.80, good=0.85, high=0.87),
}
LEVEL_NAMES = [level.name for level in fields(Levels)]
SUMMARY_LEVELS = ("learned", "good")  # summary.csv's epochs to (MNIST) 90% and 95%
# Ch. 3: the quadratic cost's gradient carries sigma'(z) = a(1 - a), whose mean over a in [0, 1]
# is 1/6, so its learning rate should be about 6x cross-entropy's (the book's 3.0 vs 0.5).
BOOK_LR_RATIO = 6.0
CELL = ["group_id", "pair", "lr"]


def output_layer(sizes: str) -> int:
    """L, the index of the output layer: the number of weight layers, len(sizes) - 1."""
    return len(str(sizes).split("-")) - 1


# --- per-run and per-cell statistics -----------------------------------------
def config_label(row: pd.Series) -> str:
    """A readable name for a configuration, e.g. '784-30-10 init=large batch=10 epochs=30 l2=0 mnist train=50000 float32'."""
    train = "all" if pd.isna(row["train_size"]) else f"{row['train_size']:g}"  # empty in hand-made CSVs
    return (f"{row['sizes']} init={row['init']} batch={row['batch_size']:g} epochs={row['epochs']:g} "
            f"l2={row['l2']:g} {row['dataset']} train={train} {row['dtype']}")


def levels(dataset: str) -> Levels:
    """The accuracy levels of `dataset`, a value of runs.csv's dataset column."""
    if dataset not in LEVELS:
        raise UserError(f"dataset {dataset!r} in runs.csv has no accuracy levels (when a run is stuck, what speed "
                        f"is measured to); the data sets with levels are: {', '.join(LEVELS)} "
                        "(lossbench/statistics.py LEVELS).")
    return LEVELS[dataset]


def group_levels(rows: pd.DataFrame) -> Levels:
    """The levels of one config group's rows (of runs or summary): a group has one data set."""
    return levels(rows["dataset"].iloc[0])


def label_groups(runs: pd.DataFrame) -> pd.DataFrame:
    """`runs` plus group (config label), group_id (g1, g2, ... in label order), diverged (bool) and the
    levels of the run's data set: learned_level, good_level, high_level."""
    runs = runs.copy()
    runs["group"] = runs.apply(config_label, axis=1)
    codes, _ = pd.factorize(runs["group"], sort=True)
    runs["group_id"] = [f"g{code + 1}" for code in codes]
    runs["diverged"] = runs["status"].eq("diverged")
    by_dataset = {dataset: levels(dataset) for dataset in runs["dataset"].unique()}
    for name in LEVEL_NAMES:
        runs[f"{name}_level"] = runs["dataset"].map({dataset: getattr(level, name) for dataset, level in by_dataset.items()})
    return runs


def with_run_stats(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """label_groups(runs) plus best_val_acc (max val_acc over epochs >= 1) and, per level of the run's data
    set, epochs_to_learned, epochs_to_good, epochs_to_high (first epoch whose test_acc reaches it; NaN if none)."""
    runs = label_groups(runs)
    trained = epochs[epochs["epoch"] >= 1]
    runs["best_val_acc"] = runs["run_id"].map(trained.groupby("run_id")["val_acc"].max())
    level_columns = [f"{name}_level" for name in LEVEL_NAMES]
    trained = trained[["run_id", "epoch", "test_acc"]].merge(runs[["run_id", *level_columns]], on="run_id")
    for name in LEVEL_NAMES:
        reached = trained[trained["test_acc"] >= trained[f"{name}_level"]].groupby("run_id")["epoch"].min()
        runs[f"epochs_to_{name}"] = runs["run_id"].map(reached)
    return runs


def ci_halfwidth(values: pd.Series) -> float:
    """Half-width of the two-sided 95% t-interval for the mean; NaN below two values."""
    values = values.dropna()
    if len(values) < 2:
        return np.nan
    from scipy import stats  # scipy.stats takes ~0.4 s to import: loaded where used, so `--help` stays fast (issue 17)

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
    for name in SUMMARY_LEVELS:
        aggregations |= {f"reach_{name}_n": (f"epochs_to_{name}", "count"),
                         f"reach_{name}_epochs_mean": (f"epochs_to_{name}", "mean")}
    accuracy = runs[~runs["diverged"]].groupby(CELL).agg(**aggregations)
    table = counts.join(accuracy)  # a cell whose runs all diverged keeps its counts, NaN statistics
    table.insert(3, "n", table["seeds"] - table["diverged"])
    for name in SUMMARY_LEVELS:  # each level before the counts that reach it; from every run: a group has one data set
        table.insert(table.columns.get_loc(f"reach_{name}_n"), f"{name}_level",
                     runs.groupby(CELL)[f"{name}_level"].first())
        table[f"reach_{name}_n"] = table[f"reach_{name}_n"].fillna(0).astype(int)
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
        from scipy import stats  # scipy.stats takes ~0.4 s to import: loaded where used, so `--help` stays fast (issue 17)

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
    from scipy import special  # scipy's subpackages are slow to import: loaded where used, so `--help` stays fast (issue 17)

    return special.comb(np.arange(n), k - 1) / special.comb(n, k)
