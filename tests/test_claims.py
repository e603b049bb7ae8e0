"""Tests of the record of a claim: measured and decided when evaluated, its figures and verdict as text.

    python -m pytest tests/test_claims.py
"""

from lossbench import claims


def test_a_claim_is_measured_and_decided_when_evaluated():
    calls = []
    claim = claims.Claim("x is small", "a paper", lambda: calls.append(1) or {"x": 0.5}, lambda f: f["x"] < 1,
                         criterion="x < 1", setting="s")
    assert calls == []  # nothing is measured before it is evaluated
    assert claim.evaluate() == ({"x": 0.5}, True) and calls == [1]


def test_the_claims_table_gives_figures_and_verdicts_in_words():
    table = claims.claims_table([
        claims.Claim("holds", "src", lambda: {"a": 1.23456, "b": 2.0}, lambda f: True),
        claims.Claim("cannot tell", "src", lambda: {"a": 0.0}, lambda f: None),
        claims.Claim("does not hold", "src", lambda: {"a": 0.0}, lambda f: 0)])  # a falsy figure: False, not None
    assert list(table.columns) == claims.CLAIMS_COLUMNS
    assert table["measurement"].tolist()[0] == "a = 1.235; b = 2"
    assert table["verdict"].tolist() == ["holds", "inconclusive", "does not hold"]


def test_a_claim_measured_already_keeps_its_words_and_the_books_figure():
    claim = claims.measured("the output ends near 0.09", "0.09", "0.0923 at epoch 300", True, "equal to 2 decimals",
                            source="Nielsen ch. 3")
    figures, holds = claim.evaluate()
    assert (claims.measurement_text(figures), holds, claim.book, claim.source) == (
        "0.0923 at epoch 300", True, "0.09", "Nielsen ch. 3")
    assert claims.measured("t", "b", "m", False, "c").evaluate()[1] is False
