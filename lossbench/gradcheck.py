"""Verify every pair's hand-derived delta, and measure claims from the literature.

    python -m lossbench gradcheck --device auto

For each pair and dtype, on a batched [M, B, K] input whose weighted inputs z are
partly saturated (|z| from 10 to 30), one table row gives:
  cost err       max |C - C_ref| / (1 + |C_ref|), C_ref from PyTorch's own composed ops
  vs autograd    max |delta - dC_ref/dz|, that gradient by autograd through those ops
                 (and the pair's Function's backward must give delta too)
  vs fin. diff   max |delta - central differences of the pair's cost|, in float64
  gradcheck      torch.autograd.gradcheck of the pair's Function (float64 rows only)
  finite to 1e4  cost, delta and the Function's gradient finite for |z| up to 1e4
against the tolerances in TOLERANCES. The exit status is 1 if any pair fails.
Then each claim in CLAIMS prints what it measures and whether it holds; a claim
that does not hold is a finding and leaves the exit status alone.
"""

from dataclasses import dataclass
from typing import Callable

import pandas as pd
import scipy.integrate
import torch
import torch.nn.functional as F

from lossbench.claims import VERDICTS, Claim, measurement_text
from lossbench.devices import resolve_device
from lossbench.pairs import PAIRS, Pair

Tensor = torch.Tensor
CostFn = Callable[[Tensor, Tensor], Tensor]


def _quadratic(a: Tensor, y: Tensor) -> Tensor:
    return 0.5 * F.mse_loss(a, y, reduction="none").sum(-1)


def _nll_of_log_softmax(z: Tensor, y: Tensor) -> Tensor:
    log_a = F.log_softmax(z, dim=-1).reshape(-1, z.shape[-1])
    return F.nll_loss(log_a, y.argmax(-1).reshape(-1), reduction="none").view(z.shape[:-1])


# Each pair's per-example cost written with PyTorch's own ops, independent of
# lossbench.pairs; y must be one-hot. Summed over examples this is reduction="sum",
# whose gradient, the examples being independent, is each example's delta.
REFERENCE_COSTS: dict[str, CostFn] = {
    "sigmoid_mse": lambda z, y: _quadratic(torch.sigmoid(z), y),
    "sigmoid_ce": lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction="none").sum(-1),
    "softmax_nll": _nll_of_log_softmax,
    "linear_mse": _quadratic,
}


@dataclass(frozen=True)
class Tolerance:
    cost: float  # on |C - C_ref| / (1 + |C_ref|)
    autograd: float  # on max |delta - autograd|
    finite_differences: float  # on max |delta - central differences|


# float64: both sides agree to rounding (~1e-16), so 1e-10 leaves room for
# nothing but a wrong formula. float32: rounding is ~6e-8 relative and |delta|
# reaches ~31 here (linear outputs), so up to ~2e-6 absolute; 1e-5 allows that.
# Central differences with step h = FD_STEP err by ~h^2 |C'''| / 6 + eps |C| / h,
# at most ~2e-8 for these inputs (|C| up to a few thousand); 1e-6 allows that.
TOLERANCES = {
    torch.float64: Tolerance(cost=1e-12, autograd=1e-10, finite_differences=1e-6),
    torch.float32: Tolerance(cost=1e-5, autograd=1e-5, finite_differences=1e-5),
}
FD_STEP = 1e-5
SHAPE = (3, 5, 10)  # [M models, B examples, K outputs]


def sample_inputs(shape, generator: torch.Generator, saturated_share=0.3) -> tuple[Tensor, Tensor]:
    """z ~ N(0, 3^2), a share of it replaced by +-U(10, 30), and a one-hot y; float64 on the CPU."""
    z = 3 * torch.randn(shape, generator=generator, dtype=torch.float64)
    magnitude = 10 + 20 * torch.rand(shape, generator=generator, dtype=torch.float64)
    sign = torch.randint(2, shape, generator=generator) * 2 - 1
    saturated = torch.rand(shape, generator=generator) < saturated_share
    z = torch.where(saturated, sign * magnitude, z)
    labels = torch.randint(shape[-1], shape[:-1], generator=generator)
    return z, F.one_hot(labels, shape[-1]).to(torch.float64)


def autograd_delta(cost: CostFn, z: Tensor, y: Tensor) -> Tensor:
    """dC/dz for each example, by autograd through `cost` summed over the examples."""
    z = z.detach().requires_grad_()
    (grad,) = torch.autograd.grad(cost(z, y).sum(), z)
    return grad


def central_differences(cost: CostFn, z: Tensor, y: Tensor, h: float = FD_STEP) -> Tensor:
    """dC/dz by (C(z + h e_k) - C(z - h e_k)) / 2h, for every example at once (they are independent)."""
    grad = torch.empty_like(z)
    for k in range(z.shape[-1]):
        step = torch.zeros_like(z)
        step[..., k] = h
        grad[..., k] = (cost(z + step, y) - cost(z - step, y)) / (2 * h)
    return grad


def _max_abs(t: Tensor) -> float:
    return t.abs().max().item()


def extreme_inputs(shape, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """z drawn from {0, +-30, +-1e3, +-1e4} and a one-hot y: where naive formulas overflow."""
    values = torch.tensor([0.0, 30.0, -30.0, 1e3, -1e3, 1e4, -1e4], dtype=torch.float64)
    z = values[torch.randint(len(values), shape, generator=generator)]
    labels = torch.randint(shape[-1], shape[:-1], generator=generator)
    return z, F.one_hot(labels, shape[-1]).to(torch.float64)


def is_finite(pair: Pair, z: Tensor, y: Tensor) -> bool:
    """Cost, delta and the Function's gradient all finite at (z, y)."""
    z = z.detach().requires_grad_()
    cost = pair.per_example_cost(z, y)
    (grad,) = torch.autograd.grad(cost.sum(), z)
    return all(torch.isfinite(t).all().item() for t in (cost, grad, pair.delta(z, y)))


def check_pair(pair: Pair, dtype: torch.dtype, device: torch.device, seed: int = 0) -> dict:
    """One table row: `pair`'s delta against autograd, finite differences and gradcheck."""
    generator = torch.Generator().manual_seed(seed)
    z64, y64 = (t.to(device) for t in sample_inputs(SHAPE, generator))
    z, y = z64.to(dtype), y64.to(dtype)
    reference = REFERENCE_COSTS[pair.name]
    tol = TOLERANCES[dtype]

    ref_cost = reference(z, y)
    cost_err = _max_abs((pair.per_example_cost(z, y) - ref_cost) / (1 + ref_cost.abs()))
    delta = pair.delta(z, y)
    # The Function's backward must be the same delta, or trainers would disagree.
    function_err = _max_abs(autograd_delta(pair.per_example_cost, z, y) - delta)
    autograd_err = max(_max_abs(delta - autograd_delta(reference, z, y)), function_err)
    # Finite differences always in float64, at the same (dtype-representable) points.
    fd_err = _max_abs(delta.double() - central_differences(pair.cost_fn, z.double(), y.double()))
    if dtype == torch.float64:
        gradcheck_ok = torch.autograd.gradcheck(
            pair.function.apply, (z64.detach().requires_grad_(), y64), raise_exception=False)
    else:
        gradcheck_ok = None  # gradcheck's finite differences need float64
    finite = is_finite(pair, *(t.to(device, dtype) for t in extreme_inputs(SHAPE, generator)))

    passed = (cost_err <= tol.cost and autograd_err <= tol.autograd
              and fd_err <= tol.finite_differences and gradcheck_ok is not False and finite)
    return {
        "pair": pair.name,
        "dtype": str(dtype).removeprefix("torch."),
        "delta": pair.delta_formula,
        "cost err": cost_err,
        "vs autograd": autograd_err,
        "vs fin. diff": fd_err,
        "gradcheck": {True: "pass", False: "FAIL", None: "-"}[gradcheck_ok],
        "finite to 1e4": "yes" if finite else "NO",
        "verdict": "PASS" if passed else "FAIL",
    }


# --- claims from the literature -----------------------------------------------
def _claim_inputs(shape=(1000, 10), scale=2.0, seed=1) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(shape, generator=generator, dtype=torch.float64)
    labels = torch.randint(shape[-1], shape[:-1], generator=generator)
    return z, F.one_hot(labels, shape[-1]).to(torch.float64)


def measure_softmax_with_binary_cross_entropy() -> dict[str, float]:
    """E = -sum_j [c_j ln p_j + (1 - c_j) ln(1 - p_j)], p = softmax(z): true dE/dz against p - c.

    With the full softmax Jacobian dp_j/dz_i = p_j (delta_ij - p_i) the exact gradient is
    dE/dz_i = (p_i - c_i) / (1 - p_i) - p_i sum_j (p_j - c_j) / (1 - p_j), which is not p - c.
    """
    z, c = _claim_inputs()
    p = torch.softmax(z, dim=-1)
    grad = autograd_delta(
        lambda z, c: F.binary_cross_entropy(torch.softmax(z, -1), c, reduction="none").sum(-1), z, c)
    ratio = (p - c) / (1 - p)
    exact = ratio - p * ratio.sum(-1, keepdim=True)
    return {"max |dE/dz - (p - c)|": _max_abs(grad - (p - c)),
            "max |dE/dz - exact formula|": _max_abs(grad - exact)}


def measure_same_output_error() -> dict[str, float]:
    """max |autograd dC/dz - (a - y)| for softmax + log-likelihood and linear + quadratic."""
    z, y = sample_inputs((200, 10), torch.Generator().manual_seed(2))
    return {f"{name}: max |dC/dz - (a - y)|":
            _max_abs(autograd_delta(REFERENCE_COSTS[name], z, y) - (PAIRS[name].activate(z) - y))
            for name in ("softmax_nll", "linear_mse")}


def measure_output_error_size() -> dict[str, float]:
    """max |dC/dz| for z ~ N(0, s^2), s = 10 and 1000: softmax's stays <= 1, linear's grows with s."""
    figures = {}
    for scale in (10.0, 1000.0):
        z, y = _claim_inputs(scale=scale)
        for name in ("softmax_nll", "linear_mse"):
            figures[f"max|delta| {name} s={scale:g}"] = _max_abs(autograd_delta(REFERENCE_COSTS[name], z, y))
    return figures


def measure_saturated_wrong_output() -> dict[str, float]:
    """delta of a single sigmoid output at z = 10 whose target is y = 0."""
    z, y = torch.tensor([[10.0]], dtype=torch.float64), torch.tensor([[0.0]], dtype=torch.float64)
    return {f"{name} delta": autograd_delta(REFERENCE_COSTS[name], z, y).item()
            for name in ("sigmoid_mse", "sigmoid_ce")}


def measure_mean_sigmoid_prime() -> dict[str, float]:
    """The mean of sigma'(z) = a(1 - a) over a uniform in [0, 1], by quadrature, and its inverse."""
    mean, _ = scipy.integrate.quad(lambda a: a * (1 - a), 0.0, 1.0)
    return {"mean a(1-a)": mean, "slowdown 1/mean": 1 / mean}


CLAIMS: list[Claim] = [
    Claim("softmax output + per-output binary cross-entropy gives dE/dz_j = p_j - c_j",
          "derivation widely copied online; uses dp_j/dz_j = p_j(1 - p_j) and drops the "
          "softmax's off-diagonal terms dp_j/dz_i = -p_j p_i",
          measure_softmax_with_binary_cross_entropy,
          lambda m: m["max |dE/dz - (p - c)|"] < 1e-6, expected=False),
    Claim("softmax + log-likelihood and linear + quadratic give the same output error, a - y",
          "Nielsen ch. 3, eqs. 84 and 68",
          measure_same_output_error, lambda m: max(m.values()) < 1e-10, expected=True),
    Claim("...but their sizes differ: over z ~ N(0, s^2), max |a - y| is <= 1 for softmax and "
          "grows with s for linear outputs",
          "corollary: softmax outputs lie in [0, 1], linear outputs are z itself",
          measure_output_error_size,
          lambda m: max(m["max|delta| softmax_nll s=10"], m["max|delta| softmax_nll s=1000"]) <= 1
          and m["max|delta| linear_mse s=1000"] > 50 * m["max|delta| linear_mse s=10"], expected=True),
    Claim("at a saturated wrong output (z = 10, y = 0) the quadratic cost's delta is tiny, "
          "the cross-entropy's near 1",
          "Nielsen ch. 3, the learning slowdown (eqs. 55-56 against 61-62)",
          measure_saturated_wrong_output,
          lambda m: m["sigmoid_mse delta"] < 1e-3 and m["sigmoid_ce delta"] > 0.99, expected=True),
    Claim("the mean of sigma'(z) = a(1 - a) over a in [0, 1] is 1/6, so the quadratic cost "
          "learns ~6x slower",
          "Nielsen ch. 3, footnote on comparing learning rates across costs (a heuristic)",
          measure_mean_sigmoid_prime,
          lambda m: abs(m["mean a(1-a)"] - 1 / 6) < 1e-12, expected=True),
]


def claim_lines(number: int, claim: Claim) -> list[str]:
    """The claim, its source, what was measured and whether it holds, as an indented block."""
    figures, holds = claim.evaluate()
    verdict = VERDICTS[holds]
    if holds != claim.expected:
        verdict += f" (UNEXPECTED: expected it to {'hold' if claim.expected else 'fail'})"
    return [f"[{number}] {claim.text}",
            f"    source:   {claim.source}",
            f"    measured: {measurement_text(figures)}",
            f"    verdict:  {verdict}"]


def run(device_name: str, seed: int) -> int:
    """Check the pairs on device `device_name` (cpu, cuda, auto) from random inputs of `seed`, print the
    table and the claims; the exit status (lossbench/gradcheck_cli.py parses the command line)."""
    device = resolve_device(device_name, option="--device")

    rows = pd.DataFrame([check_pair(pair, dtype, device, seed)
                         for pair in PAIRS.values() for dtype in (torch.float32, torch.float64)])
    print(f"Pairs on {device}, z of shape {list(SHAPE)} with saturated entries (|z| 10 to 30):")
    print(rows.to_string(index=False, float_format=lambda v: f"{v:.1e}"))
    for dtype, tol in TOLERANCES.items():
        print(f"  tolerances {str(dtype).removeprefix('torch.')}: cost {tol.cost:g}, "
              f"autograd {tol.autograd:g}, fin. diff {tol.finite_differences:g} (step {FD_STEP:g})")

    print("\nClaims from the literature (measured in float64 on the CPU):")
    for i, claim in enumerate(CLAIMS, 1):
        print("\n".join(claim_lines(i, claim)))

    failed = rows.loc[rows["verdict"] != "PASS", "pair"].unique()
    if len(failed):
        print(f"\nFAIL: {', '.join(failed)}")
        return 1
    print("\nAll pairs pass.")
    return 0
