"""The fused GPU training core: many SGD steps of a whole ensemble in one Triton kernel launch.

    python -m lossbench sweep device=cuda engine=triton

One program per model: it holds its pair, learning rate and seed group's batch order, and runs
every step of the launch on its own weights, forward (ch. 1 eq. 22), the pair's hand-derived
output delta (the formulas of lossbench/pairs.py, BP1), backprop through sigmoid hidden layers
(BP2), network2's update w <- (1 - eta lambda / n) w - (eta / m) sum_x a_x^T delta_x (ch. 3 eq.
93) and b <- b - (eta / m) sum_x delta_x (eq. 94), in the order Ensemble._step runs them, and it
adds up the metrics that epochs.csv needs (mean training cost, |grad_b| and |grad_W| per layer).
The weights stay in GPU memory between steps (15 MB for 160 models of 784-30-10: L2-resident),
so a step costs one pass over them instead of some 15 kernels (NOTES.md: about 120 us a step).

The kernel works on per-model tensors, W[l] [M, n_in, n_out] and b[l] [M, 1, n_out] in place, so
Ensemble converts its own layout only at the ends of a window of steps. Under TRITON_INTERPRET=1
(set before this module is imported) the same kernel runs on CPU tensors, slowly: that is how
tests/test_triton_train.py checks it against the Ensemble without a GPU.
"""

import torch
import triton
import triton.language as tl

from lossbench.pairs import PAIR_CODES  # _output_delta's branches follow these numbers

# Largest hidden width, output width and batch size: tiles are powers of two >= 16 (tl.dot's
# minimum) up to this, and a 128 x 128 hidden-to-hidden tile already fills 128 registers a thread.
MAX_BLOCK = 128
MIN_TRITON = (3, 6)  # the oldest Triton the kernel was compiled with (3.6: the GPU image's; 3.9: PyPI's now)
INPUT_CHUNK = 32  # inputs (rows of W[0]) per tile of the first layer: a [32, 128] tile at most
# Under the interpreter every tl op is some Python calls: tiles of 256 inputs instead of 32 took a
# 24-model check from 88 s to 35 s (2-core machine, busy). 512: 2 tiles for 784 inputs, the second
# partial, as on the GPU.
INTERPRETED_INPUT_CHUNK = 512


def unsupported(sizes: tuple[int, ...], batch_size: int, device: torch.device, pairs) -> str | None:
    """Why this kernel cannot train these models here (a phrase), or None when it can."""
    version = tuple(int(part) for part in triton.__version__.split(".")[:2])
    if version < MIN_TRITON:
        oldest = ".".join(map(str, MIN_TRITON))
        return f"Triton {triton.__version__} is older than {oldest}, the oldest it was compiled with"
    if device.type != "cuda" and not INTERPRETED:
        return f"it runs on CUDA devices, not {device.type} (TRITON_INTERPRET=1 runs it on the CPU, for tests)"
    if len(sizes) < 3:
        return f"sizes {list(sizes)} have no hidden layer; the kernel needs at least one"
    if max(sizes[1:]) > MAX_BLOCK or batch_size > MAX_BLOCK:
        return f"hidden and output widths and the batch size must be <= {MAX_BLOCK} (sizes {list(sizes)}, " \
               f"batch size {batch_size})"
    unknown = sorted(set(pairs) - PAIR_CODES.keys())
    if unknown:
        return f"it has no delta for pair {unknown[0]}"
    return None


def launch_options(BB: int, BH: int) -> dict:
    """num_warps and num_stages for tiles of BB examples x BH hidden units.

    True-FP32 tl.dot runs on FMA units with its operands in registers. Compiled for sm_90 by Triton
    3.9 on the CPU (cuobjdump --dump-resource-usage), batch 10: BH = 32 needs 157 registers a thread
    with 4 warps and 1 stage; BH = 128 needs 226 with 8 warps and spills with 4; 3 stages (software
    pipelining of the input loop) spill in both. Unmeasured on a GPU: time 2, 4 and 8 warps there.
    """
    return dict(num_warps=4 if BB * BH <= 512 else 8, num_stages=1, enable_fp_fusion=True)


def _block(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def train_steps(W: list[torch.Tensor], b: list[torch.Tensor], neg_lr: torch.Tensor, pairs: list[str],
                models_per_group: int, x: torch.Tensor, y: torch.Tensor, batches: torch.Tensor, l2_per_n: float,
                cost_sum: torch.Tensor, grad_sum: torch.Tensor) -> None:
    """Run batches [steps, S, B] (training-set indices; row s for the models of seed group s, i.e.
    models s*G .. s*G+G-1 with G = models_per_group) on M models, in place.

    W[l] [M, n_in, n_out] and b[l] [M, 1, n_out], contiguous, are updated; neg_lr [M] is -eta per
    model (0 freezes one); pairs[m] names model m's pair; x [n, n_in] and y [n, K] (one-hot) are
    the training set; l2_per_n is lambda / n. cost_sum [M] gets each step's mean cost added and
    grad_sum [2L, M] each step's |grad_b| (row 2l) and |grad_W|_F (row 2l + 1) of layer l, as
    Ensemble._step adds them.
    """
    M, L = len(neg_lr), len(W)
    steps, S, B = batches.shape
    if not steps:
        return
    dev, dt = x.device, x.dtype
    hidden = [w.shape[2] for w in W[:-1]]
    BB, BH, BO = _block(B), _block(max(hidden)), _block(W[-1].shape[2])
    BK = INTERPRETED_INPUT_CHUNK if INTERPRETED else INPUT_CHUNK
    # Hidden-to-hidden layers (W[1:-1]) are zero-padded to [BH, BH] in one tensor, so that the kernel
    # loops over them at run time; the padding gets zero gradients (the activations it meets are 0).
    n_hh = L - 2
    wh = torch.zeros(M, max(n_hh, 1), BH, BH, dtype=dt, device=dev)
    bh = torch.zeros(M, max(n_hh, 1), BH, dtype=dt, device=dev)
    for l in range(n_hh):
        n_in, n_out = W[l + 1].shape[1:]
        wh[:, l, :n_in, :n_out] = W[l + 1]
        bh[:, l, :n_out] = b[l + 1][:, 0]
    acts = torch.empty(M, max(n_hh, 1), BB, BH, dtype=dt, device=dev)  # a^1 .. a^{L-2}, for BP2
    codes = torch.tensor([PAIR_CODES[p] for p in pairs], dtype=torch.int32, device=dev)
    widths = torch.tensor(hidden, dtype=torch.int32, device=dev)
    decay = 1 + neg_lr * l2_per_n  # 1 - eta lambda / n (ch. 3 eq. 93); 1 for a frozen model
    for t in (*W, *b, x, y, cost_sum, grad_sum):
        assert t.is_contiguous() and t.dtype == dt and t.device == dev
    _train_kernel[(M,)](
        x, y, batches, W[0], b[0], wh, bh, W[-1], b[-1], widths, neg_lr, decay, codes, cost_sum, grad_sum, acts,
        steps, B, batches.stride(0), batches.stride(1), models_per_group, M, x.shape[1], y.shape[1],
        N_HH=n_hh, BB=BB, BK=BK, BH=BH, BO=BO, BL=triton.next_power_of_2(2 * L + 1), **launch_options(BB, BH))
    for l in range(n_hh):
        n_in, n_out = W[l + 1].shape[1:]
        W[l + 1].copy_(wh[:, l, :n_in, :n_out])
        b[l + 1][:, 0].copy_(bh[:, l, :n_out])


# --- the kernel ---------------------------------------------------------------------
@triton.jit
def _log1p(u):
    """ln(1 + u) for u >= 0 to rounding, also where 1 + u rounds to 1 (Goldberg: u ln(v) / (v - 1), v = 1 + u)."""
    v = 1.0 + u
    return tl.where(v == 1.0, u, tl.log(v) * u / tl.where(v == 1.0, 1.0, v - 1.0))


@triton.jit
def _softplus(z):
    """ln(1 + e^z) = max(z, 0) + ln(1 + e^-|z|): pairs.softplus, without overflow for any z."""
    return tl.maximum(z, 0.0) + _log1p(tl.exp(-tl.abs(z)))


@triton.jit
def _output_delta(z, y, valid, column, pair):
    """(cost, delta) per entry of z [BB, BO], 0 outside `valid`, for the pair coded `pair` (PAIR_CODES).

    The formulas of lossbench/pairs.py: sigmoid_mse 1/2 (a - y)^2, delta (a - y) sigma(z) sigma(-z)
    (BP1); sigmoid_ce y softplus(-z) + (1 - y) softplus(z), delta a - y (eqs. 63, 66); softmax_nll
    -y log_softmax(z), delta softmax(z) - y (eqs. 80, 84); linear_mse 1/2 (z - y)^2, delta z - y
    (eq. 68). The softmax runs over the real output units (`column`), the padding held at -inf.
    """
    if pair == 0:
        s = tl.sigmoid(z)
        cost = 0.5 * (s - y) * (s - y)
        delta = (s - y) * s * tl.sigmoid(-z)
    elif pair == 1:
        s = tl.sigmoid(z)
        cost = y * _softplus(-z) + (1.0 - y) * _softplus(z)
        delta = s - y
    elif pair == 2:
        shifted = tl.where(column, z, float("-inf"))
        shifted -= tl.max(shifted, axis=1)[:, None]
        e = tl.exp(shifted)
        total = tl.sum(e, axis=1)[:, None]
        cost = -y * (shifted - tl.log(total))
        delta = e / total - y
    else:
        cost = 0.5 * (z - y) * (z - y)
        delta = z - y
    return tl.where(valid, cost, 0.0), tl.where(valid, delta, 0.0)


@triton.jit
def _with_norms(sums, slot, l, g_b, g_w, B):
    """sums with |grad_b| and |grad_W|_F of layer l (g_b = B grad_b, g_w = B grad_W) added at slots 2l, 2l + 1."""
    sums += tl.where(slot == 2 * l, tl.sqrt(tl.sum(g_b * g_b)) / B, 0.0)
    return sums + tl.where(slot == 2 * l + 1, tl.sqrt(tl.sum(g_w * g_w)) / B, 0.0)


# Triton compiles a variant per value class of each int argument (1, multiple of 16, other). These
# vary with the ensemble's makeup and the window, and each variant is a compile of seconds (5 s
# for sm_90 on the 2-core machine): not specialized on.
@triton.jit(do_not_specialize=["n_steps", "B", "batch_stride_step", "batch_stride_group", "G", "M"])
def _train_kernel(x_ptr, y_ptr, batch_ptr, w0_ptr, b0_ptr, wh_ptr, bh_ptr, wo_ptr, bo_ptr, width_ptr,
                  neg_lr_ptr, decay_ptr, pair_ptr, cost_ptr, grad_ptr, act_ptr,
                  n_steps, B, batch_stride_step, batch_stride_group, G, M, n_in, K,
                  N_HH: tl.constexpr, BB: tl.constexpr, BK: tl.constexpr, BH: tl.constexpr, BO: tl.constexpr,
                  BL: tl.constexpr):
    """Program m trains model m for n_steps steps (train_steps says what the arguments hold).

    Tiles: BB examples (>= B, padded rows masked to 0), BK inputs of the first layer at a time,
    BH hidden units, BO output units. Layers: W[0] (w0, n_in x width_ptr[0]), N_HH hidden-to-hidden
    layers (wh, padded BH x BH), the output layer (wo, width_ptr[N_HH] x K).
    """
    m = tl.program_id(0)
    L = N_HH + 2
    neg_lr = tl.load(neg_lr_ptr + m)
    decay = tl.load(decay_ptr + m)
    pair = tl.load(pair_ptr + m)
    scale = neg_lr / B  # -eta/m (eq. 93's step), 0 for a frozen model
    h1 = tl.load(width_ptr)
    h_last = tl.load(width_ptr + N_HH)
    rb, rk, rh, ro, slot = tl.arange(0, BB), tl.arange(0, BK), tl.arange(0, BH), tl.arange(0, BO), tl.arange(0, BL)
    row = rb < B
    out_col = ro < K
    w0 = w0_ptr + m * n_in * h1
    b0 = b0_ptr + m * h1
    wo = wo_ptr + m * h_last * K
    bo = bo_ptr + m * K
    wo_at = rh[:, None] * K + ro[None, :]
    wo_mask = (rh < h_last)[:, None] & out_col[None, :]
    wh_at = rh[:, None] * BH + rh[None, :]
    act_at = rb[:, None] * BH + rh[None, :]
    sums = tl.zeros([BL], dtype=w0_ptr.dtype.element_ty)  # |grad| per layer at 2l, 2l + 1; the cost at 2L
    for step in range(n_steps):
        idx = tl.load(batch_ptr + step * batch_stride_step + (m // G) * batch_stride_group + rb, mask=row, other=0)
        # forward, first layer: z = x W[0] + b[0], BK inputs at a time (ch. 1 eq. 22)
        b0_v = tl.load(b0 + rh, mask=rh < h1, other=0.0, cache_modifier=".cg")
        z = tl.zeros([BB, BH], dtype=w0_ptr.dtype.element_ty) + b0_v[None, :]
        for k0 in range(0, n_in, BK):
            k = k0 + rk
            x_k = tl.load(x_ptr + idx[:, None] * n_in + k[None, :], mask=row[:, None] & (k < n_in)[None, :], other=0.0)
            w_k = tl.load(w0 + k[:, None] * h1 + rh[None, :], mask=(k < n_in)[:, None] & (rh < h1)[None, :],
                          other=0.0, cache_modifier=".cg")
            z = tl.dot(x_k, w_k, z, input_precision="ieee", out_dtype=z.dtype)  # true FP32, not TF32: the CPU's numbers
        a = tl.where(row[:, None] & (rh < h1)[None, :], tl.sigmoid(z), 0.0)
        # hidden-to-hidden layers; each input activation is kept in act_ptr for backprop
        for l in range(N_HH):
            tl.store(act_ptr + (m * N_HH + l) * BB * BH + act_at, a)
            w = tl.load(wh_ptr + (m * N_HH + l) * BH * BH + wh_at, cache_modifier=".cg")
            b_v = tl.load(bh_ptr + (m * N_HH + l) * BH + rh, cache_modifier=".cg")
            width = tl.load(width_ptr + l + 1)
            z = tl.dot(a, w, input_precision="ieee") + b_v[None, :]
            a = tl.where(row[:, None] & (rh < width)[None, :], tl.sigmoid(z), 0.0)
        tl.debug_barrier()  # the stored activations are visible to every thread of the program
        # output layer and the pair's delta (BP1)
        wo_v = tl.load(wo + wo_at, mask=wo_mask, other=0.0, cache_modifier=".cg")
        bo_v = tl.load(bo + ro, mask=out_col, other=0.0, cache_modifier=".cg")
        z = tl.dot(a, wo_v, input_precision="ieee") + bo_v[None, :]
        y = tl.load(y_ptr + idx[:, None] * K + ro[None, :], mask=row[:, None] & out_col[None, :], other=0.0)
        cost, delta = _output_delta(z, y, row[:, None] & out_col[None, :], out_col[None, :], pair)
        sums += tl.where(slot == 2 * L, tl.sum(cost) / B, 0.0)
        # backward: each layer's delta^{l-1} (BP2, sigma' = a - a^2) from its weights before their update
        g_bo = tl.sum(delta, axis=0)
        g_wo = tl.dot(tl.trans(a), delta, input_precision="ieee")
        sums = _with_norms(sums, slot, L - 1, g_bo, g_wo, B)
        delta = tl.dot(delta, tl.trans(wo_v), input_precision="ieee") * (a - a * a)
        tl.store(wo + wo_at, wo_v * decay + scale * g_wo, mask=wo_mask)
        tl.store(bo + ro, bo_v + scale * g_bo, mask=out_col)
        for i in range(N_HH):
            l = N_HH - 1 - i
            a_in = tl.load(act_ptr + (m * N_HH + l) * BB * BH + act_at, cache_modifier=".cg")
            w = tl.load(wh_ptr + (m * N_HH + l) * BH * BH + wh_at, cache_modifier=".cg")
            b_v = tl.load(bh_ptr + (m * N_HH + l) * BH + rh, cache_modifier=".cg")
            g_b = tl.sum(delta, axis=0)
            g_w = tl.dot(tl.trans(a_in), delta, input_precision="ieee")
            sums = _with_norms(sums, slot, l + 1, g_b, g_w, B)
            delta = tl.dot(delta, tl.trans(w), input_precision="ieee") * (a_in - a_in * a_in)
            tl.store(wh_ptr + (m * N_HH + l) * BH * BH + wh_at, w * decay + scale * g_w)
            tl.store(bh_ptr + (m * N_HH + l) * BH + rh, b_v + scale * g_b)
        # first layer: its weight gradient x^T delta, BK inputs at a time, each tile updated as it is made
        g_b = tl.sum(delta, axis=0)
        g_w_sq = tl.sum(tl.zeros([BH], dtype=w0_ptr.dtype.element_ty))
        for k0 in range(0, n_in, BK):
            k = k0 + rk
            x_k = tl.load(x_ptr + idx[:, None] * n_in + k[None, :], mask=row[:, None] & (k < n_in)[None, :], other=0.0)
            w_mask = (k < n_in)[:, None] & (rh < h1)[None, :]
            w_k = tl.load(w0 + k[:, None] * h1 + rh[None, :], mask=w_mask, other=0.0, cache_modifier=".cg")
            g_w = tl.dot(tl.trans(x_k), delta, input_precision="ieee")
            g_w_sq += tl.sum(g_w * g_w)
            tl.store(w0 + k[:, None] * h1 + rh[None, :], w_k * decay + scale * g_w, mask=w_mask)
        sums += tl.where(slot == 0, tl.sqrt(tl.sum(g_b * g_b)) / B, 0.0)
        sums += tl.where(slot == 1, tl.sqrt(g_w_sq) / B, 0.0)
        tl.store(b0 + rh, b0_v + scale * g_b, mask=rh < h1)
        tl.debug_barrier()  # this step's updates are visible to every thread before the next step reads them
    tl.store(cost_ptr + m, tl.load(cost_ptr + m) + tl.sum(tl.where(slot == 2 * L, sums, 0.0)))
    grad_at = grad_ptr + slot * M + m
    tl.store(grad_at, tl.load(grad_at, mask=slot < 2 * L, other=0.0) + sums, mask=slot < 2 * L)


INTERPRETED = not isinstance(_train_kernel, triton.runtime.JITFunction)  # TRITON_INTERPRET=1 at import
