"""Model-epochs per second: a plain PyTorch loop, the book's NumPy code and lossbench, side by side.

    python -m lossbench bench --out outputs/bench

One run times, on every device present (cpu; cuda when torch sees one):
  plain_pytorch     what users write: nn.Sequential of Linear + Sigmoid, BCEWithLogitsLoss(sum) / B
                    (the sigmoid_ce pair), torch.optim.SGD, batch 10; one model at a time
  numpy_book        the book's per-example algorithm, lossbench.reference.sgd_epoch (float64; cpu only)
  lossbench_eager   lossbench's Ensemble without CUDA graphs, in windows of steps of torch ops
  lossbench_c       the same windows with each step's later layers in one call of lossbench/cpu_step.c
                    (cpu, one hidden layer; its default path there when the C compiler builds it)
  lossbench_graphs  the Ensemble's steps replayed from CUDA graphs (cuda only)
  lossbench_triton  the Ensemble's steps in launches of the fused Triton kernel (cuda only; its default
                    path there, lossbench/triton_train.py)
for each shape and ensemble size, in the layouts that matter to the Ensemble (see `layouts`), and the
peers, for the sweep's runs (lossbench.peers; --peers chooses):
  torch_func        stack_module_state + vmap(grad) through the pair's own autograd Function, eager
  jax               jax.jit of a lax.scan of vmap(grad) over each timed window (cpu; the extra `bench`)

Each row trains --steps mini-batches per model (--baseline-steps for the plain loop and NumPy)
after --warmup untimed ones, from a fresh initialization: model-epochs/s = models x steps / 5000
(steps per epoch) / seconds, and one evaluation on validation + test gives train+eval
model-epochs/s; what a row trains and how it is timed is lossbench/timing.py's. FLOPs are
counted, and set against the peak that a large float32 matmul reaches on the same device in
the same run. The rows run as lossbench runs: importing lossbench.ensemble has every cpu thread
flush denormal numbers to zero; three last rows time the sweep's ensembles after some training
with denormals not flushed, flushed by the main thread only, and by all threads (the denormal
study, lossbench/denormals.py). --full adds the whole default sweep (`python -m lossbench
sweep`, with --sweep-overrides) timed end to end. This module writes bench.csv (the table, with
the host's load beside each row) and prints it with the targets of issues 8 and 13.
"""

import argparse
import datetime
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.errors import HydraException
from omegaconf import DictConfig

from lossbench import config, peers
from lossbench.data import N_CLASSES
from lossbench.denormals import flushed_share, time_flush_modes
from lossbench.devices import resolve_device
from lossbench.errors import UserError
from lossbench.provenance import cpu_seconds, hardware, other_cpu
from lossbench.timing import (EPOCH_EXAMPLES, EPOCH_STEPS, N_INPUTS, PEAK_N, PEERS, Settings, Timing, bench_data,
                              engines, fp32_peak_gflops, layouts, on_device, shape_name, sweep_ensembles, sweep_label,
                              sweep_engine, sweep_steps, time_ensembles, time_full_sweep, time_numpy_book, time_peer,
                              time_plain_pytorch, train_gflop_per_model_epoch)

BUSY = 0.1  # other processes' share of the cpus above which a row's timing is suspect
TARGET_MODELS = 160
PEAK_TARGETS = {"784-30-10": 0.40, "784-100-10": 0.45}  # issue 13: the sweep's layout on the cpu, training
EVAL_TARGETS = {"784-30-10": 0.35}  # the same with its evaluation
PEER_LEAD = 2.0  # and model-ep/s over the faster peer's (torch_func, jax) in the same run
TARGETS = {("cpu", "784-30-10"): 20.0, ("cuda", "784-30-10"): 800.0, ("cuda", "784-100-10"): 300.0}  # issue 8
BENCH_COLUMNS = ["method", "shape", "models", "layout", "device", "dtype", "steps", "seconds", "model_epochs_per_s",
           "gflops", "peak_share", "torch_version", "numpy_version", "device_name", "date",
           # beyond issue 8's list: the evaluation, and the setting and conditions of the row
           "eval_s_per_epoch", "train_eval_model_epochs_per_s", "peak_gflops", "data", "trained_steps",
           "flush_denormal", "denormal_share", "threads", "load1", "other_cpu", "target"]



def sweep_config(overrides: list[str]) -> DictConfig:
    """The sweep's config with --sweep-overrides, as `python -m lossbench sweep OVERRIDES` composes it, validated."""
    try:
        cfg = config.compose_config(overrides)
    except HydraException as err:
        raise UserError(f"--sweep-overrides {' '.join(overrides)}: {err}") from None
    config.validate(cfg)
    return cfg


class BenchCsv:
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
        frame = pd.DataFrame(self.rows, columns=BENCH_COLUMNS)
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
    sweep_methods = {shape: f"lossbench_{sweep_engine(parse_shape(shape))}" for shape in frame["shape"].unique()}
    rows = frame[(frame.method == frame["shape"].map(sweep_methods)) & frame.layout.str.startswith("sweep:")
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
        lines += [f"issue 13, {shape}, the sweep's layout ({row.method}): {text} (target {fmt.format(target)}): "
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
    lines += ["eval s: one evaluation of all the row's models on validation + test (20,000 images), which every "
              "epoch ends with; train+eval: model-ep/s with it. x plain / x numpy: model-ep/s over the plain loop's "
              "(same device) and the book's NumPy's (cpu), same shape; x torch_func / x jax: over the peer's "
              "(lossbench.peers: the sweep's runs through torch.func and JAX; JAX uses XLA's own thread pool).",
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


def checked(args: argparse.Namespace) -> argparse.Namespace:
    """The options bench_cli parsed, checked (UserError), with the defaults torch decides filled in."""
    if args.devices is None:
        args.devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    if args.threads is None:
        args.threads = torch.get_num_threads()
    for name in ("steps", "baseline_steps", "repeat", "threads"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}={getattr(args, name)}: give a count >= 1.")
    for name in ("warmup", "denormal_steps"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name.replace('_', '-')}={getattr(args, name)}: give a count >= 0.")
    if min(args.models) < 1:
        raise UserError(f"--models {min(args.models)}: an ensemble holds at least 1 model.")
    args.devices = list(dict.fromkeys(resolve_device(name, option="--devices") for name in args.devices))
    args.shapes = [parse_shape(text) for text in args.shapes]
    if "jax" in args.peers and not peers.jax_available():
        print("note: jax is not installed, so the jax peer row is skipped; pip install 'lossbench[bench]' adds it.",
              file=sys.stderr)
        args.peers.remove("jax")
    return args


def run(args: argparse.Namespace) -> int:
    """Measure and print what the options of lossbench/bench_cli.py's parser ask for; the exit status."""
    args = checked(args)
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
    devices = args.devices
    print(f"lossbench bench: {split.name} data, {torch.get_num_threads()} cpu threads, load "
          f"{os.getloadavg()[0]:.2f}; measuring the FP32 matmul peak ...", file=sys.stderr, flush=True)
    table = BenchCsv(args.out, split.name, {d.type: hardware(d) for d in devices})
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
            table.add(f"lossbench_{sweep_engine(sizes)}", sizes, sweep_models, sweep_label(sweep), torch.device("cpu"),
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
