"""The benchmark's harness: what one row of bench.csv trains and times, and how.

    python -c "from lossbench import timing; print(timing.train_gflop_per_model_epoch((784, 30, 10)))"   # 4.794

A row trains Settings.steps mini-batches per model (baseline_steps for the plain loop and NumPy)
after Settings.warmup untimed ones, from a fresh initialization, and keeps the fastest of
Settings.repeat windows; then it times one evaluation of all its models on validation + test,
which every real epoch ends with. The rows (lossbench/bench.py runs them): a plain PyTorch loop
(time_plain_pytorch), the book's per-example NumPy (time_numpy_book), lossbench's Ensembles in
the layouts that matter to them (layouts, time_ensembles) through each engine that runs here, the
peers (time_peer: lossbench.peers), and the whole sweep end to end (time_full_sweep). FLOPs are
counted, not measured (train_flops_per_example), and set against the peak that a large float32
matmul reaches on the same device (fp32_peak_gflops).
"""

import dataclasses
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from lossbench import grid, peers, reference
from lossbench.choices import GRAPH_STEPS, Peer
from lossbench.data import N_CLASSES, Split, load_split
from lossbench.ensemble import Ensemble, RunSpec, TrainConfig, choose_engine, init_params
from lossbench.errors import UserError
from lossbench.pairs import PAIRS

EPOCH_EXAMPLES = 50_000  # the book's training set: a model-epoch is 50,000 examples
BATCH = 10
EPOCH_STEPS = EPOCH_EXAMPLES // BATCH
N_INPUTS = 784
PAIR = "sigmoid_ce"  # what BCEWithLogitsLoss, the plain loop's built-in loss, computes
LR = 0.5  # the book's eta for that pair (ch. 3)
PEAK_N = {"cpu": 2048, "cuda": 8192}  # the peak's matmul size: near peak on each, seconds at most


# --- FLOPs and the peak ------------------------------------------------------
def train_flops_per_example(sizes: tuple[int, ...]) -> int:
    """FLOPs (2 per multiply-add) of one example's SGD step: forward a W, 2 n_in n_out per layer;
    weight gradient a^T delta (BP4), the same; delta W^T back through layers 2..L (BP2), the same again."""
    layers = [2 * n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    return 2 * sum(layers) + sum(layers[1:])


def train_gflop_per_model_epoch(sizes: tuple[int, ...]) -> float:
    return train_flops_per_example(sizes) * EPOCH_EXAMPLES / 1e9


def fp32_peak_gflops(device: torch.device) -> float:
    """GFLOP/s of the fastest of 6 N x N x N float32 matmuls (N = PEAK_N), true FP32 (no TF32): the
    peak that the rows are compared with, measured rather than taken from a datasheet."""
    n = PEAK_N[device.type]
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        best = min(wall_seconds(lambda: a @ b, device) for _ in range(6))  # the first includes library set-up
    finally:
        torch.set_float32_matmul_precision(precision)
    return 2 * n**3 / best / 1e9


def wall_seconds(work: Callable[[], object], device: torch.device) -> float:
    """Wall time of work(), waiting for the device before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


# --- what one row measures ----------------------------------------------------
@dataclass
class Timing:
    steps: int  # mini-batches per model in the timed window
    train_s: float  # seconds of that window, all models of the row
    eval_s: float  # seconds of one evaluation of all models on validation + test


@dataclass
class Settings:
    steps: int
    baseline_steps: int
    warmup: int
    repeat: int  # timed windows per row; the fastest counts


def _windows(n_examples: int, s: Settings, steps: int, device) -> list[torch.Tensor]:
    """Index blocks for the warm-up and `s.repeat` windows of `steps` mini-batches, from epoch permutations."""
    sizes = [s.warmup * BATCH] + [steps * BATCH] * s.repeat
    epochs = math.ceil(sum(sizes) / n_examples)
    g = torch.Generator().manual_seed(0)
    order = torch.cat([torch.randperm(n_examples, generator=g) for _ in range(epochs)]).to(device)
    return list(order[:sum(sizes)].split(sizes))


def _one_hot(labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.one_hot(labels, N_CLASSES).float()


def time_plain_pytorch(sizes: tuple[int, ...], data: Split, s: Settings, device: torch.device) -> Timing:
    """One model as users write it; its eval is one forward pass per set."""
    torch.manual_seed(0)
    layers = [m for n_in, n_out in zip(sizes[:-1], sizes[1:]) for m in (nn.Linear(n_in, n_out), nn.Sigmoid())]
    model = nn.Sequential(*layers[:-1]).to(device)  # ends in logits: the loss applies the output sigmoid
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")  # the book's cross-entropy sums over the outputs (eq. 63)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = data.train_x, _one_hot(data.train_y)

    def train(order: torch.Tensor):
        for idx in order.split(BATCH):
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx]) / len(idx)
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def evaluate():
        for xs, labels in ((data.val_x, data.val_y), (data.test_x, data.test_y)):
            z = model(xs)
            ((z.argmax(1) == labels).float().mean().item(), (loss_fn(z, _one_hot(labels)) / len(xs)).item())

    warmup, *windows = _windows(len(x), s, s.baseline_steps, device)
    train(warmup)
    train_s = min(wall_seconds(lambda: train(order), device) for order in windows)
    return Timing(s.baseline_steps, train_s, wall_seconds(evaluate, device))


def time_numpy_book(sizes: tuple[int, ...], data: Split, s: Settings) -> Timing:
    """One model in the book's per-example NumPy (float64, as network.py); its eval is network.py's
    `evaluate`, a feedforward per example."""
    params = init_params(0, sizes, "large")
    weights, biases = [w.numpy() for w, _ in params], [b.numpy()[0] for _, b in params]
    x, y = data.train_x.double().numpy(), np.eye(N_CLASSES)[data.train_y.numpy()]
    evaluation_sets = [(xs.double().numpy(), labels.numpy())
                       for xs, labels in ((data.val_x, data.val_y), (data.test_x, data.test_y))]

    def train(xs: np.ndarray, ys: np.ndarray):
        nonlocal weights, biases
        weights, biases = reference.sgd_epoch(weights, biases, xs, ys, np.arange(len(xs)), BATCH, LR, PAIR)

    def evaluate():
        for xs, labels in evaluation_sets:
            sum(int(np.argmax(_feedforward(weights, biases, a)) == label) for a, label in zip(xs, labels))

    # each window's examples gathered before its timer, as network.py shuffles before its epoch
    warmup, *windows = [(x[order], y[order]) for order in _windows(len(x), s, s.baseline_steps, "cpu")]
    train(*warmup)
    train_s = min(wall_seconds(lambda: train(*window), torch.device("cpu")) for window in windows)
    return Timing(s.baseline_steps, train_s, wall_seconds(evaluate, torch.device("cpu")))


def _feedforward(weights, biases, a):
    for w, b in zip(weights, biases):
        a = reference.sigmoid(a @ w + b)
    return a


def time_ensembles(groups: list[list[RunSpec]], sizes: tuple[int, ...], data: Split, s: Settings,
                   device: torch.device, engine: str) -> Timing:
    """The Ensembles of `groups`, one after another as the sweep trains its blocks; times summed."""
    train_s = eval_s = 0.0
    for specs in groups:
        ensemble = Ensemble(specs, TrainConfig(sizes=sizes, device=device, engine=engine), data)
        steps, seconds = time_steps(ensemble, s)
        train_s += seconds
        eval_s += wall_seconds(ensemble.evaluate, device)
    return Timing(steps, train_s, eval_s)


def sweep_engine(sizes: tuple[int, ...]) -> str:
    """The engine a sweep of these sizes trains with on the CPU (engine=auto): the one issue 13's targets are for."""
    return choose_engine(TrainConfig(sizes=sizes), list(PAIRS))


def engines(device: torch.device, sizes: tuple[int, ...]) -> list[str]:
    """The Ensemble engines timed on `device`: eager; also c on the CPU, graphs and triton on cuda, where they can run."""
    if device.type != "cuda":
        try:
            choose_engine(TrainConfig(sizes=sizes, device=device, engine="c"), [PAIR])
        except UserError as err:
            print(f"note: no lossbench_c rows for {shape_name(sizes)}: {err}", file=sys.stderr)
            return ["eager"]
        return ["eager", "c"]
    try:
        choose_engine(TrainConfig(sizes=sizes, device=device, engine="triton"), [PAIR])
    except UserError as err:
        print(f"note: no lossbench_triton rows for {shape_name(sizes)}: {err}", file=sys.stderr)
        return ["eager", "graphs"]
    return ["eager", "graphs", "triton"]


PEERS = {Peer.torch_func.value: peers.TorchFunc, Peer.jax.value: peers.Jax}  # bench --peers chooses by name


def time_peer(peer: str, groups: list[list[RunSpec]], sizes: tuple[int, ...], data: Split, s: Settings,
              device: torch.device) -> Timing:
    """A peer (lossbench.peers) training the runs of the Ensembles of `groups` from the same start and
    batches, timed as time_steps times an Ensemble: s.warmup steps, then the fastest of s.repeat windows."""
    train_s = eval_s = 0.0
    for specs in groups:
        runs = PEERS[peer](Ensemble(specs, TrainConfig(sizes=sizes, device=device), data))
        batches = batch_indices(runs.ensemble, s.warmup + s.repeat * s.steps)
        runs.run_steps(batches[:s.warmup])
        runs.compile(s.steps)  # jax: compiled before the timer, as the warm-up compiles lossbench's graphs
        train_s += min(wall_seconds(lambda: runs.run_steps(window), device) for window in batches[s.warmup:].split(s.steps))
        eval_s += wall_seconds(runs.evaluate, device)
    return Timing(s.steps, train_s, eval_s)


def time_steps(ensemble: Ensemble, s: Settings) -> tuple[int, float]:
    """(steps, seconds) of the fastest of s.repeat windows, each of s.steps steps after the warm-up.

    Runs the steps the way train_epoch runs them (Ensemble.run_steps, through the ensemble's
    engine): with graphs, windows are whole CUDA graphs and the warm-up is one graph, whose first
    replay captures it; with triton, a window is one launch, and the warm-up's compiles the kernel.
    """
    steps, warmup = s.steps, s.warmup
    if ensemble.engine == "graphs":
        steps, warmup = math.ceil(steps / GRAPH_STEPS) * GRAPH_STEPS, GRAPH_STEPS

    def run(batches):
        ensemble.run_steps(batches)

    batches = batch_indices(ensemble, warmup + s.repeat * steps)
    run(batches[:warmup])
    windows = batches[warmup:].split(steps)
    return steps, min(wall_seconds(lambda: run(window), ensemble.device) for window in windows)


def batch_indices(ensemble: Ensemble, steps: int) -> torch.Tensor:
    """[steps, S, B] training-set indices per seed group: the full mini-batches of as many epochs as
    needed, drawn as train_epoch draws them (Ensemble.next_epoch_batches)."""
    epochs = [ensemble.next_epoch_batches()[0]]
    while sum(map(len, epochs)) < steps:
        epochs.append(ensemble.next_epoch_batches()[0])
    return torch.cat(epochs)[:steps]


def sweep_ensembles(cfg: DictConfig) -> list[list[RunSpec]]:
    """The sweep's ensembles, as `python -m lossbench sweep` builds them (one shard)."""
    return list(grid.ensembles(cfg, grid.seed_list(cfg.sweep.seeds)).values())


def _grid(specs: list[RunSpec]) -> str:
    """'P pairs x S seeds x L lrs' of one ensemble's specs."""
    counts = [(len({s.pair for s in specs}), "pair"), (len({s.seed for s in specs}), "seed"),
              (len({s.lr for s in specs}), "lr")]
    return " x ".join(f"{n} {word}{'s' * (n > 1)}" for n, word in counts)


def sweep_label(ensembles: list[list[RunSpec]]) -> str:
    return f"sweep: {len(ensembles)} ensemble{'s' * (len(ensembles) > 1)} of {_grid(ensembles[0])}"


def layouts(models: int, sweep: list[list[RunSpec]], lrs: list[float]) -> dict[str, list[list[RunSpec]]]:
    """Layout label -> the ensembles, trained one after another, that make up `models` models.

    Every model its own seed (learning rates cycling through the sweep's), so no two share the
    first layer's work; seed groups of the sweep's len(lrs) learning rates, in one ensemble; and,
    at the sweep's size, the sweep's own ensembles, and its models in an ensemble per pair (the
    sweep's layout before it mixed pairs in one ensemble).
    """
    k = len(lrs)
    out = {f"{models} seed{'s' * (models > 1)}": [[RunSpec(PAIR, lrs[m % k], m) for m in range(models)]]}
    if models > k and models % k == 0:
        out[f"{models // k} seeds x {k} lrs"] = [[RunSpec(PAIR, lr, seed) for seed in range(models // k)
                                                  for lr in lrs]]
    if models == sum(map(len, sweep)):
        out[sweep_label(sweep)] = sweep
        specs = [s for e in sweep for s in e]
        pairs = list(dict.fromkeys(s.pair for s in specs))
        if len(pairs) > 1:
            per_pair = [[s for s in specs if s.pair == pair] for pair in pairs]
            out[f"{len(pairs)} ensembles of {_grid(per_pair[0])}"] = per_pair
    return out


def time_full_sweep(sizes: tuple[int, ...], device: torch.device, overrides: list[str], out: Path) -> float:
    """Seconds of `python -m lossbench sweep OVERRIDES` for these sizes, in a fresh directory under `out`."""
    from lossbench import sweep_cli  # a Hydra app: imported only when --full asks for it

    run_dir = Path(tempfile.mkdtemp(prefix=f"full_sweep_{shape_name(sizes)}_{device.type}_", dir=out))
    overrides = [*overrides, f"model.sizes=[{','.join(map(str, sizes))}]", f"device={device.type}",
                 f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    status = sweep_cli.main(overrides)
    seconds = time.perf_counter() - start
    if status:
        raise UserError(f"the full sweep `python -m lossbench sweep {' '.join(overrides)}` stopped with status "
                        f"{status}; its message is above.")
    return seconds


def sweep_steps(cfg: DictConfig) -> int:
    """Mini-batches per model of a whole sweep: its epochs x steps per epoch (the last batch may be short)."""
    n_train = cfg.data.train_size or EPOCH_EXAMPLES
    return cfg.optim.epochs * math.ceil(n_train / cfg.optim.batch_size)


# --- data ----------------------------------------------------------------------
def synthetic_split(seed: int = 0) -> Split:
    """MNIST's sizes (50,000 / 10,000 / 10,000 images of 784 pixels): uniform pixels, random labels."""
    g = torch.Generator().manual_seed(seed)
    n, m = EPOCH_EXAMPLES, 10_000  # training; validation and test each
    x = torch.rand(n + 2 * m, N_INPUTS, generator=g)
    y = torch.randint(N_CLASSES, (len(x),), generator=g)
    return Split("synthetic", x[:n], y[:n], x[n:n + m], y[n:n + m], x[n + m:], y[n + m:])


def bench_data(choice: str, root: str | None) -> Split:
    """MNIST when available (or required), else synthetic data of its shape."""
    if choice != "synthetic":
        try:
            split = load_split("mnist", root)
        except UserError as err:
            if choice == "mnist":
                raise
            print(f"note: timing on synthetic data of MNIST's shape; MNIST is not available: {err}", file=sys.stderr)
        else:
            if len(split.train_x) != EPOCH_EXAMPLES:
                raise UserError(f"the MNIST training split holds {len(split.train_x)} images, not the book's "
                                f"{EPOCH_EXAMPLES}; point --data-root at the standard MNIST files.")
            return split
    return synthetic_split()


def on_device(split: Split, device: torch.device) -> Split:
    """The split's tensors on `device`, as the sweep loads them."""
    return dataclasses.replace(split, **{f.name: getattr(split, f.name).to(device)
                                         for f in dataclasses.fields(split) if f.name != "name"})


def shape_name(sizes: tuple[int, ...]) -> str:
    return "-".join(map(str, sizes))
