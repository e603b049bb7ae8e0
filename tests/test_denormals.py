"""Tests of the denormal study: the counter counts denormal results only; each flush mode flushes what it says.

    python -m pytest tests/test_denormals.py
"""

import pytest
import torch

from lossbench import denormals, timing


@pytest.mark.slow
def test_flush_modes_run_in_fresh_processes_and_flush_what_they_say(small_split, default_sweep):
    split, sweep = small_split, default_sweep
    settings = timing.Settings(steps=2, baseline_steps=1, warmup=1, repeat=1)
    results = denormals.time_flush_modes(sweep, (784, 3, 10), split, settings, trained=3)
    assert list(results) == ["off", "main thread", "on"]
    threads = torch.get_num_threads()
    assert [r["flushed"] for r in results.values()] == [0.0, pytest.approx(1 / threads, abs=0.01), 1.0]
    assert results["on"]["denormal_share"] == 0.0
    assert all(r["train_s"] > 0 and r["eval_s"] > 0 and r["steps"] == 2 for r in results.values())


def test_denormal_counter_counts_denormal_results_only():
    tiny = torch.finfo(torch.float32).tiny
    x = torch.tensor([tiny * 4, 1.0, 0.0])
    main_thread_flushes = bool(x[0] / 8 == 0)  # lossbench.ensemble turns flushing on: off for this test
    torch.set_flush_denormal(False)
    try:
        with denormals.DenormalCounter() as counter:
            y = x / 8  # tiny / 2 is denormal; 1/8 and 0 are not
            y.view(3, 1).t()  # views compute nothing: not counted
    finally:
        torch.set_flush_denormal(main_thread_flushes)
    assert (counter.denormal, counter.results) == (1, 3)
    assert counter.share == pytest.approx(1 / 3)
