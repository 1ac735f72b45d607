#!/usr/bin/env bash
# The device-machine run: GPU scaling figures, plus the map_batch CPU benchmark pinned to 2 cores
# of that idle host (a quiet stand-in for the 2-core CI machine). Writes into $OUT.
#   usage (on the device machine, repo root): bash benchmarks/gpu_run.sh
# Environment: GPU_TIMEOUT / CPU_TIMEOUT (seconds per part), MAP_SIZES (MAP batch sizes on the GPU),
# SAMPLE_SIZES, OPTIMIZERS, CPU_SIZES (map_batch sizes on the pinned cores; empty skips that part).
set -uo pipefail
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
nvidia-smi -L | tee "$OUT/gpu.txt"
python3 -c "import jax; print(jax.devices())" | tee -a "$OUT/gpu.txt"
# GPU: float32, MAP batch up to 10^6, sampling up to 65536 posteriors x 4 chains
timeout ${GPU_TIMEOUT:-330} python3 benchmarks/scaling.py --label "GPU $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" \
  --precision 32 --devices 1 --sizes ${MAP_SIZES:-1 1000 100000 1000000} --sample-sizes ${SAMPLE_SIZES-1 256 4096 65536} \
  --optimizers ${OPTIMIZERS:-newton bfgs} --out "$OUT/RESULTS.md" 2>&1 | tee "$OUT/scaling_gpu.log"
# CPU (2 pinned cores of the same host, GPU hidden): the issue-2 MAP benchmark
if [ -n "${CPU_SIZES-1 64 1024 4096}" ]; then
  JAX_PLATFORMS=cpu timeout ${CPU_TIMEOUT:-200} taskset -c 0,1 python3 benchmarks/map_batch.py --sizes ${CPU_SIZES-1 64 1024 4096} \
    --label "2 pinned cores of the device host" --out "$OUT/RESULTS.md" 2>&1 | tee "$OUT/map_batch_cpu.log"
fi
