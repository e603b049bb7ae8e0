"""The verdict in prose: its paragraphs, every number computed from the settings' profiles and comparisons.

    python -m lossbench verdict results/verdict   # writes them into README.md's "The verdict"

A column is one complete setting's config group: (label, frames), where frames["profiles"] has a row
per pair (rank_val_selected, val_selected_mean, the lr band, speed and reliability; comparisons.profiles)
and frames["comparisons"] the paired differences (comparisons.paired_comparisons). lossbench/verdict.py
loads the settings and builds the page around these paragraphs.
"""

import pandas as pd

from lossbench import tables
from lossbench.choices import PAIR_PARTS

METRIC = "val_selected_test_acc"  # the verdict's accuracy: test accuracy at the epoch of best validation accuracy


def leaders(profiles: pd.DataFrame) -> list[str]:
    """The pairs ranked first on val-selected accuracy, best mean first."""
    first = profiles[profiles["rank_val_selected"] == 1].sort_values("val_selected_mean", ascending=False)
    return list(first["pair"])


def verdict_text(columns: list[tuple[str, dict]]) -> list[str]:
    """The verdict's paragraphs from the complete settings' (label, frames) columns."""
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
