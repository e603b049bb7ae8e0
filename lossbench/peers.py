"""Other libraries' routes to an ensemble, for the benchmark's peer rows: torch.func and JAX.

    python -m lossbench bench

Each peer trains the runs of an Ensemble (every model its own pair, eta and initial parameters,
and its seed's batch order) with the book's semantics: mini-batches of m examples, the cost summed
over the outputs and averaged over the batch, plain SGD without L2. A peer starts from the
Ensemble's parameters and takes the same [steps, S, B] batches as Ensemble.run_steps, so
tests/test_peers.py checks one step of each against the Ensemble's in float64.

  TorchFunc  the documented PyTorch route: the models as nn.Sequential modules, stack_module_state,
             and vmap(grad(loss)) with functional_call, the loss through the pair's own autograd
             Function (its hand-derived backward); one eager call per pair and step.
  Jax        jax.jit of a lax.scan over a window of steps, each step a vmap(grad(loss)) per pair; the
             four costs are written again in jax.numpy (`JAX_COSTS`). Needs the optional extra
             `bench` (jax[cpu]); `jax_available()` says whether it is installed.

Both evaluate as the Ensemble does at each epoch's end: accuracy and mean cost of every model on
validation + test, in chunks of EVAL_CHUNK examples.
"""

import copy
import importlib.util

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from lossbench.ensemble import Ensemble
from lossbench.ensemble_core import EVAL_CHUNK
from lossbench.pairs import PAIRS


def jax_available() -> bool:
    return importlib.util.find_spec("jax") is not None


def _by_pair(ensemble: Ensemble) -> list[tuple[str, np.ndarray]]:
    """(pair name, spec-order indices of its models), pairs in the order they first appear."""
    names = [s.pair for s in ensemble.specs]
    return [(p, np.flatnonzero(np.array(names) == p)) for p in dict.fromkeys(names)]


def _eval_sets(ensemble: Ensemble) -> list[tuple[torch.Tensor, torch.Tensor]]:
    d, dt = ensemble.data, ensemble.cfg.dtype
    return [(x.to(ensemble.device, dt), y.to(ensemble.device)) for x, y in ((d.val_x, d.val_y), (d.test_x, d.test_y))]


class TorchFunc:
    """The Ensemble's runs as stacked nn.Sequential modules, trained with torch.func.vmap(grad(...))."""

    def __init__(self, ensemble: Ensemble):
        self.ensemble = ensemble
        sizes = ensemble.cfg.sizes
        weights = ensemble.params()  # spec order, [(W [M, n_in, n_out], b [M, 1, n_out])]
        lrs = torch.tensor([s.lr for s in ensemble.specs], dtype=ensemble.cfg.dtype, device=ensemble.device)
        rows = ensemble.model_rows().to(ensemble.device)
        self.pairs = []
        for name, models in _by_pair(ensemble):
            modules = [self._module(sizes, [(w[m], b[m]) for w, b in weights]) for m in models]
            params, _ = stack_module_state(modules)  # {"0.weight": [m, n_out, n_in], "0.bias": [m, n_out], ...}
            params = {k: v.detach().to(ensemble.device) for k, v in params.items()}
            base = copy.deepcopy(modules[0]).to("meta")
            index = torch.from_numpy(models).to(ensemble.device)
            self.pairs.append((PAIRS[name], base, params, lrs[index], rows[index], models))

    def _module(self, sizes, layers) -> nn.Sequential:
        """nn.Linear holds W^T: lossbench's z = a W + b is Linear's a W^T + b with its weight = W^T."""
        modules = []
        for w, b in layers:
            linear = nn.Linear(*w.shape, dtype=w.dtype)
            with torch.no_grad():
                linear.weight.copy_(w.T)
                linear.bias.copy_(b[0])
            modules += [linear, nn.Sigmoid()]
        return nn.Sequential(*modules[:-1])  # ends in z: the pair's cost applies the output activation

    def compile(self, steps: int):
        """Nothing to compile: torch.func runs eagerly."""

    def run_steps(self, batches: torch.Tensor):
        """SGD steps for batches [steps, S, B] of training-set indices, one row per seed group."""
        x, y1h = self.ensemble.train_x, self.ensemble.train_y1h
        for idx in batches:
            for pair, base, params, lrs, rows, _ in self.pairs:
                batch = idx[rows]  # [m, B]: each model's mini-batch

                def loss(p, xb, yb):
                    return pair.per_example_cost(functional_call(base, p, (xb,)), yb).mean()

                grads = vmap(grad(loss))(params, x[batch], y1h[batch])
                for k, p in params.items():
                    p.sub_(lrs.view(-1, *[1] * (p.dim() - 1)) * grads[k])

    @torch.no_grad()
    def evaluate(self) -> dict[str, np.ndarray]:
        """Accuracy and mean cost of every model (spec order) on validation and test."""
        out = {}
        for split, (x, labels) in zip(("val", "test"), _eval_sets(self.ensemble)):
            acc, cost = np.zeros(self.ensemble.M), np.zeros(self.ensemble.M)
            for pair, base, params, _, _, models in self.pairs:
                forward = vmap(lambda p, xb: functional_call(base, p, (xb,)), in_dims=(0, None))
                for xc, yc in zip(x.split(EVAL_CHUNK), labels.split(EVAL_CHUNK)):
                    z = forward(params, xc)  # [m, c, n_L]
                    acc[models] += (pair.predict(z) == yc).sum(1).double().cpu().numpy()
                    y1h = nn.functional.one_hot(yc, z.shape[-1]).to(z.dtype)
                    cost[models] += pair.cost_fn(z, y1h).sum(1).double().cpu().numpy()
            out[f"{split}_acc"], out[f"{split}_cost"] = acc / len(x), cost / len(x)
        return out

    def params(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(W [M, n_in, n_out], b [M, 1, n_out]) per layer] in spec order, as Ensemble.params()."""
        layers = []
        for l in range(self.ensemble.L):
            w = torch.empty(self.ensemble.M, *self.ensemble.cfg.sizes[l:l + 2], dtype=self.ensemble.cfg.dtype)
            b = torch.empty(self.ensemble.M, 1, self.ensemble.cfg.sizes[l + 1], dtype=w.dtype)
            for _, _, params, _, _, models in self.pairs:
                w[models] = params[f"{2 * l}.weight"].transpose(1, 2).cpu()
                b[models] = params[f"{2 * l}.bias"].unsqueeze(1).cpu()
            layers.append((w, b))
        return layers


def jax_costs():
    """The four pairs' per-example costs in jax.numpy, as lossbench.pairs writes them (the same forms)."""
    import jax
    import jax.numpy as jnp

    return {
        "sigmoid_mse": lambda z, y: 0.5 * jnp.sum((jax.nn.sigmoid(z) - y) ** 2, -1),
        "sigmoid_ce": lambda z, y: jnp.sum(y * jax.nn.softplus(-z) + (1 - y) * jax.nn.softplus(z), -1),
        "softmax_nll": lambda z, y: -jnp.sum(y * jax.nn.log_softmax(z, -1), -1),
        "linear_mse": lambda z, y: 0.5 * jnp.sum((z - y) ** 2, -1),
    }


class Jax:
    """The Ensemble's runs in JAX: a jitted lax.scan over each window of steps of vmap(grad(loss)) per pair.

    Arrays take the Ensemble's dtype: float64 needs `with jax.enable_x64(True)` around the
    construction and every call.
    """

    def __init__(self, ensemble: Ensemble):
        import jax
        import jax.numpy as jnp

        self.ensemble = ensemble
        dtype = {torch.float32: jnp.float32, torch.float64: jnp.float64}[ensemble.cfg.dtype]
        weights = ensemble.params()
        lrs = np.array([s.lr for s in ensemble.specs])
        rows = ensemble.model_rows().numpy()
        costs = jax_costs()
        self.x = jnp.asarray(ensemble.train_x.cpu().numpy(), dtype)
        self.y1h = jnp.asarray(ensemble.train_y1h.cpu().numpy(), dtype)
        self.pairs = [(name, models, jnp.asarray(lrs[models], dtype), jnp.asarray(rows[models])) for name, models
                      in _by_pair(ensemble)]
        self.state = [[(jnp.asarray(w[models].numpy(), dtype), jnp.asarray(b[models, 0].numpy(), dtype))
                       for w, b in weights] for _, models in _by_pair(ensemble)]

        def forward(layers, x):
            for w, b in layers[:-1]:
                x = jax.nn.sigmoid(x @ w + b)
            w, b = layers[-1]
            return x @ w + b

        def step(state, idx):  # idx [S, B]
            new = []
            for (name, _, lr, rows_p), layers in zip(self.pairs, state):
                def loss(p, xb, yb, cost=costs[name]):
                    return jnp.mean(cost(forward(p, xb), yb))

                batch = idx[rows_p]
                grads = jax.vmap(jax.grad(loss))(layers, self.x[batch], self.y1h[batch])
                new.append(jax.tree_util.tree_map(
                    lambda p, g: p - lr.reshape((-1,) + (1,) * (p.ndim - 1)) * g, layers, grads))
            return new, None

        def window(state, batches):
            return jax.lax.scan(step, state, batches)[0]

        def evaluate_chunk(state, x, labels):
            acc, cost = [], []
            for (name, *_), layers in zip(self.pairs, state):
                z = jax.vmap(forward, in_axes=(0, None))(layers, x)  # [m, c, n_L]
                acc.append(jnp.sum(jnp.argmax(z, -1) == labels, -1))
                cost.append(jnp.sum(costs[name](z, jax.nn.one_hot(labels, z.shape[-1], dtype=z.dtype)), -1))
            return acc, cost

        self._window, self._evaluate_chunk = jax.jit(window), jax.jit(evaluate_chunk)
        self._compiled = {}  # steps -> the window compiled ahead of time
        self._jnp, self._dtype = jnp, dtype

    def compile(self, steps: int):
        """Compile the window of `steps` steps and the evaluation now, so that timing them excludes compilation."""
        jnp, e = self._jnp, self.ensemble
        shape = (steps, e.S, e.cfg.batch_size)
        self._compiled[steps] = self._window.lower(self.state, jnp.zeros(shape, jnp.int32)).compile()
        chunk = min(EVAL_CHUNK, len(e.data.val_x))
        self._evaluate_chunk(self.state, jnp.zeros((chunk, e.cfg.sizes[0]), self._dtype), jnp.zeros(chunk, jnp.int32))

    def run_steps(self, batches: torch.Tensor):
        """SGD steps for batches [steps, S, B] (one lax.scan); returns when they are done."""
        window = self._compiled.get(len(batches), self._window)
        self.state = window(self.state, self._jnp.asarray(batches.cpu().numpy(), self._jnp.int32))
        self._jnp.asarray(self.state[0][0][0]).block_until_ready()

    def evaluate(self) -> dict[str, np.ndarray]:
        out = {}
        for split, (x, labels) in zip(("val", "test"), _eval_sets(self.ensemble)):
            acc, cost = np.zeros(self.ensemble.M), np.zeros(self.ensemble.M)
            for xc, yc in zip(x.split(EVAL_CHUNK), labels.split(EVAL_CHUNK)):
                accs, costs = self._evaluate_chunk(self.state, self._jnp.asarray(xc.cpu().numpy(), self._dtype),
                                                   self._jnp.asarray(yc.cpu().numpy()))
                for (_, models, *_), a, c in zip(self.pairs, accs, costs):
                    acc[models] += np.asarray(a)
                    cost[models] += np.asarray(c)
            out[f"{split}_acc"], out[f"{split}_cost"] = acc / len(x), cost / len(x)
        return out

    def params(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        layers = []
        for l in range(self.ensemble.L):
            w = np.empty((self.ensemble.M, *self.ensemble.cfg.sizes[l:l + 2]))
            b = np.empty((self.ensemble.M, 1, self.ensemble.cfg.sizes[l + 1]))
            for (_, models, *_), state in zip(self.pairs, self.state):
                w[models], b[models, 0] = np.asarray(state[l][0]), np.asarray(state[l][1])
            layers.append((torch.from_numpy(w), torch.from_numpy(b)))
        return layers
