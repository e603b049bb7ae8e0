"""Summary tables with confidence intervals, learning-slowdown measurements and plots from sweep CSVs.

    python -m lossbench analyze outputs/sweep [more sweep dirs ...] [--out DIR]

Reads every runs.csv and its epochs.csv found under the given directories (searched
recursively, so a Hydra multirun directory with 0/, 1/, ... works; a damaged line stops
it with `error: line N of FILE: problem`, see docs/reliability.md), merges them (a
run_id seen twice counts once), groups runs by their configuration (CONFIG_COLUMNS:
different experiments are never pooled) and writes to DIR/analysis/ (first DIR) or --out:

  summary.csv, summary.md    per (config group, pair, lr): seeds, diverged, mean / std /
                             95% t-interval of peak, final and validation-selected test
                             accuracy, epochs to 90% / 95% (MNIST; each data set has its
                             levels, statistics.LEVELS), the best learning rate
  slowdown.csv, slowdown.md  output- and hidden-layer gradient norms over the first epochs,
                             their ratio, the share of saturated outputs, and the ratio of the
                             best learning rates of sigmoid_mse and sigmoid_ce (book: about 6)
  comparison.csv, .md        per config group and metric (val-selected and peak test accuracy), every two
                             pairs at their best lrs, matched on seed: the mean paired difference, its 95%
                             t-interval, the paired t-test's p and Holm's correction; the .md adds the ranking
  ranking.csv                per (config group, pair): its best lr, accuracies with their rank (1 + the
                             pairs shown better: pairs whose interval covers 0 tie), robustness (the lr band
                             within 1 point of its best mean peak), speed (epochs to 95% / 97% on MNIST),
                             reliability (stuck or diverged runs in that band); columns in docs/verdict.md
  *_g<k>.png                 per config group k: accuracy_vs_epoch, peak_vs_lr (with a zoom on the top
                             pairs), gradients_vs_epoch, saturation_vs_epoch (sigmoid pairs only), and the
                             forest plot of the paired differences, comparison

Diverged runs are counted and excluded from every accuracy and gradient statistic; the best
learning rate of a (group, pair) is chosen on validation accuracy only (lossbench/statistics.py).

Where each part lives: the reading, lossbench/results/load.py (load_results(dirs)); the
statistics, lossbench/statistics.py (summarize, slowdown, best_lr_ratio, seed_distribution);
the paired comparisons and the ranking, lossbench/comparisons.py (paired_comparisons,
pair_profiles); the text tables, lossbench/tables.py; the plots, lossbench/plots.py. This
module is the command.
"""

import argparse
from pathlib import Path

import pandas as pd

from lossbench import comparisons, plots, statistics, tables
from lossbench.errors import UserError
from lossbench.results.load import load_results


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

    summary = statistics.summarize(runs, epochs)
    summary.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(tables.summary_markdown(summary))
    gradients = statistics.slowdown(runs, epochs, summary, args.first_epochs)
    ratios = statistics.best_lr_ratio(summary)
    gradients.to_csv(out / "slowdown.csv", index=False)
    (out / "slowdown.md").write_text(tables.slowdown_markdown(gradients, ratios, args.first_epochs))
    compared, notes = comparisons.paired_comparisons(runs, summary)
    profiles = comparisons.pair_profiles(runs, epochs, summary, compared)
    compared.to_csv(out / "comparison.csv", index=False)
    profiles.to_csv(out / "ranking.csv", index=False)
    (out / "comparison.md").write_text(tables.comparison_markdown(compared, notes, profiles, summary))
    pictures = [] if args.no_plots else plots.write_plots(summary, runs, epochs, out, compared, profiles)

    print(f"{len(runs)} runs in {summary['group_id'].nunique()} config group(s)\n")
    print(tables.terminal_summary(summary))
    print(f"\nbest lr sigmoid_mse / sigmoid_ce:\n{tables.lr_ratio_text(ratios)}")
    for group_id, part in profiles.groupby("group_id") if len(profiles) else []:
        print(f"{group_id}: {tables.ranking_takeaway(part, compared[compared['group_id'] == group_id])}")
    for note in notes.itertuples():
        print(f"{note.group_id}: {note.note}")
    written = ["summary.csv", "summary.md", "slowdown.csv", "slowdown.md", "comparison.csv", "comparison.md",
               "ranking.csv"] + [path.name for path in pictures]
    print(f"\nwrote to {out}/: {' '.join(written)}")
    return 0
