"""The pairs against the same costs written with PyTorch's own ops, micrograd style.

    python -m pytest tests/test_pairs.py

Each test builds a cost both ways (lossbench.pairs and REFERENCE_COSTS, PyTorch's
composed ops), in float64 unless said, and compares values and gradients.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lossbench.choices import PAIR_PARTS
from lossbench.errors import UserError
from lossbench.gradcheck import REFERENCE_COSTS, TOLERANCES, autograd_delta, sample_inputs
from lossbench.pairs import PAIRS, get_pair, softplus

NAMES = list(PAIRS)
DTYPES = [torch.float32, torch.float64]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def inputs(shape=(3, 5, 10), seed=0, dtype=torch.float64, device="cpu"):
    z, y = sample_inputs(shape, torch.Generator().manual_seed(seed))
    return z.to(device, dtype), y.to(device, dtype)


def test_registry_matches_the_contract():
    assert {name: (p.activation, p.cost) for name, p in PAIRS.items()} == {
        "sigmoid_mse": ("sigmoid", "quadratic"),
        "sigmoid_ce": ("sigmoid", "cross_entropy"),
        "softmax_nll": ("softmax", "log_likelihood"),
        "linear_mse": ("linear", "quadratic"),
    }
    assert all(p.equations and p.delta_formula for p in PAIRS.values())
    assert list(PAIRS) == list(PAIR_PARTS)  # the torch-free names (choices.py) are the pairs there are, in order


def test_get_pair_names_the_bad_value_and_the_choices():
    assert get_pair("softmax_nll") is PAIRS["softmax_nll"]
    with pytest.raises(UserError, match="'softmax'.*sigmoid_mse, sigmoid_ce, softmax_nll, linear_mse"):
        get_pair("softmax")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cost_and_gradient_match_pytorch(name, dtype):
    """Values, the Function's gradient (with a non-uniform upstream gradient) and pair.delta."""
    pair, reference, tol = PAIRS[name], REFERENCE_COSTS[name], TOLERANCES[dtype]
    z, y = inputs(dtype=dtype)
    weights = torch.rand(z.shape[:-1], generator=torch.Generator().manual_seed(1)).to(dtype)

    z_ours, z_ref = z.clone().requires_grad_(), z.clone().requires_grad_()
    cost_ours, cost_ref = pair.per_example_cost(z_ours, y), reference(z_ref, y)
    assert cost_ours.shape == z.shape[:-1]
    torch.testing.assert_close(cost_ours, cost_ref, rtol=tol.cost, atol=tol.cost)
    (weights * cost_ours).sum().backward()
    (weights * cost_ref).sum().backward()
    torch.testing.assert_close(z_ours.grad, z_ref.grad, rtol=0, atol=tol.autograd)
    torch.testing.assert_close(pair.delta(z, y), autograd_delta(reference, z, y), rtol=0, atol=tol.autograd)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(NAMES), dtype=st.sampled_from(DTYPES),
       shape=st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple),
       classes=st.integers(2, 12), scale=st.sampled_from([1.0, 10.0, 30.0]),
       seed=st.integers(0, 2**31 - 1))
def test_delta_matches_autograd_for_any_shape_and_scale(name, dtype, shape, classes, scale, seed):
    """Batch shapes [K], [B, K], [M, B, K] and z from N(0, 1) to N(0, 30^2)."""
    generator = torch.Generator().manual_seed(seed)
    z = (scale * torch.randn(shape + (classes,), generator=generator, dtype=torch.float64)).to(dtype)
    y = F.one_hot(torch.randint(classes, shape, generator=generator), classes).to(dtype)
    pair = PAIRS[name]
    expected = autograd_delta(REFERENCE_COSTS[name], z, y)
    tol = TOLERANCES[dtype].autograd * max(1.0, expected.abs().max().item() / 30)
    torch.testing.assert_close(pair.delta(z, y), expected, rtol=0, atol=tol)
    torch.testing.assert_close(autograd_delta(pair.per_example_cost, z, y), pair.delta(z, y), rtol=0, atol=0)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(NAMES), dtype=st.sampled_from(DTYPES),
       values=st.lists(st.floats(-1e4, 1e4, allow_subnormal=False), min_size=6, max_size=6), label=st.integers(0, 5))
def test_cost_and_delta_stay_finite_up_to_1e4(name, dtype, values, label):
    z = torch.tensor(values, dtype=dtype).requires_grad_()
    y = F.one_hot(torch.tensor(label), 6).to(dtype)
    cost = PAIRS[name].per_example_cost(z, y)
    cost.backward()
    delta = PAIRS[name].delta(z, y)
    assert torch.isfinite(cost) and torch.isfinite(z.grad).all() and torch.isfinite(delta).all()
    if name in ("sigmoid_ce", "softmax_nll"):  # a - y with a in [0, 1]
        assert delta.abs().max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_extremes_give_the_limits(name):
    """At |z| = 1e4 in float32 each delta takes its limiting value, not NaN or 0/0."""
    z = torch.tensor([1e4, -1e4, 1e4], dtype=torch.float32)
    y = torch.tensor([0.0, 1.0, 0.0])
    a = PAIRS[name].activate(z.double())
    limit = {"sigmoid_mse": torch.zeros(3), "linear_mse": z.double() - y.double()}.get(name, a - y.double())
    torch.testing.assert_close(PAIRS[name].delta(z, y).double(), limit.double(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_on_a_batched_saturated_input(name):
    z, y = inputs(shape=(2, 3, 4))
    assert torch.autograd.gradcheck(PAIRS[name].function.apply, (z.requires_grad_(), y))


@pytest.mark.parametrize("name", NAMES)
def test_backward_is_once_differentiable_and_leaves_the_target_alone(name):
    z, y = inputs(shape=(2, 4))
    z.requires_grad_()
    y.requires_grad_()
    cost = PAIRS[name].per_example_cost(z, y)
    # An upstream gradient that itself needs a graph, as in a double backward.
    upstream = torch.ones_like(cost).requires_grad_()
    (grad_z,) = torch.autograd.grad(cost, z, grad_outputs=upstream, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad_z.sum().backward()
    PAIRS[name].per_example_cost(z, y).sum().backward()
    assert y.grad is None and z.grad is not None


@pytest.mark.parametrize("name", NAMES)
def test_torch_func_vmap_of_grad_gives_delta(name):
    """The documented ensembling route: per-model grad under vmap over M."""
    pair = PAIRS[name]
    z, y = inputs()
    per_model = torch.func.vmap(torch.func.grad(lambda z_m, y_m: pair.per_example_cost(z_m, y_m).sum()))
    torch.testing.assert_close(per_model(z, y), pair.delta(z, y), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_predict_is_argmax_of_the_activation(name):
    z, _ = inputs()
    assert torch.equal(PAIRS[name].predict(z), PAIRS[name].activate(z).argmax(-1))


def test_softplus_is_exact_around_its_threshold_and_beyond():
    z = torch.cat([torch.linspace(-60, 60, 1201), torch.tensor([1e3, -1e3, 1e4, -1e4])]).double()
    exact = z.clamp(min=0) + torch.log1p(torch.exp(-z.abs()))
    torch.testing.assert_close(softplus(z), exact, rtol=1e-15, atol=0)


def test_cross_entropy_cost_keeps_small_costs_accurate_in_float32():
    """A confidently right output: -ln sigma(20) = 2.06e-9, which softplus(z) - y z rounds to 0."""
    z, y = torch.tensor([[20.0]]), torch.tensor([[1.0]])
    expected = F.softplus(torch.tensor(-20.0, dtype=torch.float64)).item()
    assert PAIRS["sigmoid_ce"].per_example_cost(z, y).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(name, dtype):
    pair, tol = PAIRS[name], TOLERANCES[dtype]
    z, y = inputs(dtype=dtype)
    z_gpu, y_gpu = z.cuda(), y.cuda()
    torch.testing.assert_close(pair.per_example_cost(z_gpu, y_gpu).cpu(), pair.per_example_cost(z, y),
                               rtol=tol.cost, atol=tol.cost)
    torch.testing.assert_close(autograd_delta(pair.per_example_cost, z_gpu, y_gpu).cpu(), pair.delta(z, y),
                               rtol=0, atol=tol.autograd)
    torch.testing.assert_close(pair.delta(z_gpu, y_gpu), autograd_delta(REFERENCE_COSTS[name], z_gpu, y_gpu),
                               rtol=0, atol=tol.autograd)
