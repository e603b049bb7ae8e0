"""The gradient per hidden layer at initialization (Nielsen ch. 5, "The vanishing gradient problem"), over seeds.

    python -m lossbench study nielsen_ch5_gradients --out outputs/study/nielsen_ch5_gradients

|dC/db^l| per layer of network2's default initialization, for the gradient of the mean cost over
the first 1,000 training images, as the book's fig/generate_gradient.py computes it, over many
seeds: the book printed one network's. Writes gradient_norms.csv, summary.csv / .md and
gradient_norms.png; where the book's numbers fall among the seeds becomes claims (lossbench.claims).
"""

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from omegaconf import MISSING
from scipy import stats

from lossbench.choices import Init
from lossbench.claims import Claim, measured
from lossbench.data import N_CLASSES, load_split
from lossbench.ensemble import init_params
from lossbench.errors import UserError
from lossbench.pairs import get_pair

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class GradientStudy:
    name: str = MISSING
    chapter: int = MISSING
    section: str = MISSING
    book_values: List[float] = MISSING  # |dC/db^l| per hidden layer, for the book's one network
    setting: str = ""


@dataclass
class GradientSettings:
    command: str = "study"
    study: GradientStudy = field(default_factory=GradientStudy)
    sizes: List[int] = MISSING
    init: Init = MISSING
    pair: str = MISSING
    dataset: str = MISSING
    images: int = MISSING  # the first `images` training images
    seeds: int = MISSING  # seeds 0..seeds-1


def bias_gradient_norms(params: list[tuple[torch.Tensor, torch.Tensor]], pair_name: str, x: torch.Tensor,
                        y: torch.Tensor) -> np.ndarray:
    """|dC/db^l| for every layer l (hidden layers sigmoid), C the mean per-example cost over the rows of x.

    dC/db^l = mean_x delta^l_x (ch. 2 BP3), which is what generate_gradient.py averages.
    """
    biases = [b.detach().clone().requires_grad_() for _, b in params]
    a = x
    for l, (w, _) in enumerate(params):
        z = a @ w + biases[l]  # ch. 2 eq. 25, with rows as examples
        a = torch.sigmoid(z)
    cost = get_pair(pair_name).per_example_cost(z, y).mean()
    return np.array([g.norm().item() for g in torch.autograd.grad(cost, biases)])


def run(cfg: GradientSettings, out: Path, data_root: Optional[str] = None, **_) -> list[Claim]:
    """|dC/db| per layer for every seed; write the CSVs, the summary and the histogram; the book's claims."""
    sizes, book = list(cfg.sizes), list(cfg.study.book_values)
    if len(sizes) < 3 or min(sizes) < 1:
        raise UserError(f"nielsen_ch5_gradients: sizes={sizes} needs at least one hidden layer, all widths >= 1.")
    if cfg.seeds < 1:
        raise UserError(f"nielsen_ch5_gradients: seeds={cfg.seeds}; give a number of seeds >= 1 (seeds 0..N-1).")
    if len(book) > len(sizes) - 2:
        raise UserError(f"nielsen_ch5_gradients: {len(book)} book values for {len(sizes) - 2} hidden layers.")
    get_pair(cfg.pair)
    split = load_split(cfg.dataset, data_root, train_size=cfg.images)
    x, labels = split.train_x.double(), split.train_y
    if x.shape[1] != sizes[0] or sizes[-1] != N_CLASSES:
        raise UserError(f"nielsen_ch5_gradients: sizes={sizes} does not fit {cfg.dataset}: the first size must be "
                        f"its {x.shape[1]} inputs and the last its {N_CLASSES} classes.")
    y = torch.nn.functional.one_hot(labels, sizes[-1]).to(torch.float64)
    layers = [f"grad_b{l}" for l in range(1, len(sizes))]  # the ensemble's metric names: 1 = first hidden layer
    norms = pd.DataFrame([bias_gradient_norms(init_params(seed, tuple(sizes), cfg.init.value), cfg.pair, x, y)
                          for seed in range(cfg.seeds)], columns=layers)
    norms.insert(0, "seed", range(cfg.seeds))
    norms.to_csv(out / "gradient_norms.csv", index=False)

    hidden = layers[:len(sizes) - 2]
    summary = norms[hidden].describe(percentiles=list(QUANTILES)).T.drop(columns="count")
    summary.insert(0, "book", pd.Series(book, index=hidden[:len(book)]))
    summary["book_percentile"] = [stats.percentileofscore(norms[c], v) if not math.isnan(v) else math.nan
                                  for c, v in zip(hidden, summary.book)]
    summary.index.name = "layer"
    summary.to_csv(out / "summary.csv")
    (out / "summary.md").write_text(gradient_summary_markdown(summary, cfg))
    plot_gradient_norms(norms[hidden], book, cfg, out / "gradient_norms.png")
    return gradient_claims(norms[hidden], summary, cfg)


def gradient_summary_markdown(summary: pd.DataFrame, cfg: GradientSettings) -> str:
    return (f"|dC/db| per hidden layer at initialization: {cfg.sizes}, {cfg.init.value} init, {cfg.pair}, "
            f"mean over the first {cfg.images} training images, {cfg.seeds} seeds.\n\n"
            + summary.to_markdown(floatfmt=".4g") + "\n")  # pandas, with the tabulate package


def plot_gradient_norms(norms: pd.DataFrame, book: list[float], cfg: GradientSettings, path: Path) -> None:
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    bins = np.geomspace(norms.min().min() / 1.1, norms.max().max() * 1.1, 40)
    for l, column in enumerate(norms.columns):
        ax.hist(norms[column], bins=bins, color=f"C{l}", alpha=0.5, label=f"hidden layer {l + 1} ({cfg.seeds} seeds)")
        if l < len(book):
            ax.axvline(book[l], color=f"C{l}", ls="--", lw=2, label=f"book, layer {l + 1}: {book[l]:g}")
    ax.set(xscale="log", xlabel="|dC/db| for the hidden layer (log scale)", ylabel="number of seeds",
           title=f"Speed of learning per hidden layer at initialization (Nielsen ch. 5)\n{cfg.sizes}, "
                 f"{cfg.init.value} init, {cfg.pair}, gradient of the mean cost over the first {cfg.images} images")
    ax.legend(fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=110)


def gradient_claims(norms: pd.DataFrame, summary: pd.DataFrame, cfg: GradientSettings) -> list[Claim]:
    claim = functools.partial(measured, source=f"Nielsen, ch. {cfg.study.chapter}, '{cfg.study.section}'")
    claims = []
    for layer, row in summary.iterrows():
        if math.isnan(row.book):
            continue
        claims.append(claim(f"{layer}: |dC/db| of the book's one network", f"{row.book:g}",
                            f"median {row['50%']:.4f}, 90% of seeds in [{row['5%']:.4f}, {row['95%']:.4f}]; "
                            f"the book's value is at percentile {row.book_percentile:.0f}",
                            bool(row["5%"] <= row.book <= row["95%"]),
                            "the book's value is within the central 90% of seeds"))
    increasing = (norms.diff(axis=1).iloc[:, 1:] > 0).all(axis=1).mean()
    ratios = (norms.iloc[:, 1:].to_numpy() / norms.iloc[:, :-1].to_numpy())
    book = list(cfg.study.book_values)
    book_ratios = ", ".join(f"{b / a:.1f}" for a, b in zip(book, book[1:]))
    claims.append(claim("earlier hidden layers learn much slower than later ones (|dC/db| grows with the layer)",
                        f"ratios {book_ratios}", f"increasing in {increasing:.0%} of seeds; median ratios "
                        + ", ".join(f"{r:.1f}" for r in np.median(ratios, axis=0)), increasing >= 0.9,
                        "strictly increasing from layer to layer in at least 90% of seeds"))
    return claims
