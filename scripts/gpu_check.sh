#!/usr/bin/env bash
# The GPU check (issue 14): every CUDA path of lossbench tested and timed in one run of under 4 minutes.
#
#   scripts/gpu_check.sh --prepare   # on a machine with PyPI and MNIST: fills the git-ignored .wheels/ and .data/
#   scripts/gpu_check.sh             # on the CUDA machine: tests, a short sweep, the benchmark
#
# The second form runs the cuda-marked tests (the real, compiled Triton kernel among them), a 1-epoch
# sweep on the GPU (its first line names the engine), then `python -m lossbench bench --devices cuda`
# (engines eager, graphs and triton; 784-30-10 and 784-100-10; 1, 10 and 160 models), and writes
# results/bench/bench_gpu.csv. It needs torch with CUDA, Triton, pandas, matplotlib, scipy, pytest
# and hypothesis there; hydra-core and its two dependencies come as wheels from .wheels/ (Python-only
# wheels, any Python 3), MNIST from .data/mnist. Where $OUT is set (the device tool), the CSV and the
# logs are copied there. docs/gpu.md says how to run it through the device tool.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
    set -e
    python3 -m pip wheel -q --no-deps -w .wheels "hydra-core>=1.3,<1.4" "omegaconf>=2.2,<2.4" \
        "antlr4-python3-runtime==4.9.*"  # antlr4 has no wheel on PyPI: pip builds one (pure Python)
    mkdir -p .data/mnist
    install -m 0644 "${LOSSBENCH_DATA:-../shared/data/mnist}"/*-ubyte.gz .data/mnist/
    ls -l .wheels .data/mnist
    exit 0
fi

logs=${OUT:-outputs/gpu_check}
mkdir -p "$logs" results/bench
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/lossbench-site .wheels/*.whl \
    || { echo "error: no wheels in .wheels/: run scripts/gpu_check.sh --prepare first, and carry .wheels"; exit 2; }
export PYTHONPATH=/tmp/lossbench-site:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export LOSSBENCH_DATA=$PWD/.data/mnist LOSSBENCH_CACHE=/tmp/lossbench-cache TRITON_CACHE_DIR=/tmp/lossbench-triton

{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$logs/versions.txt"

status=0
start=$SECONDS
timeout 150 python3 -m pytest -m cuda -p no:cacheprovider -q 2> -q -rs 2>&11 | tee "$logs/tests.log" || status=1
echo "tests: $((SECONDS - start)) s"

start=$SECONDS
timeout 40 python3 -m lossbench sweep device=cuda optim.epochs=1 data.train_size=10000 sweep.seeds=2 \
    hydra.run.dir=/tmp/lossbench-gpu-sweep 2>&1 | tee "$logs/sweep.log" || status=1
echo "sweep: $((SECONDS - start)) s"

start=$SECONDS
timeout 150 python3 -m lossbench bench --devices cuda --out outputs/bench_gpu 2>&1 | tee "$logs/bench.log" || status=1
echo "bench: $((SECONDS - start)) s"
# bench.csv is rewritten after every row: a bench cut short by the timeout keeps what it measured
cp outputs/bench_gpu/bench.csv results/bench/bench_gpu.csv && cp results/bench/bench_gpu.csv "$logs/" || status=1
exit $status
