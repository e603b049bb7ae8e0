"""A sweep's plots: accuracy and gradients per epoch, peak accuracy vs learning rate, paired differences.

    python -m lossbench analyze results/default_comparison --out /tmp/analysis   # the *_g<k>.png files

Per config group: accuracy_vs_epoch, peak_vs_lr (with a zoom on the top pairs), gradients_vs_epoch,
saturation_vs_epoch (sigmoid pairs only) and the forest plot of the paired differences,
comparison; and, for `report`, a study's seed distribution. Each figure is a bare matplotlib
Figure (the Agg canvas: no GUI backend, no pyplot state) whose title states its takeaway.
"""

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.ticker import MaxNLocator

from lossbench.comparisons import COMPARED
from lossbench.statistics import best_of_weights, best_runs, group_levels, output_layer, seed_distribution
from lossbench.tables import number, ranking_takeaway

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


def accuracy_takeaway(runs: pd.DataFrame, epochs: pd.DataFrame, threshold: float) -> str:
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
                              takeaway=accuracy_takeaway(runs, epochs, group_levels(runs).good))
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


def plot_seed_distribution(title: str, runs: pd.DataFrame, book: float, stuck_below: float, best_of: int = 3) -> Figure:
    """Of one study's runs (seed_distribution's): every run's peak test accuracy a mark (jittered strip; a run
    peaking below `stuck_below` in red), the exact distribution of the best of `best_of` runs (stems: the chance
    that a run is the best of a random set of `best_of`), the book's number across both; left: all runs, right:
    zoomed on the book's number and our top."""
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
    stuck = values < 100 * stuck_below
    weights = best_of_weights(len(values), best_of) if len(values) >= best_of else np.zeros(len(values))
    for ax in axes:
        ax.plot(values[~stuck], 1 + jitter[~stuck], "o", color="C0", alpha=0.6, markersize=5, label="one run (seed)")
        ax.plot(values[stuck], 1 + jitter[stuck], "o", color="C3", alpha=0.8, markersize=5,
                label=f"one run peaking below {stuck_below:.0%}")
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
    axes[1].set_title(f"zoom: the runs peaking at {stuck_below:.0%} or more, and the book's number", fontsize=10)
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
