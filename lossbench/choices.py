"""The choices of a run's settings that the config schema and the trainer both know: the initialization, the
engine (and its CUDA graphs' length), and the pairs' names; and bench's peers.

    python -c "from lossbench.choices import Engine, Init; print([i.value for i in Init], [e.value for e in Engine])"

One enum each: config.py types its keys with them (a wrong value fails at composition, naming
the choices), and ensemble.py and the studies check the strings they are given against them.
torch-free, so that the config composes, and result files are read and checked, without
importing the trainer (every command's --help stays without torch).
"""

from enum import Enum


class Init(Enum):
    large = "large"  # weights and biases N(0, 1) (ch. 1, network.py)
    default = "default"  # weights N(0, 1)/sqrt(n_in), biases N(0, 1) (ch. 3, network2.py)


class Engine(Enum):  # how an ensemble's steps run: lossbench.ensemble.choose_engine
    auto = "auto"  # where they can train the models, c on the CPU and triton on CUDA; else eager on the CPU, graphs on CUDA
    triton = "triton"  # the fused kernel, many steps a launch (lossbench/triton_train.py)
    graphs = "graphs"  # the steps replayed from CUDA graphs of GRAPH_STEPS steps
    eager = "eager"  # on the CPU, windows of steps in threads; on CUDA, one step at a time
    c = "c"  # on the CPU, eager's windows with each step's later layers in one call of a C function (cpu_step.c)


GRAPH_STEPS = 500  # steps per CUDA graph: long enough to hide launches, short enough to capture quickly


class Peer(Enum):  # bench's peer rows: another library's route to the sweep's ensembles (lossbench/peers.py)
    torch_func = "torch_func"  # stack_module_state + vmap(grad), eager (peers.TorchFunc)
    jax = "jax"  # jit of a lax.scan of vmap(grad) (peers.Jax); the optional extra `bench`


# pair -> (output activation, cost), as runs.csv names them; lossbench.pairs builds each pair's math on these
PAIR_PARTS = {
    "sigmoid_mse": ("sigmoid", "quadratic"),
    "sigmoid_ce": ("sigmoid", "cross_entropy"),
    "softmax_nll": ("softmax", "log_likelihood"),
    "linear_mse": ("linear", "quadratic"),
}
