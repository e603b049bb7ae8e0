"""Studies that are not sweeps: one sigmoid neuron learning (ch. 3), the gradient per layer at initialization (ch. 5);
hidden-layer saturation during training (lossbench/hidden_saturation.py, for the verdict's claims).

    python -m lossbench study toy_neuron --out outputs/study/toy_neuron

Each study reads its settings from experiments/NAME.yaml (`command: study`, so the
sweep skips the file), writes CSVs and a PNG to --out, and prints each of the book's
claims beside our measurement, with the criterion that decides whether it holds.

toy_neuron (ch. 3, "The cross-entropy cost function"): a neuron z = w x + b, a = sigma(z),
learns to map x = 1 to y = 0 by gradient descent on one example. The cost is the pair's
custom Function with K = 1 and the gradient comes from autograd through it, so the
hand-derived delta of lossbench.pairs drives the neuron. The book's cross-entropy figures
come from widgets (nnadl_site js/saturation3.js, saturation4.js) that step along
dC/da = 1/(1 - a) rather than dC/dz = a - y; `update: dC_da` replays that rule.

nielsen_ch5_gradients (ch. 5, "The vanishing gradient problem"): |dC/db^l| per layer of
network2's default initialization, for the gradient of the mean cost over the first 1,000
training images, as the book's fig/generate_gradient.py computes it, over many seeds.
"""

import argparse
import math
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import pandas as pd
import torch
import yaml
from matplotlib.figure import Figure
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from scipy import stats

from lossbench import provenance
from lossbench.config import EXPERIMENTS_DIR
from lossbench.data import N_CLASSES, load_split
from lossbench.ensemble import INITS, init_params
from lossbench.errors import UserError
from lossbench.hidden_saturation import SaturationSettings, hidden_saturation, runs_at_best_lrs
from lossbench.pairs import PAIRS, get_pair, sigmoid_prime

MOVE = 0.1  # the neuron "moves" once its output is 0.1 below where it started: a visible change on the widget
WIDGET_PX_PER_COST = {"sigmoid_mse": 240, "sigmoid_ce": 30}  # the widgets' vertical scale (`scaling`), px per cost unit
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


# --- settings (experiments/NAME.yaml) ------------------------------------------
class Update(Enum):
    gradient = "gradient"  # w <- w - eta dC/dw, the gradient through the pair's Function
    dC_da = "dC_da"  # w <- w - eta (dC/da) x: what the book's cross-entropy widgets do


@dataclass
class NeuronRun:
    pair: str = MISSING
    lr: float = MISSING
    update: Update = Update.gradient


@dataclass
class ToyBookValues:
    starts: List[List[float]] = MISSING  # the book's two starts (w0, b0): generic, then badly wrong
    start_output: List[float] = MISSING  # the initial output from each start, as the book prints it
    quadratic_lr: float = MISSING
    cross_entropy_lr: float = MISSING
    quadratic_final_output: float = MISSING  # from starts[0]: "an output from the neuron of about 0.09"
    quadratic_stall_epochs: int = MISSING  # from starts[1]: "for the first 150 or so learning epochs ..."


@dataclass
class ToyStudy:
    name: str = MISSING
    chapter: int = MISSING
    section: str = MISSING
    book_values: ToyBookValues = field(default_factory=ToyBookValues)
    setting: str = ""


@dataclass
class ToyNeuronSettings:
    command: str = "study"
    study: ToyStudy = field(default_factory=ToyStudy)
    input: float = MISSING
    target: float = MISSING
    starts: List[List[float]] = MISSING  # (w0, b0) per start; the book's are (0.6, 0.9) and (2.0, 2.0)
    runs: List[NeuronRun] = MISSING
    epochs: int = MISSING


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
    init: str = MISSING
    pair: str = MISSING
    dataset: str = MISSING
    images: int = MISSING  # the first `images` training images
    seeds: int = MISSING  # seeds 0..seeds-1


@dataclass
class Claim:
    """One statement of the book, our measurement of it, and whether it holds by `criterion`."""

    claim: str
    book: str
    measured: str
    holds: bool
    criterion: str


# --- toy_neuron ------------------------------------------------------------
def train_neuron(pair_name: str, w0: float, b0: float, lr: float, epochs: int, update: Update,
                 x: float = 1.0, y: float = 0.0) -> pd.DataFrame:
    """One neuron's (epoch, w, b, activation, cost) for epochs 0..epochs; epoch e is after e steps.

    The cost is C = pair.per_example_cost(z, y) for one example with K = 1 (ch. 3 eq. 54
    quadratic, eq. 57 cross-entropy) and dC/dw, dC/db come from autograd, which calls the
    Function's hand-written backward: (a - y) sigma'(z) x and a - y times x (eqs. 55-56, 61-62).
    """
    pair = get_pair(pair_name)
    w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    target = torch.full((1, 1), y, dtype=torch.float64)
    rows = []
    for epoch in range(epochs + 1):
        z = (w * x + b).reshape(1, 1)  # one example, one output unit
        cost = pair.per_example_cost(z, target).sum()
        rows.append((epoch, w.item(), b.item(), pair.activate(z).item(), cost.item()))
        if epoch == epochs:
            break
        grad_w, grad_b = torch.autograd.grad(cost, (w, b))
        # dC_da: scaling dC/dz by 1/sigma'(z) turns it into dC/da, the widgets' step (1/(1 - a) for the CE)
        step = lr if update is Update.gradient else lr / sigmoid_prime(z.detach()).item()
        with torch.no_grad():
            w -= step * grad_w
            b -= step * grad_b
    return pd.DataFrame(rows, columns=["epoch", "w", "b", "activation", "cost"])


def run_name(run: NeuronRun, w0: float, b0: float) -> str:
    return f"{run.pair}_lr{run.lr:g}_{run.update.value}_w{w0:g}_b{b0:g}"


def run_label(run: NeuronRun) -> str:
    cost = PAIRS[run.pair].cost.replace("_", "-")
    return f"{cost}, eta={run.lr:g}" + (" (book widget: dC/da)" if run.update is Update.dC_da else "")


def toy_neuron(cfg: ToyNeuronSettings, out: Path, **_) -> list[Claim]:
    for run in cfg.runs:
        if get_pair(run.pair).activation != "sigmoid":
            raise UserError(f"toy_neuron: pair {run.pair!r} is not a sigmoid neuron; use one of: "
                            f"{', '.join(n for n, p in PAIRS.items() if p.activation == 'sigmoid')}.")
        if not (math.isfinite(run.lr) and run.lr > 0):
            raise UserError(f"toy_neuron: learning rate {run.lr} of {run.pair} is not a finite positive number.")
    if cfg.epochs < 1 or any(len(s) != 2 for s in cfg.starts):
        raise UserError("toy_neuron: epochs must be >= 1 and each start a pair [w0, b0].")
    traces = []
    for w0, b0 in cfg.starts:
        for run in cfg.runs:
            trace = train_neuron(run.pair, w0, b0, run.lr, cfg.epochs, run.update, cfg.input, cfg.target)
            traces.append(trace.assign(run=run_name(run, w0, b0), pair=run.pair, update=run.update.value,
                                       w0=w0, b0=b0, lr=run.lr))
    df = pd.concat(traces, ignore_index=True)
    df = df[["run", "pair", "update", "w0", "b0", "lr", "epoch", "w", "b", "activation", "cost"]]
    df.to_csv(out / "toy_neuron.csv", index=False)
    plot_neuron(df, cfg, out / "toy_neuron.png")
    return toy_claims(df, cfg)


def plot_neuron(df: pd.DataFrame, cfg: ToyNeuronSettings, path: Path) -> None:
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    axes = fig.subplots(2, len(cfg.starts), sharex=True, squeeze=False)
    for col, (w0, b0) in enumerate(cfg.starts):
        for i, run in enumerate(cfg.runs):
            t = df[df.run == run_name(run, w0, b0)]
            style = dict(color=f"C{i}", ls="--" if run.update is Update.dC_da else "-")
            axes[0, col].plot(t.epoch, t.cost, label=run_label(run), **style)
            axes[1, col].plot(t.epoch, t.activation, **style)
        axes[0, col].set(title=f"start w = {w0:g}, b = {b0:g}", yscale="log", ylabel="cost C (log scale)")
        axes[1, col].set(xlabel="epoch (one step on the single example)", ylabel="output a = sigma(w x + b)",
                         ylim=(0, 1))
        for ax in axes[:, col]:
            ax.grid(True, alpha=0.3)
    axes[0, 0].legend(loc="lower left", fontsize=9)
    fig.suptitle(f"One sigmoid neuron learning input {cfg.input:g} -> target {cfg.target:g} "
                 f"(Nielsen ch. 3): quadratic vs cross-entropy cost")
    fig.savefig(path, dpi=110)


def epochs_to_move(trace: pd.DataFrame) -> float:
    """The first epoch at which the output is MOVE below its start (NaN if never)."""
    moved = trace.epoch[trace.activation <= trace.activation.iloc[0] - MOVE]
    return float(moved.iloc[0]) if len(moved) else math.nan


def toy_claims(df: pd.DataFrame, cfg: ToyNeuronSettings) -> list[Claim]:
    """The book's statements about its four runs (ch. 3), measured; those whose run is not in `df` are left out."""
    book = cfg.study.book_values
    if len(book.starts) != 2 or len(book.start_output) != 2:
        raise UserError("toy_neuron: study.book_values needs the book's two starts and their two initial outputs.")
    (w_a, b_a), (w_b, b_b) = book.starts
    q, ce, last = ("sigmoid_mse", book.quadratic_lr), ("sigmoid_ce", book.cross_entropy_lr), cfg.epochs

    def trace(run: tuple[str, float], start: tuple[float, float], update: Update = Update.gradient):
        t = df[df.run == run_name(NeuronRun(*run, update), *start)]
        return t.reset_index(drop=True) if len(t) else None

    def at(t: pd.DataFrame, epoch: int, column: str = "activation") -> float:
        return float(t[column].iloc[epoch])

    claims = []
    for (w0, b0), printed in zip(book.starts, book.start_output):
        if (t := trace(q, (w0, b0))) is None:
            continue
        a0 = at(t, 0)
        claims.append(Claim(f"start ({w0:g}, {b0:g}): initial output", f"{printed:.2f}", f"{a0:.4f}",
                            round(a0, 2) == printed, "equal to 2 decimals (the widget prints 2)"))
    if (t := trace(q, (w_a, b_a))) is not None:
        claims.append(Claim(f"quadratic, eta={q[1]:g}, from ({w_a:g}, {b_a:g}): the neuron rapidly learns "
                            f"and ends with an output of about", f"{book.quadratic_final_output:.2f}",
                            f"{at(t, last):.4f} at epoch {last} (moved {MOVE:g} by epoch {epochs_to_move(t):.0f})",
                            round(at(t, last), 2) == book.quadratic_final_output, "equal to 2 decimals"))
    if (t := trace(q, (w_b, b_b))) is not None:
        stall, n = epochs_to_move(t), book.quadratic_stall_epochs
        moved_w, total_w = at(t, 0, "w") - at(t, n, "w"), at(t, 0, "w") - at(t, last, "w")
        claims.append(Claim(f"quadratic, eta={q[1]:g}, from ({w_b:g}, {b_b:g}): learning starts out much more slowly; "
                            f"for the first {n} or so epochs nothing much changes", f"~{n} epochs",
                            f"the output is first {MOVE:g} below its start at epoch {stall:.0f} "
                            f"(a = {at(t, n):.3f} at epoch {n})",
                            abs(stall - n) <= n / 3, f"the output moves {MOVE:g} at epoch {n} +- {n / 3:.0f}"))
        claims.append(Claim(f"quadratic from ({w_b:g}, {b_b:g}): \"the weights and biases don't change much at all\" "
                            f"in those {n} epochs", "w, b about constant",
                            f"w (and b) moved {moved_w:.2f} by epoch {n}, {moved_w / total_w:.0%} of their change "
                            f"by epoch {last} ({total_w:.2f})", moved_w < 0.1 * total_w,
                            f"less than 10% of the {last}-epoch change happens in the first {n} epochs"))
        claims.append(Claim(f"quadratic from ({w_b:g}, {b_b:g}): then learning kicks in and the output rapidly "
                            "moves closer to 0", "moves to near 0", f"a = {at(t, last):.3f} at epoch {last}",
                            at(t, last) < 0.5, f"output below 0.5 by epoch {last}"))
    book_says = {(w_a, b_a): "\"the neuron learns perfectly well in this instance, just as it did earlier\"",
                 (w_b, b_b): "\"Success! This time the neuron learned quickly\""}
    for start in ((w_a, b_a), (w_b, b_b)):
        tq = trace(q, start)
        for update in Update:
            if (t := trace(ce, start, update)) is None or tq is None:
                continue
            how = "gradient" if update is Update.gradient else "the book widget's dC/da step"
            claims.append(Claim(f"cross-entropy, eta={ce[1]:g}, from ({start[0]:g}, {start[1]:g}), {how}: "
                                f"{book_says[start]}", "learns quickly",
                                f"a = {at(t, last):.3f} at epoch {last}; moved {MOVE:g} by epoch "
                                f"{epochs_to_move(t):.0f} (quadratic: {epochs_to_move(tq):.0f})",
                                at(t, last) <= at(tq, last),
                                f"ends at epoch {last} at or below the quadratic run's output"))
    tq, tce = trace(q, (w_b, b_b)), trace(ce, (w_b, b_b))
    if tq is not None and tce is not None:
        k = 10  # the opening epochs, where the quadratic curve is flat
        slope = {name: (at(t, 0, "cost") - at(t, k, "cost")) / k * WIDGET_PX_PER_COST[name]
                 for name, t in (("sigmoid_mse", tq), ("sigmoid_ce", tce))}
        claims.append(Claim(f"from ({w_b:g}, {b_b:g}): the cross-entropy (gradient) cost curve is much steeper "
                            "initially than the quadratic's flat start", "much steeper",
                            f"{slope['sigmoid_ce']:.3f} vs {slope['sigmoid_mse']:.3f} px/epoch on the widgets' "
                            f"scales over epochs 0-{k} (x{slope['sigmoid_ce'] / slope['sigmoid_mse']:.0f})",
                            slope["sigmoid_ce"] > 2 * slope["sigmoid_mse"], "more than twice the quadratic's slope"))
        # "when we use the quadratic cost learning is slower when the neuron is unambiguously wrong than it
        # is later on ... while with the cross-entropy learning is faster": the speed is |dw| per epoch
        speed = {name: t.w.diff().abs().iloc[1:] for name, t in (("q", tq), ("ce", tce))}
        first = {name: steps.iloc[0] / steps.max() for name, steps in speed.items()}
        claims.append(Claim(f"from ({w_b:g}, {b_b:g}): the speed of learning |dw|/epoch is lower while the neuron "
                            "is badly wrong than later for the quadratic, higher for the cross-entropy (gradient)",
                            "slower first (quadratic), faster first (cross-entropy)",
                            f"first step / largest step: {first['q']:.2f} (quadratic), {first['ce']:.2f} "
                            "(cross-entropy)", first["q"] < 0.5 and first["ce"] == 1.0,
                            "the quadratic's first step is under half its largest; the cross-entropy's is its largest"))
        drop = {name: at(t, 0) - at(t, 50) for name, t in (("q", tq), ("ce", tce))}
        claims.append(Claim(f"from ({w_b:g}, {b_b:g}): cross-entropy (gradient) learns faster at first",
                            "faster at first", f"output drop over epochs 0-50: {drop['ce']:.4f} (cross-entropy) "
                            f"vs {drop['q']:.4f} (quadratic)", drop["ce"] > drop["q"],
                            "larger output drop over the first 50 epochs"))
    return claims


# --- nielsen_ch5_gradients ---------------------------------------------------
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


def nielsen_ch5_gradients(cfg: GradientSettings, out: Path, data_root: Optional[str] = None, **_) -> list[Claim]:
    sizes, book = list(cfg.sizes), list(cfg.study.book_values)
    if cfg.init not in INITS:
        raise UserError(f"nielsen_ch5_gradients: init {cfg.init!r} is not one of: {', '.join(INITS)}.")
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
    norms = pd.DataFrame([bias_gradient_norms(init_params(seed, tuple(sizes), cfg.init), cfg.pair, x, y)
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
    (out / "summary.md").write_text(summary_markdown(summary, cfg))
    plot_gradients(norms[hidden], book, cfg, out / "gradient_norms.png")
    return gradient_claims(norms[hidden], summary, cfg)


def summary_markdown(summary: pd.DataFrame, cfg: GradientSettings) -> str:
    return (f"|dC/db| per hidden layer at initialization: {cfg.sizes}, {cfg.init} init, {cfg.pair}, "
            f"mean over the first {cfg.images} training images, {cfg.seeds} seeds.\n\n"
            + summary.to_markdown(floatfmt=".4g") + "\n")  # pandas, with the tabulate package


def plot_gradients(norms: pd.DataFrame, book: list[float], cfg: GradientSettings, path: Path) -> None:
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    bins = np.geomspace(norms.min().min() / 1.1, norms.max().max() * 1.1, 40)
    for l, column in enumerate(norms.columns):
        ax.hist(norms[column], bins=bins, color=f"C{l}", alpha=0.5, label=f"hidden layer {l + 1} ({cfg.seeds} seeds)")
        if l < len(book):
            ax.axvline(book[l], color=f"C{l}", ls="--", lw=2, label=f"book, layer {l + 1}: {book[l]:g}")
    ax.set(xscale="log", xlabel="|dC/db| for the hidden layer (log scale)", ylabel="number of seeds",
           title=f"Speed of learning per hidden layer at initialization (Nielsen ch. 5)\n{cfg.sizes}, "
                 f"{cfg.init} init, {cfg.pair}, gradient of the mean cost over the first {cfg.images} images")
    ax.legend(fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=110)


def gradient_claims(norms: pd.DataFrame, summary: pd.DataFrame, cfg: GradientSettings) -> list[Claim]:
    claims = []
    for layer, row in summary.iterrows():
        if math.isnan(row.book):
            continue
        claims.append(Claim(f"{layer}: |dC/db| of the book's one network", f"{row.book:g}",
                            f"median {row['50%']:.4f}, 90% of seeds in [{row['5%']:.4f}, {row['95%']:.4f}]; "
                            f"the book's value is at percentile {row.book_percentile:.0f}",
                            bool(row["5%"] <= row.book <= row["95%"]),
                            "the book's value is within the central 90% of seeds"))
    increasing = (norms.diff(axis=1).iloc[:, 1:] > 0).all(axis=1).mean()
    ratios = (norms.iloc[:, 1:].to_numpy() / norms.iloc[:, :-1].to_numpy())
    book = list(cfg.study.book_values)
    book_ratios = ", ".join(f"{b / a:.1f}" for a, b in zip(book, book[1:]))
    claims.append(Claim("earlier hidden layers learn much slower than later ones (|dC/db| grows with the layer)",
                        f"ratios {book_ratios}", f"increasing in {increasing:.0%} of seeds; median ratios "
                        + ", ".join(f"{r:.1f}" for r in np.median(ratios, axis=0)), increasing >= 0.9,
                        "strictly increasing from layer to layer in at least 90% of seeds"))
    return claims


# --- the command ---------------------------------------------------------------
@dataclass(frozen=True)
class Study:
    run: Callable[..., list[Claim]]
    settings: type
    options: tuple[str, ...]  # the optional flags this study takes


STUDIES = {
    "toy_neuron": Study(toy_neuron, ToyNeuronSettings, ()),
    "nielsen_ch5_gradients": Study(nielsen_ch5_gradients, GradientSettings, ("seeds", "data_root")),
    "hidden_saturation": Study(hidden_saturation, SaturationSettings, ("seeds", "data_root", "best_lrs_from")),
}


def load_settings(name: str, schema: type):
    """experiments/NAME.yaml checked against `schema` (UserError naming the file and the problem)."""
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.load(path)))
    except (OSError, yaml.YAMLError, OmegaConfBaseException, ValueError) as err:
        # OmegaConf's message is its first line; the key it names comes apart, as full_key
        key = getattr(err, "full_key", None)
        detail = str(err).splitlines()[0] if key is not None else " ".join(str(err).split())
        raise UserError(f"cannot use the settings of study {name} in {path}: {detail}"
                        + (f" (key {key})." if key else ".")) from None


def print_claims(name: str, cfg, claims: list[Claim]) -> None:
    print(f"{name}: Nielsen ch. {cfg.study.chapter}, \"{cfg.study.section}\"\n{cfg.study.setting}\n")
    for c in claims:
        print(f"[{'holds' if c.holds else 'DOES NOT HOLD'}] {c.claim}\n    book: {c.book}\n"
              f"    ours: {c.measured}\n    criterion: {c.criterion}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lossbench study",
        description="Run a study that is not a sweep, configured by experiments/NAME.yaml; "
                    "print the book's claims beside our measurements.",
        epilog="studies: toy_neuron (ch. 3: one neuron, quadratic vs cross-entropy), "
               "nielsen_ch5_gradients (ch. 5: |dC/db| per hidden layer at initialization, over seeds), "
               "hidden_saturation (Glorot & Bengio 2010: hidden-layer saturation during training).")
    p.add_argument("name", metavar="NAME", help=f"the study: {', '.join(STUDIES)}")
    p.add_argument("--out", metavar="DIR", help="output directory (default: outputs/study/NAME)")
    p.add_argument("--seeds", type=int, metavar="N", help="nielsen_ch5_gradients, hidden_saturation: seeds 0..N-1 "
                                                          "(default: the yaml's)")
    p.add_argument("--data-root", metavar="DIR", help="nielsen_ch5_gradients, hidden_saturation: the data directory "
                                                      "(default: env LOSSBENCH_DATA, else where "
                                                      "`data install` puts it)")
    p.add_argument("--best-lrs-from", metavar="DIR", help="hidden_saturation: train each pair at its best lr of the "
                                                          "finished sweep in DIR (default: the yaml's lrs)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.name not in STUDIES:
        raise UserError(f"unknown study {args.name!r}; the studies are: {', '.join(STUDIES)}.")
    study = STUDIES[args.name]
    given = [opt for opt in ("seeds", "data_root", "best_lrs_from") if getattr(args, opt) is not None]
    for opt in given:
        if opt not in study.options:
            raise UserError(f"--{opt.replace('_', '-')} does not apply to study {args.name}; "
                            f"it takes: --out{''.join(' --' + o.replace('_', '-') for o in study.options)}.")
    cfg = load_settings(args.name, study.settings)
    if args.seeds is not None:
        cfg.seeds = args.seeds
    if args.best_lrs_from is not None:  # before settings.yaml is written, so that it records the lrs trained
        cfg.runs = runs_at_best_lrs(Path(args.best_lrs_from))
    out = Path(args.out or Path("outputs") / "study" / args.name)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the output directory {out} ({err.strerror}).") from None
    OmegaConf.save(OmegaConf.structured(cfg), out / "settings.yaml")
    started = time.perf_counter()
    claims = study.run(cfg, out, data_root=args.data_root)
    provenance.write_run_info(out, ["study", *argv], "cpu", time.perf_counter() - started)
    if claims:  # hidden_saturation's claim is the verdict's to decide, from its CSV
        pd.DataFrame(claims).to_csv(out / "claims.csv", index=False)
        print_claims(args.name, cfg, claims)
    print(f"\nwrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")
    return 0
