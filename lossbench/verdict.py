"""The verdict across settings: which output activation and cost to use, and why, from the verdict's sweeps.

    python -m lossbench verdict results/verdict                       # write README.md's verdict and claims.csv
    python -m lossbench verdict results/verdict --check               # exit 1 if they differ from the CSVs
    python -m lossbench verdict results/verdict --around mnist_large  # each pair's best lr and its grid neighbours

A setting is an experiments/verdict_NAME.yaml sweep whose output is ROOT/NAME/ (`make verdict`); it
is complete when its runs.csv files hold every run of the grids of the config.yaml files below it,
unfinished when they hold fewer, missing when there are none. Everything between the two marker
lines of ROOT/README.md is generated from the settings' runs.csv and epochs.csv through
lossbench.statistics and lossbench.comparisons: a table (a row per pair, a column per setting,
each cell the val-selected test accuracy at the pair's best lr ± its 95% interval, with its
rank), the verdict in prose whose every
number and claim is computed here (from complete settings only), the forest and peak-vs-lr plots
of each setting (rewritten into ROOT/NAME/analysis/), the literature's claims (lossbench.literature,
also written to ROOT/claims.csv), and where each setting's runs came from (run_info.json). Text
outside the markers is left as it is. The images are rewritten, not checked, by --check.
"""

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from lossbench import comparisons, grid, literature, plots, provenance, report, statistics, tables, verdict_prose
from lossbench.claims import claims_table
from lossbench.config import EXPERIMENTS_DIR
from lossbench.errors import UserError
from lossbench.choices import PAIR_PARTS
from lossbench.results import load

START = "<!-- lossbench verdict: start (python -m lossbench verdict results/verdict) -->"
END = "<!-- lossbench verdict: end -->"
PREFIX = "verdict_"  # experiments/verdict_NAME.yaml -> setting NAME
MATRIX = ["mnist_large", "mnist_default", "fashion_large", "fashion_default"]  # the settings, 784-30-10
ORDER = MATRIX + [f"{name}_h100" for name in MATRIX] + ["mnist_deep"]
SATURATION = "hidden_saturation"  # ROOT/hidden_saturation/saturation.csv: `python -m lossbench study hidden_saturation`


@dataclass
class Setting:
    """One setting's directory, how far it got, and its analysis (frames empty when nothing finished)."""

    name: str
    directory: Path
    expected: int = 0  # runs in the grids of its config.yaml files
    planned: set = field(default_factory=set)  # the pairs those grids hold
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    epochs: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    profiles: pd.DataFrame = field(default_factory=pd.DataFrame)
    frames: dict = field(default_factory=dict)  # group_id -> group_frames(self, group_id)

    @property
    def finished(self) -> int:
        return len(self.runs)

    @property
    def complete(self) -> bool:
        # every pair, since a setting answers which of them to use (784-100-10 has one sweep per pair)
        return self.expected > 0 and self.finished >= self.expected and set(PAIR_PARTS) <= self.planned

    @property
    def status(self) -> str:
        if not self.expected:
            return "missing"
        if self.complete:
            return "complete"
        unplanned = [pair for pair in PAIR_PARTS if pair not in self.planned]
        return (f"unfinished: {self.finished} of {self.expected} runs"
                + (f", no sweep yet for {', '.join(unplanned)}" if unplanned else ""))

    def groups(self) -> list[str]:
        return sorted(self.frames)

    def label(self, group_id: str) -> str:
        return self.name if len(self.groups()) == 1 else f"{self.name} {group_id}"


# --- loading -----------------------------------------------------------------------
def setting_names(root: Path) -> list[str]:
    """The settings: every sweep experiments/verdict_NAME.yaml, and any other directory under root holding a
    runs.csv; in ORDER, then by name."""
    named = {path.stem.removeprefix(PREFIX) for path in EXPERIMENTS_DIR.glob(f"{PREFIX}*.yaml")
             if OmegaConf.load(path).get("command", "sweep") == "sweep"}
    found = {path.relative_to(root).parts[0] for path in root.glob("*/**/runs.csv")}
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(named | found, key=lambda name: (rank.get(name, len(ORDER)), name))


def planned_runs(directory: Path) -> tuple[int, set]:
    """(runs, pairs) in the grids of the config.yaml files at or below `directory` (a shard counts its seeds)."""
    total, pairs = 0, set()
    for path in directory.rglob("config.yaml"):
        cfg = OmegaConf.load(path)
        if "sweep" not in cfg:
            continue
        total += len(cfg.sweep.pairs) * len(cfg.sweep.lrs) * len(grid.job_seeds(cfg))
        pairs |= set(cfg.sweep.pairs)
    return total, pairs


def load_setting(root: Path, name: str) -> Setting:
    setting = Setting(name, root / name)
    if not setting.directory.is_dir():
        return setting
    setting.expected, setting.planned = planned_runs(setting.directory)
    try:
        setting.runs, setting.epochs = load.load_results([setting.directory])
    except UserError:
        if any(len(path.read_text().splitlines()) > 1 for path in setting.directory.rglob("runs.csv")):
            raise  # a damaged file, not a sweep that has not finished a run yet
        return setting
    setting.summary = statistics.summarize(setting.runs, setting.epochs)
    setting.comparisons, _ = comparisons.paired_comparisons(setting.runs, setting.summary)
    setting.profiles = comparisons.pair_profiles(setting.runs, setting.epochs, setting.summary, setting.comparisons)
    setting.frames = {group_id: group_frames(setting, group_id) for group_id in setting.summary["group_id"].unique()}
    return setting


def load_settings(root: Path) -> list[Setting]:
    if not root.is_dir():
        raise UserError(f"{root}: no such directory; pass the verdict's results directory (make verdict writes "
                        "results/verdict/<setting>/).")
    return [load_setting(root, name) for name in setting_names(root)]


def group_frames(setting: Setting, group_id: str) -> dict[str, pd.DataFrame]:
    """The setting's runs and epochs (group ids are computed over all of them, so they stay as they are) and its
    summary, comparisons and profiles of one config group, as lossbench.literature's functions take them."""
    return {"runs": setting.runs, "epochs": setting.epochs,
            **{name: getattr(setting, name)[getattr(setting, name)["group_id"] == group_id]
               for name in ("summary", "comparisons", "profiles")}}


# --- the table ---------------------------------------------------------------------
def cell(profiles: pd.DataFrame, pair: str) -> str:
    row = profiles[profiles["pair"] == pair]
    if row.empty:
        return "-"
    row = row.iloc[0]
    return (f"{tables.percent_stat(row['val_selected_mean'], row['val_selected_ci95'], row['n'])} "
            f"(rank {row['rank_val_selected']}, η={row['lr']:g})")


def verdict_table(settings: list[Setting]) -> str:
    columns = {}
    for setting in settings:
        for group_id in setting.groups():
            mark = "" if setting.complete else f" ({setting.status})"
            columns[f"[{setting.label(group_id)}]({setting.name}/){mark}"] = setting.frames[group_id]["profiles"]
    if not columns:
        return "No setting has finished runs yet."
    frame = pd.DataFrame({"pair": list(PAIR_PARTS)} | {header: [cell(profiles, pair) for pair in PAIR_PARTS]
                                                   for header, profiles in columns.items()})
    return frame.to_markdown(index=False)


def settings_table(settings: list[Setting]) -> str:
    rows = []
    for setting in settings:
        infos = [json.loads(path.read_text()) for path in sorted(setting.directory.rglob("run_info.json"))] \
            if setting.directory.is_dir() else []
        groups = "; ".join(setting.summary.drop_duplicates("group_id")["group"]) if setting.finished else "-"
        rows.append({"setting": setting.name, "status": setting.status, "runs": setting.finished,
                     "configuration": groups,
                     "command": "<br>".join(f"`{info['command']}`" for info in infos) or "-",
                     "hardware": ", ".join(sorted({info["hardware"] for info in infos})) or "-",
                     "torch": ", ".join(sorted({info["torch"] for info in infos})) or "-",
                     "code": ", ".join(sorted({provenance.recorded_code_version(info) for info in infos})) or "-",
                     "wall time": f"{sum(info['wall_time_s'] for info in infos):.0f} s" if infos else "-"})
    return pd.DataFrame(rows).to_markdown(index=False)


# --- the verdict in prose (lossbench/verdict_prose.py) ---------------------------
def complete_columns(settings: list[Setting]) -> list[tuple[str, dict]]:
    return [(setting.label(group_id), setting.frames[group_id]) for setting in settings if setting.complete
            for group_id in setting.groups() if len(setting.frames[group_id]["profiles"])]


# --- the claims --------------------------------------------------------------------------
def measured_claims(root: Path, settings: list[Setting]) -> tuple[pd.DataFrame, list[str]]:
    """(claims.csv rows, the claims not measured yet and what they need)."""
    claims, missing = [], []
    for name, frames in complete_columns(settings):  # unfinished settings could still change their best lrs
        runs, epochs, summary = frames["runs"], frames["epochs"], frames["summary"]
        claims += literature.nielsen_lr_ratio(name, runs, epochs, summary)
        claims += literature.hui_belkin(name, runs, summary, frames["comparisons"])
        claims += literature.golik(name, runs, summary)
        claims += literature.glorot_plateaus(name, runs, epochs, summary)
    saturation = root / SATURATION / "saturation.csv"
    if saturation.is_file():
        claims += literature.glorot_saturation(SATURATION, pd.read_csv(saturation))
    sources = {claim.source for claim in claims}
    if literature.NIELSEN not in sources:
        missing.append("Nielsen (lr ratio), Hui & Belkin, Golik et al.: need a complete setting (make verdict).")
    if not any(claim.source == literature.GLOROT and claim.setting != SATURATION for claim in claims):
        missing.append("Glorot & Bengio (plateaus): needs the deep setting mnist_deep complete (make verdict_mnist_deep).")
    if not saturation.is_file():
        missing.append(f"Glorot & Bengio (saturation): needs {SATURATION}/saturation.csv (make verdict_saturation).")
    return claims_table(claims), missing


def claims_markdown(table: pd.DataFrame, missing: list[str]) -> str:
    parts = ["Each claim measured from the sweeps above ([claims.csv](claims.csv) has its source and criterion):", ""]
    if len(table):
        parts += [table[["setting", "text", "measurement", "verdict"]].rename(columns={"text": "claim"})
                  .to_markdown(index=False), ""]
    parts += [f"Not measured yet: {line}" for line in missing]
    return "\n".join(parts)


# --- the page ----------------------------------------------------------------------------
def plots_markdown(settings: list[Setting]) -> str:
    parts = []
    for setting in settings:
        for group_id in setting.groups():
            parts += [f"### {setting.label(group_id)}" + ("" if setting.complete else f" ({setting.status})"), "",
                      f"![paired differences]({setting.name}/analysis/comparison_{group_id}.png)", "",
                      f"![peak accuracy vs learning rate]({setting.name}/analysis/peak_vs_lr_{group_id}.png)", ""]
    return "\n".join(parts) if parts else "No setting has finished runs yet."


def generated(root: Path, settings: list[Setting], claims: pd.DataFrame, missing: list[str]) -> str:
    return "\n".join([
        "## The table", "",
        "Val-selected test accuracy (%, test accuracy at the epoch of best validation accuracy) of each pair at its "
        "best lr (chosen on validation), mean ± the 95% t-interval's half-width over its non-diverged seeds; rank: "
        "1 + the number of pairs better by a paired interval (matched seeds) entirely above 0, so equal ranks "
        "are ties. Each setting's comparison.md (`python -m lossbench analyze DIR`) has every paired difference.", "",
        verdict_table(settings), "",
        "## The verdict (computed from the complete settings)", "", *verdict_prose.verdict_text(complete_columns(settings)), "",
        "## Claims from the literature", "", claims_markdown(claims, missing), "",
        "## Plots", "", plots_markdown(settings),
        "## Where the numbers come from", "", settings_table(settings), ""])


def write_setting_plots(settings: list[Setting]) -> None:
    for setting in settings:
        if setting.finished:
            out = setting.directory / "analysis"
            out.mkdir(exist_ok=True)
            plots.write_plots(setting.summary, setting.runs, setting.epochs, out, setting.comparisons,
                                 setting.profiles)


def around(settings: list[Setting], name: str) -> str:
    """Per pair, a line 'pair [lower,best,upper]': its best lr and the swept lrs either side (for sweep.lrs=)."""
    chosen = [setting for setting in settings if setting.name == name]
    if not chosen:
        raise UserError(f"--around {name}: no such setting; the settings are: {', '.join(s.name for s in settings)}.")
    setting = chosen[0]
    if not setting.complete:
        raise UserError(f"--around {name}: the setting is {setting.status}; the best lrs come from a finished "
                        f"setting (make verdict_{name}).")
    lines = []
    for pair, cells in setting.summary.groupby("pair"):
        lrs = sorted(cells["lr"])
        best = lrs.index(cells.loc[cells["best_lr"], "lr"].iloc[0])
        lines.append(f"{pair} [{','.join(f'{lr:g}' for lr in lrs[max(0, best - 1):best + 2])}]")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lossbench verdict", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default="results/verdict", help="the verdict's results directory")
    parser.add_argument("--check", action="store_true", help="compare README.md and claims.csv instead of writing")
    parser.add_argument("--around", metavar="SETTING", help="print each pair's best lr with one grid step either side")
    parser.add_argument("--no-plots", action="store_true", help="leave the settings' plots as they are")
    args = parser.parse_args(argv)
    root = Path(args.root)
    settings = load_settings(root)
    if args.around:
        print(around(settings, args.around))
        return 0
    claims, missing = measured_claims(root, settings)
    readme_path, claims_path = root / "README.md", root / "claims.csv"
    readme = readme_path.read_text() if readme_path.exists() else (
        f"# The verdict: which output activation and cost?\n\n{START}\n{END}\n")
    updated = report.replace_table(readme, generated(root, settings, claims, missing), START, END)
    claims_csv = claims.to_csv(index=False)
    if args.check:
        stale = [path for path, text in [(readme_path, updated), (claims_path, claims_csv)]
                 if not path.exists() or path.read_text() != text]
        for path in stale:
            print(f"{path}: differs from what the CSVs give; run python -m lossbench verdict {root}")
        if not stale:
            print(f"{readme_path} and {claims_path} match the CSVs")
        return 1 if stale else 0
    if not args.no_plots:
        write_setting_plots(settings)
    readme_path.write_text(updated)
    claims_path.write_text(claims_csv)
    done = sum(setting.complete for setting in settings)
    print(f"wrote {readme_path} and {claims_path}: {done} of {len(settings)} settings complete, "
          f"{len(claims)} claims measured")
    return 0
