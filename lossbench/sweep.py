"""Train (pair x learning rate x seed) grids as batched ensembles and write their CSVs.

    python -m lossbench sweep sweep.pairs=[sigmoid_ce] sweep.lrs=[0.5] sweep.seeds=2 optim.epochs=1 data.train_size=1000

A Hydra app (config groups in conf/, named studies via `+experiment=NAME`, see
lossbench/config.py). With no overrides it runs the default comparison: 4 pairs x
8 learning rates x 5 seeds, 784-30-10, 30 epochs of batch 10 (160 runs). Runs
train as Ensembles of at most sweep.ensemble_size models (all pairs and learning
rates of a block of seeds; 160 runs: one ensemble), since per-step overheads
are shared by all the models of an ensemble. The sweep directory (hydra.run.dir) gets
config.yaml, runs.csv and epochs.csv (lossbench/results.py); after every epoch
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

import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from tqdm import tqdm

from lossbench import analysis, config, report, results
from lossbench.data import N_CLASSES, Split, load_split
from lossbench.ensemble import Ensemble, RunSpec, TrainConfig
from lossbench.errors import UserError
from lossbench.pairs import PAIRS

PROG = "python -m lossbench sweep"
WARNED_LINES = 10  # damaged lines named one by one; a file damaged throughout gets a count beyond


class _Session:
    """What main() must know about the Hydra app it started (Hydra returns nothing)."""

    # A SystemExit(1) before Hydra composed the config is Hydra reporting bad overrides (status 2).
    # Set by the task, or for a multirun at its start: its jobs may run in other processes, and
    # a failed job ends the multirun with Hydra's status 1.
    config_composed = False
    created_output: Path | None = None  # removed again if the sweep stops on bad input while it is empty
    sweep_dir: Path | None = None  # a multirun's hydra.sweep.dir, for the resume override


class JobFailed(CompactHydraException):
    """A multirun job stopped by a UserError (bad input, a failed write). An exception, not an exit,
    so that Hydra runs the other jobs; once all have ended it prints the first failed job's
    overrides and this message (no traceback: a CompactHydraException) and exits 1."""


def fail(message: str) -> None:
    """Stop on bad input the CLI's way: `error: ...`, status 2 (an exception would get Hydra's traceback)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def fail_job(message: str) -> None:
    """fail(), or in a multirun job, fail only this job (its output shows the error at once)."""
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        fail(message)
    print(f"error: {message}", file=sys.stderr)
    raise JobFailed(f"error: {message}\nThe other jobs' results are kept.")


class RequireWritableOutput(Callback):
    """Check the output directory before Hydra creates it: Hydra's own failure is a traceback."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        require_writable(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _Session.config_composed = True
        _Session.sweep_dir = Path(config.hydra.sweep.dir).resolve()
        require_writable(_Session.sweep_dir)


def require_writable(directory: Path) -> None:
    existed = directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as err:
        fail(f"cannot write the output directory {directory} ({err.strerror or err}); "
             "choose a writable one with hydra.run.dir=PATH.")
    _Session.created_output = None if existed else directory.resolve()


def run_settings(cfg: DictConfig, n_train: int) -> dict:
    """The runs.csv columns that every run of this sweep shares (analysis groups runs by them)."""
    return {"sizes": "-".join(map(str, cfg.model.sizes)), "init": cfg.model.init.value,
            "batch_size": cfg.optim.batch_size, "epochs": cfg.optim.epochs, "l2": cfg.optim.l2,
            "dataset": cfg.data.name, "train_size": n_train, "dtype": cfg.dtype.value}


def ensembles(cfg: DictConfig, seeds: list[int]) -> dict[str, list[RunSpec]]:
    """The ensembles that train `seeds`, by name: blocks of whole seeds, each with every pair and
    learning rate, of at most sweep.ensemble_size models (a block's name also names its checkpoint)."""
    per_seed = len(cfg.sweep.pairs) * len(cfg.sweep.lrs)
    blocks = config.seed_blocks(seeds, per_seed, cfg.sweep.ensemble_size)
    return {f"seeds_{b[0]}" if len(b) == 1 else f"seeds_{b[0]}-{b[-1]}":
            [RunSpec(pair, lr, seed) for pair in cfg.sweep.pairs for lr in cfg.sweep.lrs for seed in b]
            for b in blocks}


class Sweep:
    """One sweep directory's runs: trains the unfinished ones block of seeds by block and writes their rows."""

    def __init__(self, cfg: DictConfig, out: Path, data: Split, device: str, resume: str):
        self.cfg, self.out, self.data, self.device, self.resume = cfg, out, data, device, resume
        self.settings = run_settings(cfg, len(data.train_x))
        self.hash = results.run_hash(self.settings, cfg.data.val_size)
        self.train_cfg = TrainConfig(sizes=tuple(cfg.model.sizes), init=cfg.model.init.value,
                                     batch_size=cfg.optim.batch_size, l2=cfg.optim.l2,
                                     dtype=getattr(torch, cfg.dtype.value), device=device)
        seeds = config.shard_seeds(config.seed_list(cfg.sweep.seeds), cfg.shard.count, cfg.shard.index)
        self.grid = ensembles(cfg, seeds)
        self.epoch_columns = results.metric_columns(len(cfg.model.sizes) - 1)

    def run_id(self, spec: RunSpec) -> str:
        return results.run_id(spec.pair, spec.lr, spec.seed, self.hash)

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
            results.require_replaceable(path)
        epochs = self.cfg.optim.epochs
        print(f"{n_runs} runs ({n_runs - n_todo} already finished) on {self.device} -> {self.out}\n"
              f"after an interruption, the same command plus {self.resume} resumes it", flush=True)
        with tqdm(total=n_runs * epochs, initial=(n_runs - n_todo) * epochs, unit="model-epoch",
                  desc="sweep", dynamic_ncols=True, file=sys.stderr) as progress:
            for block, specs in todo.items():
                if specs:
                    progress.set_postfix_str(f"{block} ({len(specs)} models)")
                    self.train_block(block, specs, progress)
                # a kill after the block's rows were written but before this leaves a spent checkpoint
                self.checkpoint(block).unlink(missing_ok=True)
        checkpoints = self.out / "checkpoints"
        if checkpoints.is_dir() and not any(checkpoints.iterdir()):
            checkpoints.rmdir()

    def finished_runs(self) -> set[str]:
        """The runs whose rows are intact in both CSVs (results.verify_sweep); the others are trained
        again. Where there is damage, a warning names each damaged line, and both CSVs are kept beside
        as backups, then rewritten with only the finished runs' rows (results.repair)."""
        found = results.verify_sweep(self.out, len(self.cfg.model.sizes) - 1, self.cfg.data.val_size)
        if found.damage:
            repaired = results.repair(found)
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
                saved = results.load_checkpoint(path)
                if saved["run_ids"] != ids:
                    raise results.CorruptCheckpoint("it holds other runs than this sweep's unfinished ones")
                ensemble = Ensemble(specs, self.train_cfg, self.data)
                ensemble.load_state_dict(saved["ensemble"])
                if len(saved["metrics"]) != ensemble.epoch + 1:
                    raise results.CorruptCheckpoint("its metric rows do not match its epoch")
                tqdm.write(f"resuming {block} from its checkpoint after epoch {ensemble.epoch}",
                           file=sys.stderr)
                return ensemble, saved["metrics"], saved["wall_time_s"]
            except (results.CorruptCheckpoint, KeyError, TypeError, ValueError, RuntimeError) as err:
                tqdm.write(f"warning: not resuming from {path}: {err}; training {block} from scratch.",
                           file=sys.stderr)
        ensemble = Ensemble(specs, self.train_cfg, self.data)
        return ensemble, [ensemble.evaluate()], 0.0

    def train_block(self, block: str, specs: list[RunSpec], progress: tqdm) -> None:
        started = time.perf_counter()
        ensemble, metrics, wall_before = self.start(block, specs)
        ids, path = [self.run_id(s) for s in specs], self.checkpoint(block)
        progress.update(ensemble.epoch * len(specs))
        while ensemble.epoch < self.cfg.optim.epochs:
            metrics.append(ensemble.train_epoch())
            results.save_checkpoint(path, {"run_ids": ids, "ensemble": ensemble.state_dict(), "metrics": metrics,
                                           "wall_time_s": wall_before + time.perf_counter() - started})
            progress.update(len(specs))
        wall = wall_before + time.perf_counter() - started
        # epochs.csv first: a run counts as finished once its runs.csv row exists
        results.write_rows(self.out / "epochs.csv", results.epoch_rows(ids, metrics, self.epoch_columns))
        results.write_rows(self.out / "runs.csv", self.run_rows(specs, ids, metrics, ensemble.diverged_epoch, wall))

    def run_rows(self, specs, ids, metrics, diverged: np.ndarray, wall: float) -> pd.DataFrame:
        pairs = [PAIRS[s.pair] for s in specs]
        trained = {key: results.metric_table(metrics, key, len(specs))[:, 1:] for key in ("test_acc", "val_acc")}
        rows = pd.DataFrame({
            "run_id": ids, "pair": [p.name for p in pairs], "activation": [p.activation for p in pairs],
            "cost": [p.cost for p in pairs],
            "lr": [s.lr for s in specs], "seed": [s.seed for s in specs], **self.settings,
            "status": np.where(diverged > 0, "diverged", "ok"),
            "diverged_epoch": pd.Series(diverged, dtype="Int64").where(diverged > 0),
            "wall_time_s": wall / len(specs), "device": self.device, "torch_version": torch.__version__,
        })
        outcomes = results.run_outcomes(trained["test_acc"], trained["val_acc"])
        return pd.concat([rows, outcomes], axis=1)[results.RUN_COLUMNS]


def summary_text(out: Path, cfg: DictConfig) -> str:
    """Per pair: the learning rate chosen on validation accuracy, with its test accuracies over seeds."""
    table = analysis.summarize(*analysis.read_sweep(out))  # this directory's runs, not nested sweeps
    best = table[table["best_lr"]].set_index("pair")

    def stat(pair: str, name: str) -> str:
        mean, std = best.loc[pair, f"{name}_mean"], best.loc[pair, f"{name}_std"]
        return f"{100 * mean:.2f} ± {100 * std:.2f}" if pd.notna(std) else f"{100 * mean:.2f}"

    lines = [{"pair": pair, "best lr": f"{best.loc[pair, 'lr']:g}", "seeds": best.loc[pair, "seeds"],
              "diverged": best.loc[pair, "diverged"], "peak test %": stat(pair, "peak"),
              "val-selected test %": stat(pair, "val_selected")} if pair in best.index
             else {"pair": pair, "best lr": "-", "peak test %": "every run diverged"}
             for pair in cfg.sweep.pairs]
    study = cfg.study
    text = [f"{study.name}: per pair, the best lr (highest mean best validation accuracy among lrs with no "
            "diverged seed) and its test accuracy, mean ± std over its non-diverged seeds",
            pd.DataFrame(lines).fillna("").to_string(index=False)]
    if study.book_test_acc:
        where = f"ch. {study.chapter}" + (f", {study.section}" if study.section else "")
        book = ", ".join(f"{100 * acc:.2f}%" for acc in study.book_test_acc)
        text.append(f"book ({where}): {book}. {study.setting}")
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        more = f"all jobs merged: python -m lossbench analyze {Path(hydra_cfg.sweep.dir).resolve()}"
    else:
        more = f"more: python -m lossbench analyze {out}"
    return "\n".join(text + [f"results: {out}/runs.csv, epochs.csv; {more}"])


def resume_override() -> str:
    """The override that points the same command at this sweep's directory again."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:  # one directory per job (number) under the sweep directory
        return f"hydra.sweep.dir={Path(hydra_cfg.sweep.dir).resolve()}"
    return f"hydra.run.dir={hydra_cfg.runtime.output_dir}"


def sweep(cfg: DictConfig, out: Path) -> None:
    started = time.perf_counter()
    config.validate(cfg)
    device = config.resolve_device(cfg.device)
    data = load_split(cfg.data.name, cfg.data.root, cfg.data.train_size, cfg.data.val_size,
                      device, getattr(torch, cfg.dtype.value))
    config.validate_against_data(cfg, data.train_x.shape[1], N_CLASSES, len(data.train_x))
    with results.directory_lock(out):
        results.claim_directory(out, cfg)
        results.remove_stale_temp_files(out)
        Sweep(cfg, out, data, device, resume_override()).run()
        # how this directory was made; a job of a multirun is recorded as the single sweep it is
        where = os.path.relpath(out) if out.resolve().is_relative_to(Path.cwd()) else out
        command = ["sweep", *HydraConfig.get().overrides.task, f"hydra.run.dir={where}"]
        report.write_run_info(out, command, device, time.perf_counter() - started)
    print(summary_text(out, cfg))


@hydra.main(config_path=str(config.CONF_DIR), config_name="config", version_base="1.3")
def hydra_app(cfg: DictConfig) -> None:
    _Session.config_composed = True
    out = Path(HydraConfig.get().runtime.output_dir)
    try:
        sweep(cfg, out)
    except results.WriteError as err:
        fail_job(f"{err} Make room (or mend the directory), then resume: the same command plus {resume_override()}.")
    except UserError as err:
        if out.resolve() == _Session.created_output and not any(out.iterdir()):
            out.rmdir()  # nothing was written: leave no empty directory behind
        fail_job(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished runs and checkpoints are in {out}. Resume with the same command "
              f"plus {resume_override()}", file=sys.stderr)
        sys.exit(130)


def check_launcher(argv: list[str]) -> None:
    """A launcher acts only on a multirun (without one Hydra trains here, in this process), and
    conf/hydra/launcher/lossbench_* need hydra-submitit-launcher (else Hydra "could not load" them)."""
    chosen = [arg for arg in argv if arg.startswith("hydra/launcher=")]
    if not chosen:
        return
    if not {"--multirun", "-m", "hydra.mode=MULTIRUN"} & set(argv):
        raise UserError(f"{chosen[0]} launches the jobs of a multirun only; put --multirun before the "
                        "overrides (without it the sweep would run here, in this process).")
    try:
        if chosen[0].startswith("hydra/launcher=lossbench_"):
            importlib.import_module("hydra_plugins.hydra_submitit_launcher")
    except ImportError:
        raise UserError(f"{chosen[0]} needs hydra-submitit-launcher, which is not installed; install "
                        "lossbench with its cluster extra: pip install -e '.[cluster]'.") from None


def main(argv: list[str]) -> int:
    """Run the Hydra app on `argv` (Hydra reads sys.argv itself); the exit status as an int."""
    check_launcher(argv)
    config.register()
    saved_argv, sys.argv = sys.argv, [PROG, *argv]
    _Session.config_composed, _Session.created_output, _Session.sweep_dir = False, None, None
    try:
        hydra_app()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        # Hydra prints a composition error (bad override, unknown option) and exits 1: bad input
        return 2 if code == 1 and not _Session.config_composed else code
    except KeyboardInterrupt:  # not in a job (hydra_app has its own): a launcher waiting for its jobs
        resume = f" plus hydra.sweep.dir={_Session.sweep_dir}" if _Session.sweep_dir else ""
        print(f"\ninterrupted; jobs already submitted to a cluster go on (scancel stops them). Once they have "
              f"ended, the same command{resume} trains what they left unfinished.", file=sys.stderr)
        return 130
    finally:
        sys.argv = saved_argv
    return 0
