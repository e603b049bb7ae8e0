"""Tests of `python -m lossbench bench`: the FLOP count by hand, the layouts, and a tiny run's CSV. No timings.

    /work/venv/bin/python -m pytest tests/test_bench.py
"""

import pandas as pd
import pytest
import torch

from lossbench import bench, cli
from lossbench.ensemble import Ensemble, TrainConfig
from lossbench.errors import UserError

from conftest import mnist_available

POSITIVE = ["models", "steps", "seconds", "model_epochs_per_s", "gflops", "peak_share", "eval_s_per_epoch",
            "train_eval_model_epochs_per_s", "peak_gflops"]


def test_flop_count_by_hand():
    # 784-30-10: forward 2(784*30 + 30*10) = 47,640; weight gradients the same; deltas back into
    # the hidden layer 2*30*10 = 600. Total 95,880 per example, 4.794 GFLOP per model-epoch.
    assert bench.train_flops_per_example((784, 30, 10)) == 95_880
    assert bench.train_gflop_per_model_epoch((784, 30, 10)) == pytest.approx(4.794)
    # 784-100-10: 2 * 2(78,400 + 1,000) + 2,000 = 319,600
    assert bench.train_flops_per_example((784, 100, 10)) == 319_600
    # two hidden layers: layers 2 and 3 pass deltas back, layer 1 does not
    forward = 2 * (784 * 16 + 16 * 12 + 12 * 10)
    assert bench.train_flops_per_example((784, 16, 12, 10)) == 2 * forward + 2 * (16 * 12 + 12 * 10)


def default_sweep():
    return bench.sweep_ensembles(bench.sweep_config([]))


def test_layouts_name_and_build_the_ensembles_they_say(small_data):
    sweep = default_sweep()
    lrs = [0.01, 0.03, 0.1, 0.3, 0.5, 1.0, 3.0, 10.0]
    assert list(bench.layouts(10, sweep, lrs)) == ["10 seeds"]
    found = bench.layouts(160, sweep, lrs)
    assert list(found) == ["160 seeds", "20 seeds x 8 lrs", "sweep: 1 ensemble of 4 pairs x 5 seeds x 8 lrs",
                           "4 ensembles of 1 pair x 5 seeds x 8 lrs"]
    data = bench.synthetic_split()
    built = {}
    for label, ensembles in found.items():
        assert sum(map(len, ensembles)) == 160
        built[label] = [Ensemble(specs, TrainConfig(sizes=(784, 2, 10)), data) for specs in ensembles]
    shapes = {label: [(e.M, len({s.pair for s in e.specs})) for e in ensembles] for label, ensembles in built.items()}
    assert shapes == {"160 seeds": [(160, 1)], "20 seeds x 8 lrs": [(160, 1)],
                      "sweep: 1 ensemble of 4 pairs x 5 seeds x 8 lrs": [(160, 4)],
                      "4 ensembles of 1 pair x 5 seeds x 8 lrs": [(40, 1)] * 4}
    # the layouts' point: how many models share a seed group, hence the first layer's work
    assert [e.G for e in built["160 seeds"] + built["20 seeds x 8 lrs"]] == [1, 8]


@pytest.fixture
def small_data(monkeypatch):
    """A few hundred synthetic examples instead of 70,000: the run's shape, not its timing, is under test."""
    full = bench.synthetic_split
    monkeypatch.setattr(bench, "synthetic_split", lambda: _shrunk(full()))


def _shrunk(split):
    return type(split)("synthetic", split.train_x[:300], split.train_y[:300], split.val_x[:50], split.val_y[:50],
                       split.test_x[:50], split.test_y[:50])


def test_tiny_run_writes_the_csv_schema_with_positive_numbers(small_data, tmp_path, capsys):
    status = bench.main(["--data", "synthetic", "--steps", "2", "--baseline-steps", "2", "--warmup", "1",
                         "--repeat", "2", "--shapes", "784-3-10", "--models", "1", "16", "160",
                         "--denormal-steps", "0", "--devices", "cpu", "--peers", "torch_func", "--out", str(tmp_path)])
    assert status == 0
    frame = pd.read_csv(tmp_path / "bench.csv")
    assert list(frame.columns) == bench.COLUMNS
    assert frame[POSITIVE].notna().all().all()
    assert (frame[POSITIVE] > 0).all().all(), frame[POSITIVE]
    rows = list(zip(frame.method, frame.models, frame.layout))
    assert rows == [("plain_pytorch", 1, "1 seed"), ("numpy_book", 1, "1 seed"), ("lossbench_eager", 1, "1 seed"),
                    ("lossbench_eager", 16, "16 seeds"), ("lossbench_eager", 16, "2 seeds x 8 lrs"),
                    ("lossbench_eager", 160, "160 seeds"), ("lossbench_eager", 160, "20 seeds x 8 lrs"),
                    ("lossbench_eager", 160, "sweep: 1 ensemble of 4 pairs x 5 seeds x 8 lrs"),
                    ("lossbench_eager", 160, "4 ensembles of 1 pair x 5 seeds x 8 lrs"),
                    ("torch_func", 160, "sweep: 1 ensemble of 4 pairs x 5 seeds x 8 lrs")]
    assert frame.dtype.tolist() == ["float32", "float64"] + ["float32"] * 8 and set(frame.data) == {"synthetic"}
    assert frame.flush_denormal.between(0, 1).all() and (frame.trained_steps == 0).all()
    # the derived columns follow from the measured ones
    rate = frame.models * frame.steps / 5000 / frame.seconds
    assert frame.model_epochs_per_s.tolist() == pytest.approx(rate.tolist())
    gflops = rate * bench.train_flops_per_example((784, 3, 10)) * 50_000 / 1e9
    assert frame.gflops.tolist() == pytest.approx(gflops.tolist())
    assert frame.peak_share.tolist() == pytest.approx((frame.gflops / frame.peak_gflops).tolist())
    epoch_s = frame.seconds / frame.steps * 5000 / frame.models
    assert frame.train_eval_model_epochs_per_s.tolist() == pytest.approx(
        (1 / (epoch_s + frame.eval_s_per_epoch / frame.models)).tolist())
    assert frame.target.isna().all()  # issue 8 sets targets for 784-30-10 and 784-100-10 only
    printed = capsys.readouterr().out
    assert "x plain" in printed and "x torch_func" in printed and "2048x2048x2048 float32 matmul" in printed


@pytest.mark.slow
def test_flush_modes_run_in_fresh_processes_and_flush_what_they_say():
    split = _shrunk(bench.synthetic_split())
    sweep = default_sweep()
    settings = bench.Settings(steps=2, baseline_steps=1, warmup=1, repeat=1)
    results = bench.time_flush_modes(sweep, (784, 3, 10), split, settings, trained=3)
    assert list(results) == ["off", "main thread", "on"]
    threads = torch.get_num_threads()
    assert [r["flushed"] for r in results.values()] == [0.0, pytest.approx(1 / threads, abs=0.01), 1.0]
    assert results["on"]["denormal_share"] == 0.0
    assert all(r["train_s"] > 0 and r["eval_s"] > 0 and r["steps"] == 2 for r in results.values())


def test_targets_are_shown_for_the_160_model_rows(small_data, tmp_path, capsys):
    bench.main(["--data", "synthetic", "--steps", "1", "--baseline-steps", "1", "--warmup", "0", "--shapes",
                "784-30-10", "--models", "160", "--denormal-steps", "0", "--devices", "cpu", "--peers",
                "--out", str(tmp_path)])
    frame = pd.read_csv(tmp_path / "bench.csv")
    assert frame.loc[frame.method.str.startswith("lossbench"), "target"].tolist() == [20.0] * 4
    assert frame.loc[~frame.method.str.startswith("lossbench"), "target"].isna().all()
    printed = capsys.readouterr().out
    assert "20 met" in printed or "20 NOT met" in printed


def test_issue_13_targets_are_checked_on_the_sweep_layout_against_the_faster_peer():
    rows = [dict(method="lossbench_eager", layout="sweep: 1 ensemble of 4 pairs x 5 seeds x 8 lrs", shape="784-30-10",
                 model_epochs_per_s=33.0, peak_share=0.41, train_eval_model_epochs_per_s=28.0, peak_gflops=380.0),
            dict(method="lossbench_eager", layout="160 seeds", shape="784-30-10", model_epochs_per_s=99.0),
            dict(method="torch_func", layout="sweep: ...", shape="784-30-10", model_epochs_per_s=3.0),
            dict(method="jax", layout="sweep: ...", shape="784-30-10", model_epochs_per_s=17.0),
            dict(method="lossbench_eager", layout="sweep: ...", shape="784-100-10", model_epochs_per_s=10.0,
                 peak_share=0.44, train_eval_model_epochs_per_s=9.0, peak_gflops=380.0)]
    frame = pd.DataFrame(rows).assign(trained_steps=0, device="cpu")
    # 28 model-ep/s x 4.794 GFLOP / 380 GFLOP/s = 35.3% with evaluation; 33 / 17 = 1.94x jax, the faster peer
    assert bench.peak_targets(frame).splitlines() == [
        "issue 13, 784-30-10, the sweep's layout: training at 41.0% of peak (target 40%): met",
        "issue 13, 784-30-10, the sweep's layout: with evaluation 35.3% (target 35%): met",
        "issue 13, 784-30-10, the sweep's layout: 1.94x the faster peer (jax) (target 2x): NOT met",
        "issue 13, 784-100-10, the sweep's layout: training at 44.0% of peak (target 45%): NOT met"]


def test_without_jax_the_jax_row_is_skipped_with_a_note(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench.peers, "jax_available", lambda: False)
    assert bench.parse_args(["--out", str(tmp_path)]).peers == ["torch_func"]
    assert "pip install 'lossbench[bench]'" in capsys.readouterr().err


def test_denormal_counter_counts_denormal_results_only():
    tiny = torch.finfo(torch.float32).tiny
    x = torch.tensor([tiny * 4, 1.0, 0.0])
    main_thread_flushes = bool(x[0] / 8 == 0)  # lossbench.ensemble turns flushing on: off for this test
    torch.set_flush_denormal(False)
    try:
        with bench.DenormalCounter() as counter:
            y = x / 8  # tiny / 2 is denormal; 1/8 and 0 are not
            y.view(3, 1).t()  # views compute nothing: not counted
    finally:
        torch.set_flush_denormal(main_thread_flushes)
    assert (counter.denormal, counter.results) == (1, 3)
    assert counter.share == pytest.approx(1 / 3)


@pytest.mark.parametrize("argv, message", [
    (["--shapes", "784-x-10"], "784-x-10"),
    (["--shapes", "100-30-10"], "784 inputs"),
    (["--steps", "0"], "--steps=0"),
    (["--models", "0"], "at least 1 model"),
])
def test_bad_input_is_a_user_error(argv, message, tmp_path):
    with pytest.raises(UserError, match=message):
        bench.main(argv + ["--out", str(tmp_path)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for machines without CUDA")
def test_cuda_without_cuda_is_a_user_error(tmp_path, capsys):
    assert cli.main(["bench", "--devices", "cuda", "--out", str(tmp_path)]) == 2
    assert "sees no CUDA device" in capsys.readouterr().err


def test_full_needs_mnist(small_data, tmp_path):
    with pytest.raises(UserError, match="--full"):
        bench.main(["--data", "synthetic", "--full", "--out", str(tmp_path)])


def test_sweep_overrides_set_the_sweep_layout_and_bad_ones_are_user_errors():
    ensembles = bench.sweep_ensembles(bench.sweep_config(["sweep.seeds=2", "pair=sigmoid_ce"]))
    assert bench.sweep_label(ensembles) == "sweep: 1 ensemble of 1 pair x 2 seeds x 8 lrs"
    ensembles = bench.sweep_ensembles(bench.sweep_config(["sweep.seeds=3", "sweep.ensemble_size=32"]))
    assert bench.sweep_label(ensembles) == "sweep: 3 ensembles of 4 pairs x 1 seed x 8 lrs"
    with pytest.raises(UserError, match="no_such_key"):
        bench.sweep_config(["no_such_key=1"])


@pytest.mark.slow
@pytest.mark.skipif(not mnist_available(), reason="MNIST not found (LOSSBENCH_DATA)")
def test_full_times_a_real_sweep_end_to_end(tmp_path, capsys):
    overrides = ["optim.epochs=1", "data.train_size=100", "sweep.seeds=1", "sweep.lrs=[0.5]"]
    assert bench.main(["--data", "mnist", "--full", "--sweep-overrides", *overrides, "--shapes", "784-3-10",
                       "--models", "1", "--steps", "1", "--baseline-steps", "1", "--warmup", "0", "--repeat", "1",
                       "--denormal-steps", "0", "--devices", "cpu", "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "bench.csv")
    full = frame[frame.method == "lossbench_sweep"].iloc[0]
    assert (full.models, full.steps, full.layout) == (4, 10, "sweep: 1 ensemble of 4 pairs x 1 seed x 1 lr, 1 epochs")
    assert full.model_epochs_per_s == pytest.approx(4 * 10 / 5000 / full.seconds)
    runs = pd.read_csv(next(tmp_path.glob("full_sweep_784-3-10_cpu_*")) / "runs.csv")
    assert len(runs) == 4 and set(runs.sizes) == {"784-3-10"}
