"""engine=c: the later layers' step of one-hidden-layer models as one call of a C function (cpu_step.c).

    python -m lossbench sweep engine=c

The C source ships in the package and is compiled at first use with the machine's C compiler
($CC, else cc; -O3 -march=native) into the cache folder ($LOSSBENCH_CACHE, else
~/.cache/lossbench), under a name that hashes the source, the flags and the CPU, so a changed
file or another machine builds its own (1.1 s here). Where it cannot build or run, `unsupported`
says why and engine=auto trains with the eager engine instead. The call goes through ctypes,
which releases the GIL, so the shards' threads (Ensemble._on_shards) run it side by side.
"""

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from lossbench.data import cache_dir
from lossbench.pairs import PAIR_CODES

SOURCE = Path(__file__).with_name("cpu_step.c")
FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-shared", "-fPIC"]
# Vector exp from glibc's libmvec first; where that does not link (another C library), scalar exp.
VARIANTS = [["-lmvec", "-lm"], ["-DNO_MVEC", "-lm"]]
LIMITS = {"batch size": 32, "hidden width": 256, "output width": 16}  # cpu_step.c's MAX_B, MAX_H, a VEC's lanes
FUNCTIONS = {torch.float32: "cpu_step_f32", torch.float64: "cpu_step_f64"}
_P, _I, _L = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
ARGTYPES = [_I, _I, _I, _I, _I, _P, _I, _P, _L, _P, _L, _P, _L, _P, _L, _L, _P, _P, _P, _P, _P, _P, _L]


def _cpu_id() -> str:
    """The CPU's model and feature flags (what -march=native compiles for), or the platform's name for it."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor() or platform.machine()


@functools.cache
def library() -> ctypes.CDLL | str:
    """The compiled cpu_step.c, built once a machine (cached on disk), or why it could not be (a phrase)."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return f"no C compiler: {cc!r} is not on PATH (set CC to one)"
    try:
        source = SOURCE.read_bytes()
    except OSError as err:
        return f"its source {SOURCE} cannot be read ({err.strerror})"
    key = hashlib.sha256(b"\0".join([source, repr([cc, FLAGS, VARIANTS]).encode(), _cpu_id().encode()])).hexdigest()
    built = cache_dir() / f"cpu_step-{key[:16]}.so"
    if not built.exists():
        built.parent.mkdir(parents=True, exist_ok=True)
        # built beside its place and renamed into it whole: concurrent builds (Slurm jobs) are safe
        with tempfile.TemporaryDirectory(dir=built.parent) as tmp:
            partial = Path(tmp) / built.name
            for variant in VARIANTS:
                run = subprocess.run([cc, *FLAGS, "-o", str(partial), str(SOURCE), *variant], capture_output=True,
                                     text=True)
                if run.returncode == 0:
                    break
            else:
                return f"{cc} could not compile {SOURCE.name}: {(run.stderr.strip().splitlines() or ['?'])[-1]}"
            os.replace(partial, built)
    try:
        lib = ctypes.CDLL(str(built))
    except OSError as err:
        return f"the compiled {built} does not load: {err}"
    for name in FUNCTIONS.values():
        getattr(lib, name).argtypes = ARGTYPES
        getattr(lib, name).restype = None
    return lib


def unsupported(sizes: tuple[int, ...], batch_size: int, device: torch.device, dtype: torch.dtype,
                pairs) -> str | None:
    """Why engine=c cannot train these models here (a phrase), or None when it can."""
    if device.type != "cpu":
        return f"it runs on the CPU, not {device.type}"
    if len(sizes) != 3:
        return f"it trains nets with one hidden layer, not sizes {list(sizes)}"
    if dtype not in FUNCTIONS:
        return f"it computes in float32 or float64, not {dtype}"
    for (what, limit), value in zip(LIMITS.items(), (batch_size, sizes[1], sizes[2])):
        if value > limit:
            return f"its {what} is at most {limit}, not {value}"
    unknown = sorted(set(pairs) - PAIR_CODES.keys())
    if unknown:
        return f"it has no delta for pair {unknown[0]}"
    lib = library()
    return lib if isinstance(lib, str) else None


def step(core, a: torch.Tensor, e0: torch.Tensor, y: torch.Tensor, gram: torch.Tensor, out: torch.Tensor,
         step_size: torch.Tensor, decay: torch.Tensor):
    """One step of layers 1.. for the models of `core` (an Ensemble or Shard of one hidden layer).

    a, e0 [S, B, G n_1] (group layout, rows contiguous); y [S, 1, B, n_L]; gram [S, B, B], the
    step's block of the window's x x^T; out [M, B, n_L]; step_size, decay [M, 1, 1]. Updates
    W[1], b[1] and grad_sum[0..3] in place, writes e0 and out (see cpu_step.c).
    """
    S, B, _ = a.shape
    H, n_out = core.W[1].shape[1:]
    for t in (a, e0):
        assert t.stride(2) == 1 and t.stride(1) == core.G * H, "group layout with contiguous rows"
    assert y.stride(3) == 1 and y.stride(2) == n_out and gram.stride(2) == 1
    for t in (core.W[1], core.b[1], out, step_size, decay):
        assert t.is_contiguous()
    fn = getattr(library(), FUNCTIONS[a.dtype])
    fn(S, core.G, B, H, n_out, core.pair_codes.data_ptr(), int(bool(core.cfg.l2)),
       a.data_ptr(), a.stride(0), e0.data_ptr(), e0.stride(0), y.data_ptr(), y.stride(0),
       gram.data_ptr(), gram.stride(0), gram.stride(1), core.W[1].data_ptr(), core.b[1].data_ptr(),
       step_size.data_ptr(), decay.data_ptr(), out.data_ptr(), core.grad_sum.data_ptr(), core.grad_sum.stride(0))
