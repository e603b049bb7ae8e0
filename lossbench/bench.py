"""Model-epochs per second: a plain PyTorch loop, the book's NumPy code and lossbench, side by side.

    python -m lossbench bench --out outputs/bench

One run times, on every device present (cpu; cuda when torch sees one):
  plain_pytorch     what users write: nn.Sequential of Linear + Sigmoid, BCEWithLogitsLoss(sum) / B
                    (the sigmoid_ce pair), torch.optim.SGD, batch 10; one model at a time
  numpy_book        the book's per-example algorithm, lossbench.reference.sgd_epoch (float64; cpu only)
  lossbench_eager   lossbench's Ensemble without CUDA graphs, in windows of steps (its path on the cpu)
  lossbench_graphs  the Ensemble's steps replayed from CUDA graphs (cuda only)
  lossbench_triton  the Ensemble's steps in launches of the fused Triton kernel (cuda only; its default
                    path there, lossbench/triton_train.py)
for each shape and ensemble size, in the layouts that matter to the Ensemble (see `layouts`), and the
peers, for the sweep's runs (lossbench.peers; --peers chooses):
  torch_func        stack_module_state + vmap(grad) through the pair's own autograd Function, eager
  jax               jax.jit of a lax.scan of vmap(grad) over each timed window (cpu; the extra `bench`)

Each row trains --steps mini-batches per model (--baseline-steps for the plain loop and NumPy)
after --warmup untimed ones, from a fresh initialization: model-epochs/s = models x steps / 5000
(steps per epoch) / seconds. It then times one evaluation of all its models on validation +
test, which every real epoch ends with, and combines the two into train+eval model-epochs/s.
FLOPs are counted, not measured (`train_flops_per_example`), and set against the peak that a
large float32 matmul reaches on the same device in the same run. The rows run as lossbench runs:
importing lossbench.ensemble has every cpu thread flush denormal numbers to zero. Three last rows
time the sweep's ensembles after some training with denormals not flushed, flushed by the main
thread only, and flushed by all threads (`time_flush_modes`). --full adds the whole default sweep
(`python -m lossbench sweep`, with --sweep-overrides) timed end to end.
"""

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from lossbench import config, peers, reference, sweep
from lossbench.data import N_CLASSES, Split, load_split
from lossbench.ensemble import GRAPH_STEPS, Ensemble, RunSpec, TrainConfig, choose_engine, init_params
from lossbench.errors import UserError

EPOCH_EXAMPLES = 50_000  # the book's training set: a model-epoch is 50,000 examples
BATCH = 10
EPOCH_STEPS = EPOCH_EXAMPLES // BATCH
N_INPUTS = 784
PAIR = "sigmoid_ce"  # what BCEWithLogitsLoss, the plain loop's built-in loss, computes
LR = 0.5  # the book's eta for that pair (ch. 3)
PEAK_N = {"cpu": 2048, "cuda": 8192}  # the peak's matmul size: near peak on each, seconds at most
BUSY = 0.1  # other processes' share of the cpus above which a row's timing is suspect
TARGET_MODELS = 160
PEAK_TARGETS = {"784-30-10": 0.40, "784-100-10": 0.45}  # issue 13: the sweep's layout on the cpu, training
EVAL_TARGETS = {"784-30-10": 0.35}  # the same with its evaluation
PEER_LEAD = 2.0  # and model-ep/s over the faster peer's (torch_func, jax) in the same run
TARGETS = {("cpu", "784-30-10"): 20.0, ("cuda", "784-30-10"): 800.0, ("cuda", "784-100-10"): 300.0}  # issue 8
COLUMNS = ["method", "shape", "models", "layout", "device", "dtype", "steps", "seconds", "model_epochs_per_s",
           "gflops", "peak_share", "torch_version", "numpy_version", "device_name", "date",
           # beyond issue 8's list: the evaluation, and the setting and conditions of the row
           "eval_s_per_epoch", "train_eval_model_epochs_per_s", "peak_gflops", "data", "trained_steps",
           "flush_denormal", "denormal_share", "threads", "load1", "other_cpu", "target"]


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
        best = min(_seconds(lambda: a @ b, device) for _ in range(6))  # the first includes library set-up
    finally:
        torch.set_float32_matmul_precision(precision)
    return 2 * n**3 / best / 1e9


def _seconds(work: Callable[[], object], device: torch.device) -> float:
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
    train_s = min(_seconds(lambda: train(order), device) for order in windows)
    return Timing(s.baseline_steps, train_s, _seconds(evaluate, device))


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
    train_s = min(_seconds(lambda: train(*window), torch.device("cpu")) for window in windows)
    return Timing(s.baseline_steps, train_s, _seconds(evaluate, torch.device("cpu")))


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
        eval_s += _seconds(ensemble.evaluate, device)
    return Timing(steps, train_s, eval_s)


def engines(device: torch.device, sizes: tuple[int, ...]) -> list[str]:
    """The Ensemble engines timed on `device`: eager; on cuda also graphs, and triton where it can run."""
    if device.type != "cuda":
        return ["eager"]
    try:
        choose_engine(TrainConfig(sizes=sizes, device=device, engine="triton"), [PAIR])
    except UserError as err:
        print(f"note: no lossbench_triton rows for {shape_name(sizes)}: {err}", file=sys.stderr)
        return ["eager", "graphs"]
    return ["eager", "graphs", "triton"]


PEERS = {"torch_func": peers.TorchFunc, "jax": peers.Jax}


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
        train_s += min(_seconds(lambda: runs.run_steps(window), device) for window in batches[s.warmup:].split(s.steps))
        eval_s += _seconds(runs.evaluate, device)
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
    return steps, min(_seconds(lambda: run(window), ensemble.device) for window in windows)


def batch_indices(ensemble: Ensemble, steps: int) -> torch.Tensor:
    """[steps, S, B] training-set indices per seed group: the full mini-batches of as many epochs as
    needed, drawn as train_epoch draws them (Ensemble.next_epoch_batches)."""
    epochs = [ensemble.next_epoch_batches()[0]]
    while sum(map(len, epochs)) < steps:
        epochs.append(ensemble.next_epoch_batches()[0])
    return torch.cat(epochs)[:steps]


# --- denormals ----------------------------------------------------------------
class DenormalCounter(TorchDispatchMode):
    """Counts denormal numbers among the results of the ops run under it (views compute nothing: skipped)."""

    def __init__(self):
        super().__init__()
        self.denormal = self.results = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    self.denormal += int(((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)).sum())
                    self.results += t.numel()
        return out

    @property
    def share(self) -> float:
        return self.denormal / max(self.results, 1)


def flushed_share() -> float:
    """The share of a large parallel op's denormal results that come out as 0 in this process now.

    torch.set_flush_denormal sets the calling thread's MXCSR only; OpenMP threads copy it when
    they start, on the first parallel op. So this is 0 (off), 1 (on), or about 1 / threads when
    only the main thread flushes (set after the threads started). lossbench.ensemble sets it on
    import, before they start.
    """
    tiny = torch.finfo(torch.float32).tiny
    return float((torch.full((1 << 22,), 4 * tiny) / 8 == 0).float().mean())


FLUSH_MODES = ("off", "main thread", "on")
CHILD = "import json, sys; from lossbench import bench; print(json.dumps(bench.flush_child(json.loads(sys.argv[1]))))"


def time_flush_modes(groups: list[list[RunSpec]], sizes: tuple[int, ...], split: Split, s: Settings,
                     trained: int) -> dict[str, dict]:
    """Flush mode -> timing of the ensembles of `groups` on the cpu after `trained` steps (`flush_child`).

    Saturated sigmoid nets produce denormal numbers (|x| < 1.2e-38 in float32), which x86 cores
    handle in slow microcode unless flushed to zero. A flush mode must be set before the OpenMP
    threads start, so each mode runs in a fresh process, one after another.
    """
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "split.pt"
        torch.save({f.name: getattr(split, f.name) for f in dataclasses.fields(split)}, data)
        for mode in FLUSH_MODES:
            params = dict(mode=mode, data=str(data), sizes=list(sizes), trained=trained, settings=dataclasses.asdict(s),
                          threads=torch.get_num_threads(), groups=[[dataclasses.astuple(x) for x in g] for g in groups])
            before = cpu_seconds()
            child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(params)], capture_output=True, text=True)
            if child.returncode:
                raise RuntimeError(f"the flush-mode run ({mode}) failed:\n{child.stderr}")
            results[mode] = json.loads(child.stdout.splitlines()[-1]) | {"other_cpu": other_cpu(before)}
    return results


def flush_child(params: dict) -> dict:
    """The body of one `time_flush_modes` process: train, count denormals in a step, time, evaluate."""
    mode, trained, s = params["mode"], params["trained"], Settings(**params["settings"])
    torch.set_num_threads(params["threads"])
    torch.set_flush_denormal(mode == "on")  # importing lossbench.ensemble turned it on
    torch.ones(1 << 22).add_(1)  # starts the OpenMP threads now: they keep this mode
    split = Split(**torch.load(params["data"]))
    cfg = TrainConfig(sizes=tuple(params["sizes"]))
    ensembles = [Ensemble([RunSpec(*spec) for spec in specs], cfg, split) for specs in params["groups"]]
    torch.set_flush_denormal(mode != "off")  # the main thread only: the OpenMP threads keep theirs
    cpu, counter = torch.device("cpu"), DenormalCounter()
    batches = [batch_indices(e, trained + e.window + s.warmup + s.repeat * s.steps) for e in ensembles]
    for e, b in zip(ensembles, batches):
        e.run_steps(b[:trained])
        torch.set_num_threads(1)  # one shard, in this thread: a dispatch mode sees only its own thread's ops
        with counter:  # one window of steps (Ensemble.window)
            e.run_steps(b[trained:trained + e.window])
        torch.set_num_threads(params["threads"])
        e.run_steps(b[trained + e.window:trained + e.window + s.warmup])
    first = trained + max(e.window for e in ensembles) + s.warmup
    windows = [sum(_seconds(lambda: e.run_steps(b[start:start + s.steps]), cpu) for e, b in zip(ensembles, batches))
               for start in range(first, first + s.repeat * s.steps, s.steps)]
    return dict(steps=s.steps, train_s=min(windows), eval_s=sum(_seconds(e.evaluate, cpu) for e in ensembles),
                denormal_share=counter.share, flushed=flushed_share())


# --- the default sweep ----------------------------------------------------------
def sweep_config(overrides: list[str]) -> DictConfig:
    """conf/config.yaml with `overrides`, as `python -m lossbench sweep OVERRIDES` composes it."""
    config.register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config.CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except HydraException as err:
        raise UserError(f"--sweep-overrides {' '.join(overrides)}: {err}") from None
    finally:
        GlobalHydra.instance().clear()
    config.validate(cfg)
    return cfg


def sweep_ensembles(cfg: DictConfig) -> list[list[RunSpec]]:
    """The sweep's ensembles, as `python -m lossbench sweep` builds them (one shard)."""
    return list(sweep.ensembles(cfg, config.seed_list(cfg.sweep.seeds)).values())


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


# --- data, devices, rows ----------------------------------------------------------
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


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} cpus"


def cpu_seconds() -> tuple[float, float, float]:
    """(wall, busy cpu seconds of the whole machine, cpu seconds of this process and its children)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):  # not Linux
        busy = math.nan
    t = os.times()
    return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system


def other_cpu(since: tuple[float, float, float]) -> float:
    """The share of the machine's cpu time that other processes took since `since` (a cpu_seconds())."""
    wall, busy, own = (b - a for a, b in zip(since, cpu_seconds()))
    return max(0.0, busy - own) / (wall * os.cpu_count())


def shape_name(sizes: tuple[int, ...]) -> str:
    return "-".join(map(str, sizes))


class Table:
    """The rows so far; bench.csv is rewritten after each, so an interrupted run keeps what it measured."""

    def __init__(self, out: Path, data: str, names: dict[str, str]):
        self.path, self.data, self.names = out / "bench.csv", data, names
        self.peak: dict[str, float] = {}
        self.rows: list[dict] = []
        self.since = cpu_seconds()  # the end of the last row: a row's work is what follows it

    def add(self, method: str, sizes: tuple[int, ...], models: int, layout: str, device: torch.device,
            timing: Timing, dtype: str = "float32", trained_steps: int = 0, flushed: float | None = None,
            denormal_share: float = math.nan, others: float | None = None, combined: bool = False) -> None:
        """flushed: as `flushed_share`, by default this process's now (cpu). others: other processes' share
        of the cpus during the row, by default since the last row. combined: timing.train_s already
        includes evaluation (the full sweep)."""
        rate = models * timing.steps / EPOCH_STEPS / timing.train_s
        gflops = rate * train_gflop_per_model_epoch(sizes)
        epoch_s = timing.train_s / timing.steps * EPOCH_STEPS
        cpu = device.type == "cpu"
        is_target = method.startswith("lossbench") and models == TARGET_MODELS
        row = dict(
            method=method, shape=shape_name(sizes), models=models, layout=layout, device=device.type, dtype=dtype,
            steps=timing.steps, seconds=timing.train_s, model_epochs_per_s=rate, gflops=gflops,
            peak_share=math.nan, torch_version=torch.__version__,  # peak_*: set by frame(), from the best peak
            numpy_version=np.__version__, device_name=self.names[device.type],
            date=datetime.datetime.now().isoformat(timespec="seconds"), eval_s_per_epoch=timing.eval_s,
            train_eval_model_epochs_per_s=rate if combined else models / (epoch_s + timing.eval_s),
            peak_gflops=math.nan, data=self.data, trained_steps=trained_steps,
            flush_denormal=(flushed_share() if flushed is None else flushed) if cpu else math.nan,
            denormal_share=denormal_share, threads=torch.get_num_threads() if cpu else math.nan,
            load1=os.getloadavg()[0], other_cpu=other_cpu(self.since) if others is None else others,
            target=TARGETS.get((device.type, shape_name(sizes)), math.nan) if is_target else math.nan)
        self.rows.append(row)
        self.since = cpu_seconds()
        self.frame().to_csv(self.path, index=False)
        print(f"  {method:<16} {row['shape']:<10} {layout:<38} {device.type:<4} {rate:9.3f} model-epochs/s "
              f"(other processes: {row['other_cpu']:.0%} of the cpus)", file=sys.stderr, flush=True)

    def measure_peak(self, devices: list[torch.device]) -> None:
        """Measure each device's peak (again) and keep the best: a busy machine lowers it."""
        for d in devices:
            self.peak[d.type] = max(self.peak.get(d.type, 0.0), fp32_peak_gflops(d))
        if self.rows:
            self.frame().to_csv(self.path, index=False)
        self.since = cpu_seconds()

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows, columns=COLUMNS)
        frame["peak_gflops"] = frame.device.map(self.peak)
        frame["peak_share"] = frame.gflops / frame.peak_gflops
        return frame


def flush_label(share: float) -> str:
    if pd.isna(share):
        return ""
    return "off" if share == 0 else "on" if share == 1 else "main thr"


def summary(frame: pd.DataFrame) -> str:
    """The printed table: figures, ratios to the plain loop (same device) and to NumPy, targets."""
    f = frame.copy()
    base = frame[frame.trained_steps == 0]

    def ratio(method: str, row: pd.Series, same_device: bool) -> float:
        match = base[(base.method == method) & (base["shape"] == row["shape"])
                     & ((base.device == row.device) if same_device else True)]
        return row.model_epochs_per_s / match.model_epochs_per_s.iloc[0] if len(match) else math.nan

    f["x_plain"] = [ratio("plain_pytorch", r, True) for _, r in frame.iterrows()]
    f["x_numpy"] = [ratio("numpy_book", r, False) for _, r in frame.iterrows()]
    for peer in PEERS:
        f[f"x_{peer}"] = [ratio(peer, r, True) for _, r in frame.iterrows()]
    f["target"] = [f"{t:g} {'met' if r >= t else 'NOT met'}" if pd.notna(t) else ""
                   for t, r in zip(frame.target, frame.model_epochs_per_s)]
    f["peak_share"] = (100 * frame.peak_share).map("{:.2f}%".format)
    f["flush"] = frame.flush_denormal.map(flush_label)
    f["denormal_share"] = frame.denormal_share.map(lambda v: f"{v:.1e}" if pd.notna(v) else "")
    shown = {"method": "method", "shape": "shape", "models": "models", "layout": "layout", "device": "dev",
             "steps": "steps", "trained_steps": "trained", "flush": "flush", "denormal_share": "denormals",
             "model_epochs_per_s": "model-ep/s", "gflops": "GFLOP/s", "peak_share": "of peak",
             "eval_s_per_epoch": "eval s", "train_eval_model_epochs_per_s": "train+eval", "x_plain": "x plain",
             "x_numpy": "x numpy", **{f"x_{peer}": f"x {peer}" for peer in PEERS if peer in set(frame.method)},
             "target": "target"}
    table = f[list(shown)].rename(columns=shown)
    return table.to_string(index=False, float_format=lambda v: f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}")


def peak_targets(frame: pd.DataFrame) -> str:
    """Issue 13's targets for the sweep's layout on the cpu, met or not: shares of the measured peak
    (training; training with evaluation) and the lead over the faster peer of the same run."""
    lines = []
    rows = frame[(frame.method == "lossbench_eager") & frame.layout.str.startswith("sweep:")
                 & (frame.trained_steps == 0) & (frame.device == "cpu")]
    for _, row in rows.iterrows():
        shape = row["shape"]
        with_eval = row.train_eval_model_epochs_per_s * train_gflop_per_model_epoch(parse_shape(shape)) / row.peak_gflops
        checks = [(f"training at {row.peak_share:.1%} of peak", row.peak_share, PEAK_TARGETS.get(shape), "{:.0%}"),
                  (f"with evaluation {with_eval:.1%}", with_eval, EVAL_TARGETS.get(shape), "{:.0%}")]
        peer_rows = frame[frame.method.isin(list(PEERS)) & (frame["shape"] == shape) & (frame.device == "cpu")]
        if len(peer_rows):
            fastest = peer_rows.loc[peer_rows.model_epochs_per_s.idxmax()]
            lead = row.model_epochs_per_s / fastest.model_epochs_per_s
            checks.append((f"{lead:.2f}x the faster peer ({fastest.method})", lead, PEER_LEAD, "{:g}x"))
        lines += [f"issue 13, {shape}, the sweep's layout: {text} (target {fmt.format(target)}): "
                  f"{'met' if value >= target else 'NOT met'}" for text, value, target, fmt in checks if target]
    return "\n".join(lines)


def legend(frame: pd.DataFrame, peak: dict[str, float], data: str) -> str:
    lines = [f"data: {data}. model-ep/s = models x steps / {EPOCH_STEPS} / seconds (fastest timed window); "
             f"GFLOP/s from the counted FLOPs: forward + weight gradients + deltas, x {EPOCH_EXAMPLES} examples "
             f"per model-epoch."]
    for device, gflops in peak.items():
        n = PEAK_N[device]
        name = frame.loc[frame.device == device, "device_name"].iloc[0]
        lines.append(f"peak ({device}): {gflops:.1f} GFLOP/s, the best of a {n}x{n}x{n} float32 matmul measured "
                     f"at the start and the end of this run on {name}; 'of peak' is relative to it.")
    lines += [f"eval s: one evaluation of all the row's models on validation + test (20,000 images), which every "
              f"epoch ends with; train+eval: model-ep/s with it. x plain / x numpy: model-ep/s over the plain loop's "
              f"(same device) and the book's NumPy's (cpu), same shape; x torch_func / x jax: over the peer's "
              f"(lossbench.peers: the sweep's runs through torch.func and JAX; JAX uses XLA's own thread pool).",
              "flush: denormals flushed to 0 by no thread, by the main thread only (torch.set_flush_denormal "
              "called once the OpenMP threads run; the Ensemble's shard threads inherit the main thread's mode), "
              "or by all threads (lossbench: set on import); denormals: "
              "their share among the results of one window of steps; trained: steps trained before the timing.",
              f"target: issue 8's, for {TARGET_MODELS} models. Load (1 min, this run included) over the rows: "
              f"{frame.load1.min():.2f}..{frame.load1.max():.2f} on {os.cpu_count()} cpus; other processes took "
              f"{frame.other_cpu.min():.0%}..{frame.other_cpu.max():.0%} of the cpus' time (other_cpu column)."]
    busy = frame[(frame.device == "cpu") & (frame.other_cpu > BUSY)]
    if len(busy):
        lines.append(f"warning: other processes took over {BUSY:.0%} of the cpus during {len(busy)} cpu rows; their "
                     f"timings can be many times too low: a step's OpenMP ops wait for a descheduled thread.")
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------
def parse_shape(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split("-"))
    except ValueError:
        sizes = ()
    if len(sizes) < 2 or min(sizes) < 1 or sizes[0] != N_INPUTS or sizes[-1] != N_CLASSES:
        raise UserError(f"--shapes {text!r} is not a network for MNIST: give layer sizes joined by '-', from "
                        f"{N_INPUTS} inputs to {N_CLASSES} outputs, each >= 1, e.g. 784-30-10.")
    return sizes


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lossbench bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=300, help="timed mini-batches per model and window, lossbench rows")
    p.add_argument("--baseline-steps", type=int, default=200, help="the same for the plain loop and NumPy rows")
    p.add_argument("--warmup", type=int, default=20, help="untimed mini-batches before the timing "
                   f"(with CUDA graphs: one graph of {GRAPH_STEPS} steps, and windows are whole graphs)")
    p.add_argument("--repeat", type=int, default=2, help="timed windows per row; the fastest counts")
    p.add_argument("--shapes", nargs="+", default=["784-30-10", "784-100-10"], help="layer sizes, 784-...-10")
    p.add_argument("--models", nargs="+", type=int, default=[1, 10, 160], help="ensemble sizes")
    p.add_argument("--devices", nargs="+", choices=["cpu", "cuda"],
                   default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"], help="cuda: when torch sees one")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="cpu threads (torch.set_num_threads); on a busy machine 1 thread suffers far less")
    p.add_argument("--data", choices=["auto", "mnist", "synthetic"], default="auto",
                   help="auto: MNIST (--data-root, else LOSSBENCH_DATA, else where `data install` puts it) "
                        "when it loads, else synthetic")
    p.add_argument("--data-root", default=None, help="directory of the MNIST IDX files")
    p.add_argument("--denormal-steps", type=int, default=2000,
                   help="cpu: train the sweep's ensembles (first shape) this many steps, then time them in each "
                        "flush mode (0: skip)")
    p.add_argument("--peers", nargs="*", choices=list(PEERS), default=list(PEERS),
                   help="peer rows: the sweep's runs through torch.func and JAX (jax: with the optional extra "
                        "`bench`, pip install 'lossbench[bench]'); --peers alone: none")
    p.add_argument("--full", action="store_true",
                   help="also run the whole default sweep (30 epochs, with evaluation) per shape and device")
    p.add_argument("--sweep-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="Hydra overrides of the sweep: for --full and for the 'sweep' layout (e.g. sweep.seeds=20)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench"), help="directory for bench.csv")
    args = p.parse_args(argv)
    for name in ("steps", "baseline_steps", "repeat", "threads"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}={getattr(args, name)}: give a count >= 1.")
    for name in ("warmup", "denormal_steps"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')}={getattr(args, name)}: give a count >= 0.")
    if min(args.models) < 1:
        raise UserError(f"--models {min(args.models)}: an ensemble holds at least 1 model.")
    if "cuda" in args.devices and not torch.cuda.is_available():
        raise UserError(f"--devices cuda, but torch {torch.__version__} sees no CUDA device; use --devices cpu.")
    args.shapes = [parse_shape(text) for text in args.shapes]
    if "jax" in args.peers and not peers.jax_available():
        print("note: jax is not installed, so the jax peer row is skipped; pip install 'lossbench[bench]' adds it.",
              file=sys.stderr)
        args.peers.remove("jax")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create --out {args.out} ({err.strerror or err}); choose a writable directory.")
    sweep_cfg = sweep_config(args.sweep_overrides)
    sweep, lrs = sweep_ensembles(sweep_cfg), list(sweep_cfg.sweep.lrs)
    sweep_models = sum(map(len, sweep))
    torch.set_num_threads(args.threads)
    split = bench_data(args.data, args.data_root)
    if args.full and split.name != "mnist":
        raise UserError("--full runs the real sweep, which trains on MNIST; MNIST did not load (see above).")
    settings = Settings(args.steps, args.baseline_steps, args.warmup, args.repeat)
    devices = [torch.device(name) for name in args.devices]
    print(f"lossbench bench: {split.name} data, {torch.get_num_threads()} cpu threads, load "
          f"{os.getloadavg()[0]:.2f}; measuring the FP32 matmul peak ...", file=sys.stderr, flush=True)
    table = Table(args.out, split.name, {d.type: device_name(d) for d in devices})
    table.measure_peak(devices)

    for device in devices:
        data = on_device(split, device)
        for sizes in args.shapes:
            table.add("plain_pytorch", sizes, 1, "1 seed", device, time_plain_pytorch(sizes, data, settings, device))
            if device.type == "cpu":
                table.add("numpy_book", sizes, 1, "1 seed", device, time_numpy_book(sizes, data, settings),
                          dtype="float64")
            for models in args.models:
                for layout, groups in layouts(models, sweep, lrs).items():
                    for engine in engines(device, sizes):
                        table.add(f"lossbench_{engine}", sizes, models, layout, device,
                                  time_ensembles(groups, sizes, data, settings, device, engine))
            for peer in args.peers:
                if peer != "jax" or device.type == "cpu":  # the bench extra installs jax[cpu]
                    table.add(peer, sizes, sweep_models, sweep_label(sweep), device,
                              time_peer(peer, sweep, sizes, data, settings, device))
    if args.denormal_steps and torch.device("cpu") in devices:
        sizes = args.shapes[0]
        for mode, result in time_flush_modes(sweep, sizes, split, settings, args.denormal_steps).items():
            table.add("lossbench_eager", sizes, sweep_models, sweep_label(sweep), torch.device("cpu"),
                      Timing(result["steps"], result["train_s"], result["eval_s"]), trained_steps=args.denormal_steps,
                      flushed=result["flushed"], denormal_share=result["denormal_share"], others=result["other_cpu"])
    if args.full:
        overrides = args.sweep_overrides + ([f"data.root={args.data_root}"] if args.data_root else [])
        for device in devices:
            for sizes in args.shapes:
                seconds = time_full_sweep(sizes, device, overrides, args.out)
                layout = f"{sweep_label(sweep)}, {sweep_cfg.optim.epochs} epochs"
                table.add("lossbench_sweep", sizes, sweep_models, layout, device,
                          Timing(sweep_steps(sweep_cfg), seconds, math.nan), combined=True)

    table.measure_peak(devices)
    frame = table.frame()
    print(summary(frame))
    print(peak_targets(frame))
    print(legend(frame, table.peak, split.name))
    return 0
