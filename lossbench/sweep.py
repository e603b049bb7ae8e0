"""Train (pair x learning rate x seed) grids as batched ensembles and write their CSVs.

    python -m lossbench sweep sweep.pairs=[sigmoid_ce] sweep.lrs=[0.5] sweep.seeds=2 optim.epochs=1 data.train_size=1000

The task of a Hydra app (its command line: lossbench/sweep_cli.py; config groups in
conf/, named studies via `+experiment=NAME`, see lossbench/config.py). With no
overrides it runs the default comparison: 4 pairs x 8 learning rates x 5 seeds,
784-30-10, 30 epochs of batch 10 (160 runs). Runs
train as Ensembles of at most sweep.ensemble_size models (all pairs and learning
rates of a block of seeds; 160 runs: one ensemble), since per-step overheads
are shared by all the models of an ensemble. The sweep directory (hydra.run.dir) gets
config.yaml, runs.csv and epochs.csv (lossbench/results/); after every epoch
each unfinished ensemble is checkpointed, so the same command with
hydra.run.dir=DIR continues an interrupted sweep to the same numbers.

`--multirun` splits the grid into jobs, each a sweep of its own in
hydra.sweep.dir/<job number>, run by any Hydra launcher (conf/hydra/launcher/:
lossbench_local, lossbench_slurm): one job per pair (`'pair=glob(*,exclude=all)'`)
and/or per block of seeds (`shard.count=N 'shard.index=range(N)'`). Run ids do
not depend on the split, so `python -m lossbench analyze SWEEP_DIR` merges the
jobs into the results of one sweep. A job that fails leaves the others' results;
the same command with hydra.sweep.dir=SWEEP_DIR finishes what is missing.
"""

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from tqdm import tqdm

from lossbench import atomic, config, cpu_step, grid, provenance, statistics, tables
from lossbench.data import N_CLASSES, Split, load_split
from lossbench.devices import resolve_device
from lossbench.ensemble import Ensemble, RunSpec, TrainConfig, choose_engine
from lossbench.pairs import PAIRS
from lossbench.results import columns, load, verify, write
from lossbench.sweep_cli import resume_override

WARNED_LINES = 10  # damaged lines named one by one; a file damaged throughout gets a count beyond


def duration_text(seconds: float) -> str:
    """An expected time as the sweep prints it: minutes from 90 s, else seconds; a tiny sweep's
    0.3 s is "under 1 s", not "about 0 s"."""
    if seconds >= 90:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds:.0f} s" if seconds >= 1 else "under 1 s"


class Progress:
    """The sweep's bar, in model-epochs, moved within an epoch whenever the ensemble reports its
    steps (every few hundred), and the expected time, printed once, after the first steps. Those
    are real training steps, no extra warm-up; the evaluation that ends each epoch is counted at
    the time the evaluation at initialization took (when this session started a block fresh)."""

    def __init__(self, total: int, done: int):
        self.bar = tqdm(total=total, initial=done, unit="model-epoch", desc="sweep", dynamic_ncols=True,
                        file=sys.stderr)
        self.evaluation_s_per_model: float | None = None
        self.estimated = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def begin_epoch(self, models: int, steps: int) -> None:
        self.models, self.steps, self.shown, self.started = models, steps, 0, time.perf_counter()

    def steps_done(self, step: int) -> None:
        """The ensemble's hook: `step` of this epoch's `steps` steps have run."""
        shown = self.models * step // self.steps  # whole model-epochs, as the bar counts
        self.bar.update(shown - self.shown)
        self.shown = shown
        if not self.estimated:
            self.estimated = True
            self.print_estimate(self.models * step / self.steps / (time.perf_counter() - self.started), step)

    def end_epoch(self) -> None:
        self.bar.update(self.models - self.shown)

    def print_estimate(self, rate: float, step: int) -> None:
        """rate: model-epochs/s of training steps alone, measured over the first `step` steps."""
        left = self.bar.total - self.bar.n
        seconds = left / rate
        measured = f"{rate:.3g} model-epochs/s over the first {step} steps"
        if self.evaluation_s_per_model is not None:
            seconds += left * self.evaluation_s_per_model
            measured += f", evaluation {self.evaluation_s_per_model * self.models:.2f} s per epoch"
        else:
            measured += "; evaluation not counted"
        tqdm.write(f"expected time: {duration_text(seconds)} for the {left} model-epochs left ({measured}); "
                   "the bar's ETA follows the actual rate", file=sys.stderr)


class Sweep:
    """One sweep directory's runs: trains the unfinished ones block of seeds by block and writes their rows."""

    def __init__(self, cfg: DictConfig, out: Path, data: Split, device: str, resume: str):
        self.cfg, self.out, self.data, self.device, self.resume = cfg, out, data, device, resume
        self.settings = grid.run_settings(cfg, len(data.train_x))
        self.hash = columns.run_hash(self.settings, cfg.data.val_size)
        self.train_cfg = TrainConfig(sizes=tuple(cfg.model.sizes), init=cfg.model.init.value,
                                     batch_size=cfg.optim.batch_size, l2=cfg.optim.l2,
                                     dtype=getattr(torch, cfg.dtype.value), device=device, engine=cfg.engine.value)
        self.engine = choose_engine(self.train_cfg, list(cfg.sweep.pairs))
        self.engine_note = self.engine  # and, where auto fell back to eager on the CPU, why (a slower sweep)
        if self.engine == "eager" and cfg.engine.value == "auto" and torch.device(device).type == "cpu":
            why = cpu_step.unsupported(self.train_cfg.sizes, cfg.optim.batch_size, torch.device(device),
                                       self.train_cfg.dtype, list(cfg.sweep.pairs))
            self.engine_note = f"eager: engine c cannot train here, {why}"
        self.grid = grid.ensembles(cfg, grid.job_seeds(cfg))
        self.epoch_columns = columns.metric_columns(len(cfg.model.sizes) - 1)

    def run_id(self, spec: RunSpec) -> str:
        return columns.run_id(spec.pair, spec.lr, spec.seed, self.hash)

    def checkpoint(self, block: str) -> Path:
        return self.out / "checkpoints" / f"{block}.pt"

    def run(self) -> None:
        done = self.finished_runs()
        todo = {block: [s for s in specs if self.run_id(s) not in done] for block, specs in self.grid.items()}
        n_runs, n_todo = sum(map(len, self.grid.values())), sum(map(len, todo.values()))
        # before training anything: each file the sweep will replace (or delete) must be one it may
        replaced = [self.checkpoint(block) for block in self.grid]
        if n_todo:
            replaced += [self.out / "runs.csv", self.out / "epochs.csv"]
        for path in replaced:
            atomic.require_replaceable(path)
        epochs = self.cfg.optim.epochs
        print(f"{n_runs} runs ({n_runs - n_todo} already finished) on {self.device} -> {self.out} "
              f"(engine {self.engine_note})\n"
              f"after an interruption, the same command plus {self.resume} resumes it", flush=True)
        with Progress(n_runs * epochs, (n_runs - n_todo) * epochs) as progress:
            for block, specs in todo.items():
                if specs:
                    progress.bar.set_postfix_str(f"{block} ({len(specs)} models)")
                    self.train_block(block, specs, progress)
                # a kill after the block's rows were written but before this leaves a spent checkpoint
                self.checkpoint(block).unlink(missing_ok=True)
        checkpoints = self.out / "checkpoints"
        if checkpoints.is_dir() and not any(checkpoints.iterdir()):
            checkpoints.rmdir()

    def finished_runs(self) -> set[str]:
        """The runs whose rows are intact in both CSVs (verify.verify_sweep); the others are trained
        again. Where there is damage, a warning names each damaged line, and both CSVs are kept beside
        as backups, then rewritten with only the finished runs' rows (verify.repair)."""
        found = verify.verify_sweep(self.out, len(self.cfg.model.sizes) - 1, self.cfg.data.val_size)
        if found.damage:
            repaired = verify.repair(found)
            for damage in found.damage[:WARNED_LINES]:
                print(f"warning: {damage}", file=sys.stderr)
            if len(found.damage) > WARNED_LINES:
                print(f"warning: ... and {len(found.damage) - WARNED_LINES} more damaged lines", file=sys.stderr)
            for path, backup in repaired:
                print(f"warning: kept {path} as it was in {backup}, and rewrote it with only the rows of the "
                      "runs that are intact in both CSVs", file=sys.stderr)
            print("warning: the runs of the damaged lines are trained again", file=sys.stderr)
        return set(found.finished["run_id"])

    def start(self, block: str, specs: list[RunSpec]) -> tuple[Ensemble, list[dict], float]:
        """The ensemble of `specs`, its metrics so far and its wall time so far: from the
        block's checkpoint if that is sound (else a warning), otherwise fresh at epoch 0."""
        path, ids = self.checkpoint(block), [self.run_id(s) for s in specs]
        if path.exists():
            try:
                saved = write.load_checkpoint(path)
                if saved["run_ids"] != ids:
                    raise write.CorruptCheckpoint("it holds other runs than this sweep's unfinished ones")
                ensemble = Ensemble(specs, self.train_cfg, self.data)
                ensemble.load_state_dict(saved["ensemble"])
                if len(saved["metrics"]) != ensemble.epoch + 1:
                    raise write.CorruptCheckpoint("its metric rows do not match its epoch")
                tqdm.write(f"resuming {block} from its checkpoint after epoch {ensemble.epoch}",
                           file=sys.stderr)
                return ensemble, saved["metrics"], saved["wall_time_s"]
            except (write.CorruptCheckpoint, KeyError, TypeError, ValueError, RuntimeError) as err:
                tqdm.write(f"warning: not resuming from {path}: {err}; training {block} from scratch.",
                           file=sys.stderr)
        ensemble = Ensemble(specs, self.train_cfg, self.data)
        return ensemble, [ensemble.evaluate()], 0.0

    def train_block(self, block: str, specs: list[RunSpec], progress: "Progress") -> None:
        started = time.perf_counter()
        ensemble, metrics, wall_before = self.start(block, specs)
        if ensemble.epoch == 0:  # start() evaluated it at initialization, as every epoch ends
            progress.evaluation_s_per_model = (time.perf_counter() - started) / len(specs)
        ids, path = [self.run_id(s) for s in specs], self.checkpoint(block)
        progress.bar.update(ensemble.epoch * len(specs))
        while ensemble.epoch < self.cfg.optim.epochs:
            progress.begin_epoch(len(specs), len(self.data.train_x) // self.cfg.optim.batch_size)
            metrics.append(ensemble.train_epoch(progress.steps_done))
            write.save_checkpoint(path, {"run_ids": ids, "ensemble": ensemble.state_dict(), "metrics": metrics,
                                           "wall_time_s": wall_before + time.perf_counter() - started})
            progress.end_epoch()
        wall = wall_before + time.perf_counter() - started
        # epochs.csv first: a run counts as finished once its runs.csv row exists
        write.write_rows(self.out / "epochs.csv", columns.epoch_rows(ids, metrics, self.epoch_columns))
        write.write_rows(self.out / "runs.csv", self.run_rows(specs, ids, metrics, ensemble.diverged_epoch, wall))

    def run_rows(self, specs, ids, metrics, diverged: np.ndarray, wall: float) -> pd.DataFrame:
        pairs = [PAIRS[s.pair] for s in specs]
        trained = {key: columns.metric_table(metrics, key, len(specs))[:, 1:] for key in ("test_acc", "val_acc")}
        rows = pd.DataFrame({
            "run_id": ids, "pair": [p.name for p in pairs], "activation": [p.activation for p in pairs],
            "cost": [p.cost for p in pairs],
            "lr": [s.lr for s in specs], "seed": [s.seed for s in specs], **self.settings,
            "status": np.where(diverged > 0, "diverged", "ok"),
            "diverged_epoch": pd.Series(diverged, dtype="Int64").where(diverged > 0),
            "wall_time_s": wall / len(specs), "device": self.device, "torch_version": torch.__version__,
        })
        outcomes = columns.run_outcomes(trained["test_acc"], trained["val_acc"])
        return pd.concat([rows, outcomes], axis=1)[columns.RUN_COLUMNS]


# Overrides that change where and how a study runs, not which study it is
RUN_KEYS = {"device", "data.root", "sweep.seeds", "sweep.ensemble_size", "shard.count", "shard.index"}


def study_title(cfg: DictConfig) -> str | None:
    """The study's name for a named study (+experiment=NAME) or for the default comparison with
    overrides of RUN_KEYS only; None for any other sweep."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.runtime.choices.get("experiment"):
        return cfg.study.name
    changed = [o for o in hydra_cfg.overrides.task if o.lstrip("+~").split("=", 1)[0] not in RUN_KEYS]
    return None if changed else cfg.study.name


def summary_text(out: Path, cfg: DictConfig) -> str:
    """Per pair: the learning rate chosen on validation accuracy, with its test accuracies over seeds."""
    table = statistics.summarize(*load.read_sweep(out))  # this directory's runs, not nested sweeps
    best = table[table["best_lr"]].set_index("pair")

    def stat(pair: str, name: str) -> str:  # as `analyze` prints it: ± the 95% interval's half-width
        return tables.percent_stat(*best.loc[pair, [f"{name}_mean", f"{name}_ci95", "n"]])

    lines = [{"pair": pair, "best lr": f"{best.loc[pair, 'lr']:g}", "seeds": best.loc[pair, "seeds"],
              "diverged": best.loc[pair, "diverged"], "peak test %": stat(pair, "peak"),
              "val-selected test %": stat(pair, "val_selected")} if pair in best.index
             else {"pair": pair, "best lr": "-", "peak test %": "every run diverged"}
             for pair in cfg.sweep.pairs]
    study, title = cfg.study, study_title(cfg)
    text = [f"{title or 'this sweep'}: per pair, the best lr (highest mean best validation accuracy among lrs "
            "with no diverged seed) and its test accuracy: mean over its non-diverged seeds ± the half-width "
            "of the 95% t-interval, as `analyze` prints it",
            pd.DataFrame(lines).fillna("").to_string(index=False)]
    if title and study.book_test_acc:
        where = f"ch. {study.chapter}" + (f", {study.section}" if study.section else "")
        book = ", ".join(f"{100 * acc:.2f}%" for acc in study.book_test_acc)
        text.append(f"book ({where}): {book}. {study.setting}")
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        more = f"all jobs merged: python -m lossbench analyze {Path(hydra_cfg.sweep.dir).resolve()}"
    else:
        more = f"more: python -m lossbench analyze {out}"
    return "\n".join(text + [f"results: {out}/runs.csv, epochs.csv; {more}"])


def sweep(cfg: DictConfig, out: Path) -> None:
    started, code = time.perf_counter(), provenance.code_version()  # before training: a later commit did not make it
    config.validate(cfg)
    device = resolve_device(cfg.device.value).type  # cpu or cuda: as runs.csv and run_info.json name it
    data = load_split(cfg.data.name, cfg.data.root, cfg.data.train_size, cfg.data.val_size,
                      device, getattr(torch, cfg.dtype.value))
    config.validate_against_data(cfg, data.train_x.shape[1], N_CLASSES, len(data.train_x))
    with write.directory_lock(out):
        write.claim_directory(out, cfg)
        write.remove_stale_temp_files(out)
        Sweep(cfg, out, data, device, resume_override()).run()
        # how this directory was made; a job of a multirun is recorded as the single sweep it is
        where = os.path.relpath(out) if out.resolve().is_relative_to(Path.cwd()) else out
        command = ["sweep", *HydraConfig.get().overrides.task, f"hydra.run.dir={where}"]
        provenance.write_run_info(out, command, device, time.perf_counter() - started, code)
    print(summary_text(out, cfg))
