"""Denormal numbers in training: how many a saturated network makes, and what flushing them to zero is worth.

    python -m lossbench bench --models 160 --shapes 784-30-10 --denormal-steps 2000 --out outputs/bench   # the last 3 rows

Saturated sigmoids and softmaxes make subnormal floats (|x| < 1.2e-38 in float32), which x86
cores handle in slow microcode unless flushed to zero; flushing changes no reported number.
torch.set_flush_denormal sets the calling thread's flag only, and OpenMP threads copy it when they
start, so it must be set before the first parallel op: lossbench.ensemble sets it on import.
This study trains the sweep's ensembles some steps, until they saturate, then counts the
denormal share of one window's results (DenormalCounter) and times them with denormals not
flushed, flushed by the main thread only, and flushed by all threads, each mode in a fresh
process (time_flush_modes): bench.csv's three last rows.

Measured (results/bench/README.md: 2-core Intel Xeon KVM guest, 2026-11-23, torch 2.13.0, the
trainer before issue 13's windows): after 2,000 steps of the sweep's 784-30-10 ensemble, 1.9e-4
of a step's results were denormal; 14.5 model-epochs/s with no thread flushing, 16.5 with the
main thread only, 19.9 with all threads: +37% from flushing everywhere. At initialization no
result is denormal.
"""

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lossbench.data import Split
from lossbench.ensemble import Ensemble, RunSpec, TrainConfig
from lossbench.provenance import cpu_seconds, other_cpu
from lossbench.timing import Settings, batch_indices, wall_seconds


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
CHILD = ("import json, sys; from lossbench import denormals; "
         "print(json.dumps(denormals.flush_child(json.loads(sys.argv[1]))))")


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
    windows = [sum(wall_seconds(lambda: e.run_steps(b[start:start + s.steps]), cpu) for e, b in zip(ensembles, batches))
               for start in range(first, first + s.repeat * s.steps, s.steps)]
    return dict(steps=s.steps, train_s=min(windows), eval_s=sum(wall_seconds(e.evaluate, cpu) for e in ensembles),
                denormal_share=counter.share, flushed=flushed_share())
