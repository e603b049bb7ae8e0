"""A sweep's statistics as text: the terminal summary and the Markdown tables `analyze` writes.

    python -m lossbench analyze results/default_comparison --no-plots   # summary.md, slowdown.md, comparison.md

Accuracies are shown in %, mean ± the half-width of the 95% t-interval over the non-diverged
seeds (LEGEND); differences in signed percentage points; the accuracy levels (stuck, epochs to)
are those of the group's data set, and each table names them.
"""

import textwrap

import pandas as pd

from lossbench.comparisons import COMPARED, PAIRED_TEST, ROBUST_BAND, SPEED_LEVELS
from lossbench.statistics import BOOK_LR_RATIO, SUMMARY_LEVELS, levels


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


def level_header(cells: pd.DataFrame, name: str) -> str:
    """'epochs to 95%': the column of one config group's rows (one data set) that counts runs reaching level `name`."""
    return f"epochs to {cells[f'{name}_level'].iloc[0]:.0%}"


def levels_text(datasets) -> str:
    """The accuracy levels of these data sets in words, e.g. 'mnist: stuck below 90%, speed to 95% and 97%'."""
    by_dataset = {dataset: levels(dataset) for dataset in sorted(set(datasets))}
    return "; ".join(f"{dataset}: stuck below {level.learned:.0%}, speed to {level.good:.0%} and {level.high:.0%}"
                     for dataset, level in by_dataset.items())


def display_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One config group's summary rows as strings: accuracies in %, ± the 95% CI half-width, * on the best lr."""
    text = pd.DataFrame({
        "pair": cells["pair"],
        "lr": [f"{lr:g}" + (" *" if best else "") for lr, best in zip(cells["lr"], cells["best_lr"])],
        "seeds": cells["seeds"], "diverged": cells["diverged"]})
    for name, header in [("peak", "peak %"), ("final", "final %"), ("val_selected", "val-selected %")]:
        text[header] = [percent_stat(*row) for row in zip(cells[f"{name}_mean"], cells[f"{name}_ci95"], cells["n"])]
    text["best val %"] = [number(100 * value, ".2f") for value in cells["best_val_mean"]]
    for name in SUMMARY_LEVELS:
        text[level_header(cells, name)] = [reach(*row) for row in zip(
            cells[f"reach_{name}_n"], cells[f"reach_{name}_epochs_mean"], cells["n"])]
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
    parts = ["# Sweep summary", "", LEGEND, "'epochs to X%': runs reaching X% test accuracy / n, at the mean over "
             "those runs of the first epoch that does; X: the data set's stuck level and its first speed level "
             f"(summary.csv: learned_level, good_level). Levels: {levels_text(summary['dataset'])}.", ""]
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
        **{level_header(profiles, name): [reach(c, m, n) for c, m, n in zip(
            profiles[f"reach_{name}_n"], profiles[f"reach_{name}_epochs_mean"], profiles["n"])]
           for name in SPEED_LEVELS},
        "stuck or diverged in band": [f"{s + d}/{r} ({(s + d) / r:.0%})" for s, d, r in zip(
            profiles["band_stuck"], profiles["band_diverged"], profiles["band_runs"])]})


def comparison_legend(datasets) -> str:
    return (f"Each comparison: both pairs at their best lr (chosen on validation), matched on seed (same "
            f"initialization and batch order); mean difference in accuracy points over the matched seeds, 95% "
            f"t-interval, {PAIRED_TEST}, p Holm-corrected within the group and metric. Rank: 1 + the number "
            f"of pairs whose advantage has an interval entirely above 0 (an interval covering 0 is a tie). "
            f"lr band: the lrs whose mean peak is within {100 * ROBUST_BAND:g} point of the pair's best, "
            f"robustness = largest / smallest lr in it; epochs to the data set's two speed levels at the best lr "
            f"(runs reaching it / runs, at the mean first epoch); stuck = peak below the data set's stuck level. "
            f"Levels: {levels_text(datasets)}.")


def comparison_markdown(comparisons: pd.DataFrame, notes: pd.DataFrame, profiles: pd.DataFrame,
                        summary: pd.DataFrame) -> str:
    parts = ["# Paired comparisons at each pair's best learning rate", "", comparison_legend(summary["dataset"]), ""]
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
    """One line, from the numbers: who ranks first on `metric` (and who ties), and the last pair's gap. A pair
    that ranks first only because it has no paired interval with the leader (fewer than 2 matched seeds:
    comparisons has no row for the two) is undecided, not tied."""
    prefix = COMPARED[metric]
    ranked = profiles.sort_values([f"rank_{prefix}", f"{prefix}_mean"], ascending=[True, False])
    first = ranked[ranked[f"rank_{prefix}"] == 1]
    leader = first.iloc[0]
    rows = comparisons[comparisons["metric"] == metric]
    compared = set(rows.loc[rows["pair"] == leader["pair"], "other"]) | set(rows.loc[rows["other"] == leader["pair"], "pair"])
    tied = [pair for pair in first["pair"].iloc[1:] if pair in compared]
    undecided = [pair for pair in first["pair"].iloc[1:] if pair not in compared]
    name = prefix.replace("_", "-")
    text = (f"{name}: {leader['pair']} " + ("has the highest mean" if undecided else "leads")
            + f" ({100 * leader[f'{prefix}_mean']:.2f}%)")
    if tied:
        text += f", tied with {', '.join(tied)} (intervals cover 0)"
    if undecided:
        text += (f"; undecided against {', '.join(undecided)} (fewer than 2 matched seeds, so no paired interval: "
                 "the comparison needs 2 or more seeds)")
    last = ranked.iloc[-1]
    gap = rows[(rows["pair"] == leader["pair"]) & (rows["other"] == last["pair"])]
    if last[f"rank_{prefix}"] > 1 and len(gap):
        row = gap.iloc[0]
        text += (f"; {last['pair']} is {100 * row['mean_diff']:.2f} points behind "
                 f"[{100 * row['ci_low']:.2f}, {100 * row['ci_high']:.2f}]")
    return text
