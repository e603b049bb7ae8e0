"""The bench command's front: its command line and `--help`, without torch.

    python -m lossbench bench --help

`main(argv)` parses the options, then imports lossbench/bench.py (torch, the trainer), which
checks them, fills in the defaults that torch decides (--devices, --threads) and measures:
`--help` and a bad option answer without importing torch (issue 17).
"""

import argparse
from pathlib import Path

from lossbench.choices import GRAPH_STEPS, Peer


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its default, except where the help states the default itself: one
    that torch decides, filled in after parsing (bench.checked), so that `--help` imports no torch."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return action.help if "(default:" in action.help else super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    peers = [peer.value for peer in Peer]
    p = argparse.ArgumentParser(prog="python -m lossbench bench", formatter_class=DefaultsHelpFormatter,
                                description="Model-epochs per second: a plain PyTorch loop, the book's NumPy code "
                                            "and lossbench, side by side.")
    p.add_argument("--steps", type=int, default=300, help="timed mini-batches per model and window, lossbench rows")
    p.add_argument("--baseline-steps", type=int, default=200, help="the same for the plain loop and NumPy rows")
    p.add_argument("--warmup", type=int, default=20, help="untimed mini-batches before the timing "
                   f"(with CUDA graphs: one graph of {GRAPH_STEPS} steps, and windows are whole graphs)")
    p.add_argument("--repeat", type=int, default=2, help="timed windows per row; the fastest counts")
    p.add_argument("--shapes", nargs="+", default=["784-30-10", "784-100-10"], help="layer sizes, 784-...-10")
    p.add_argument("--models", nargs="+", type=int, default=[1, 10, 160], help="ensemble sizes")
    p.add_argument("--devices", nargs="+", choices=["cpu", "cuda", "auto"],
                   help="cuda: when torch sees one; auto: cuda if it does, else cpu "
                        "(default: cpu, and cuda when torch sees one)")
    p.add_argument("--threads", type=int,
                   help="cpu threads (torch.set_num_threads); on a busy machine 1 thread suffers far less "
                        "(default: torch's, torch.get_num_threads())")
    p.add_argument("--data", choices=["auto", "mnist", "synthetic"], default="auto",
                   help="auto: MNIST (--data-root, else LOSSBENCH_DATA, else where `data install` puts it) "
                        "when it loads, else synthetic")
    p.add_argument("--data-root", default=None, help="directory of the MNIST IDX files")
    p.add_argument("--denormal-steps", type=int, default=2000,
                   help="cpu: train the sweep's ensembles (first shape) this many steps, then time them in each "
                        "flush mode (0: skip)")
    p.add_argument("--peers", nargs="*", choices=peers, default=peers,
                   help="peer rows: the sweep's runs through torch.func and JAX (jax: with the optional extra "
                        "`bench`, pip install 'lossbench[bench]'); --peers alone: none")
    p.add_argument("--full", action="store_true",
                   help="also run the whole default sweep (30 epochs, with evaluation) per shape and device")
    p.add_argument("--sweep-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="Hydra overrides of the sweep: for --full and for the 'sweep' layout (e.g. sweep.seeds=20)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench"), help="directory for bench.csv")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from lossbench import bench  # torch: only now (see the module's docstring)

    return bench.run(args)
