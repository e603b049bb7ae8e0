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

from lossbench import comparisons, grid, literature, plots, provenance, report, statistics, tables
from lossbench.claims import claims_table
from lossbench.config import EXPERIMENTS_DIR
from lossbench.errors import UserError
from lossbench.choices import PAIR_PARTS
from lossbench.results import load

START = "<!-- lossbench verdict: start (python -m lossbench verdict results/verdict) -->"
END = "<!-- lossbench verdict: end -->"
PREFIX = "verdict_"  # experiments/verdict_NAME.yaml -> setting NAME
MATRIX = ["mnist_large", "mnist_default", "fashion_large", "fashion_default"]  # the issue's settings, 784-30-10
ORDER = MATRIX + [f"{name}_h100" for name in MATRIX] + ["mnist_deep"]
SATURATION = "hidden_saturation"  # ROOT/hidden_saturation/saturation.csv: `python -m lossbench study hidden_saturation`
METRIC = "val_selected_test_acc"


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


# --- the verdict in prose ------------------------------------------------------------
def leaders(profiles: pd.DataFrame) -> list[str]:
    """The pairs ranked first on val-selected accuracy, best mean first."""
    first = profiles[profiles["rank_val_selected"] == 1].sort_values("val_selected_mean", ascending=False)
    return list(first["pair"])


def complete_columns(settings: list[Setting]) -> list[tuple[str, dict]]:
    return [(setting.label(group_id), setting.frames[group_id]) for setting in settings if setting.complete
            for group_id in setting.groups() if len(setting.frames[group_id]["profiles"])]


def verdict_text(settings: list[Setting]) -> list[str]:
    columns = complete_columns(settings)
    if not columns:
        return ["No setting is complete yet, so there is no verdict; the table shows what has finished."]
    firsts = {pair: [name for name, frames in columns if pair in leaders(frames["profiles"])] for pair in PAIR_PARTS}
    by_rank = pd.concat([frames["profiles"].set_index("pair")[["rank_val_selected", "val_selected_mean"]]
                         for _, frames in columns]).groupby(level=0).mean()
    by_rank = by_rank.sort_values(["rank_val_selected", "val_selected_mean"], ascending=[True, False])
    everywhere = [pair for pair in by_rank.index if len(firsts[pair]) == len(columns)]
    ranks = ", ".join(f"{pair} {rank:.2f}" for pair, rank in by_rank["rank_val_selected"].items())
    settings_phrase = "the 1 complete setting" if len(columns) == 1 else f"all {len(columns)} complete settings"
    if everywhere:
        lead = (f"**Verdict.** {listing(everywhere)} rank{'s' * (len(everywhere) == 1)} first (alone or tied) on "
                f"val-selected test accuracy in {settings_phrase}. Mean rank over them: {ranks}.")
    else:
        lead = (f"**Verdict.** No pair ranks first in {settings_phrase}; mean rank over them: {ranks} "
                "(rank 1 = no pair shown better).")
    lines = [lead, ""]
    lines += [f"- **{name}**: {tables.ranking_takeaway(frames['profiles'], frames['comparisons'])}."
              for name, frames in columns]
    lines += ["", changes_text(columns), "", evidence_text(columns), "", robustness_text(columns)]
    return lines


def listing(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def changes_text(columns: list[tuple[str, dict]]) -> str:
    """Per pair, its first places over the complete settings (rank 1 on val-selected accuracy, alone or tied with
    another rank 1); then the settings grouped by their first-ranked pairs, in the page's order. Pairs are ordered
    by first places, then by those alone, then as in PAIR_PARTS; built from lists and dicts only, so that no set's order
    (string hashing changes it from process to process) shows."""
    firsts = {name: sorted(leaders(frames["profiles"])) for name, frames in columns}
    places = {pair: [name for name in firsts if pair in firsts[name]] for pair in PAIR_PARTS}
    alone = {pair: [name for name in places[pair] if len(firsts[name]) == 1] for pair in PAIR_PARTS}
    order = sorted(PAIR_PARTS, key=lambda pair: (-len(places[pair]), -len(alone[pair]), list(PAIR_PARTS).index(pair)))
    counts = [f"{pair} {len(places[pair])}" + (f" ({first_places(len(alone[pair]), len(places[pair]))})"
                                                if places[pair] else "") for pair in order]
    settings = "the 1 complete setting" if len(columns) == 1 else f"the {len(columns)} complete settings"
    text = f"**Where it changes.** First places over {settings}: {'; '.join(counts)}."
    tops = {}  # the first-ranked pairs -> the settings where they are first, in the page's order
    for name, pairs in firsts.items():
        tops.setdefault(tuple(pairs), []).append(name)
    if len(columns) == 1:
        return text + f" In {columns[0][0]}: {top_phrase(next(iter(tops)))}."
    if len(tops) == 1:
        return text + f" The top is the same in every complete setting: {top_phrase(next(iter(tops)))}."
    return text + " By setting: " + "; ".join(
        f"{top_phrase(pairs)} in {listing(names)}" for pairs, names in tops.items()) + "."


def first_places(alone: int, places: int) -> str:
    """'alone in 1, tied in 3'; 'tied in each' ('tied' for one place), 'alone in each' ('alone')."""
    if alone in (0, places):
        return ("alone" if alone else "tied") + (" in each" if places > 1 else "")
    return f"alone in {alone}, tied in {places - alone}"


def top_phrase(pairs: tuple) -> str:
    """'softmax_nll is first alone', 'sigmoid_mse and softmax_nll tie for first' (or, were every pair shown worse
    than another, which intervals allow in principle, 'no pair ranks first')."""
    if not pairs:
        return "no pair ranks first"
    return f"{pairs[0]} is first alone" if len(pairs) == 1 else f"{listing(list(pairs))} tie for first"


def evidence_text(columns: list[tuple[str, dict]]) -> str:
    """The strongest evidence (a leader's most certain advantage) and the weakest (the closest call at the top)."""
    rows = pd.concat([frames["comparisons"].assign(setting=name) for name, frames in columns])
    rows = rows[rows["metric"] == METRIC]
    if rows.empty:
        return "**Evidence.** No paired comparison could be made."
    firsts = {name: leaders(frames["profiles"]) for name, frames in columns}
    top = rows[[pair in firsts[name][:1] for name, pair in zip(rows["setting"], rows["pair"])]]
    strongest = top.sort_values(["p_holm", "ci_low"], ascending=[True, False]).iloc[0] if len(top) else None
    # the closest call: of each setting's two best pairs by mean (its first comparison), the least certain order
    weakest = rows.groupby("setting", sort=False).head(1).sort_values("p_value", ascending=False).iloc[0]
    text = "**Evidence.** "
    if strongest is not None:
        text += (f"Strongest: {strongest['pair']} over {strongest['other']} in {strongest['setting']}, "
                 f"{describe(strongest)}. ")
    return text + (f"Weakest: the order of the top two in {weakest['setting']}, {weakest['pair']} over "
                   f"{weakest['other']}, {describe(weakest)}"
                   + (": a tie." if weakest["ci_low"] <= 0 <= weakest["ci_high"] else "."))


def describe(row: pd.Series) -> str:
    return (f"{100 * row['mean_diff']:+.2f} points [{100 * row['ci_low']:+.2f}, {100 * row['ci_high']:+.2f}] "
            f"over {row['n']} seeds (p_Holm = {tables.number(row['p_holm'], '.2g')})")


def robustness_text(columns: list[tuple[str, dict]]) -> str:
    """Robustness, speed and reliability, the widest / fastest / least reliable pair per complete setting, at the
    levels of its data set (ranking.csv's good_level and learned_level); in words where no run reaches a level."""
    parts = []
    for name, frames in columns:
        p = frames["profiles"]
        widest = p[p["robustness"] == p["robustness"].max()]
        good, learned = p["good_level"].iloc[0], p["learned_level"].iloc[0]
        reaching = p[p["reach_good_n"] > 0]
        fast = reaching.assign(share=reaching["reach_good_n"] / reaching["n"]).sort_values(
            ["share", "reach_good_epochs_mean"], ascending=[False, True])  # most runs reaching it, then soonest
        failing = p[p["unreliable"] > 0].sort_values("unreliable", ascending=False)
        part = f"{name}: widest lr band " + listing([f"{row.pair} ({row.band_lr_low:g}-{row.band_lr_high:g})"
                                                     for row in widest.itertuples()]) + f", x{widest['robustness'].iloc[0]:.3g}"
        if len(fast):
            first = fast.iloc[0]
            part += (f"; first to {good:.0%} {first['pair']} (mean epoch {first['reach_good_epochs_mean']:.1f}, "
                     f"{first['reach_good_n']} of {first['n']} runs)")
        else:
            part += f"; no run reaches {good:.0%} at its pair's best lr"
        part += f"; stuck (peak below {learned:.0%}) or diverged in the band: " + (", ".join(
            f"{row.pair} {row.band_stuck + row.band_diverged}/{row.band_runs}" for row in failing.itertuples())
                                                        if len(failing) else "none")
        parts.append(part)
    return ("**Robustness, speed, reliability** (lr band: lrs within 1 point of the pair's best mean peak; "
            "speed at the best lr; accuracy levels: the setting's data set's): " + "; ".join(parts) + ".")


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
        "## The verdict (computed from the complete settings)", "", *verdict_text(settings), "",
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
