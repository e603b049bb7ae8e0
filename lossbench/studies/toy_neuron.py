"""One sigmoid neuron learning (Nielsen ch. 3, "The cross-entropy cost function"): the book's four runs, measured.

    python -m lossbench study toy_neuron --out outputs/study/toy_neuron

A neuron z = w x + b, a = sigma(z), learns to map x = 1 to y = 0 by gradient descent on one
example. The cost is the pair's custom Function with K = 1 and the gradient comes from autograd
through it, so the hand-derived delta of lossbench.pairs drives the neuron. The book's
cross-entropy figures come from widgets (nnadl_site js/saturation3.js, saturation4.js) that step
along dC/da = 1/(1 - a) rather than dC/dz = a - y; `update: dC_da` replays that rule. Writes
toy_neuron.csv and toy_neuron.png; each of the book's statements becomes a claim (lossbench.claims).
"""

import functools
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import List

import pandas as pd
import torch
from matplotlib.figure import Figure
from omegaconf import MISSING

from lossbench.claims import Claim, measured
from lossbench.errors import UserError
from lossbench.pairs import PAIRS, get_pair, sigmoid_prime

MOVE = 0.1  # the neuron "moves" once its output is 0.1 below where it started: a visible change on the widget
WIDGET_PX_PER_COST = {"sigmoid_mse": 240, "sigmoid_ce": 30}  # the widgets' vertical scale (`scaling`), px per cost unit


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


def run(cfg: ToyNeuronSettings, out: Path, **_) -> list[Claim]:
    """Train every run from every start; write toy_neuron.csv and .png; the book's claims, measured."""
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

    claim = functools.partial(measured, source=f"Nielsen, ch. {cfg.study.chapter}, '{cfg.study.section}'")
    claims = []
    for (w0, b0), printed in zip(book.starts, book.start_output):
        if (t := trace(q, (w0, b0))) is None:
            continue
        a0 = at(t, 0)
        claims.append(claim(f"start ({w0:g}, {b0:g}): initial output", f"{printed:.2f}", f"{a0:.4f}",
                            round(a0, 2) == printed, "equal to 2 decimals (the widget prints 2)"))
    if (t := trace(q, (w_a, b_a))) is not None:
        claims.append(claim(f"quadratic, eta={q[1]:g}, from ({w_a:g}, {b_a:g}): the neuron rapidly learns "
                            f"and ends with an output of about", f"{book.quadratic_final_output:.2f}",
                            f"{at(t, last):.4f} at epoch {last} (moved {MOVE:g} by epoch {epochs_to_move(t):.0f})",
                            round(at(t, last), 2) == book.quadratic_final_output, "equal to 2 decimals"))
    if (t := trace(q, (w_b, b_b))) is not None:
        stall, n = epochs_to_move(t), book.quadratic_stall_epochs
        moved_w, total_w = at(t, 0, "w") - at(t, n, "w"), at(t, 0, "w") - at(t, last, "w")
        claims.append(claim(f"quadratic, eta={q[1]:g}, from ({w_b:g}, {b_b:g}): learning starts out much more slowly; "
                            f"for the first {n} or so epochs nothing much changes", f"~{n} epochs",
                            f"the output is first {MOVE:g} below its start at epoch {stall:.0f} "
                            f"(a = {at(t, n):.3f} at epoch {n})",
                            abs(stall - n) <= n / 3, f"the output moves {MOVE:g} at epoch {n} +- {n / 3:.0f}"))
        claims.append(claim(f"quadratic from ({w_b:g}, {b_b:g}): \"the weights and biases don't change much at all\" "
                            f"in those {n} epochs", "w, b about constant",
                            f"w (and b) moved {moved_w:.2f} by epoch {n}, {moved_w / total_w:.0%} of their change "
                            f"by epoch {last} ({total_w:.2f})", moved_w < 0.1 * total_w,
                            f"less than 10% of the {last}-epoch change happens in the first {n} epochs"))
        claims.append(claim(f"quadratic from ({w_b:g}, {b_b:g}): then learning kicks in and the output rapidly "
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
            claims.append(claim(f"cross-entropy, eta={ce[1]:g}, from ({start[0]:g}, {start[1]:g}), {how}: "
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
        claims.append(claim(f"from ({w_b:g}, {b_b:g}): the cross-entropy (gradient) cost curve is much steeper "
                            "initially than the quadratic's flat start", "much steeper",
                            f"{slope['sigmoid_ce']:.3f} vs {slope['sigmoid_mse']:.3f} px/epoch on the widgets' "
                            f"scales over epochs 0-{k} (x{slope['sigmoid_ce'] / slope['sigmoid_mse']:.0f})",
                            slope["sigmoid_ce"] > 2 * slope["sigmoid_mse"], "more than twice the quadratic's slope"))
        # "when we use the quadratic cost learning is slower when the neuron is unambiguously wrong than it
        # is later on ... while with the cross-entropy learning is faster": the speed is |dw| per epoch
        speed = {name: t.w.diff().abs().iloc[1:] for name, t in (("q", tq), ("ce", tce))}
        first = {name: steps.iloc[0] / steps.max() for name, steps in speed.items()}
        claims.append(claim(f"from ({w_b:g}, {b_b:g}): the speed of learning |dw|/epoch is lower while the neuron "
                            "is badly wrong than later for the quadratic, higher for the cross-entropy (gradient)",
                            "slower first (quadratic), faster first (cross-entropy)",
                            f"first step / largest step: {first['q']:.2f} (quadratic), {first['ce']:.2f} "
                            "(cross-entropy)", first["q"] < 0.5 and first["ce"] == 1.0,
                            "the quadratic's first step is under half its largest; the cross-entropy's is its largest"))
        drop = {name: at(t, 0) - at(t, 50) for name, t in (("q", tq), ("ce", tce))}
        claims.append(claim(f"from ({w_b:g}, {b_b:g}): cross-entropy (gradient) learns faster at first",
                            "faster at first", f"output drop over epochs 0-50: {drop['ce']:.4f} (cross-entropy) "
                            f"vs {drop['q']:.4f} (quadratic)", drop["ce"] > drop["q"],
                            "larger output drop over the first 50 epochs"))
    return claims
