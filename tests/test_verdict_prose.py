"""The verdict's prose (lossbench/verdict_prose.py) from hand-made profiles; the page as a whole: test_verdict.py.

    python -m pytest tests/test_verdict_prose.py
"""

import pandas as pd

from lossbench import verdict_prose


def test_where_it_changes_counts_first_places_per_pair_and_groups_the_settings_by_their_top():
    """Per pair, its first places, alone or tied; the settings grouped by their first-ranked pairs, in the page's
    order, whatever the order of the pairs' rows or of their means (no set's order, which string hashing changes
    from process to process, shows)."""
    def profiles(*firsts, means=None):
        return pd.DataFrame({"pair": list(firsts) + ["linear_mse"], "rank_val_selected": [1] * len(firsts) + [2],
                             "val_selected_mean": (means or [0.95] * len(firsts)) + [0.9]})
    columns = [("mnist_large", {"profiles": profiles("sigmoid_ce", "sigmoid_mse", "softmax_nll")}),
               ("mnist_default", {"profiles": profiles("softmax_nll")}),
               ("fashion_large", {"profiles": profiles("softmax_nll", "sigmoid_mse", "sigmoid_ce", means=[0.9, 0.92, 0.91])}),
               ("fashion_default", {"profiles": profiles("sigmoid_mse", "softmax_nll")})]
    assert verdict_prose.changes_text(columns) == (
        "**Where it changes.** First places over the 4 complete settings: softmax_nll 4 (alone in 1, tied in 3); "
        "sigmoid_mse 3 (tied in each); sigmoid_ce 2 (tied in each); linear_mse 0. By setting: sigmoid_ce, sigmoid_mse "
        "and softmax_nll tie for first in mnist_large and fashion_large; softmax_nll is first alone in mnist_default; "
        "sigmoid_mse and softmax_nll tie for first in fashion_default.")
    assert verdict_prose.changes_text(columns[1:2]) == (
        "**Where it changes.** First places over the 1 complete setting: softmax_nll 1 (alone); sigmoid_mse 0; "
        "sigmoid_ce 0; linear_mse 0. In mnist_default: softmax_nll is first alone.")


def test_where_it_changes_orders_equal_first_places_by_those_alone_then_as_the_pairs_are():
    def profiles(*firsts):
        return pd.DataFrame({"pair": list(firsts), "rank_val_selected": 1, "val_selected_mean": 0.95})
    columns = [("a", {"profiles": profiles("sigmoid_mse", "softmax_nll")}), ("b", {"profiles": profiles("softmax_nll")}),
               ("c", {"profiles": profiles("sigmoid_ce", "sigmoid_mse")}), ("d", {"profiles": profiles("linear_mse")})]
    assert verdict_prose.changes_text(columns).startswith(
        "**Where it changes.** First places over the 4 complete settings: softmax_nll 2 (alone in 1, tied in 1); "
        "sigmoid_mse 2 (tied in each); linear_mse 1 (alone); sigmoid_ce 1 (tied). By setting: sigmoid_mse and "
        "softmax_nll tie for first in a; softmax_nll is first alone in b; ")
