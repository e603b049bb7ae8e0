"""The fused Triton kernel (engine=triton) against the Ensemble's eager steps.

    python -m pytest tests/test_triton_train.py

Without a CUDA device the kernel runs on CPU tensors under Triton's interpreter (TRITON_INTERPRET=1,
set here for the rest of the test process): slow, about
50 ms a model-step on the 2-core machine, so the shapes are small. With one, the same tests run
the compiled kernel on the GPU and are cuda-marked (scripts/gpu_check.sh runs them). Needs the
`triton` extra; skipped without it.
"""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lossbench import cpu_step
from lossbench.ensemble import Ensemble, RunSpec, TrainConfig, choose_engine
from lossbench.errors import UserError
from lossbench.pairs import PAIRS


if not torch.cuda.is_available():
    # read when triton.jit decorates a function: at the import of lossbench.triton_train, and of
    # Triton's own modules, some of which it imports at the first launch; so it stays set
    os.environ.setdefault("TRITON_INTERPRET", "1")
triton_train = pytest.importorskip("lossbench.triton_train", reason="needs the triton extra")
DEVICE = "cpu" if triton_train.INTERPRETED else "cuda"
# numpy's warnings about the infinities of a diverging model, under the interpreter
pytestmark = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                         "ignore:invalid value encountered:RuntimeWarning")]
if not triton_train.INTERPRETED:
    pytestmark.append(pytest.mark.cuda)
F32, F64 = torch.float32, torch.float64
# learning rates that train without diverging on the synthetic data, two per pair
LRS = {"sigmoid_mse": (0.5, 3.0), "sigmoid_ce": (0.1, 0.5), "softmax_nll": (0.1, 0.5), "linear_mse": (0.01, 0.05)}


@pytest.fixture
def device_split(learnable_split):
    """device_split(n_train, dtype): learnable_split's data on DEVICE."""
    def split(n_train: int, dtype: torch.dtype):
        data = learnable_split(n_train, n_eval=50, dtype=dtype)
        return dataclasses.replace(data, **{f.name: getattr(data, f.name).to(DEVICE)
                                            for f in dataclasses.fields(data) if f.name != "name"})

    return split


@pytest.fixture
def train_both(device_split):
    """train_both(specs, cfg, n_train, epochs): the same ensemble trained by the eager steps and by the kernel:
    (eager, fused, [(metrics, metrics)])."""
    def train(specs: list[RunSpec], cfg: TrainConfig, n_train: int, epochs: int):
        data = device_split(n_train, cfg.dtype)
        eager = Ensemble(specs, dataclasses.replace(cfg, device=DEVICE, engine="eager"), data)
        fused = Ensemble(specs, dataclasses.replace(cfg, device=DEVICE, engine="triton"), data)
        assert fused.engine == "triton"
        return eager, fused, [(eager.train_epoch(), fused.train_epoch()) for _ in range(epochs)]

    return train


def assert_close(eager: Ensemble, fused: Ensemble, metrics, rtol: float, atol: float):
    for ours, theirs in metrics:
        for key in ours:
            np.testing.assert_allclose(theirs[key], ours[key], rtol=rtol, atol=atol, err_msg=key)
    for (w, b), (w_fused, b_fused) in zip(eager.params(), fused.params()):
        np.testing.assert_allclose(w_fused.numpy(), w.numpy(), rtol=rtol, atol=atol)
        np.testing.assert_allclose(b_fused.numpy(), b.numpy(), rtol=rtol, atol=atol)
    assert fused.diverged_epoch.tolist() == eager.diverged_epoch.tolist()


@pytest.mark.parametrize("l2", [0.0, 0.5])
def test_every_pair_in_float32(train_both, l2):
    """4 pairs x 2 seeds x 2 lrs (seed groups of 2, sharing the first layer), 784-8-10, 33 examples in
    batches of 10 (the last one of 3, averaged over 3), 2 epochs: every metric and weight as the eager
    steps give them, to float32 rounding."""
    specs = [RunSpec(pair, lr, seed) for pair in PAIRS for seed in (0, 1) for lr in LRS[pair]]
    eager, fused, metrics = train_both(specs, TrainConfig(sizes=(784, 8, 10), l2=l2, dtype=F32), 33, epochs=2)
    assert (fused.S, fused.G) == (8, 2)
    assert not fused.diverged_epoch.any()
    assert_close(eager, fused, metrics, rtol=1e-4, atol=1e-5)


def test_deep_network_in_float64(train_both):
    """Three hidden layers (two hidden-to-hidden ones, which the kernel keeps padded in its own
    layout), ch. 3's init and L2, one model per seed group, float64: the kernel does the same
    arithmetic as the eager steps, so it agrees to 1e-10."""
    specs = [RunSpec(pair, LRS[pair][seed], seed + 3) for pair in PAIRS for seed in (0, 1)]
    cfg = TrainConfig(sizes=(784, 8, 6, 5, 10), init="default", l2=0.5, dtype=F64)
    eager, fused, metrics = train_both(specs, cfg, 23, epochs=2)
    assert fused.G == 1
    assert_close(eager, fused, metrics, rtol=1e-10, atol=1e-10)


def test_divergence_freezes_one_model_and_leaves_the_others_bit_identical(device_split):
    """As the Ensemble's own test: a model whose weights overflow is marked at the epoch's end, frozen
    (eta = 0) and reported as NaN, in the epoch the eager steps mark it; the models trained beside it
    get the very bits they get beside a sane model (each program trains its model alone)."""
    data = device_split(30, F32)
    cfg = TrainConfig(sizes=(784, 10, 10), dtype=F32, device=DEVICE, engine="triton")
    good = [RunSpec("linear_mse", 0.01, 1), RunSpec("linear_mse", 0.02, 2)]
    with_bad = Ensemble(good + [RunSpec("linear_mse", 1e10, 3)], cfg, data)
    with_sane = Ensemble(good + [RunSpec("linear_mse", 0.03, 3)], cfg, data)
    eager = Ensemble(good + [RunSpec("linear_mse", 1e10, 3)], dataclasses.replace(cfg, engine="eager"), data)
    for epoch in range(1, 4):
        bad_metrics, sane_metrics = with_bad.train_epoch(), with_sane.train_epoch()
        eager.train_epoch()
        for key in sane_metrics:
            np.testing.assert_array_equal(bad_metrics[key][:2], sane_metrics[key][:2], err_msg=key)
            assert np.isnan(bad_metrics[key][2]), key
    assert with_bad.diverged_epoch.tolist() == eager.diverged_epoch.tolist() == [0, 0, 1]
    assert with_sane.diverged_epoch.tolist() == [0, 0, 0]
    for (w, _), (w_sane, _) in zip(with_bad.params(), with_sane.params()):
        assert torch.equal(w[:2], w_sane[:2])


def test_every_pair_has_a_kernel_delta():
    """A new pair in pairs.py needs its branch in _output_delta (or the kernel refuses it: see below)."""
    assert set(triton_train.PAIR_CODES) == set(PAIRS)
    assert sorted(triton_train.PAIR_CODES.values()) == list(range(len(PAIRS)))


@pytest.mark.parametrize("sizes,batch_size,pairs,why", [
    ((784, 10), 10, ["sigmoid_ce"], "no hidden layer"),
    ((784, 200, 10), 10, ["sigmoid_ce"], "widths and the batch size must be <= 128"),
    ((784, 30, 10), 500, ["sigmoid_ce"], "batch size 500"),
    ((784, 30, 10), 10, ["sigmoid_ce", "hinge"], "no delta for pair hinge"),
])
def test_engine_triton_says_what_it_cannot_train_and_auto_falls_back(sizes, batch_size, pairs, why):
    cfg = TrainConfig(sizes=sizes, batch_size=batch_size, device=DEVICE, engine="triton")
    with pytest.raises(UserError, match=f"engine=triton cannot train here: .*{why}"):
        choose_engine(cfg, pairs)
    on_cpu = "eager" if cpu_step.unsupported(sizes, batch_size, torch.device("cpu"), cfg.dtype, pairs) else "c"
    assert choose_engine(dataclasses.replace(cfg, engine="auto"), pairs) == ("graphs" if DEVICE == "cuda" else on_cpu)


def test_an_older_triton_is_refused(monkeypatch):
    monkeypatch.setattr(triton_train.triton, "__version__", "3.1.0")
    assert "Triton 3.1.0 is older than 3.6" in triton_train.unsupported((784, 30, 10), 10, torch.device(DEVICE), [])


def test_engine_choice():
    cfg = TrainConfig(sizes=(784, 30, 10), device=DEVICE)
    assert choose_engine(cfg, list(PAIRS)) == ("triton" if DEVICE == "cuda" else "c")  # never interpreted
    assert choose_engine(dataclasses.replace(cfg, engine="eager"), list(PAIRS)) == "eager"
    with pytest.raises(UserError, match="engine='fast' is not an engine; choose one of: auto, triton, graphs, eager"):
        choose_engine(dataclasses.replace(cfg, engine="fast"), list(PAIRS))
    with pytest.raises(UserError, match="engine=graphs replays CUDA graphs, but the device is cpu"):
        choose_engine(dataclasses.replace(cfg, device="cpu", engine="graphs"), list(PAIRS))


# The kernel compiled for an H100/H200 (sm_90) without a GPU, by Triton's own LLVM and ptxas, in a process
# without the interpreter. Catches what the interpreter lets through, since it runs the kernel as Python
# (a loop variable that changes shape, for one).
COMPILE = """
import json, sys, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from lossbench import triton_train

kernel = triton_train._train_kernel
pointers = {"batch_ptr": "*i64", "width_ptr": "*i32", "pair_ptr": "*i32"}
for dtype, constants in json.loads(sys.argv[1]):
    signature = {p.name: "constexpr" if p.is_constexpr else pointers.get(p.name, "*" + dtype)
                 if p.name.endswith("_ptr") else "i32" for p in kernel.params}
    options = triton_train.launch_options(constants["BB"], constants["BH"])
    compiled = triton.compile(ASTSource(kernel, signature, constants), target=GPUTarget("cuda", 90, 32),
                              options=options)
    print(dtype, constants, len(compiled.asm["cubin"]), "bytes of cubin")
"""


@pytest.mark.slow
def test_kernel_compiles_for_sm90(tmp_path):
    """The variants that the sweep's shapes (and test_deep_network_in_float64) launch, batch 10."""
    variants = []
    for dtype, sizes in [("fp32", (784, 30, 10)), ("fp32", (784, 100, 10)), ("fp32", (784, 30, 30, 30, 10)),
                         ("fp64", (784, 8, 6, 5, 10))]:
        L = len(sizes) - 1
        variants.append((dtype, dict(N_HH=L - 2, BB=16, BK=32, BH=triton_train._block(max(sizes[1:-1])), BO=16,
                                     BL=triton_train.triton.next_power_of_2(2 * L + 1))))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"TRITON_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", COMPILE, json.dumps(variants)], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("bytes of cubin") == len(variants)


@pytest.mark.skipif(triton_train.INTERPRETED, reason="sweep-sized networks take minutes in the interpreter")
@pytest.mark.parametrize("sizes", [(784, 30, 10), (784, 100, 10), (784, 30, 30, 30, 10)])
def test_sweep_shapes_on_the_gpu(train_both, sizes):
    """The sweep's shapes, 4 pairs x 2 seeds x 2 lrs, 101 steps an epoch (the last of 5 examples).
    float64: the kernel's arithmetic is the eager steps', to 1e-9 after 2 epochs. float32: the
    kernel's distance from the float64 run is of the order of the eager float32 steps' (TF32 in a
    tl.dot, for one, would be 1,000 times further)."""
    specs = [RunSpec(pair, lr, seed) for pair in PAIRS for seed in (0, 1) for lr in LRS[pair]]
    cfg = TrainConfig(sizes=sizes, init="default", l2=0.5, dtype=F64)
    eager, fused, metrics = train_both(specs, cfg, 1005, epochs=2)
    assert_close(eager, fused, metrics, rtol=1e-9, atol=1e-9)
    cfg32 = dataclasses.replace(cfg, dtype=F32)
    eager32, fused32, _ = train_both(specs, cfg32, 1005, epochs=2)
    for (w, _), (w_eager, _), (w_fused, _) in zip(eager.params(), eager32.params(), fused32.params()):
        eager_error, fused_error = (w_eager.double() - w).abs().max(), (w_fused.double() - w).abs().max()
        assert fused_error <= 10 * eager_error + 1e-6, (fused_error, eager_error)
