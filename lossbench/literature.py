"""Claims from the literature about these costs, measured from the verdict's sweeps.

    python -m lossbench verdict results/verdict    # writes results/verdict/claims.csv

Each function returns lossbench.claims.Claim records (the record gradcheck's claims use) for one
config group of one setting: `runs`, `epochs` of the whole setting as load.load_results gives
them, and that group's rows of `summary` and `comparisons` (statistics.summarize, paired_comparisons).
Every interval resamples seeds, the unit of replication (a seed fixes initialization and batch
order); a fixed generator (BOOTSTRAP_SEED) makes claims.csv reproducible. "Stuck" is a peak below
the data set's learned level (statistics.LEVELS: MNIST 90%, Fashion-MNIST 80%).

- Nielsen ch. 3: the quadratic cost's best lr is about 6x the cross-entropy's (sigmoid outputs both).
- Hui & Belkin, ICLR 2021: square loss on linear outputs is comparable to cross-entropy (softmax), a
  little behind on vision, and less sensitive to the random initialization.
- Golik, Doetsch & Ney, Interspeech 2013: from a random initialization squared error fails to reach a
  good optimum where cross-entropy does.
- Glorot & Bengio, AISTATS 2010: the log-likelihood shows fewer plateaus than the quadratic cost
  (deep networks); the top hidden layer saturates early (from the hidden_saturation study).
"""

import warnings

import numpy as np
import pandas as pd

from lossbench import statistics
from lossbench.claims import Claim
from lossbench.comparisons import by_seed, paired_difference

BOOTSTRAP_SEED = 0
RESAMPLES = 2000
COMPARABLE_POINTS = 1.0  # Hui & Belkin's "comparable": a difference within one accuracy point
PLATEAU_GAIN = 0.001  # an epoch that adds less than 0.1 point of validation accuracy, while below the learned level
EARLY_EPOCHS = 5  # Glorot & Bengio: "quickly saturates"; their epochs were 20k updates, ours 5k
SATURATION_RISE = 0.10  # a rise of 10 points in the share of saturated units counts as saturating

NIELSEN = "Nielsen, Neural Networks and Deep Learning, ch. 3 (learning rates across costs; its etas 3.0 and 0.5)"
HUI_BELKIN = ("Hui & Belkin, ICLR 2021, 'Evaluation of neural architectures trained with square loss vs "
              "cross-entropy in classification tasks'")
GOLIK = "Golik, Doetsch & Ney, Interspeech 2013, 'Cross-entropy vs. squared error training'"
GLOROT = "Glorot & Bengio, AISTATS 2010, 'Understanding the difficulty of training deep feedforward networks'"


def seed_resamples(n_seeds: int) -> np.ndarray:
    """[RESAMPLES, n_seeds] indices: seeds drawn with replacement, the same draws for every claim."""
    return np.random.default_rng(BOOTSTRAP_SEED).integers(0, n_seeds, size=(RESAMPLES, n_seeds))


def bootstrap_best_lrs(timed: pd.DataFrame, pair: str, seeds: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The best lr of `pair` in each resample of `seeds` (draws [R, S] index into them), chosen by
    statistics.best_lr_flags's rule: among lrs with no diverged run drawn (else all), the highest mean
    of the drawn runs' best validation accuracy (diverged runs left out), ties to the smaller lr."""
    cells = timed[timed["pair"] == pair]
    accuracy = cells.assign(best_val_acc=cells["best_val_acc"].where(~cells["diverged"])).pivot_table(
        index="lr", columns="seed", values="best_val_acc", dropna=False).reindex(columns=seeds)
    diverged = cells.pivot_table(index="lr", columns="seed", values="diverged", aggfunc="any").reindex(
        columns=seeds, fill_value=False).fillna(False).astype(bool)
    with warnings.catch_warnings():  # an lr whose drawn runs all diverged has no mean: NaN, never chosen
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(accuracy.to_numpy()[:, draws], axis=-1)  # [L, R]
    unstable = diverged.to_numpy()[:, draws].any(axis=-1)
    score = np.where(np.isnan(means), -np.inf, means - 2.0 * unstable)  # accuracies lie in [0, 1]
    best = accuracy.index.to_numpy()[score.argmax(axis=0)]  # argmax: the first, smallest lr of a tie
    return np.where(np.isinf(score.max(axis=0)), np.nan, best)


def grid_step(lrs) -> float:
    """The factor between neighbouring swept lrs (median, on a log scale): 10^(1/4) on the verdict's grid."""
    return float(np.exp(np.median(np.diff(np.log(np.sort(np.unique(lrs)))))))


def nielsen_lr_ratio(setting: str, runs, epochs, summary) -> list[Claim]:
    timed = statistics.with_run_stats(runs, epochs)
    timed = timed[timed["group_id"].isin(summary["group_id"])]
    best = summary[summary["best_lr"]].set_index("pair")["lr"]
    if not {"sigmoid_mse", "sigmoid_ce"} <= set(best.index):
        return []
    seeds = np.sort(timed["seed"].unique())
    draws = seed_resamples(len(seeds))
    ratios = bootstrap_best_lrs(timed, "sigmoid_mse", seeds, draws) / bootstrap_best_lrs(timed, "sigmoid_ce", seeds, draws)
    low, high = np.nanquantile(ratios, [0.025, 0.975], method="inverted_cdf")
    step = grid_step(summary["lr"])
    figures = {"best lr sigmoid_mse": best["sigmoid_mse"], "best lr sigmoid_ce": best["sigmoid_ce"],
               "ratio": best["sigmoid_mse"] / best["sigmoid_ce"], "bootstrap 2.5%": low, "bootstrap 97.5%": high,
               "seeds": len(seeds), "grid step": step}

    def check(f):
        half = np.sqrt(f["grid step"])  # 6 is off the grid: a ratio within half a step of it counts
        near_six = f["bootstrap 2.5%"] <= 6 * half and f["bootstrap 97.5%"] >= 6 / half
        if near_six and f["bootstrap 2.5%"] <= 1 <= f["bootstrap 97.5%"]:
            return None
        return near_six

    return [Claim("the quadratic cost's best learning rate is about 6x the cross-entropy's (sigmoid outputs)",
                  NIELSEN, lambda: figures, check, setting=setting,
                  criterion=(f"best lr(sigmoid_mse) / best lr(sigmoid_ce), {RESAMPLES} bootstrap resamples of the seeds "
                             "(best lr re-chosen on validation in each): holds if the 95% interval reaches within half a "
                             "grid step of 6, inconclusive if it also holds 1, else does not hold"))]


def oriented(comparisons: pd.DataFrame, pair: str, other: str, metric: str) -> pd.Series | None:
    """The comparison row of pair - other (flipped if it was written other - pair); None if absent."""
    rows = comparisons[comparisons["metric"] == metric]
    row = rows[(rows["pair"] == pair) & (rows["other"] == other)]
    if len(row):
        return row.iloc[0]
    row = rows[(rows["pair"] == other) & (rows["other"] == pair)]
    if not len(row):
        return None
    flipped = row.iloc[0].copy()
    flipped[["mean_diff", "ci_low", "ci_high"]] = -row.iloc[0][["mean_diff", "ci_high", "ci_low"]].to_numpy()
    return flipped


def hui_belkin(setting: str, runs, summary, comparisons) -> list[Claim]:
    row = oriented(comparisons, "linear_mse", "softmax_nll", "val_selected_test_acc")
    if row is None:
        return []
    accuracy = {"linear_mse - softmax_nll (points)": 100 * row["mean_diff"], "95% CI low": 100 * row["ci_low"],
                "95% CI high": 100 * row["ci_high"], "seeds": row["n"]}

    def comparable(f):
        if -COMPARABLE_POINTS <= f["95% CI low"] and f["95% CI high"] <= COMPARABLE_POINTS:
            return True
        if f["95% CI high"] < -COMPARABLE_POINTS or f["95% CI low"] > COMPARABLE_POINTS:
            return False
        return None

    table = by_seed(statistics.best_runs(runs, summary), "val_selected_test_acc")[
        ["linear_mse", "softmax_nll"]].dropna().to_numpy()
    draws = seed_resamples(len(table))
    # a resample of one seed drawn n times has no spread: its ratio is 0/0 up to rounding (0, inf or nan at
    # random, and one inf or nan makes a quantile nan); it happens at 3 seeds (3 in 27), hardly ever at 10
    draws = draws[(draws != draws[:, :1]).any(axis=1)]
    spread = table[draws].std(axis=1, ddof=1)  # [R, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = np.nanquantile(spread[:, 0] / spread[:, 1], [0.025, 0.975])
    std = table.std(axis=0, ddof=1)
    sensitivity = {"std linear_mse (points)": 100 * std[0], "std softmax_nll (points)": 100 * std[1],
                   "ratio": std[0] / std[1], "bootstrap 2.5%": low, "bootstrap 97.5%": high, "seeds": len(table)}

    def less_sensitive(f):
        return True if f["bootstrap 97.5%"] < 1 else False if f["bootstrap 2.5%"] > 1 else None

    return [
        Claim("square loss on linear outputs is comparable to cross-entropy with softmax (slightly behind on vision)",
              HUI_BELKIN, lambda: accuracy, comparable, setting=setting,
              criterion=(f"paired difference of val-selected test accuracy at the best lrs: holds if its 95% interval "
                         f"lies within ±{COMPARABLE_POINTS:g} point, does not hold if it lies outside, else inconclusive")),
        Claim("square loss is less sensitive to the random initialization than cross-entropy (std over seeds)",
              HUI_BELKIN, lambda: sensitivity, less_sensitive, setting=setting,
              criterion=(f"std over seeds of val-selected test accuracy at the best lrs, linear_mse / softmax_nll, "
                         f"{RESAMPLES} bootstrap resamples of the seeds: holds if the 95% interval is below 1, "
                         "does not hold if above 1, else inconclusive")),
    ]


def failures(runs: pd.DataFrame, summary: pd.DataFrame, pair: str) -> tuple[int, int]:
    """(runs stuck below their data set's learned level or diverged, runs) of `pair` at its best lr."""
    best = summary[summary["best_lr"] & (summary["pair"] == pair)]
    at_best = statistics.label_groups(runs).merge(best[statistics.CELL], on=statistics.CELL)
    failed = at_best["diverged"] | (at_best["peak_test_acc"] < at_best["learned_level"])
    return int(failed.sum()), len(at_best)


def golik(setting: str, runs, summary) -> list[Claim]:
    if not {"sigmoid_mse", "sigmoid_ce"} <= set(summary.loc[summary["best_lr"], "pair"]):
        return []
    (mse, n_mse), (ce, n_ce) = failures(runs, summary, "sigmoid_mse"), failures(runs, summary, "sigmoid_ce")
    from scipy import stats  # scipy.stats takes ~0.4 s to import: loaded where used, so `--help` stays fast (issue 17)

    p = stats.fisher_exact([[mse, n_mse - mse], [ce, n_ce - ce]], alternative="greater").pvalue
    figures = {"sigmoid_mse failed": mse, "sigmoid_mse runs": n_mse, "sigmoid_ce failed": ce, "sigmoid_ce runs": n_ce,
               "p (Fisher, one-sided)": p}
    learned = statistics.group_levels(summary).learned

    def check(f):
        if f["p (Fisher, one-sided)"] < 0.05:
            return True
        if f["sigmoid_mse failed"] / f["sigmoid_mse runs"] <= f["sigmoid_ce failed"] / f["sigmoid_ce runs"]:
            return False
        return None

    return [Claim("from a random initialization, squared error (sigmoid outputs) fails to reach a good optimum "
                  "where cross-entropy does", GOLIK, lambda: figures, check, setting=setting,
                  criterion=(f"runs at each pair's best lr that diverged or peaked below {learned:.0%}: holds if "
                             "sigmoid_mse fails more often (Fisher's exact test, one-sided p < 0.05), does not hold if "
                             "it fails no more often than sigmoid_ce, else inconclusive"))]


def plateau_epochs(epochs: pd.DataFrame, learned: float) -> pd.Series:
    """Per run: epochs >= 1 that add less than PLATEAU_GAIN validation accuracy to the epoch before
    while it is below `learned`: time spent stalled before the network has learned the classes."""
    ordered = epochs.sort_values(["run_id", "epoch"])
    gain = ordered.groupby("run_id")["val_acc"].diff()
    stalled = (ordered["epoch"] >= 1) & (gain < PLATEAU_GAIN) & (ordered["val_acc"] < learned)
    return stalled.groupby(ordered["run_id"]).sum()


def glorot_plateaus(setting: str, runs, epochs, summary) -> list[Claim]:
    hidden_layers = statistics.output_layer(summary["sizes"].iloc[0]) - 1
    if hidden_layers < 2 or not {"sigmoid_mse", "softmax_nll"} <= set(summary.loc[summary["best_lr"], "pair"]):
        return []  # a claim about deep networks
    learned = statistics.group_levels(summary).learned
    best = statistics.best_runs(runs, summary)
    best = best.assign(plateaus=best["run_id"].map(plateau_epochs(epochs, learned)))
    table = by_seed(best, "plateaus")
    row = paired_difference(table["sigmoid_mse"], table["softmax_nll"])
    figures = {"plateau epochs sigmoid_mse": table["sigmoid_mse"].mean(),
               "plateau epochs softmax_nll": table["softmax_nll"].mean(), "difference": row["mean_diff"],
               "95% CI low": row["ci_low"], "95% CI high": row["ci_high"], "seeds": row["n"]}

    def check(f):
        return True if f["95% CI low"] > 0 else False if f["95% CI high"] < 0 else None

    return [Claim("the log-likelihood cost (softmax) shows fewer plateaus in training than the quadratic cost",
                  GLOROT, lambda: figures, check, setting=setting,
                  criterion=(f"per run at each pair's best lr, epochs adding under {100 * PLATEAU_GAIN:g} point of "
                             f"validation accuracy while below {learned:.0%}; paired over seeds: holds if "
                             "sigmoid_mse's excess has a 95% interval above 0, does not hold if below, else inconclusive"))]


def glorot_saturation(setting: str, saturation: pd.DataFrame) -> list[Claim]:
    """From the hidden_saturation study's saturation.csv: does the top hidden layer saturate early?"""
    runs = saturation[saturation["pair"] == "softmax_nll"]
    if runs.empty:
        return []
    top = runs["layer"].max()
    early = runs[runs["epoch"].between(1, EARLY_EPOCHS)].groupby(["seed", "layer"])["saturated"].max().unstack()
    start = runs[runs["epoch"] == 0].groupby(["seed", "layer"])["saturated"].max().unstack()
    rise = early[top] - start[top]
    most = (early[top] >= early.drop(columns=top).max(axis=1)).mean()
    level = runs[runs["layer"] == top].groupby(["seed", "epoch"])["mean_activation"].mean().unstack()
    figures = {"top layer mean activation at init": level[0].median(),
               f"top layer mean activation, min over epochs 1-{EARLY_EPOCHS}":
                   level.loc[:, 1:EARLY_EPOCHS].min(axis=1).median(),
               "top layer saturated at init": start[top].median(),
               f"top layer saturated, max over epochs 1-{EARLY_EPOCHS}": early[top].median(),
               "rise (median over seeds)": rise.median(), "seeds where the top layer is the most saturated": most,
               "seeds": len(rise)}

    def check(f):
        rises, most = f["rise (median over seeds)"] >= SATURATION_RISE, f["seeds where the top layer is the most saturated"]
        return True if rises and most >= 0.8 else False if not rises and most < 0.5 else None

    return [Claim("the top hidden layer of a sigmoid network saturates early in training (softmax output)",
                  GLOROT, lambda: figures, check, setting=setting,
                  criterion=(f"share of the top hidden layer's units with sigma'(z) < 0.01 on fixed test images, max "
                             f"over epochs 1-{EARLY_EPOCHS} minus at initialization (median over seeds): holds if it "
                             f"rises by {SATURATION_RISE:.0%} or more and the top layer is the most saturated hidden "
                             "layer in 80% of seeds; does not hold if it rises less and another layer is the most "
                             "saturated in most seeds; else inconclusive"))]
