"""Hidden-layer saturation during training (Glorot & Bengio 2010, fig. 2), for the verdict's claims.

    python -m lossbench study hidden_saturation --best-lrs-from results/verdict/mnist_deep --out results/verdict/hidden_saturation

epochs.csv records the saturation of the output layer only (test_saturated); Glorot & Bengio's claim
is about the hidden layers: "the top hidden layer quickly saturates" (at 0) in a deep sigmoid network,
and desaturates slowly. This study trains experiments/hidden_saturation.yaml's networks with the
sweep's trainer (lossbench.ensemble: the same numbers a sweep gives for the same pair, lr and seed)
and after every epoch (and at initialization) measures, on the first `images` test images as the
paper did on 300 fixed test examples, per hidden layer l and model:

  mean_activation, std_activation   of a^l = sigma(z^l) over those images and the layer's units
  saturated                         share of (image, unit) with sigma'(z^l) < ensemble_core.SATURATED (0.01),
                                    i.e. |z| > 4.6, a^l below 0.01 or above 0.99

into saturation.csv (pair, lr, seed, epoch, layer, ..., test_acc) and saturation.png. The verdict
(`python -m lossbench verdict`) reads saturation.csv to decide the claim (lossbench.literature).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from omegaconf import MISSING

from lossbench import verdict
from lossbench.data import load_split
from lossbench.choices import Init
from lossbench.ensemble import Ensemble, RunSpec, TrainConfig
from lossbench.ensemble_core import SATURATED
from lossbench.errors import UserError
from lossbench.pairs import PAIRS, sigmoid_prime

SATURATION_COLUMNS = ["pair", "lr", "seed", "epoch", "layer", "mean_activation", "std_activation", "saturated", "test_acc"]


@dataclass
class PairRun:
    pair: str = MISSING
    lr: float = MISSING


@dataclass
class SaturationStudy:
    name: str = MISSING
    source: str = MISSING
    setting: str = ""


@dataclass
class SaturationSettings:
    command: str = "study"
    study: SaturationStudy = field(default_factory=SaturationStudy)
    sizes: List[int] = MISSING
    init: Init = MISSING
    dataset: str = MISSING
    runs: List[PairRun] = MISSING  # one lr per pair: its best lr of the deep sweep (verdict --around mnist_deep)
    seeds: int = MISSING  # seeds 0..seeds-1
    epochs: int = MISSING
    images: int = MISSING  # the first `images` test images
    batch_size: int = 10
    train_size: Optional[int] = None  # None: all 50,000 training images; fewer for a quick look


def layer_statistics(params: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> np.ndarray:
    """[M, hidden layers, 3]: mean and std of a^l and the share of saturated units, for params as
    Ensemble.params() gives them (W [M, n_in, n_out], b [M, 1, n_out]) and images x [I, n_in]."""
    a = x.expand(params[0][0].shape[0], -1, -1)  # [M, I, n_in]: every model sees the same images
    layers = []
    for w, b in params[:-1]:  # the hidden layers: sigmoid (ch. 1 eq. 22)
        z = torch.baddbmm(b, a, w)
        a = torch.sigmoid(z)
        layers.append(torch.stack([a.mean((1, 2)), a.std((1, 2)),
                                   (sigmoid_prime(z) < SATURATED).float().mean((1, 2))], dim=-1))
    return torch.stack(layers, dim=1).double().numpy()


def rows(specs: list[RunSpec], epoch: int, statistics: np.ndarray, test_acc: np.ndarray) -> list[dict]:
    return [{"pair": spec.pair, "lr": spec.lr, "seed": spec.seed, "epoch": epoch, "layer": layer + 1,
             "mean_activation": values[0], "std_activation": values[1], "saturated": values[2], "test_acc": acc}
            for spec, per_layer, acc in zip(specs, statistics, test_acc) for layer, values in enumerate(per_layer)]


def runs_at_best_lrs(directory: Path) -> list[PairRun]:
    """Each pair at its best lr in the finished verdict setting `directory` (e.g. results/verdict/mnist_deep)."""
    setting = verdict.load_setting(directory.parent, directory.name)
    if not setting.complete:
        raise UserError(f"--best-lrs-from {directory}: the sweep there is {setting.status}; its best lrs can still "
                        "change, so finish it first (make verdict_mnist_deep).")
    best = setting.summary[setting.summary["best_lr"]]
    return [PairRun(pair, lr) for pair, lr in zip(best["pair"], best["lr"])]


def check_settings(cfg: SaturationSettings) -> None:
    if len(cfg.sizes) < 3:
        raise UserError(f"hidden_saturation: sizes={list(cfg.sizes)} has no hidden layer to measure.")
    unknown = sorted({run.pair for run in cfg.runs} - set(PAIRS))
    if unknown:
        raise UserError(f"hidden_saturation: pair(s) {', '.join(unknown)} unknown; the pairs are: {', '.join(PAIRS)}.")
    if min(cfg.seeds, cfg.epochs, cfg.images) < 1 or min(run.lr for run in cfg.runs) <= 0:
        raise UserError(f"hidden_saturation: seeds={cfg.seeds}, epochs={cfg.epochs}, images={cfg.images} must be "
                        "at least 1 and every lr positive.")


def run(cfg: SaturationSettings, out: Path, data_root: Optional[str] = None, **_) -> list:
    """Train the runs, measure the hidden layers after every epoch; write saturation.csv and .png."""
    check_settings(cfg)
    split = load_split(cfg.dataset, data_root, train_size=cfg.train_size)
    specs = [RunSpec(run.pair, run.lr, seed) for run in cfg.runs for seed in range(cfg.seeds)]
    train_cfg = TrainConfig(sizes=tuple(cfg.sizes), init=cfg.init.value, batch_size=cfg.batch_size)
    ensemble = Ensemble(specs, train_cfg, split)
    images = split.test_x[:cfg.images]
    table = rows(specs, 0, layer_statistics(ensemble.params(), images), ensemble.evaluate()["test_acc"])
    for epoch in range(1, cfg.epochs + 1):
        metrics = ensemble.train_epoch()
        table += rows(specs, epoch, layer_statistics(ensemble.params(), images), metrics["test_acc"])
        print(f"epoch {epoch}/{cfg.epochs}", flush=True)
    frame = pd.DataFrame(table, columns=SATURATION_COLUMNS)
    frame.to_csv(out / "saturation.csv", index=False)
    plot(frame, cfg).savefig(out / "saturation.png", dpi=110)
    return []  # the claim is decided by the verdict, from saturation.csv (lossbench.literature)


def plot(frame: pd.DataFrame, cfg: SaturationSettings) -> Figure:
    """Per pair (column): mean activation and saturated share per hidden layer vs epoch; median over seeds, IQR band."""
    pairs = list(dict.fromkeys(frame["pair"]))
    figure = Figure(figsize=(4.2 * len(pairs), 6.5), layout="constrained")
    figure.suptitle(f"Hidden layers during training: {cfg.sizes}, {cfg.init.value} init, {cfg.dataset}, "
                    f"first {cfg.images} test images, {cfg.seeds} seeds (median, band: quartiles)", fontsize=11)
    axes = figure.subplots(2, len(pairs), sharex=True, sharey="row", squeeze=False)
    for column, pair in enumerate(pairs):
        part = frame[frame["pair"] == pair]
        for layer, curve in part.groupby("layer"):
            for row, value in enumerate(["mean_activation", "saturated"]):
                quartiles = curve.groupby("epoch")[value].quantile([0.25, 0.5, 0.75]).unstack()
                ax = axes[row][column]
                ax.plot(quartiles.index, quartiles[0.5], color=f"C{layer - 1}", label=f"hidden layer {layer}")
                ax.fill_between(quartiles.index, quartiles[0.25], quartiles[0.75], color=f"C{layer - 1}", alpha=0.2)
        axes[0][column].set_title(f"{pair}, η={part['lr'].iloc[0]:g}", fontsize=10)
        axes[1][column].set_xlabel("epoch (0 = at initialization)")
    axes[0][0].set_ylabel("mean activation a = σ(z)")
    axes[1][0].set_ylabel("share saturated (σ'(z) < 0.01)")
    axes[0][0].legend(fontsize=8)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    return figure
