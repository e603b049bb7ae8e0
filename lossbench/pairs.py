"""The four (output activation, cost) pairs, each a custom autograd Function.

    python -m lossbench gradcheck

Every pair maps the output layer's weighted input z [..., K] and a one-hot
target y [..., K] to the per-example cost [...] in the book's convention
(summed over output units; the caller averages over the mini-batch). Its
backward returns the hand-derived delta = dC/dz (Nielsen, ch. 1-3), never
autograd's, so that a trainer which starts backprop from `pair.delta` and a
loss that goes through `pair.function` compute the same thing.

Equation numbers are those of Nielsen, *Neural Networks and Deep Learning*
(ch. 3 unless said otherwise). All costs are written in forms that stay finite
for |z| up to 1e4 in float32: softplus for ln(1 + e^z), log-softmax, and
sigmoid'(z) = sigmoid(z) sigmoid(-z) instead of a(1 - a), which rounds to 0.
"""

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.autograd.function import Function, once_differentiable

from lossbench.choices import PAIR_PARTS
from lossbench.errors import UserError

Tensor = torch.Tensor


def sigmoid_prime(z: Tensor) -> Tensor:
    """sigma'(z) = sigma(z) (1 - sigma(z)) (ch. 1, eq. 3's derivative), as sigma(z) sigma(-z)."""
    return torch.sigmoid(z) * torch.sigmoid(-z)


def softplus(z: Tensor) -> Tensor:
    """ln(1 + e^z) to rounding for any z, in one fused kernel.

    PyTorch's softplus returns z itself above `threshold`; at its default 20 that
    drops e^-20 = 2e-9, visible in float64, while beyond 40 e^-z is below rounding.
    """
    return F.softplus(z, threshold=40.0)


def softmax(z: Tensor) -> Tensor:
    """a_j = e^{z_j} / sum_k e^{z_k} (eq. 78) over the last axis, as exp(z - max z) / sum.

    torch.softmax gives the same to rounding, but its CPU kernel is 4-6x slower over a
    last axis of 10 (measured: 64 against 16 us for [400, 10], one thread).
    """
    e = (z - z.amax(-1, keepdim=True)).exp_()
    return e / e.sum(-1, keepdim=True)


def log_softmax(z: Tensor) -> Tensor:
    """ln a_j = s_j - ln sum_k e^{s_k} with s = z - max z: finite for any finite z; as fast as softmax above."""
    s = z - z.amax(-1, keepdim=True)
    return s - s.exp().sum(-1, keepdim=True).log_()


# --- sigmoid + quadratic ---------------------------------------------------
def sigmoid_mse_cost(z: Tensor, y: Tensor) -> Tensor:
    """C = 1/2 sum_j (a_j - y_j)^2 with a = sigma(z) (ch. 1 eq. 6 per example; ch. 3 eq. 54)."""
    return 0.5 * (torch.sigmoid(z) - y).square().sum(-1)


def sigmoid_mse_delta(z: Tensor, y: Tensor) -> Tensor:
    """delta = (a - y) sigma'(z): ch. 2's BP1, delta = grad_a C * sigma'(z), with grad_a C = a - y.

    Ch. 3 eq. 65 is the output-layer weight gradient a^{L-1}_k delta_j built from it.
    """
    return (torch.sigmoid(z) - y) * sigmoid_prime(z)


# --- sigmoid + cross-entropy -----------------------------------------------
def sigmoid_ce_cost(z: Tensor, y: Tensor) -> Tensor:
    """C = -sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)] (eq. 63), a = sigma(z).

    Term by term, -ln sigma(z) = softplus(-z) and -ln(1 - sigma(z)) = softplus(z):
    no log of 0, and, unlike the shorter softplus(z) - y z, no cancellation that
    loses the small cost of a confidently right output.
    """
    return (y * softplus(-z) + (1 - y) * softplus(z)).sum(-1)


def sigmoid_ce_delta(z: Tensor, y: Tensor) -> Tensor:
    """delta = a - y: sigma'(z) cancels (eq. 66)."""
    return torch.sigmoid(z) - y


# --- softmax + log-likelihood ----------------------------------------------
def softmax_nll_cost(z: Tensor, y: Tensor) -> Tensor:
    """C = -ln a_y with a = softmax(z) (eq. 78 softmax, eq. 80 cost), via log-softmax."""
    return -(y * log_softmax(z)).sum(-1)


def softmax_nll_delta(z: Tensor, y: Tensor) -> Tensor:
    """delta = a - y (eq. 84; eqs. 81-82 are the gradients built from it).

    Holds when sum_j y_j = 1, as for the one-hot targets used here.
    """
    return softmax(z) - y


# --- linear + quadratic ----------------------------------------------------
def linear_mse_cost(z: Tensor, y: Tensor) -> Tensor:
    """C = 1/2 sum_j (z_j - y_j)^2 with a = z (linear output neurons; the ch. 3 problem with eq. 68)."""
    return 0.5 * (z - y).square().sum(-1)


def linear_mse_delta(z: Tensor, y: Tensor) -> Tensor:
    """delta = a - y = z - y (eq. 68)."""
    return z - y


def _cost_function(name: str, cost: Callable, delta: Callable) -> type[Function]:
    """A Function whose forward is `cost` and whose backward is `delta`, not autograd's.

    One factory rather than four hand-written classes: the pairs differ only in
    these two formulas. Backward is once-differentiable (delta has no hand-derived
    second derivative here), and y, a target, gets no gradient. generate_vmap_rule
    lets torch.func.vmap/grad (the documented ensembling route) go through it.
    """

    def forward(z: Tensor, y: Tensor) -> Tensor:
        return cost(z, y)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @once_differentiable
    def backward(ctx, grad_cost: Tensor):
        z, y = ctx.saved_tensors
        return grad_cost.unsqueeze(-1) * delta(z, y), None

    doc = f"Per-example cost {cost.__doc__}\n\nBackward: {delta.__doc__}"
    return type(name, (Function,), {
        "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
        "generate_vmap_rule": True,
        "__doc__": doc,
    })


@dataclass(frozen=True)
class Pair:
    """An output activation and a cost, with everything a trainer needs of them."""

    name: str
    activation: str  # sigmoid | softmax | linear
    cost: str  # quadratic | cross_entropy | log_likelihood
    delta_formula: str
    equations: str
    activate: Callable[[Tensor], Tensor]
    cost_fn: Callable[[Tensor, Tensor], Tensor]
    delta_fn: Callable[[Tensor, Tensor], Tensor]
    function: type[Function]

    def per_example_cost(self, z: Tensor, y: Tensor) -> Tensor:
        """The cost of each example, [...], through the custom Function (differentiable in z)."""
        return self.function.apply(z, y)

    def delta(self, z: Tensor, y: Tensor) -> Tensor:
        """dC/dz for each example, [..., K]: the same formula as the Function's backward."""
        return self.delta_fn(z, y)

    @staticmethod
    def predict(z: Tensor) -> Tensor:
        """The predicted class: every activation here is monotone, so argmax a = argmax z.

        Ties go to the first class, as with argmax; max's indices are 4x faster on the CPU
        (measured: 10 against 42 ms for [160, 2000, 10] with classes not innermost).
        """
        return z.max(-1).indices


def _pair(name, delta_formula, equations, activate, cost_fn, delta_fn) -> Pair:
    """The pair `name` of choices.PAIR_PARTS (its activation and cost), with its math."""
    class_name = "".join(part.capitalize() for part in name.split("_")) + "Cost"
    return Pair(name, *PAIR_PARTS[name], delta_formula, equations, activate, cost_fn, delta_fn,
                _cost_function(class_name, cost_fn, delta_fn))


PAIRS: dict[str, Pair] = {p.name: p for p in [
    _pair("sigmoid_mse", "(a - y) * sigma'(z)", "ch. 1 eq. 6; ch. 2 BP1; ch. 3 eq. 65",
          torch.sigmoid, sigmoid_mse_cost, sigmoid_mse_delta),
    _pair("sigmoid_ce", "a - y", "ch. 3 eq. 63, 66", torch.sigmoid, sigmoid_ce_cost, sigmoid_ce_delta),
    _pair("softmax_nll", "a - y", "ch. 3 eq. 78, 80, 81, 84", softmax, softmax_nll_cost, softmax_nll_delta),
    _pair("linear_mse", "z - y", "ch. 3 eq. 68", lambda z: z, linear_mse_cost, linear_mse_delta),
]}

# Each pair's number in the fused kernels: the branches of triton_train.py, the enum of cpu_step.c.
PAIR_CODES = {"sigmoid_mse": 0, "sigmoid_ce": 1, "softmax_nll": 2, "linear_mse": 3}


def get_pair(name: str) -> Pair:
    """The registered pair called `name`; a UserError listing the valid names otherwise."""
    if name not in PAIRS:
        raise UserError(f"unknown pair {name!r}; the pairs are: {', '.join(PAIRS)}.")
    return PAIRS[name]
