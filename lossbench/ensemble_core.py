"""The training core of an Ensemble: windows of SGD steps over groups of models, and their evaluation.

    python -m lossbench bench --models 160 --shapes 784-30-10 --denormal-steps 0 --peers

An Ensemble (lossbench/ensemble.py) holds M models in S groups of G (the models of one pair and
seed: they share their initialization, batch order and first layer); Core holds what a step
needs and runs the steps. On the CPU the steps run in windows of WINDOW steps whose first-layer
work is blocked: the same SGD, rounding aside (Core._window); and the groups of models are cut
into shards (Shard), one per torch thread, each trained in a thread of its own
(Ensemble._on_shards). docs/cpu_core.md has the measurements behind both.
"""

import functools
from typing import TYPE_CHECKING

import torch

from lossbench import cpu_step
from lossbench.pairs import PAIR_CODES, Pair, get_pair, sigmoid_prime

if TYPE_CHECKING:
    from lossbench.ensemble import Ensemble

EVAL_CHUNK = 500  # examples per evaluation chunk: bounds memory at M x EVAL_CHUNK x width (500 measured 6-10% faster than 2000)
SATURATED = 0.01  # an output unit is saturated when sigma'(z) < 0.01, i.e. |z| > 4.6


class Core:
    """The training core of an Ensemble, or of a shard of one (a range of its groups): layouts,
    windows of SGD steps, and the evaluation of its models on a data set. Holds the attributes the methods below read: cfg, n, L, G, S, M, device,
    engine, W, b, neg_lr, cost_sum, grad_sum, train_x, train_y1h and the group layout."""

    def _per_model(self, t: torch.Tensor) -> torch.Tensor:
        """[S, X, G * n] (group layout) -> [M, X, n]."""
        S, X, _ = t.shape
        return t.view(S, X, self.G, -1).transpose(1, 2).reshape(self.M, X, -1)

    def _per_group(self, t: torch.Tensor) -> torch.Tensor:
        """[M, X, n] -> [S, X, G * n] (group layout)."""
        _, X, n = t.shape
        return t.view(self.S, self.G, X, n).transpose(1, 2).reshape(self.S, X, self.G * n)

    def _set_group_layout(self, keys: list[tuple[str, int]]):
        """Each pair's view of the groups (pairs are ranges of groups) and the groups' seeds, from the
        (pair, seed) of each group. Groups that share a seed share their batch order: one row of
        images per seed (_window_inputs)."""
        group_pairs = [pair for pair, _ in keys]
        self.pair_codes = torch.tensor([PAIR_CODES.get(p, -1) for p in group_pairs], dtype=torch.int32)  # engine=c
        self.pair_views = [(get_pair(p), (slice(group_pairs.index(p), len(group_pairs) - group_pairs[::-1].index(p)),))
                           for p in dict.fromkeys(group_pairs)]
        group_seeds = [seed for _, seed in keys]
        seeds = list(dict.fromkeys(group_seeds))
        self._seed_group = torch.tensor([group_seeds.index(s) for s in seeds], device=self.device)  # one group per seed
        self._group_seed = torch.tensor([seeds.index(s) for s in group_seeds], device=self.device)  # each group's seed
        self._seed_blocks = self._group_seed.tolist() == list(range(len(seeds))) * (len(keys) // len(seeds))

    # --- windows of SGD steps ------------------------------------------------
    def _train(self, batches: torch.Tensor, window: int):
        """Steps for batches [steps, S, B], in windows of `window` steps from the first."""
        for start in range(0, len(batches), window):
            self._window(batches[start:start + window])

    def _window(self, batches: torch.Tensor):
        """K mini-batch steps for every model; batches [K, S, B] index the training set, one row per group.

        Layer 0 is blocked over the window. Its update is a low-rank product, W0(t+1) =
        c W0(t) + x_t^T e_t with e_t = -(eta/m) delta0_t (ch. 3 eqs. 93-94; c = 1 - eta lambda / n),
        so step k's weighted input to the hidden layer follows from the window's start weights:
            x_k W0(t+k) = c^k [x_k W0(t) + sum_{j<k} (x_k x_j^T) c^-(j+1) e_j],
        and W0(t+K) = c^K W0(t) + sum_j c^(K-1-j) x_j^T e_j. So W0 (15 MB for 160 models of
        784-30-10, beyond the caches) is read once for the K forward products and once for the
        update, each a matmul of inner dimension K B, instead of three times per step; what a step
        adds is [B, k B] x [k B, G n_1] on deltas that stay in cache. The same SGD, rounding aside.
        Without L2 the biases ride along as the weights of a constant input 1 (a 1 added to every
        Gram entry); with L2, which spares them, they are updated at every step. The costs and
        gradient norms of the window's steps are computed at its end, in a few large ops.
        """
        K, S, B = batches.shape
        l2, H = self.cfg.l2, self.cfg.sizes[1]
        blocks, gram, y = self._window_inputs(batches)
        step = self.neg_lr / B  # -eta/m, and 0 for a frozen model
        decay = 1 + step * B * l2 / self.n  # c, 1 without L2 or once frozen
        in0 = torch.empty(S, K * B, self.W[0].shape[-1], dtype=self.W[0].dtype, device=self.device)
        for x, groups in blocks:  # x_k W0(t) (+ b0(t)) for every step k, [S, K B, G n_1]
            torch.baddbmm(self.b[0][groups], x, self.W[0][groups], beta=0 if l2 else 1, out=in0[groups])
        corr = gram if l2 else gram + 1
        e = torch.empty_like(in0)  # e_k = -(eta/m) delta0_k, step k at rows k B .. (k+1) B
        if l2:
            powers = self._per_group(decay.expand(-1, 1, H)) ** torch.arange(K + 1, device=self.device).view(-1, 1, 1, 1)
            scaled = torch.empty_like(in0)  # c^-(k+1) e_k, the corrections' right factor
        else:
            scaled = e
        new = functools.partial(torch.empty, dtype=in0.dtype, device=self.device)
        fused = self.engine == "c"  # layers 1.. and the gradient norms in one C call a step (cpu_step.c)
        acts = [] if fused else [new(K, self.M, B, n) for n in self.cfg.sizes[1:-1]]  # per step, the inputs of W[1:]
        deltas = [] if fused else [new(K, self.M, B, n) for n in self.cfg.sizes[2:]]  # and their outputs' deltas
        out = new(K, self.M, B, self.cfg.sizes[-1])  # the output z
        for k in range(K):
            rows = slice(k * B, (k + 1) * B)
            z = torch.baddbmm(in0[:, rows], corr[:, rows, :k * B], scaled[:, :k * B]) if k else in0[:, rows]
            if l2:
                z = torch.addcmul(self.b[0], z, powers[k])
            if fused:
                cpu_step.step(self, z.sigmoid_(), e[:, rows], y[k], gram[:, rows, rows], out[k], step, decay)
            else:
                acts[0][k].view(S, self.G, B, H).copy_(z.sigmoid_().view(S, B, self.G, H).transpose(1, 2))
                self._per_model_step(acts, deltas, out, k, y[k], step, decay, e[:, rows])
            if l2:
                self.b[0].add_(e[:, rows].sum(1, keepdim=True))
                torch.div(e[:, rows], powers[k + 1], out=scaled[:, rows])
        if l2:  # W0(t+K) = c^K W0(t) + sum_j c^(K-1-j) x_j^T e_j
            self.W[0].mul_(powers[K])
            update = (e.view(S, K, B, -1) * powers[:K].flip(0).transpose(0, 1)).view(S, K * B, -1)
        else:
            self.b[0].add_(e.sum(1, keepdim=True))
            update = e
        for x, groups in blocks:
            self.W[0][groups].baddbmm_(x.transpose(1, 2), update[groups])
        self._add_window_costs(y, out)
        if not fused:
            self._add_window_grad_norms(gram, e, step, acts, deltas)

    def _window_inputs(self, batches: torch.Tensor) -> tuple[list, torch.Tensor, torch.Tensor]:
        """The window's images as (x [groups, K B, n_in], groups) blocks covering the S groups (see
        below), their Gram x x^T [S, K B, K B] and one-hot targets [K, S, 1, B, n_L], per group.

        Groups that share a seed share their batch order, so the gather and the Gram run once per
        seed (the sweep's 20 groups hold 5 seeds). When the groups are blocks of the same seeds in
        the same order (a grid's pairs), each block uses the seeds' images as they are; else they
        are copied to one row per group.
        """
        K, S, B = batches.shape
        seeds = len(self._seed_group)
        rows = batches[:, self._seed_group].transpose(0, 1).reshape(-1)  # seed-major, then step
        x = self.train_x.index_select(0, rows).view(seeds, K * B, -1)
        gram = torch.bmm(x, x.transpose(1, 2))
        y = self.train_y1h.index_select(0, rows).view(seeds, K, 1, B, -1)
        if seeds < S:
            gram, y = (t.index_select(0, self._group_seed) for t in (gram, y))
        if self._seed_blocks:
            blocks = [(x, slice(start, start + seeds)) for start in range(0, S, seeds)]
        else:
            blocks = [(x.index_select(0, self._group_seed), slice(None))]
        return blocks, gram, y.transpose(0, 1)

    def _per_model_step(self, acts: list, deltas: list, out: torch.Tensor, k: int, y: torch.Tensor, step, decay,
                        e0: torch.Tensor):
        """Step k through the per-model layers 1 .. L-1, from the hidden activations in acts[0][k].

        acts, deltas and out are the window's buffers (see _window), filled at step k; y [S, 1,
        B, n_L] the targets. Updates W[l], b[l] for l >= 1 and writes layer 0's e = -(eta/m) delta0
        into e0 ([S, B, G n_1], group layout).
        """
        S, G, B = self.S, self.G, out.shape[2]
        for l in range(1, self.L - 1):
            torch.baddbmm(self.b[l], acts[l - 1][k], self.W[l], out=acts[l][k]).sigmoid_()
        z = torch.baddbmm(self.b[-1], acts[-1][k], self.W[-1], out=out[k])
        self._output_delta(z.view(S, G, B, -1), y, deltas[-1][k].view(S, G, B, -1))
        for l in reversed(range(1, self.L)):
            a_in, delta = acts[l - 1][k], deltas[l - 1][k]
            # BP2 with the weights before this step's update; sigma'(z) = a (1 - a) = a - a^2
            slope = torch.addcmul(a_in, a_in, a_in, value=-1)
            step_delta = delta * step
            if l == 1:  # layer 0's e = -(eta/m) delta0, in the window's group layout
                back = torch.bmm(step_delta, self.W[l].transpose(1, 2))
                n = back.shape[-1]
                torch.mul(back.view(S, G, B, n), slope.view(S, G, B, n), out=e0.view(S, B, G, n).transpose(1, 2))
            else:
                torch.mul(torch.bmm(delta, self.W[l].transpose(1, 2)), slope, out=deltas[l - 2][k])
            if self.cfg.l2:  # network2's weight decay (ch. 3 eq. 93)
                self.W[l].mul_(decay)
            self.W[l].baddbmm_(a_in.transpose(1, 2), step_delta)
            self.b[l].add_(step_delta.sum(1, keepdim=True))

    def _output_delta(self, z: torch.Tensor, y: torch.Tensor, out: torch.Tensor):
        """BP1 through each model's own pair into out, for z [S, G, B, K] and y [S, 1, B, K] (shared by a group)."""
        parts = [pair.delta(z[view], y[view]) for pair, view in self.pair_views]
        if len(parts) == 1:
            out.copy_(parts[0])
        else:
            torch.cat(parts, out=out)

    def _add_window_costs(self, y: torch.Tensor, out: torch.Tensor):
        """Add the window's per-step costs to cost_sum, from its output z out [K, M, B, n_L] and targets y."""
        K, S, G = out.shape[0], self.S, self.G
        z = out.view(K, S, G, *out.shape[2:])
        cost = self.cost_sum.view(S, G)
        for pair, (view,) in self.pair_views:
            cost[view] += pair.cost_fn(z[:, view], y[:, view]).mean(-1).sum(0)

    def _add_window_grad_norms(self, gram: torch.Tensor, e: torch.Tensor, step: torch.Tensor, acts: list,
                               deltas: list):
        """Add the window's per-step gradient norms to grad_sum.

        grad_W = A^T D / B and grad_b = sum_x delta_x / B per step; |A^T D|_F^2 = sum((A A^T) o (D D^T)):
        [B, B] Grams instead of a pass over W's size. For layer 0, whose deltas come as
        e = -(eta/m) delta0, A A^T is a diagonal block of the window's Gram, shared by a group's
        G models. (Measured on 784-100-10, 160 models, one thread: 8.7 ms a window of 16 steps, against
        15.5 with A^T D for layer 1 and sum((A A^T) e o e) for layer 0.)
        """
        K, M, B = deltas[-1].shape[:3]
        S, G = self.S, self.G
        gram_x = gram.view(S, K, B, K, B).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)  # [S, K, B, B]
        e = e.view(S, K, B, G, -1)
        e_models = e.permute(0, 3, 1, 2, 4).contiguous()  # [S, G, K, B, n_1]
        sq_w = (gram_x.unsqueeze(1) * (e_models @ e_models.transpose(-1, -2))).sum((-2, -1))  # [S, G, K]
        sq_b = e.sum(2).square_().sum(-1).transpose(1, 2)  # [S, G, K]
        scale = step.view(M, 1).square()  # e = -(eta/m) delta: the norms of delta
        self._add_grad_norms(0, (sq_b.reshape(M, K) / scale).t(), (sq_w.reshape(M, K) / scale).t(), B)
        for l in range(1, self.L):
            a, d = acts[l - 1], deltas[l - 1]  # [K, M, B, n]
            sq_w = (a @ a.transpose(-1, -2) * (d @ d.transpose(-1, -2))).sum((-2, -1))
            self._add_grad_norms(l, d.sum(2).square_().sum(-1), sq_w, B)

    def _add_grad_norms(self, l: int, sq_b: torch.Tensor, sq_w: torch.Tensor, B: int):
        """grad_sum[2l], [2l+1] += the steps' |grad_b|, |grad_W|, from |B grad|^2 given as [K, M]."""
        self.grad_sum[2 * l] += sq_b.clamp_(min=0).sqrt_().sum(0) / B
        self.grad_sum[2 * l + 1] += sq_w.clamp_(min=0).sqrt_().sum(0) / B

    # --- evaluation ---------------------------------------------------------
    @torch.no_grad()
    def _evaluate_set(self, x: torch.Tensor, labels: torch.Tensor):
        """Accuracy, mean per-example cost and share of saturated output units on one data set.

        Models and units in rows, examples in columns: the first layer, which sees the same
        examples for every model, is one [M n_1, n_in] x [n_in, c] matmul per chunk of c examples;
        each model's activations are then a contiguous [n, c] block for the later layers; and the
        class axis of z [M, n_L, c] is not the innermost, so the reductions over it (argmax, costs)
        are vectorized over examples.
        """
        dev, dt, M, S, G = self.device, self.cfg.dtype, self.M, self.S, self.G
        correct = torch.zeros(M, dtype=torch.long, device=dev)
        cost = torch.zeros(M, dtype=dt, device=dev)
        saturated = torch.zeros(M, dtype=torch.long, device=dev)
        w0 = self.W[0].transpose(1, 2).reshape(-1, self.cfg.sizes[0])  # [M n_1, n_in], rows in internal order
        b0 = self.b[0].reshape(-1, 1)
        for xc, yc in zip(x.split(EVAL_CHUNK), labels.split(EVAL_CHUNK)):
            xc, yc = xc.to(dev, dt), yc.to(dev)
            z = torch.addmm(b0, w0, xc.T).view(M, -1, len(xc))
            for l in range(1, self.L):
                z = torch.baddbmm(self.b[l].transpose(1, 2), self.W[l].transpose(1, 2), z.sigmoid_())
            z = z.transpose(1, 2)  # [M, c, n_L], a view
            y1h = torch.nn.functional.one_hot(yc, self.cfg.sizes[-1]).to(dt)
            correct += (Pair.predict(z) == yc).sum(1)
            z = z.view(S, G, len(xc), -1)
            for pair, view in self.pair_views:
                cost.view(S, G)[view] += pair.cost_fn(z[view], y1h).sum(-1)
                if pair.activation == "sigmoid":  # test_saturated is reported for sigmoid outputs only
                    saturated.view(S, G)[view] += (sigmoid_prime(z[view]) < SATURATED).sum((-2, -1))
        n = len(x)
        return ((correct.double() / n).cpu().numpy(), (cost.double() / n).cpu().numpy(),
                (saturated.double() / (n * self.cfg.sizes[-1])).cpu().numpy())


class Shard(Core):
    """A contiguous range of an Ensemble's groups, trained on its own: views of the Ensemble's
    parameters, learning rates and metric sums, and the layout of its own groups. On the CPU an
    Ensemble trains its shards in parallel threads (Ensemble.run_steps)."""

    def __init__(self, ensemble: "Ensemble", groups: slice):
        models = slice(groups.start * ensemble.G, groups.stop * ensemble.G)
        self.cfg, self.n, self.L, self.G, self.device = ensemble.cfg, ensemble.n, ensemble.L, ensemble.G, ensemble.device
        self.engine = ensemble.engine
        self.groups, self.S, self.M = groups, groups.stop - groups.start, models.stop - models.start
        self.W = [ensemble.W[0][groups]] + [w[models] for w in ensemble.W[1:]]
        self.b = [ensemble.b[0][groups]] + [b[models] for b in ensemble.b[1:]]
        self.neg_lr, self.cost_sum = ensemble.neg_lr[models], ensemble.cost_sum[models]
        self.grad_sum = ensemble.grad_sum[:, models]
        self.train_x, self.train_y1h = ensemble.train_x, ensemble.train_y1h
        self._set_group_layout(ensemble.group_keys[groups])
