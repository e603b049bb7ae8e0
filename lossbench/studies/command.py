"""The `study` command: run a study that is not a sweep, configured by experiments/NAME.yaml.

    python -m lossbench study toy_neuron --out outputs/study/toy_neuron

Each study reads its settings from experiments/NAME.yaml (`command: study`, so the sweep skips
the file), checked against its schema; writes its CSVs and PNGs and the run's provenance
(run_info.json) to --out; and prints each claim beside our measurement, with the criterion that
decides whether it holds, writing them to claims.csv (columns claim, book, measured, holds,
criterion; `report` reads `holds`).
"""

import argparse
import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pandas as pd
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lossbench import provenance
from lossbench.claims import Claim, measurement_text
from lossbench.config import EXPERIMENTS_DIR
from lossbench.errors import UserError


@dataclass(frozen=True)
class Study:
    settings: str  # the name of its settings' schema, a dataclass in its module
    options: tuple[str, ...]  # the optional flags this study takes


# name -> the study in lossbench/studies/NAME.py, whose `run(cfg, out, data_root=...)` runs it. The modules import
# torch, so only the chosen one is imported, once the arguments are parsed (study_module): `study --help` needs none.
STUDIES = {
    "toy_neuron": Study("ToyNeuronSettings", ()),
    "nielsen_ch5_gradients": Study("GradientSettings", ("seeds", "data_root")),
    "hidden_saturation": Study("SaturationSettings", ("seeds", "data_root", "best_lrs_from")),
}


def study_module(name: str) -> ModuleType:
    """lossbench/studies/NAME.py of study `name` (a key of STUDIES), imported now."""
    return importlib.import_module(f"lossbench.studies.{name}")


def study_settings(name: str, schema: type):
    """experiments/NAME.yaml checked against `schema` (UserError naming the file and the problem)."""
    path = EXPERIMENTS_DIR / f"{name}.yaml"
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.load(path)))
    except (OSError, yaml.YAMLError, OmegaConfBaseException, ValueError) as err:
        # OmegaConf's message is its first line; the key it names comes apart, as full_key
        key = getattr(err, "full_key", None)
        detail = str(err).splitlines()[0] if key is not None else " ".join(str(err).split())
        raise UserError(f"cannot use the settings of study {name} in {path}: {detail}"
                        + (f" (key {key})." if key else ".")) from None


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    """claims.csv: per claim, its text, the book's figure, ours, whether it holds and the criterion."""
    rows = []
    for claim in claims:
        figures, holds = claim.evaluate()
        rows.append({"claim": claim.text, "book": claim.book, "measured": measurement_text(figures), "holds": holds,
                     "criterion": claim.criterion})
    return pd.DataFrame(rows, columns=["claim", "book", "measured", "holds", "criterion"])


def print_claims(name: str, cfg, claims: pd.DataFrame) -> None:
    print(f"{name}: Nielsen ch. {cfg.study.chapter}, \"{cfg.study.section}\"\n{cfg.study.setting}\n")
    for c in claims.itertuples():
        print(f"[{'holds' if c.holds else 'DOES NOT HOLD'}] {c.claim}\n    book: {c.book}\n"
              f"    ours: {c.measured}\n    criterion: {c.criterion}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lossbench study",
        description="Run a study that is not a sweep, configured by experiments/NAME.yaml; "
                    "print the book's claims beside our measurements.",
        epilog="studies: toy_neuron (ch. 3: one neuron, quadratic vs cross-entropy), "
               "nielsen_ch5_gradients (ch. 5: |dC/db| per hidden layer at initialization, over seeds), "
               "hidden_saturation (Glorot & Bengio 2010: hidden-layer saturation during training).")
    p.add_argument("name", metavar="NAME", help=f"the study: {', '.join(STUDIES)}")
    p.add_argument("--out", metavar="DIR", help="output directory (default: outputs/study/NAME)")
    p.add_argument("--seeds", type=int, metavar="N", help="nielsen_ch5_gradients, hidden_saturation: seeds 0..N-1 "
                                                          "(default: the yaml's)")
    p.add_argument("--data-root", metavar="DIR", help="nielsen_ch5_gradients, hidden_saturation: the data directory "
                                                      "(default: env LOSSBENCH_DATA, else where "
                                                      "`data install` puts it)")
    p.add_argument("--best-lrs-from", metavar="DIR", help="hidden_saturation: train each pair at its best lr of the "
                                                          "finished sweep in DIR (default: the yaml's lrs)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.name not in STUDIES:
        raise UserError(f"unknown study {args.name!r}; the studies are: {', '.join(STUDIES)}.")
    study = STUDIES[args.name]
    given = [opt for opt in ("seeds", "data_root", "best_lrs_from") if getattr(args, opt) is not None]
    for opt in given:
        if opt not in study.options:
            raise UserError(f"--{opt.replace('_', '-')} does not apply to study {args.name}; "
                            f"it takes: --out{''.join(' --' + o.replace('_', '-') for o in study.options)}.")
    module = study_module(args.name)
    cfg = study_settings(args.name, getattr(module, study.settings))
    if args.seeds is not None:
        cfg.seeds = args.seeds
    if args.best_lrs_from is not None:  # before settings.yaml is written, so that it records the lrs trained
        cfg.runs = module.runs_at_best_lrs(Path(args.best_lrs_from))
    out = Path(args.out or Path("outputs") / "study" / args.name)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the output directory {out} ({err.strerror}).") from None
    OmegaConf.save(OmegaConf.structured(cfg), out / "settings.yaml")
    started, code = time.perf_counter(), provenance.code_version()
    claims = module.run(cfg, out, data_root=args.data_root)
    provenance.write_run_info(out, ["study", *argv], "cpu", time.perf_counter() - started, code)
    if claims:  # hidden_saturation's claim is the verdict's to decide, from its CSV
        table = claims_frame(claims)
        table.to_csv(out / "claims.csv", index=False)
        print_claims(args.name, cfg, table)
    print(f"\nwrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")
    return 0
