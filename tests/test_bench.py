"""Tests of `python -m lossbench bench`: a tiny run's CSV, the targets, the options. No timings.

    python -m pytest tests/test_bench.py
"""

import pandas as pd
import pytest
import torch

from lossbench import bench, bench_cli, cli, timing
from lossbench.choices import Peer
from lossbench.errors import UserError

POSITIVE = ["models", "steps", "seconds", "model_epochs_per_s", "gflops", "peak_share", "eval_s_per_epoch",
            "train_eval_model_epochs_per_s", "peak_gflops"]


def test_tiny_run_writes_the_csv_schema_with_positive_numbers(small_data, tmp_path, capsys):
    status = bench_cli.main(["--data", "synthetic", "--steps", "2", "--baseline-steps", "2", "--warmup", "1",
                             "--repeat", "2", "--shapes", "784-3-10", "--models", "1", "16", "160",
                             "--denormal-steps", "0", "--devices", "cpu", "--peers", "torch_func", "--out",
                             str(tmp_path)])
    assert status == 0
    frame = pd.read_csv(tmp_path / "bench.csv")
    assert list(frame.columns) == bench.BENCH_COLUMNS
    assert frame[POSITIVE].notna().all().all()
    assert (frame[POSITIVE] > 0).all().all(), frame[POSITIVE]
    rows = list(zip(frame.method, frame.models, frame.layout))
    layouts = [(1, "1 seed"), (16, "16 seeds"), (16, "2 seeds x 8 lrs"), (160, "160 seeds"), (160, "20 seeds x 8 lrs"),
               (160, "sweep: 1 ensemble of 4 pairs x 5 seeds x 8 lrs"),
               (160, "4 ensembles of 1 pair x 5 seeds x 8 lrs")]
    assert rows == [("plain_pytorch", 1, "1 seed"), ("numpy_book", 1, "1 seed")] + [
        (f"lossbench_{engine}", models, layout) for models, layout in layouts for engine in ("eager", "c")] + [
        ("torch_func", 160, "sweep: 1 ensemble of 4 pairs x 5 seeds x 8 lrs")]
    assert frame.dtype.tolist() == ["float32", "float64"] + ["float32"] * 15 and set(frame.data) == {"synthetic"}
    assert frame.flush_denormal.between(0, 1).all() and (frame.trained_steps == 0).all()
    # the derived columns follow from the measured ones
    rate = frame.models * frame.steps / 5000 / frame.seconds
    assert frame.model_epochs_per_s.tolist() == pytest.approx(rate.tolist())
    gflops = rate * timing.train_flops_per_example((784, 3, 10)) * 50_000 / 1e9
    assert frame.gflops.tolist() == pytest.approx(gflops.tolist())
    assert frame.peak_share.tolist() == pytest.approx((frame.gflops / frame.peak_gflops).tolist())
    epoch_s = frame.seconds / frame.steps * 5000 / frame.models
    assert frame.train_eval_model_epochs_per_s.tolist() == pytest.approx(
        (1 / (epoch_s + frame.eval_s_per_epoch / frame.models)).tolist())
    assert frame.target.isna().all()  # issue 8 sets targets for 784-30-10 and 784-100-10 only
    printed = capsys.readouterr().out
    assert "x plain" in printed and "x torch_func" in printed and "2048x2048x2048 float32 matmul" in printed


def test_targets_are_shown_for_the_160_model_rows(small_data, tmp_path, capsys):
    bench_cli.main(["--data", "synthetic", "--steps", "1", "--baseline-steps", "1", "--warmup", "0", "--shapes",
                    "784-30-10", "--models", "160", "--denormal-steps", "0", "--devices", "cpu", "--peers",
                    "--out", str(tmp_path)])
    frame = pd.read_csv(tmp_path / "bench.csv")
    assert frame.loc[frame.method.str.startswith("lossbench"), "target"].tolist() == [20.0] * 8  # eager and c
    assert frame.loc[~frame.method.str.startswith("lossbench"), "target"].isna().all()
    printed = capsys.readouterr().out
    rates = frame.loc[frame.method.str.startswith("lossbench"), "model_epochs_per_s"]
    # each row says whether its rate meets the target: as many "met" as rows at 20 or more, the others "NOT met"
    assert printed.count("20 met") == (rates >= 20).sum() and printed.count("20 NOT met") == (rates < 20).sum()


def test_issue_13_targets_are_checked_on_the_sweep_layout_against_the_faster_peer():
    """On the rows of the sweep's own engine (engine=auto: c on the CPU), not on eager's."""
    rows = [dict(method="lossbench_c", layout="sweep: 1 ensemble of 4 pairs x 5 seeds x 8 lrs", shape="784-30-10",
                 model_epochs_per_s=33.0, peak_share=0.41, train_eval_model_epochs_per_s=28.0, peak_gflops=380.0),
            dict(method="lossbench_eager", layout="sweep: 1 ensemble of 4 pairs x 5 seeds x 8 lrs", shape="784-30-10",
                 model_epochs_per_s=20.0, peak_share=0.3, train_eval_model_epochs_per_s=18.0, peak_gflops=380.0),
            dict(method="lossbench_c", layout="160 seeds", shape="784-30-10", model_epochs_per_s=99.0),
            dict(method="torch_func", layout="sweep: ...", shape="784-30-10", model_epochs_per_s=3.0),
            dict(method="jax", layout="sweep: ...", shape="784-30-10", model_epochs_per_s=17.0),
            dict(method="lossbench_c", layout="sweep: ...", shape="784-100-10", model_epochs_per_s=10.0,
                 peak_share=0.44, train_eval_model_epochs_per_s=9.0, peak_gflops=380.0)]
    frame = pd.DataFrame(rows).assign(trained_steps=0, device="cpu")
    # 28 model-ep/s x 4.794 GFLOP / 380 GFLOP/s = 35.3% with evaluation; 33 / 17 = 1.94x jax, the faster peer
    assert bench.peak_targets(frame).splitlines() == [
        "issue 13, 784-30-10, the sweep's layout (lossbench_c): training at 41.0% of peak (target 40%): met",
        "issue 13, 784-30-10, the sweep's layout (lossbench_c): with evaluation 35.3% (target 35%): met",
        "issue 13, 784-30-10, the sweep's layout (lossbench_c): 1.94x the faster peer (jax) (target 2x): NOT met",
        "issue 13, 784-100-10, the sweep's layout (lossbench_c): training at 44.0% of peak (target 45%): NOT met"]


def checked(argv: list[str]):
    """The options as bench.run uses them: parsed by bench_cli, then checked and completed by bench."""
    return bench.checked(bench_cli.parser().parse_args(argv))


def test_without_jax_the_jax_row_is_skipped_with_a_note(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench.peers, "jax_available", lambda: False)
    assert checked(["--out", str(tmp_path)]).peers == ["torch_func"]
    assert "pip install 'lossbench[bench]'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--shapes", "784-x-10"], "784-x-10"),
    (["--shapes", "100-30-10"], "784 inputs"),
    (["--steps", "0"], "--steps=0"),
    (["--models", "0"], "at least 1 model"),
])
def test_bad_input_is_a_user_error(argv, message, tmp_path):
    with pytest.raises(UserError, match=message):
        bench_cli.main(argv + ["--out", str(tmp_path)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for machines without CUDA")
def test_cuda_without_cuda_is_a_user_error(tmp_path, capsys):
    assert cli.main(["bench", "--devices", "cuda", "--out", str(tmp_path)]) == 2
    assert "--devices cuda, but torch" in capsys.readouterr().err


def test_devices_are_resolved_once_each_as_the_sweep_resolves_them(tmp_path):
    auto = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert checked(["--devices", "auto", "cpu", "--out", str(tmp_path)]).devices == list(
        dict.fromkeys([auto, torch.device("cpu")]))


def test_the_defaults_torch_decides_are_filled_in_after_parsing(tmp_path):
    """--devices and --threads default to what torch sees, found only once parsed (`bench --help` needs no torch)."""
    args = checked(["--out", str(tmp_path)])
    assert args.devices == [torch.device("cpu")] + [torch.device("cuda")] * torch.cuda.is_available()
    assert args.threads == torch.get_num_threads()
    assert checked(["--threads", "1", "--out", str(tmp_path)]).threads == 1


def test_help_states_every_default_once():
    """argparse's default after each option's help, except where the help says it (those torch decides)."""
    text = " ".join(bench_cli.parser().format_help().split())
    assert "(default: 300)" in text and "(default: ['torch_func', 'jax'])" in text
    assert "(default: cpu, and cuda when torch sees one) --threads" in text
    assert "(default: torch's, torch.get_num_threads()) --data" in text
    assert list(timing.PEERS) == [peer.value for peer in Peer]  # --peers' choices are the peers timed


def test_full_needs_mnist(small_data, tmp_path):
    with pytest.raises(UserError, match="--full"):
        bench_cli.main(["--data", "synthetic", "--full", "--out", str(tmp_path)])


def test_sweep_overrides_set_the_sweep_layout_and_bad_ones_are_user_errors():
    ensembles = timing.sweep_ensembles(bench.sweep_config(["sweep.seeds=2", "pair=sigmoid_ce"]))
    assert timing.sweep_label(ensembles) == "sweep: 1 ensemble of 1 pair x 2 seeds x 8 lrs"
    ensembles = timing.sweep_ensembles(bench.sweep_config(["sweep.seeds=3", "sweep.ensemble_size=32"]))
    assert timing.sweep_label(ensembles) == "sweep: 3 ensembles of 4 pairs x 1 seed x 8 lrs"
    with pytest.raises(UserError, match="no_such_key"):
        bench.sweep_config(["no_such_key=1"])


@pytest.mark.slow
@pytest.mark.mnist
def test_full_times_a_real_sweep_end_to_end(tmp_path, capsys):
    overrides = ["optim.epochs=1", "data.train_size=100", "sweep.seeds=1", "sweep.lrs=[0.5]"]
    assert bench_cli.main(["--data", "mnist", "--full", "--sweep-overrides", *overrides, "--shapes", "784-3-10",
                           "--models", "1", "--steps", "1", "--baseline-steps", "1", "--warmup", "0", "--repeat", "1",
                           "--denormal-steps", "0", "--devices", "cpu", "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "bench.csv")
    full = frame[frame.method == "lossbench_sweep"].iloc[0]
    assert (full.models, full.steps, full.layout) == (4, 10, "sweep: 1 ensemble of 4 pairs x 1 seed x 1 lr, 1 epochs")
    assert full.model_epochs_per_s == pytest.approx(4 * 10 / 5000 / full.seconds)
    runs = pd.read_csv(next(tmp_path.glob("full_sweep_784-3-10_cpu_*")) / "runs.csv")
    assert len(runs) == 4 and set(runs.sizes) == {"784-3-10"}
