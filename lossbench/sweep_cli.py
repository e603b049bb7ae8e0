"""The sweep command's front: its command line, Hydra, the hints for bad overrides, `--help`.

    python -m lossbench sweep --help

`main(argv)` checks the overrides first (overrides.check_overrides: one paragraph with a hint,
exit status 2), then runs the Hydra app, whose task trains the sweep (lossbench/sweep.py).
The trainer, and torch with it, is imported only once Hydra has composed a config: `--help`,
`--cfg job` and a bad override answer without importing torch (which alone took 5.8 s on the
2-core dev machine under load).
"""

import importlib
import string
import sys
import tempfile
from pathlib import Path

import hydra
from hydra import compose
from hydra._internal.utils import get_args_parser  # the parser hydra.main reads sys.argv with
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from lossbench import atomic, config, overrides
from lossbench.errors import UserError

PROG = "python -m lossbench sweep"


class _Session:
    """What main() must know about the Hydra app it started (Hydra returns nothing)."""

    # A SystemExit(1) before Hydra composed the config is Hydra reporting bad overrides (status 2).
    # Set by the task, or for a multirun at its start: its jobs may run in other processes, and
    # a failed job ends the multirun with Hydra's status 1.
    config_composed = False
    # The outermost directory that require_writable created (absolute), or None: what a sweep
    # stopped by bad input removes again while it is empty (outputs/sweep/ included).
    created_output: Path | None = None
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
    directory = directory.absolute()
    missing = [folder for folder in (directory, *directory.parents) if not folder.exists()]
    _Session.created_output = missing[-1].resolve() if missing else None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError as err:
        remove_created(directory)
        fail(f"cannot write the output directory {directory} ({err.strerror or err}); "
             "choose a writable one with hydra.run.dir=PATH.")


def remove_created(directory: Path) -> None:
    """Remove `directory` and the parents that require_writable created for it, while they are empty."""
    top = _Session.created_output
    for folder in (directory.resolve(), *directory.resolve().parents):
        if top is None or not folder.is_relative_to(top):
            return
        if folder.exists():
            if any(folder.iterdir()):
                return
            folder.rmdir()


def resume_override() -> str:
    """The override that points the same command at this sweep's directory again."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:  # one directory per job (number) under the sweep directory
        return f"hydra.sweep.dir={Path(hydra_cfg.sweep.dir).resolve()}"
    return f"hydra.run.dir={Path(hydra_cfg.runtime.output_dir).absolute()}"


@hydra.main(config_path=str(config.CONF_DIR), config_name="config", version_base="1.3")
def hydra_app(cfg: DictConfig) -> None:
    _Session.config_composed = True
    from lossbench import sweep  # the trainer: torch, only now (see the module's docstring)

    out = Path(HydraConfig.get().runtime.output_dir).absolute()
    try:
        sweep.sweep(cfg, out)
    except atomic.WriteError as err:
        fail_job(f"{err} Make room (or mend the directory), then resume: the same command plus {resume_override()}.")
    except UserError as err:
        remove_created(out)  # leave no directory behind that was not there (only empty ones go)
        fail_job(str(err))
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished runs and checkpoints are in {out}. Resume with the same command "
              f"plus {resume_override()}", file=sys.stderr)
        sys.exit(130)


def check_launcher(argv: list[str], trains: bool) -> None:
    """A launcher acts only on a multirun (without one Hydra trains here, in this process; `trains`:
    the command is not one that only prints, like --cfg), and conf/hydra/launcher/lossbench_* need
    hydra-submitit-launcher (else Hydra "could not load" them)."""
    chosen = [arg for arg in argv if arg.startswith("hydra/launcher=")]
    if not chosen:
        return
    if trains and not {"--multirun", "-m", "hydra.mode=MULTIRUN"} & set(argv):
        raise UserError(f"{chosen[0]} launches the jobs of a multirun only; put --multirun before the "
                        "overrides (without it the sweep would run here, in this process).")
    try:
        if chosen[0].startswith("hydra/launcher=lossbench_"):
            importlib.import_module("hydra_plugins.hydra_submitit_launcher")
    except ImportError:
        raise UserError(f"{chosen[0]} needs hydra-submitit-launcher, which is not installed; install "
                        "lossbench with its cluster extra: pip install -e '.[cluster]'.") from None


def print_help(given: list[str]) -> None:
    """Hydra's help for the app (hydra.help.template: header, groups, the composed config, footer),
    listing our groups only. Hydra's own lists all of them, its dozens of hydra/* groups too, at a
    deep copy of its config repository each: 0.55 s of the 0.8 s `--help` took on the dev machine."""
    with config.hydra_on_conf():
        cfg = compose(config_name="config", overrides=given, return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
        groups = sorted(group for group in loader.list_groups("") if group != "hydra")
        listing = "".join(f"{group}: {', '.join(sorted(loader.get_group_options(group)))}\n" for group in groups)
    template = string.Template(cfg.hydra.help.template)  # resolved here: it reads hydra.help.header
    with open_dict(cfg):
        del cfg["hydra"]
    print(template.safe_substitute(APP_CONFIG_GROUPS=listing, CONFIG=OmegaConf.to_yaml(cfg)))


def check_command_line(args) -> None:
    """overrides.check_overrides on the overrides of `args` (Hydra's parsed command line)."""
    if args.hydra_help or args.info or args.shell_completion or not args.overrides:
        return  # Hydra only prints something, whatever the overrides
    overrides.check_overrides(args.overrides, multirun=args.multirun or "hydra.mode=MULTIRUN" in args.overrides)


def only_prints(args) -> bool:
    """Whether Hydra only prints something (help, the config, its info) and trains nothing."""
    return bool(args.help or args.hydra_help or args.cfg or args.info or args.shell_completion)


def main(argv: list[str]) -> int:
    """Run the Hydra app on `argv` (Hydra reads sys.argv itself); the exit status as an int."""
    args, _ = get_args_parser().parse_known_args(argv)
    check_launcher(argv, trains=not only_prints(args))
    config.register()
    check_command_line(args)
    if args.help:
        print_help(args.overrides)
        return 0
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
