"""Train M independent MLPs at once, as stacked tensors, with the book's SGD.

    python -m lossbench bench

Model m has weights W[l][m] of shape [n_in, n_out] and biases b[l][m] of shape
[1, n_out]; one step is a few dozen batched ops over all M models. Each
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

On the CPU, steps run in windows of WINDOW steps whose first-layer work is
blocked, and the groups of models are cut into shards, one per torch thread:
lossbench/ensemble_core.py, the training core this class builds on.
Metrics are accumulated in device tensors during the epoch and read back once
at its end: no host synchronisation per step. The steps run through an engine
(TrainConfig.engine): `eager`, the windows above on the CPU, one step at a time on CUDA; `c`, on
the CPU, the same windows with each step's later layers in one call of lossbench/cpu_step.c;
`graphs`, on CUDA, replayed from CUDA graphs of `GRAPH_STEPS` steps; `triton`, on CUDA, many
steps per launch of lossbench/triton_train.py's fused kernel; `auto`, c or triton where they
can train the models, else eager on the CPU and graphs on CUDA.
"""

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from lossbench import cpu_step
from lossbench.choices import GRAPH_STEPS, Engine, Init
from lossbench.errors import UserError
from lossbench.ensemble_core import Core, Shard
from lossbench.pairs import PAIRS

if TYPE_CHECKING:
    from lossbench.data import Split

# Saturated sigmoids and softmaxes make subnormal floats (below 1.2e-38 in float32), which slow x86
# arithmetic 10-50x (measured here: a 160-model weight update took 48 ms instead of 0.9 ms). Flushing
# them to 0 changes no reported number. The flag is per thread and new threads inherit it, so it is
# set on import, before torch starts its OpenMP workers: set later, the workers would not have it.
torch.set_flush_denormal(True)

WINDOW = 16  # CPU: steps whose first-layer work is blocked together (_window)


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
    engine: str = "auto"  # a choices.Engine value: how the steps run (see choose_engine)


def choose_engine(cfg: TrainConfig, pairs: list[str]) -> str:
    """The engine that runs the steps of models of `pairs` under cfg: cfg.engine, auto resolved.

    auto is c on the CPU when cpu_step.c builds and can train these models (one hidden layer), else
    eager; on CUDA triton when Triton imports and its kernel can train them, else graphs. An engine
    asked for by name that cannot run here is a UserError that says why.
    """
    if cfg.engine not in {engine.value for engine in Engine}:
        raise UserError(f"engine={cfg.engine!r} is not an engine; choose one of: {', '.join(e.value for e in Engine)}.")
    cuda = torch.device(cfg.device).type == "cuda"
    if cfg.engine == "c" or (cfg.engine == "auto" and not cuda):
        why_not = cpu_step.unsupported(cfg.sizes, cfg.batch_size, torch.device(cfg.device), cfg.dtype, pairs)
        if why_not is None:
            return "c"
        if cfg.engine == "c":
            raise UserError(f"engine=c cannot train here: {why_not}. Use engine=auto or eager.")
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
    scale_by_inputs = Init(init) is Init.default  # ValueError for any other name
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        scale = 1.0 / math.sqrt(n_in) if scale_by_inputs else 1.0
        w = torch.randn(n_in, n_out, generator=g, dtype=torch.float64) * scale
        b = torch.randn(1, n_out, generator=g, dtype=torch.float64)
        params.append((w, b))
    return params


class Ensemble(Core):
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
        bad = [s.lr for s in specs if not 0 < s.lr < math.inf]
        if bad:  # a step's deltas are kept scaled by -eta/m (see _window): eta = 0 would lose them
            raise ValueError(f"learning rates must be finite and > 0, got {bad[0]}")
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
        self._graphs: dict[int, tuple] = {}
        self.window = self._window_steps()
        self._shards: dict[int, list[Shard]] = {}  # per shard count (see shards)

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
        self.group_keys = keys[:: self.G]  # (pair, seed) of each group
        self._set_group_layout(self.group_keys)

    def _window_steps(self) -> int:
        """Steps per window (see _window): WINDOW on the CPU, 1 (no blocking) on CUDA, where it is unmeasured.

        With L2 the window's corrections scale deltas by c^-(k+1), c = 1 - eta lambda / n; a
        decay so strong that c^(WINDOW-1) < 1e-6 (eta lambda / n > 0.6) could leave the float
        range, so such ensembles run one step at a time.
        """
        if self.device.type != "cpu":
            return 1
        decay = (1 - self.lr * self.cfg.l2 / self.n).abs().min().item()
        return WINDOW if decay ** (WINDOW - 1) >= 1e-6 else 1

    @property
    def shards(self) -> list["Shard"]:
        """On the CPU, as many contiguous ranges of groups as torch has threads now (at most S); one on CUDA.

        Models are independent and each group's numbers do not depend on its shard, so the count
        may change between calls (e.g. torch.set_num_threads(1) to run all in the calling thread).
        """
        count = min(torch.get_num_threads(), self.S) if self.device.type == "cpu" else 1
        if count not in self._shards:
            bounds = [round(i * self.S / count) for i in range(count + 1)]
            self._shards[count] = [Shard(self, slice(a, b)) for a, b in zip(bounds, bounds[1:])]
        return self._shards[count]

    def _to_spec_order(self, v: np.ndarray) -> np.ndarray:
        out = np.empty_like(v)
        out[self.order] = v
        return out

    @property
    def diverged_epoch(self) -> np.ndarray:
        """Per model (spec order): 0 if it never diverged, else the epoch its parameters or cost stopped being finite."""
        return self._to_spec_order(self._diverged)

    def model_rows(self) -> torch.Tensor:
        """[M] (spec order): each model's row in the [..., S, B] batches of run_steps, its group's."""
        return torch.from_numpy(np.argsort(self.order) // self.G)

    def params(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(W [M, n_in, n_out], b [M, 1, n_out]) per layer], in spec order, on the CPU."""
        inv = torch.from_numpy(np.argsort(self.order))
        layers = [(self._per_model(self.W[0]), self._per_model(self.b[0]))] + list(zip(self.W[1:], self.b[1:]))
        return [(w.cpu()[inv], b.cpu()[inv]) for w, b in layers]

    # --- one epoch ----------------------------------------------------------
    def next_epoch_batches(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next epoch's mini-batches, drawn from each group's generator (one permutation per epoch).

        Returns ([steps, S, B] training-set indices, one row per group, and the book's last,
        smaller mini-batch as [1, S, n % B], or None when B divides n).
        """
        perms = torch.stack([torch.randperm(self.n, generator=g) for g in self.generators]).to(self.device)
        B = self.cfg.batch_size
        steps = self.n // B
        full = perms[:, : steps * B].view(self.S, steps, B).transpose(0, 1)
        return full, (perms[None, :, steps * B:] if self.n % B else None)

    def train_epoch(self, progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
        """Reshuffle each model's training set, run all mini-batches, then evaluate.

        progress(k), if given, is told after every progress_steps steps (whole CUDA graphs, whole CPU
        windows) and after the last that k of the epoch's n // batch_size full steps have run; on CUDA
        once the device has run them, which costs one synchronisation per call, not per step.
        """
        self.cost_sum.zero_()
        self.grad_sum.zero_()
        full, last = self.next_epoch_batches()
        chunk = self.progress_steps
        for start in range(0, len(full), chunk):
            self.run_steps(full[start:start + chunk])
            if progress is not None:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                progress(min(start + chunk, len(full)))
        if last is not None:  # the book's last, smaller mini-batch: averaged over its own size
            self.run_steps(last)
        steps = len(full) + (last is not None)
        self.epoch += 1
        metrics = {"train_cost": self.cost_sum / steps}
        for l in range(self.L):
            metrics[f"grad_b{l + 1}"] = self.grad_sum[2 * l] / steps
            metrics[f"grad_w{l + 1}"] = self.grad_sum[2 * l + 1] / steps
        metrics = {k: v.double().cpu().numpy() for k, v in metrics.items()}
        self._flag_divergence(metrics["train_cost"])
        return self._with_eval(metrics)

    @property
    def progress_steps(self) -> int:
        """Steps between two progress reports: whole CUDA graphs on CUDA, about as many whole windows on the
        CPU (a chunk that cut a window would change where windows start, hence the rounding)."""
        return GRAPH_STEPS if self.device.type == "cuda" else max(1, GRAPH_STEPS // self.window) * self.window

    def run_steps(self, batches: torch.Tensor):
        """Mini-batch steps for batches [steps, S, B] of training-set indices (one row per group),
        through self.engine. train_epoch runs an epoch's steps through here; the benchmark times
        windows of them."""
        if self.engine == "triton":
            self._run_triton(batches)
        elif self.engine == "graphs":
            self._run_graphed(batches)
        else:
            self._run_windows(batches)

    def _run_windows(self, batches: torch.Tensor):
        """Steps for batches [steps, S, B]: each shard runs its own windows (_on_shards)."""
        if self.device.type != "cpu":  # one shard; in this thread, where a CUDA graph may be capturing
            self.shards[0]._train(batches, self.window)
            return
        self._on_shards(lambda shard: shard._train(batches[:, shard.groups], self.window))

    def _evaluate_shards(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, ...]:
        """_evaluate_set for each shard (_on_shards), joined in internal order; on CUDA all models at once."""
        if self.device.type != "cpu":
            return self._evaluate_set(x, labels)
        parts = self._on_shards(lambda shard: shard._evaluate_set(x, labels))
        return tuple(np.concatenate(column) for column in zip(*parts))

    def _on_shards(self, work: Callable[[Shard], object]) -> list:
        """[work(shard) for each shard], on the CPU, each shard in a thread of its own with one torch thread.

        Speed: a step is some 60 small ops; run by one thread pool, each op ends in a barrier of all
        its threads, and on a shared machine one descheduled thread stalls every op (measured under
        load on 2 cpus: 8.6 ms a step against 2.4 ms as two shards in two threads). Shards share no
        data, so their threads meet once per call, at the end.
        Reproducibility: on torch's thread pool the numbers were not the same in every process.
        Measured, float64, fresh processes: one evaluation of 4 models, two torch threads, 22 of 24
        gave one val_cost and 2 another (an exp's last bit); one epoch of a single-shard ensemble
        (4 models), 13 of 16 one set of weights, 3 another; with one torch thread, 24 of 24 and 16
        of 16 the same. (MKL_DYNAMIC=FALSE made the training agree too, 12 of 12: MKL's own choice of
        how many threads to use is the likely cause.)
        So a single shard, too, runs on one torch thread, in the calling thread (where a dispatch
        mode, as lossbench.denormals uses, sees its ops): 7-22% slower for such small ensembles.
        """
        threads = torch.get_num_threads()
        try:  # torch.set_num_threads sets the calling thread's OpenMP pool size, and MKL's for the process
            if len(self.shards) == 1:
                torch.set_num_threads(1)
                return [work(self.shards[0])]
            with ThreadPoolExecutor(len(self.shards), initializer=torch.set_num_threads, initargs=(1,)) as pool:
                return [done.result() for done in [pool.submit(work, shard) for shard in self.shards]]
        finally:
            torch.set_num_threads(threads)

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
        self._run_windows(batches[n_graphed:])

    def _graph(self, steps: int, shape):
        """A CUDA graph of `steps` steps reading their indices from a static buffer (captured once)."""
        if steps not in self._graphs:
            buf = torch.zeros(steps, *shape, dtype=torch.long, device=self.device)
            saved = [t.clone() for t in self.W + self.b + [self.cost_sum, self.grad_sum]]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up outside the graph, as capture requires
                self._run_windows(buf[:3])
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._run_windows(buf)
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
            acc, cost, saturated = self._evaluate_shards(x, y)
            metrics[f"{split}_acc"], metrics[f"{split}_cost"] = acc, cost
        metrics["test_saturated"] = np.where(self._sigmoid_output, saturated, np.nan)
        gone = self._diverged > 0
        return {k: self._to_spec_order(np.where(gone, np.nan, v)) for k, v in metrics.items()}

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
