"""The book-vs-ours table of results/README.md, computed from the committed CSVs.

    python -m lossbench report results            # rewrite the table and pictures in results/README.md
    python -m lossbench report results --check    # exit 1 if the committed table differs (pictures unchecked)

Every number in the table comes from a study directory's own files, through
lossbench's analysis: a sweep study's runs.csv (`statistics.seed_distribution`),
the toy neuron's toy_neuron.csv and claims.csv, the ch. 5 study's summary.csv;
the command, hardware, torch version and wall time from its run_info.json,
which `sweep` and `study` write. The table sits between two marker lines in
results/README.md; the text around it is left as it is.
"""

import argparse
import json
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from lossbench import plots, provenance, statistics, tables
from lossbench.errors import UserError
from lossbench.results import load

START = "<!-- lossbench report: start (python -m lossbench report results) -->"
END = "<!-- lossbench report: end -->"
# The book's studies in the order of the book; other study directories follow alphabetically.
ORDER = ["nielsen_ch1_h30", "nielsen_ch1_h100", "nielsen_ch3_h30", "nielsen_ch3_h100", "toy_neuron",
         "nielsen_ch5_gradients"]
DISTRIBUTION = "seed_distribution.png"  # per sweep study: every run a mark, the best of 3, the book's number
BOOK_LEVELS = statistics.LEVELS["mnist"]  # the book's studies are MNIST's: a run peaking below 90% is stuck
STUCK_COLUMN = f"runs peaking below {BOOK_LEVELS.learned:.0%}"
TABLE_COLUMNS = ["study", "book (ch.)", "book's number", "ours: mean ± std (n)", "median", "book's percentile",
           "ours, best of 3 runs", "final / val-selected", STUCK_COLUMN, "command", "hardware", "torch", "code", "wall time"]


def pct(value: float) -> str:
    return "-" if pd.isna(value) else f"{100 * value:.2f}%"


def sweep_row(directory: Path, study) -> dict:
    """A named sweep: the distribution over seeds of the peak test accuracy, where the book's number falls."""
    runs, _ = load.load_results([directory])
    book = float(study.book_test_acc[0])
    d = statistics.seed_distribution(runs, book=book)
    return {
        "book's number": pct(book),
        "ours: mean ± std (n)": f"{pct(d['mean'])} ± {100 * d['std']:.2f} (n={d['n']:g}, {d['n_diverged']:g} diverged)",
        "median": pct(d["median"]),
        "book's percentile": tables.number(d["book_percentile"], ".0f"),
        "ours, best of 3 runs": "-" if pd.isna(d["best_of_k_mean"]) else (
            f"{pct(d['best_of_k_mean'])} ± {100 * d['best_of_k_std']:.2f}; "
            f"book at percentile {d['best_of_k_book_percentile']:.0f}"),
        "final / val-selected": f"{pct(d['final_mean'])} / {pct(d['val_selected_mean'])}",
        STUCK_COLUMN: f"{(runs['peak_test_acc'] < BOOK_LEVELS.learned).sum()} of {len(runs)}",
    }


def toy_row(directory: Path, study) -> dict:
    """The single neuron: where the quadratic run from (0.6, 0.9) ends, when the one from (2, 2) starts to move."""
    runs = pd.read_csv(directory / "toy_neuron.csv")
    claims = pd.read_csv(directory / "claims.csv")
    quadratic = runs[(runs["pair"] == "sigmoid_mse") & (runs["update"] == "gradient")]
    end = quadratic[(quadratic["w0"] == 0.6) & (quadratic["b0"] == 0.9)].sort_values("epoch")["activation"].iloc[-1]
    stalled = quadratic[(quadratic["w0"] == 2.0) & (quadratic["b0"] == 2.0)].sort_values("epoch")
    moved = stalled[stalled["activation"] <= stalled["activation"].iloc[0] - 0.1]["epoch"].iloc[0]
    book = study.book_values
    return {
        "book's number": (f"output {book.quadratic_final_output} after 300 epochs from (0.6, 0.9); "
                          f"~{book.quadratic_stall_epochs} epochs of little change from (2, 2) (quadratic)"),
        "ours: mean ± std (n)": (f"{end:.4f}; the output first moves 0.1 at epoch {moved} "
                                 f"({int(claims['holds'].sum())} of {len(claims)} claims hold: claims.csv)"),
    }


def gradients_row(directory: Path, study) -> dict:
    """Ch. 5: |dC/db| per hidden layer at initialization, over seeds."""
    summary = pd.read_csv(directory / "summary.csv")
    n = len(pd.read_csv(directory / "gradient_norms.csv"))
    return {
        "book's number": ", ".join(f"{v:g}" for v in summary["book"]),
        "ours: mean ± std (n)": ", ".join(f"{m:.3g} ± {s:.2g}" for m, s in zip(summary["mean"], summary["std"]))
        + f" (n={n})",
        "median": ", ".join(f"{v:.3g}" for v in summary["50%"]),
        "book's percentile": ", ".join(f"{v:.0f}" for v in summary["book_percentile"]),
    }


def study_row(directory: Path) -> dict:
    """One row of the table, from whatever kind of study `directory` holds."""
    info_path = directory / "run_info.json"
    if not info_path.exists():
        raise UserError(f"{directory}: no run_info.json; rerun the study with `python -m lossbench sweep` or "
                        "`python -m lossbench study`, which write it.")
    info = json.loads(info_path.read_text())
    if (directory / "runs.csv").exists():
        study = OmegaConf.load(directory / "config.yaml").study
        row = sweep_row(directory, study)
    else:
        study = OmegaConf.load(directory / "settings.yaml").study
        row = (toy_row if (directory / "toy_neuron.csv").exists() else gradients_row)(directory, study)
    return {
        "study": f"[{directory.name}]({directory.name}/)",
        "book (ch.)": f"{study.chapter}",
        **row,
        "command": f"`{info['command']}`",
        "hardware": info["hardware"],
        "torch": info["torch"],
        "code": provenance.recorded_code_version(info),
        "wall time": f"{info['wall_time_s']:.0f} s",
    }


def states_a_book_number(directory: Path) -> bool:
    """A sweep belongs in the table when its study names the book's number (not, e.g., the default comparison)."""
    config = directory / "config.yaml"
    return not config.exists() or bool(OmegaConf.load(config).study.book_test_acc)


def study_directories(root: Path) -> list[Path]:
    found = {p.parent for p in root.glob("*/run_info.json") if states_a_book_number(p.parent)}
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(found, key=lambda p: (rank.get(p.name, len(ORDER)), p.name))


def build_table(root: Path) -> str:
    """The markdown table for the study directories under `root`, then the pictures of their seed distributions."""
    directories = study_directories(root)
    if not directories:
        raise UserError(f"{root}: no study directory (one holding run_info.json) found.")
    frame = pd.DataFrame([study_row(d) for d in directories]).reindex(columns=TABLE_COLUMNS).fillna("-")
    return frame.to_markdown(index=False) + "\n\n" + pictures_markdown(directories)


def pictures_markdown(directories: list[Path]) -> str:
    """Links to each sweep study's seed_distribution.png and the ch. 5 study's histogram."""
    parts = ["### Seed distributions", "",
             f"Each sweep study's peak test accuracy per seed (a mark per run; red: below {BOOK_LEVELS.learned:.0%}), the chance "
             "that a run is the best of 3 (green stems: the book's procedure in ch. 1), and the book's number "
             "(dashed); right: zoomed on the book's number.", ""]
    for directory in directories:
        if (directory / "runs.csv").exists():
            parts += [f"![{directory.name}]({directory.name}/{DISTRIBUTION})", ""]
        elif (directory / "gradient_norms.png").exists():
            parts += [f"![{directory.name}]({directory.name}/gradient_norms.png)", ""]
    return "\n".join(parts).rstrip()


def write_pictures(root: Path) -> None:
    for directory in study_directories(root):
        if (directory / "runs.csv").exists():
            study = OmegaConf.load(directory / "config.yaml").study
            runs, _ = load.load_results([directory])
            figure = plots.plot_seed_distribution(f"{directory.name} (Nielsen ch. {study.chapter})", runs,
                                                     float(study.book_test_acc[0]), BOOK_LEVELS.learned)
            figure.savefig(directory / DISTRIBUTION, dpi=110)


def replace_table(readme: str, table: str, start: str = START, end: str = END) -> str:
    """`readme` with the text between the marker lines `start` and `end` replaced by `table`."""
    if start not in readme or end not in readme:
        raise UserError(f"the README has no table markers; put these two lines where the table goes:\n{start}\n{end}")
    head, rest = readme.split(start, 1)
    return f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lossbench report", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default="results", help="the results directory (default: results)")
    parser.add_argument("--check", action="store_true", help="compare with README.md instead of writing it")
    args = parser.parse_args(argv)
    root = Path(args.root).absolute()  # errors name the paths they tried
    readme_path = root / "README.md"
    readme = readme_path.read_text() if readme_path.exists() else f"# Results\n\n{START}\n{END}\n"
    updated = replace_table(readme, build_table(root))
    if args.check:
        if updated != readme:
            print(f"{readme_path}: the table differs from what the CSVs give; run python -m lossbench report {root}")
            return 1
        print(f"{readme_path}: the table matches the CSVs")
        return 0
    write_pictures(root)
    readme_path.write_text(updated)
    print(f"wrote the table of {len(study_directories(root))} studies to {readme_path}, and their pictures")
    return 0
