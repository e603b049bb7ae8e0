"""The record of a claim from the literature: what it says, where it says so, how we measure it, the verdict.

    python -m lossbench gradcheck                  # claims about the pairs' gradients, on made-up inputs
    python -m lossbench verdict results/verdict    # claims about training, from the verdict's sweeps

A Claim pairs a statement with the code that measures it (`measure` -> named figures) and the
rule that decides it (`check` -> True: holds, False: does not hold, None: inconclusive, the data
cannot tell). `expected` is the verdict known in advance (gradcheck's derivations: a measurement
that starts to disagree is a bug); None for the open questions the sweeps decide. The studies
(`python -m lossbench study`) measure the book's statements from a run's traces, where the
measurement and the verdict come out together: `measured()` records those, with the book's own
figure beside ours.
"""

from dataclasses import dataclass
from typing import Callable

import pandas as pd

VERDICTS = {True: "holds", False: "does not hold", None: "inconclusive"}
CLAIMS_COLUMNS = ["setting", "text", "source", "criterion", "measurement", "verdict"]


@dataclass(frozen=True)
class Claim:
    """A statement from the literature, a measurement of it and the test of whether it holds."""

    text: str
    source: str
    measure: Callable[[], dict[str, float] | str]  # named figures, or the measurement in words
    check: Callable[[dict[str, float] | str], bool | None]
    expected: bool | None = None
    criterion: str = ""  # the check in words, for readers of a claims table
    setting: str = ""  # where it was measured, when that matters (a verdict setting)
    book: str = ""  # the source's own figure or words, to set beside ours (a study's claims)

    def evaluate(self) -> tuple[dict[str, float], bool | None]:
        figures = self.measure()
        verdict = self.check(figures)
        return figures, None if verdict is None else bool(verdict)


def measured(text: str, book: str, measurement: str, holds: bool, criterion: str, source: str = "") -> Claim:
    """A claim measured already, its measurement in words and its verdict found with it (a study's traces)."""
    return Claim(text, source, lambda: measurement, lambda _: holds, criterion=criterion, book=book)


def measurement_text(figures: dict[str, float] | str, spec: str = ".6g") -> str:
    if isinstance(figures, str):
        return figures
    return "; ".join(f"{name} = {value:{spec}}" for name, value in figures.items())


def claims_table(claims: list[Claim], spec: str = ".4g") -> pd.DataFrame:
    """One row per claim, CLAIMS_COLUMNS: each measured now, its figures as text, its verdict in words."""
    rows = []
    for claim in claims:
        figures, verdict = claim.evaluate()
        rows.append({"setting": claim.setting, "text": claim.text, "source": claim.source,
                     "criterion": claim.criterion, "measurement": measurement_text(figures, spec),
                     "verdict": VERDICTS[verdict]})
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS)
