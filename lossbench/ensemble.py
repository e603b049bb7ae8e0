"""Train M independent MLPs at once, as stacked tensors, with the book's SGD.

    python -m lossbench bench

Model m has weights W[l][m] of shape [n_in, n_out] and biases b[l][m] of shape
[1, n_out]; one step is a handful of batched matmuls over all M models. Each
model has its own learning rate and its own seed, and the seed alone fixes its
initialization and its per-epoch shuffling (a torch.Generator per model), so a
model's numbers do not depend on which other models share its ensemble, up to
rounding: a different makeup can change matmul shapes and so the last bits.

The algorithm is Nielsen's `network.py` / `network2.py`, written as tensors:
forward a^l = sigma(a^{l-1} W^l + b^l) (ch. 1 eq. 22), output delta from the
pair's hand-derived formula (BP1, the same function as its autograd Function's
backward), delta^{l-1} = (delta^l W^l^T) * sigma'(z^{l-1}) (BP2), and the update
w <- (1 - eta lambda / n) w - (eta / m) sum_x a_x^T delta_x (ch. 3 eq. 93),
b <- b - (eta / m) sum_x delta_x (eq. 94). Hidden layers are sigmoid.

Metrics are accumulated in device tensors during the epoch and read back once
at its end: no host synchronisation per step. The steps run through an engine
(TrainConfig.engine): `eager`, one step at a time as written here; `graphs`, on CUDA,
replayed from CUDA graphs of `GRAPH_STEPS` steps; `triton`, on CUDA, many steps per
launch of lossbench/triton_train.py's fused kernel; `auto`, triton where it can
train the models, else graphs on CUDA and eager on the CPU.
"""

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from lossbench.errors import UserError
from lossbench.pairs import PAIRS, Pair, get_pair, sigmoid_prime

if TYPE_CHECKING:
    from lossbench.data import Split

# Saturated sigmoids and softmaxes make subnormal floats (below 1.2e-38 in float32), which slow x86
# arithmetic 10-50x (measured here: a 160-model weight update took 48 ms instead of 0.9 ms). Flushing
# them to 0 changes no reported number. The flag is per thread and new threads inherit it, so it is
# set on import, before torch starts its OpenMP workers: set later, the workers would not have it.
torch.set_flush_denormal(True)

INITS = ("large", "default")
ENGINES = ("auto", "triton", "graphs", "eager")
GRAPH_STEPS = 500  # steps per CUDA graph: long enough to hide launches, short enough to capture quickly
EVAL_CHUNK = 2000  # examples per evaluation chunk: bounds memory at M x EVAL_CHUNK x width
SATURATED = 0.01  # an output unit is saturated when sigma'(z) < 0.01, i.e. |z| > 4.6


@dataclass(frozen=True)
class RunSpec:
    """One network to train: its output pair, learning rate eta and seed."""

    pair: str
    lr: float
    seed: int


@dataclass(frozen=True)
class TrainConfig:
    """What all models of an ensemble share."""

    sizes: tuple[int, ...]
    init: str = "large"  # large: W, b ~ N(0, 1) (ch. 1); default: W ~ N(0, 1/n_in), b ~ N(0, 1) (ch. 3)
    batch_size: int = 10
    l2: float = 0.0  # lambda of network2's L2 regularisation (weights only)
    dtype: torch.dtype = torch.float32
    device: str | torch.device = "cpu"
    engine: str = "auto"  # one of ENGINES: how the steps run (see choose_engine)


def choose_engine(cfg: TrainConfig, pairs: list[str]) -> str:
    """The engine that runs the steps of models of `pairs` under cfg: cfg.engine, auto resolved.

    auto is triton on CUDA when Triton imports and its kernel can train these models, else
    graphs on CUDA and eager on the CPU. An engine asked for by name that cannot run here is
    a UserError that says why.
    """
    if cfg.engine not in ENGINES:
        raise UserError(f"engine={cfg.engine!r} is not an engine; choose one of: {', '.join(ENGINES)}.")
    cuda = torch.device(cfg.device).type == "cuda"
    if cfg.engine == "triton" or (cfg.engine == "auto" and cuda):
        try:
            from lossbench import triton_train  # the `triton` extra; imported only when it may run
            why_not = triton_train.unsupported(cfg.sizes, cfg.batch_size, torch.device(cfg.device), pairs)
        except ImportError:
            why_not = "Triton is not installed (pip install 'lossbench[triton]')"
        if why_not is None:
            return "triton"
        if cfg.engine == "triton":
            raise UserError(f"engine=triton cannot train here: {why_not}. Use engine=auto, graphs or eager.")
    if cfg.engine == "auto":
        return "graphs" if cuda else "eager"
    if cfg.engine == "graphs" and not cuda:
        raise UserError(f"engine=graphs replays CUDA graphs, but the device is {cfg.device}; use engine=auto or eager.")
    return cfg.engine


def init_params(seed: int, sizes: tuple[int, ...], init: str, generator: torch.Generator | None = None):
    """One model's [(W [n_in, n_out], b [1, n_out]), ...] in float64, drawn from `seed`.

    Drawn in float64 on the CPU whatever the training dtype and device, so float32
    and float64 runs, and CPU and CUDA runs, start from the same numbers.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        scale = 1.0 if init == "large" else 1.0 / math.sqrt(n_in)
        w = torch.randn(n_in, n_out, generator=g, dtype=torch.float64) * scale
        b = torch.randn(1, n_out, generator=g, dtype=torch.float64)
        params.append((w, b))
    return params


class Ensemble:
    """M networks of the same sizes, trained in lockstep; each has its own pair, eta and seed.

    Models that share a seed share their initialization and their batch order,
    so the first layer, which sees the raw images, runs once per group of models
    with the same pair and seed (typically: the learning rates of a grid): W[0]
    is stored as [S, n_in, G * n_1] for S groups of G models (one gather and one
    wide matmul per group instead of G narrow ones). Later layers see different
    activations per model and are stored per model, [M, n_in, n_out]. Internally
    models are ordered by group, so each pair's models are one view of any
    [M, ...] tensor; `params()`, the metrics and `diverged_epoch` come back in
    the order of `specs`.
    """

    def __init__(self, specs: list[RunSpec], cfg: TrainConfig, data: "Split"):
        if not specs:
            raise ValueError("an ensemble needs at least one RunSpec")
        n = data.train_x.shape[0]
        if not 1 <= cfg.batch_size <= n:
            raise ValueError(f"batch_size {cfg.batch_size} must be in 1..{n} (the training set size)")
        self.specs, self.cfg, self.data = list(specs), cfg, data
        self.device = torch.device(cfg.device)
        self.M, self.n, self.L = len(specs), n, len(cfg.sizes) - 1
        self.engine = choose_engine(cfg, [s.pair for s in specs])
        dt, dev = cfg.dtype, self.device
        self._layout(specs)
        group_seeds = [specs[i].seed for i in self.order[:: self.G]]
        self.generators = [torch.Generator().manual_seed(seed) for seed in group_seeds]
        group_params = [init_params(seed, cfg.sizes, cfg.init, g) for seed, g in zip(group_seeds, self.generators)]
        per_model = [p for p in group_params for _ in range(self.G)]
        self.W = [torch.stack([p[l][0] for p in per_model]).to(dev, dt) for l in range(self.L)]
        self.b = [torch.stack([p[l][1] for p in per_model]).to(dev, dt) for l in range(self.L)]
        self.W[0], self.b[0] = self._per_group(self.W[0]), self._per_group(self.b[0])
        self.lr = torch.tensor([specs[i].lr for i in self.order], dtype=dt, device=dev).view(-1, 1, 1)
        self._sigmoid_output = np.array([PAIRS[specs[i].pair].activation == "sigmoid" for i in self.order])
        self.neg_lr = -self.lr  # -eta, and 0 once a model diverged: frozen (updated in place, see _freeze)
        self.epoch = 0
        self._diverged = np.zeros(self.M, dtype=np.int64)  # internal order
        self.train_x = data.train_x.to(dev, dt)
        self.train_y1h = torch.nn.functional.one_hot(data.train_y.to(dev), cfg.sizes[-1]).to(dt)
        # Running sums over an epoch's steps: cost, and |grad_b|, |grad_W| per layer.
        self.cost_sum = torch.zeros(self.M, dtype=dt, device=dev)
        self.grad_sum = torch.zeros(2 * self.L, self.M, dtype=dt, device=dev)
        self.grad_sq = torch.zeros_like(self.grad_sum)  # this step's squared norms
        self._graphs: dict[int, tuple] = {}

    # --- layouts ------------------------------------------------------------
    def _layout(self, specs: list[RunSpec]):
        """Choose the internal order, the groups (S x G) and each pair's view of the model axis.

        Models are ordered by (pair, seed, lr). Models of one pair that share a seed form a
        group; when all groups have the same size, they share the first layer (G = group
        size), else each model is its own group (G = 1). Grouping by pair as well as seed
        keeps a group's matmul shape the same whichever other pairs share the ensemble (jobs
        split by pair merged bit-identically in float64), and each pair's models are a range
        of groups: the view [S, G, ...][a:b].
        """
        self.order = np.array(sorted(range(self.M), key=lambda i: (specs[i].pair, specs[i].seed, specs[i].lr, i)))
        keys = [(specs[i].pair, specs[i].seed) for i in self.order]
        sizes = [len(list(g)) for _, g in itertools.groupby(keys)]
        self.G = sizes[0] if len(set(sizes)) == 1 else 1
        self.S = self.M // self.G
        group_pairs = [pair for pair, _ in keys[:: self.G]]
        self.pair_views = [(get_pair(p), (slice(group_pairs.index(p), len(group_pairs) - group_pairs[::-1].index(p)),))
                           for p in dict.fromkeys(group_pairs)]

    def _per_model(self, t: torch.Tensor) -> torch.Tensor:
        """[S, X, G * n] (group layout) -> [M, X, n]."""
        S, X, _ = t.shape
        return t.view(S, X, self.G, -1).transpose(1, 2).reshape(self.M, X, -1)

    def _per_group(self, t: torch.Tensor) -> torch.Tensor:
        """[M, X, n] -> [S, X, G * n] (group layout)."""
        _, X, n = t.shape
        return t.view(self.S, self.G, X, n).transpose(1, 2).reshape(self.S, X, self.G * n)

    def _to_spec_order(self, v: np.ndarray) -> np.ndarray:
        out = np.empty_like(v)
        out[self.order] = v
        return out

    @property
    def diverged_epoch(self) -> np.ndarray:
        """Per model (spec order): 0 if it never diverged, else the epoch its parameters or cost stopped being finite."""
        return self._to_spec_order(self._diverged)

    def params(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(W [M, n_in, n_out], b [M, 1, n_out]) per layer], in spec order, on the CPU."""
        inv = torch.from_numpy(np.argsort(self.order))
        layers = [(self._per_model(self.W[0]), self._per_model(self.b[0]))] + list(zip(self.W[1:], self.b[1:]))
        return [(w.cpu()[inv], b.cpu()[inv]) for w, b in layers]

    # --- one SGD step -------------------------------------------------------
    def _backprop(self, x: torch.Tensor, y: torch.Tensor):
        """Yield (l, a_in, delta_l) for l = L-1 .. 0.

        x [S, B, n_in] and y [S, 1, B, K] are each group's mini-batch and one-hot
        targets (broadcast over the group's G models). delta^{l-1} is computed before
        delta^l is yielded, so a caller may update W[l] in place between iterations
        (BP2 needs the weights before the update). For l = 0, a_in is the group's x.
        """
        z = self._per_model(torch.baddbmm(self.b[0], x, self.W[0]))
        acts = [x]
        for l in range(1, self.L):
            acts.append(torch.sigmoid(z))
            z = torch.baddbmm(self.b[l], acts[-1], self.W[l])
        M, B, K = z.shape
        delta = self._output_delta(z.view(self.S, self.G, B, K), y).view(M, B, K)
        for l in reversed(range(self.L)):
            a_in = acts[l]
            prev = None
            if l:  # BP2, with sigma'(z) = a (1 - a) = a - a^2 of the stored activations
                prev = torch.bmm(delta, self.W[l].transpose(1, 2)).mul_(torch.addcmul(a_in, a_in, a_in, value=-1))
            yield l, a_in, delta
            delta = prev

    def _output_delta(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """BP1 through each model's own pair, for z [S, G, B, K]; adds each model's mean cost to cost_sum."""
        delta = torch.empty_like(z)
        cost = self.cost_sum.view(self.S, self.G)
        for pair, view in self.pair_views:
            z_pair, y_pair = z[view], y[view]  # y [S, 1, B, K] is shared along a group
            cost[view] += pair.cost_fn(z_pair, y_pair).mean(-1)
            delta[view] = pair.delta(z_pair, y_pair)
        return delta

    def _step(self, idx: torch.Tensor):
        """One mini-batch step for every model; idx [S, B] indexes the training set, one row per group."""
        S, B = idx.shape
        x = self.train_x.index_select(0, idx.reshape(-1)).view(S, B, -1)
        y = self.train_y1h.index_select(0, idx.reshape(-1)).view(S, 1, B, -1)
        step = self.neg_lr / B  # -eta/m, and 0 for a frozen model
        for l, a_in, delta in self._backprop(x, y):
            # |grad_b|^2 = |mean_x delta_x|^2 and |grad_W|_F^2 = sum((A A^T) o (D D^T)) / B^2, with
            # grad_W = A^T D / B: the Gram form costs B x B per model instead of a pass over W.
            # For l = 0 one input Gram per group serves its G models (broadcast).
            gram_a = torch.bmm(a_in, a_in.transpose(1, 2)).view(S, -1, B, B)
            gram_d = torch.bmm(delta, delta.transpose(1, 2)).view(S, -1, B, B)
            delta_sum = delta.sum(1, keepdim=True)  # sum over the mini-batch: B x grad_b
            self.grad_sq[2 * l] = delta_sum.square().sum((1, 2))
            self.grad_sq[2 * l + 1] = (gram_a * gram_d).sum((2, 3)).view(-1)
            scale = step
            if l == 0:  # to W[0]'s group layout, the per-model factors along its columns
                scale = self._per_group(step.expand(-1, 1, self.cfg.sizes[1]))
                delta, delta_sum = self._per_group(delta), self._per_group(delta_sum)
            if self.cfg.l2:  # network2's weight decay, 1 - eta lambda / n (ch. 3 eq. 93)
                self.W[l].mul_(1 + scale * B * self.cfg.l2 / self.n)
            self.W[l].baddbmm_(a_in.transpose(1, 2), delta * scale)
            self.b[l].add_(delta_sum * scale)
        self.grad_sum += self.grad_sq.clamp_(min=0).sqrt_() / B

    # --- one epoch ----------------------------------------------------------
    def train_epoch(self, progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
        """Reshuffle each model's training set, run all mini-batches, then evaluate.

        progress(k), if given, is told after every GRAPH_STEPS steps (whole CUDA graphs) and after
        the last that k of the epoch's n // batch_size full steps have run; on CUDA once the device
        has run them, which costs one synchronisation per call, not per step.
        """
        perms = torch.stack([torch.randperm(self.n, generator=g) for g in self.generators]).to(self.device)
        self.cost_sum.zero_()
        self.grad_sum.zero_()
        B = self.cfg.batch_size
        steps = self.n // B
        batches = perms[:, : steps * B].view(self.S, steps, B).transpose(0, 1)
        for start in range(0, steps, GRAPH_STEPS):
            self.run_steps(batches[start:start + GRAPH_STEPS])
            if progress is not None:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                progress(min(start + GRAPH_STEPS, steps))
        if self.n % B:  # the book's last, smaller mini-batch: averaged over its own size
            self.run_steps(perms[:, steps * B:].unsqueeze(0))
            steps += 1
        self.epoch += 1
        metrics = {"train_cost": self.cost_sum / steps}
        for l in range(self.L):
            metrics[f"grad_b{l + 1}"] = self.grad_sum[2 * l] / steps
            metrics[f"grad_w{l + 1}"] = self.grad_sum[2 * l + 1] / steps
        metrics = {k: v.double().cpu().numpy() for k, v in metrics.items()}
        self._flag_divergence(metrics["train_cost"])
        return self._with_eval(metrics)

    def run_steps(self, batches: torch.Tensor):
        """Mini-batch steps for batches [steps, S, B] of training-set indices (one row per group),
        through self.engine. train_epoch runs an epoch's steps through here; the benchmark times
        windows of them."""
        if self.engine == "triton":
            self._run_triton(batches)
        elif self.engine == "graphs":
            self._run_graphed(batches)
        else:
            for idx in batches:
                self._step(idx)

    def _run_triton(self, batches: torch.Tensor):
        """All the steps in one launch of the fused kernel, which wants the first layer per model."""
        from lossbench import triton_train

        W = [self._per_model(self.W[0]).contiguous(), *self.W[1:]]
        b = [self._per_model(self.b[0]).contiguous(), *self.b[1:]]
        triton_train.train_steps(W, b, self.neg_lr.view(-1), [self.specs[i].pair for i in self.order], self.G,
                                 self.train_x, self.train_y1h, batches, self.cfg.l2 / self.n, self.cost_sum,
                                 self.grad_sum)
        self.W[0].copy_(self._per_group(W[0]))
        self.b[0].copy_(self._per_group(b[0]))

    def _run_graphed(self, batches: torch.Tensor):
        """Replay the steps from CUDA graphs of GRAPH_STEPS steps each; the rest runs eagerly."""
        n_graphed = len(batches) // GRAPH_STEPS * GRAPH_STEPS
        if n_graphed:
            buf, graph = self._graph(GRAPH_STEPS, batches.shape[1:])
            for start in range(0, n_graphed, GRAPH_STEPS):
                buf.copy_(batches[start:start + GRAPH_STEPS])
                graph.replay()
        for idx in batches[n_graphed:]:
            self._step(idx)

    def _graph(self, steps: int, shape):
        """A CUDA graph of `steps` steps reading their indices from a static buffer (captured once)."""
        if steps not in self._graphs:
            buf = torch.zeros(steps, *shape, dtype=torch.long, device=self.device)
            saved = [t.clone() for t in self.W + self.b + [self.cost_sum, self.grad_sum]]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up outside the graph, as capture requires
                for idx in buf[:3]:
                    self._step(idx)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for idx in buf:
                    self._step(idx)
            for t, s in zip(self.W + self.b + [self.cost_sum, self.grad_sum], saved):
                t.copy_(s)  # undo the warm-up and capture steps: capture runs nothing, warm-up did
            self._graphs[steps] = (buf, graph)
        return self._graphs[steps]

    def _flag_divergence(self, train_cost: np.ndarray):
        """Freeze models whose parameters or cost stopped being finite, and record the epoch."""
        finite = torch.ones(self.M, dtype=torch.bool, device=self.device)
        for t in [self._per_model(self.W[0]), self._per_model(self.b[0])] + self.W[1:] + self.b[1:]:
            finite &= torch.isfinite(t).flatten(1).all(1)
        newly = (~finite.cpu().numpy() | ~np.isfinite(train_cost)) & (self._diverged == 0)
        self._diverged[newly] = self.epoch
        self._freeze()

    def _freeze(self):
        """eta = 0 for diverged models; in place, because CUDA graphs captured the tensor's address."""
        self.neg_lr.copy_(torch.where(torch.from_numpy(self._diverged > 0).to(self.device).view(-1, 1, 1),
                                      torch.zeros_like(self.lr), -self.lr))

    # --- evaluation ---------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, np.ndarray]:
        """The metrics at the current parameters without training (the epoch-0 row)."""
        nan = np.full(self.M, np.nan)
        metrics = {"train_cost": nan}
        for l in range(self.L):
            metrics[f"grad_b{l + 1}"] = metrics[f"grad_w{l + 1}"] = nan
        return self._with_eval(metrics)

    def _with_eval(self, metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        d = self.data
        for split, x, y in (("val", d.val_x, d.val_y), ("test", d.test_x, d.test_y)):
            acc, cost, saturated = self._evaluate_set(x, y)
            metrics[f"{split}_acc"], metrics[f"{split}_cost"] = acc, cost
        metrics["test_saturated"] = np.where(self._sigmoid_output, saturated, np.nan)
        gone = self._diverged > 0
        return {k: self._to_spec_order(np.where(gone, np.nan, v)) for k, v in metrics.items()}

    @torch.no_grad()
    def _evaluate_set(self, x: torch.Tensor, labels: torch.Tensor):
        """Accuracy, mean per-example cost and share of saturated output units on one data set."""
        dev, dt, M = self.device, self.cfg.dtype, self.M
        correct = torch.zeros(M, dtype=torch.long, device=dev)
        cost = torch.zeros(M, dtype=dt, device=dev)
        saturated = torch.zeros(M, dtype=torch.long, device=dev)
        # The first layer sees the same examples for every model: one [c, n_in] x [n_in, M*n_out] matmul.
        w1 = self.W[0].permute(1, 0, 2).reshape(self.cfg.sizes[0], -1)  # columns in internal model order
        b1 = self._per_model(self.b[0])
        for xc, yc in zip(x.split(EVAL_CHUNK), labels.split(EVAL_CHUNK)):
            xc, yc = xc.to(dev, dt), yc.to(dev)
            z = (xc @ w1).view(len(xc), M, -1).transpose(0, 1) + b1
            for l in range(1, self.L):
                z = torch.baddbmm(self.b[l], torch.sigmoid(z), self.W[l])
            y1h = torch.nn.functional.one_hot(yc, self.cfg.sizes[-1]).to(dt)
            correct += (Pair.predict(z) == yc).sum(1)
            per_group = cost.view(self.S, self.G)
            for pair, view in self.pair_views:
                per_group[view] += pair.cost_fn(z.view(self.S, self.G, len(xc), -1)[view], y1h).sum(-1)
            saturated += (sigmoid_prime(z) < SATURATED).flatten(1).sum(1)
        n = len(x)
        return ((correct.double() / n).cpu().numpy(), (cost.double() / n).cpu().numpy(),
                (saturated.double() / (n * self.cfg.sizes[-1])).cpu().numpy())

    # --- checkpoints --------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue exactly where training stands (torch.save-able)."""
        return {
            "specs": [(s.pair, s.lr, s.seed) for s in self.specs],
            "sizes": tuple(self.cfg.sizes),
            "epoch": self.epoch,
            "diverged_epoch": self._diverged.copy(),  # internal order, like W and b
            "W": [w.detach().cpu().clone() for w in self.W],  # copies: training goes on in place
            "b": [b.detach().cpu().clone() for b in self.b],
            "rng": [g.get_state() for g in self.generators],
        }

    def load_state_dict(self, state: dict):
        """Restore a state_dict taken from an ensemble of the same specs and sizes."""
        if state["specs"] != [(s.pair, s.lr, s.seed) for s in self.specs] or tuple(state["sizes"]) != self.cfg.sizes:
            raise ValueError("checkpoint belongs to a different ensemble (specs or sizes differ)")
        for dst, src in zip(self.W + self.b, state["W"] + state["b"]):
            dst.copy_(src)
        for g, s in zip(self.generators, state["rng"]):
            g.set_state(s)
        self.epoch = int(state["epoch"])
        self._diverged = np.asarray(state["diverged_epoch"], dtype=np.int64).copy()
        self._freeze()
