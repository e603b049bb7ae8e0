"""The command-line entry point: `python -m lossbench <command> [args]`.

    python -m lossbench --help

Each command lives in its own module with a `main(argv) -> int`; they are
imported only when chosen, so `--help` stays fast. `sweep` is a Hydra app and
takes Hydra overrides; the others take ordinary flags.
"""

import importlib
import sys

from lossbench.errors import UserError

# name -> (module, one-line description)
COMMANDS = {
    "sweep": ("lossbench.sweep_cli", "train (pair x learning rate x seed) grids as batched ensembles; Hydra overrides"),
    "analyze": ("lossbench.analysis", "summary tables with confidence intervals and plots from sweep CSVs"),
    "gradcheck": ("lossbench.gradcheck_cli", "check every pair's hand-derived delta and the literature's claims"),
    "bench": ("lossbench.bench_cli", "measure model-epochs per second: plain PyTorch, NumPy, lossbench"),
    "report": ("lossbench.report", "rebuild results/README.md's book-vs-ours table from the committed CSVs"),
    "verdict": ("lossbench.verdict", "the verdict across settings: results/verdict/README.md and claims.csv from the CSVs"),
    "study": ("lossbench.studies.command", "run a study that is not a sweep: toy_neuron (ch. 3), nielsen_ch5_gradients, hidden_saturation"),
    "compare-runs": ("lossbench.compare", "how far two sweeps of the same config differ, run by run"),
    "data": ("lossbench.data_install", "data install DIR_OR_URL: put MNIST where every command finds it, checked"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m lossbench <command> [args]", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "`python -m lossbench <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose one of: {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: stop quietly, as Unix tools do
        sys.stderr.close()
        return 0
