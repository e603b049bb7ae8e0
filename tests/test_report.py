"""results/README.md's table against the committed CSVs, and the report's rows against hand computation.

    python -m pytest tests/test_report.py
"""

import re
from pathlib import Path

import pytest

from lossbench import provenance, report
from lossbench.errors import UserError

RESULTS = Path(__file__).resolve().parents[1] / "results"


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.?\d*", text)]


def test_committed_table_matches_the_committed_csvs():
    """Every number in results/README.md's table is recomputed here from the CSVs beside it."""
    assert report.main([str(RESULTS), "--check"]) == 0
    table = (RESULTS / "README.md").read_text()
    for study in report.ORDER:  # the six studies of the book are all there
        assert f"[{study}]({study}/)" in table


def test_check_fails_when_the_table_was_edited(edited_copy):
    copy = edited_copy(RESULTS, r"\| 95\.\d\d%", "| 99.99%")
    assert report.main([str(copy), "--check"]) == 1
    assert report.main([str(copy)]) == 0 and report.main([str(copy), "--check"]) == 0


def test_sweep_row_from_hand_made_runs(make_run, write_sweep, tmp_path):
    # peaks 95.0, 95.2, 95.6, 96.0: mean 95.45, sd 0.4435, median 95.4; the book's 95.42 is at or above
    # 2 of 4 (percentile 50). Best of 3 over the 4 triples: 95.6 once, 96.0 three times: mean 95.9.
    study = write_sweep(tmp_path / "nielsen_ch1_h30", [make_run("sigmoid_mse", 3.0, seed, [0.9, peak, peak - 0.01])
                                                      for seed, peak in enumerate([0.95, 0.952, 0.956, 0.96])])
    (study / "config.yaml").write_text("study:\n  name: nielsen_ch1_h30\n  chapter: 1\n  book_test_acc: [0.9542]\n")
    provenance.write_run_info(study, ["sweep", "+experiment=nielsen_ch1_h30"], "cpu", 12.0, "abc1234")
    row = report.study_row(study)
    assert row["book's number"] == "95.42%"
    mean, sd, n, diverged = numbers(row["ours: mean ± std (n)"])
    assert (mean, sd, n, diverged) == (pytest.approx(95.45, abs=0.006), pytest.approx(0.44, abs=0.006), 4, 0)
    assert numbers(row["median"]) == [pytest.approx(95.40, abs=0.006)]
    assert row["book's percentile"] == "50"
    best_mean = numbers(row["ours, best of 3 runs"])[0]
    assert best_mean == pytest.approx(95.90, abs=0.006)
    assert row["runs peaking below 90%"] == "0 of 4"
    assert row["command"] == "`python -m lossbench sweep +experiment=nielsen_ch1_h30`"
    assert row["wall time"] == "12 s" and "cores" in row["hardware"] and row["code"] == "abc1234"


def test_missing_markers_or_studies_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="no study directory"):
        report.build_table(tmp_path)
    with pytest.raises(UserError, match="no table markers"):
        report.replace_table("# Results\n", "| a |")
