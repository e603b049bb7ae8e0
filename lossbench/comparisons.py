"""Paired comparisons of the pairs at their best learning rates, their ranking and per-pair profiles.

    python -m lossbench analyze results/default_comparison --no-plots   # writes comparison.csv, ranking.csv

The runs of two pairs with the same seed share their initialization and batch order
(ensemble.py: the seed alone fixes both), so they are matched on seed, never on row order:
per config group and metric, every two pairs at their best lrs get the mean paired difference,
its 95% t-interval, the paired t-test's p and Holm's correction. A pair's rank is 1 + the pairs
shown better (pairs whose interval covers 0 tie); its profile adds robustness (the lr band
within one point of its best mean peak), speed and reliability, measured at the levels of the
group's data set (statistics.LEVELS). Columns in docs/verdict.md.
"""

import warnings

import numpy as np
import pandas as pd

from lossbench.statistics import CONFIDENCE, best_runs, group_levels, with_run_stats

COMPARED = {"val_selected_test_acc": "val_selected", "peak_test_acc": "peak"}  # runs.csv column -> summary prefix
PAIRED_TEST = "paired t-test (scipy.stats.ttest_rel, two-sided)"
COMPARISON_COLUMNS = ["group_id", "pair", "other", "lr", "other_lr", "metric", "n", "mean_diff", "ci_low",
                      "ci_high", "p_value", "p_holm"]
ROBUST_BAND = 0.01  # one accuracy point: the lrs whose mean peak is this close to the pair's best form its band
SPEED_LEVELS = ("good", "high")  # epochs to (MNIST) 95% and 97%: statistics.LEVELS


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
    from scipy import stats  # scipy.stats takes ~0.4 s to import: loaded where used, so `--help` stays fast (issue 17)

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
    timed = with_run_stats(runs, epochs)
    rows = []
    for (group_id, pair), cells in summary.groupby(["group_id", "pair"]):
        chosen = cells[cells["best_lr"]]
        if chosen.empty:
            continue
        best = chosen.iloc[0]
        top = cells["peak_mean"].max()
        band = cells[cells["peak_mean"] >= top - ROBUST_BAND - 1e-12]  # 1e-12: the best cell itself, despite rounding
        in_band = timed[(timed["group_id"] == group_id) & (timed["pair"] == pair) & timed["lr"].isin(band["lr"])]
        stuck = (~in_band["diverged"] & (in_band["peak_test_acc"] < in_band["learned_level"])).sum()
        at_best = timed[(timed["group_id"] == group_id) & (timed["pair"] == pair) & (timed["lr"] == best["lr"])
                        & ~timed["diverged"]]
        row = {"group_id": group_id, "group": best["group"], "pair": pair, "lr": best["lr"], "n": best["n"]}
        for prefix in COMPARED.values():
            row |= {f"{prefix}_mean": best[f"{prefix}_mean"], f"{prefix}_ci95": best[f"{prefix}_ci95"]}
        row |= {"band_lr_low": band["lr"].min(), "band_lr_high": band["lr"].max(),
                "robustness": band["lr"].max() / band["lr"].min(), "band_lrs": len(band)}
        level = group_levels(cells)
        for name in SPEED_LEVELS:
            reached = at_best[f"epochs_to_{name}"]
            row |= {f"{name}_level": getattr(level, name), f"reach_{name}_n": int(reached.count()),
                    f"reach_{name}_epochs_mean": reached.mean()}
        row |= {"learned_level": level.learned, "band_runs": len(in_band), "band_stuck": int(stuck),
                "band_diverged": int(in_band["diverged"].sum()),
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
