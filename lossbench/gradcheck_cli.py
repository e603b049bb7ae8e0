"""The gradcheck command's front: its command line and `--help`, without torch.

    python -m lossbench gradcheck --help

`main(argv)` parses the options, then imports lossbench/gradcheck.py, which checks the pairs
with torch: `--help` and a bad option answer without importing torch (issue 17).
"""

import argparse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lossbench gradcheck",
        description="Check each pair's hand-derived delta against autograd through PyTorch's own ops, "
                    "central finite differences and torch.autograd.gradcheck, then measure the "
                    "literature's claims. Exit status 1 if any pair fails (claims never change it).")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                   help="where the pairs are checked (default: auto, cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from lossbench import gradcheck  # torch: only now (see the module's docstring)

    return gradcheck.run(args.device, args.seed)
