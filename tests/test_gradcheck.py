"""`python -m lossbench gradcheck`: its table, its exit status and its claims.

    python -m pytest tests/test_gradcheck.py
"""

import dataclasses
import subprocess
import sys

import pytest
import torch

from lossbench import cli, gradcheck
from lossbench.gradcheck import CLAIMS, TOLERANCES, central_differences, check_pair
from lossbench.pairs import PAIRS, _cost_function, sigmoid_ce_delta, sigmoid_mse_cost

CPU = torch.device("cpu")


def test_prints_a_passing_row_per_pair_and_dtype_and_exits_0(capsys):
    assert gradcheck.run("cpu", seed=0) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in PAIRS]
    assert sorted((row[0], row[1]) for row in rows) == sorted(
        (name, dtype) for name in PAIRS for dtype in ("float32", "float64"))
    assert all(row[-1] == "PASS" for row in rows)
    assert out.count("verdict:") == len(CLAIMS)
    assert "UNEXPECTED" not in out


def test_the_command_runs_through_the_cli():
    done = subprocess.run([sys.executable, "-m", "lossbench", "gradcheck", "--device", "cpu"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "All pairs pass." in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_without_a_gpu_is_a_user_error(capsys):
    assert cli.main(["gradcheck", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda") and "Traceback" not in err


def test_a_wrong_delta_fails_its_row_and_the_exit_status(monkeypatch, capsys):
    """sigmoid_mse with the cross-entropy's delta (sigma'(z) forgotten) in pair.delta only."""
    wrong = dataclasses.replace(PAIRS["sigmoid_mse"], delta_fn=sigmoid_ce_delta)
    row = check_pair(wrong, torch.float64, CPU)
    assert row["verdict"] == "FAIL" and row["vs autograd"] > 0.1 and row["gradcheck"] == "pass"
    monkeypatch.setitem(gradcheck.PAIRS, "sigmoid_mse", wrong)
    assert gradcheck.run("cpu", seed=0) == 1
    assert "FAIL: sigmoid_mse" in capsys.readouterr().out


def test_a_wrong_backward_fails_gradcheck_and_the_autograd_column():
    """The quadratic cost with the cross-entropy's backward: pair.delta right, the Function wrong."""
    function = _cost_function("WrongBackward", sigmoid_mse_cost, sigmoid_ce_delta)
    row = check_pair(dataclasses.replace(PAIRS["sigmoid_mse"], function=function), torch.float64, CPU)
    assert (row["gradcheck"], row["verdict"]) == ("FAIL", "FAIL") and row["vs autograd"] > 0.1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_check_pair_passes_on_other_seeds(dtype):
    for seed in (1, 2):
        assert all(check_pair(pair, dtype, CPU, seed)["verdict"] == "PASS" for pair in PAIRS.values())


def test_central_differences_are_within_their_tolerance_of_a_known_gradient():
    """d/dz of 1/2 (sigma(z) - y)^2 is known in closed form; the helper must reproduce it."""
    z = torch.linspace(-30, 30, 61, dtype=torch.float64).reshape(61, 1)
    y = torch.zeros_like(z)
    exact = torch.sigmoid(z) * torch.sigmoid(z) * torch.sigmoid(-z)
    fd = central_differences(sigmoid_mse_cost, z, y)
    assert (fd - exact).abs().max() < TOLERANCES[torch.float64].finite_differences


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.text[:40])
def test_each_claim_measures_as_expected(claim):
    figures, holds = claim.evaluate()
    assert holds == claim.expected, figures


def test_the_false_claim_is_off_by_a_lot_and_we_know_the_true_gradient():
    figures = gradcheck.measure_softmax_with_binary_cross_entropy()
    assert figures["max |dE/dz - (p - c)|"] > 0.1
    assert figures["max |dE/dz - exact formula|"] < 1e-12


def test_the_claims_figures():
    saturated = gradcheck.measure_saturated_wrong_output()
    assert saturated["sigmoid_mse delta"] == pytest.approx(4.5396e-5, rel=1e-4)  # sigma(10) sigma'(10)
    assert saturated["sigmoid_ce delta"] == pytest.approx(0.9999546, rel=1e-6)  # sigma(10)
    mean = gradcheck.measure_mean_sigmoid_prime()
    assert mean["mean a(1-a)"] == pytest.approx(1 / 6, abs=1e-12)
    assert mean["slowdown 1/mean"] == pytest.approx(6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_pair_passes_on_cuda(capsys):
    assert gradcheck.run("cuda", seed=0) == 0
    assert "Pairs on cuda" in capsys.readouterr().out
