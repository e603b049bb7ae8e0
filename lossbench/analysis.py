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
  *_g<k>.png                 per config group k: accuracy_vs_epoch, peak_vs_lr,
                             gradients_vs_epoch, saturation_vs_epoch (sigmoid pairs only)

Diverged runs are counted and excluded from every accuracy and gradient statistic.
The best learning rate of a (group, pair) is chosen on validation accuracy only: among
its learning rates where no seed diverged (all of them, if every one had a divergence),
the one with the highest mean over seeds of each run's best validation accuracy over
epochs 1..E; ties go to the smaller learning rate.

Python API: load_results(dirs), summarize(runs, epochs), slowdown(runs, epochs, summary),
best_lr_ratio(summary), seed_distribution(runs, book=...).
"""

import argparse
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
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


def with_run_stats(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """label_groups(runs) plus best_val_acc (max val_acc over epochs >= 1) and epochs_to_90 /
    epochs_to_95 (first epoch whose test_acc reaches the threshold; NaN if none)."""
    runs = label_groups(runs)
    trained = epochs[epochs["epoch"] >= 1]
    runs["best_val_acc"] = runs["run_id"].map(trained.groupby("run_id")["val_acc"].max())
    for threshold in THRESHOLDS:
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
    """One row per (config group, pair, lr); columns are defined in the README's analysis section.

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
        weights = special.comb(np.arange(len(values)), best_of - 1) / special.comb(len(values), best_of)
        mean = np.average(values, weights=weights)
        result["best_of_k_mean"] = mean
        result["best_of_k_std"] = np.sqrt(np.average((values - mean) ** 2, weights=weights))
        if book is not None:
            result["best_of_k_book_percentile"] = 100 * weights[values <= book].sum()
    return pd.Series(result)


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


# --- plots ----------------------------------------------------------------------
BAND = "mean; band: min-max over seeds"


def pair_colors(pairs) -> dict[str, str]:
    return {pair: f"C{i}" for i, pair in enumerate(sorted(set(pairs)))}


def new_figure(title: str, group: str, ncols: int = 1) -> tuple[Figure, list]:
    # a bare Figure renders with the Agg canvas: no GUI backend, no pyplot state
    figure = Figure(figsize=(7 * ncols, 4.8), layout="constrained")
    figure.suptitle(f"{title}\n{group}", fontsize=11)
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


def plot_accuracy(group: str, runs: pd.DataFrame, epochs: pd.DataFrame, colors: dict) -> Figure:
    figure, [ax] = new_figure("Test accuracy at each pair's best learning rate", group)
    plot_curves(ax, runs, epochs[epochs["epoch"] >= 1], "test_acc", colors, scale=100)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(title=BAND, fontsize=8, title_fontsize=8)
    return figure


def plot_peak_vs_lr(group: str, cells: pd.DataFrame, colors: dict) -> Figure:
    figure, [ax] = new_figure("Peak test accuracy vs learning rate (diverged runs excluded)", group)
    for pair, part in cells.groupby("pair"):
        ok, chosen, lost = part[part["n"] > 0], part[part["best_lr"]], part[part["n"] == 0]
        ax.errorbar(ok["lr"], 100 * ok["peak_mean"], yerr=100 * ok["peak_ci95"].fillna(0), capsize=3,
                    marker="o", color=colors[pair], label=pair)
        ax.plot(chosen["lr"], 100 * chosen["peak_mean"], "*", color=colors[pair], markersize=14)
        # an lr where every seed diverged has no accuracy: an x on the bottom edge, at that lr
        ax.plot(lost["lr"], [0.03] * len(lost), "x", color=colors[pair], markersize=9, markeredgewidth=2,
                transform=ax.get_xaxis_transform())
    if (cells["n"] == 0).any():
        ax.plot([], [], "x", color="gray", markeredgewidth=2, label="every seed diverged")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate η (log scale)")
    ax.set_ylabel("peak test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="mean ± 95% CI over seeds; ★ best lr (validation)", fontsize=8, title_fontsize=8)
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


def write_plots(summary: pd.DataFrame, runs: pd.DataFrame, epochs: pd.DataFrame, out: Path) -> list[Path]:
    """Each config group's PNGs (curves only where some pair has a best lr); returns their paths."""
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
    for name, figure in figures.items():
        figure.savefig(out / f"{name}.png", dpi=110)
    return [out / f"{name}.png" for name in figures]


# --- command line ---------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench analyze",
        description="Summary tables with 95% confidence intervals, learning-slowdown measurements and plots "
                    "from the runs.csv / epochs.csv of one or more sweep directories (searched recursively).")
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
    runs, epochs = load_results(args.dirs)
    out = args.out or Path(args.dirs[0]) / "analysis"
    try:
        return write_analysis(args, runs, epochs, Path(out))
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
    plots = [] if args.no_plots else write_plots(summary, runs, epochs, out)

    print(f"{len(runs)} runs in {summary['group_id'].nunique()} config group(s)\n")
    print(terminal_summary(summary))
    print(f"\nbest lr sigmoid_mse / sigmoid_ce:\n{lr_ratio_text(ratios)}")
    written = ["summary.csv", "summary.md", "slowdown.csv", "slowdown.md"] + [path.name for path in plots]
    print(f"\nwrote to {out}/: {' '.join(written)}")
    return 0
