#!/usr/bin/env bash
# [gpu] One unattended check on a machine with a GPU; prints everything a note needs.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default runs/gpu-check; PYTHON=python3)
#
# 1. the `gpu`-marked tests (tests/gpu, tests/noise, tests/cbs);
# 2. the default study (examples/mnist1d-cnn.toml) on the CPU, as the reference (one
#    worker per 2 cores the GPU workers leave), and at the same time on CUDA with 2
#    workers; side by side: wall time,
#    trials per second, steps-to-result per rung, B_crit with its interval
#    (benchmarks/gpu_compare.py);
# 3. the noise-scale tracker's overhead per training step on CUDA at bf16, on
#    shakespeare-char and mnist1d-cnn (benchmarks/gns_overhead.py).
# Each part has its own time limit, so the whole stays under 8 minutes on one modern
# GPU: a part that runs out prints what it has and the next one starts.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-runs/gpu-check}
export PYTHONUNBUFFERED=1
rm -rf "$OUT" && mkdir -p "$OUT"
started=$(date +%s)
section() { printf '\n=== %s (%s s in) ===\n' "$1" "$(($(date +%s) - started))"; }
timed() {  # timed LIMIT_S NAME COMMAND...: run it, print its wall time and exit status
  local limit=$1 name=$2 t0 rc ms
  shift 2
  t0=$(date +%s%N)
  # SIGINT: a study then stops its worker processes and keeps its finished trials.
  timeout -s INT -k 20 "$limit" "$@"
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  printf '%s: exit %s, %d.%01d s wall%s\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)) \
    "$({ [ "$rc" = 124 ] || [ "$rc" = 130 ]; } && echo " (stopped at its ${limit} s limit)")"
}

section "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY - <<'PY'
import os, platform, torch, batchlab
print(f"batchlab {batchlab.__version__}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"Python {platform.python_version()}, {os.cpu_count()} CPU cores; "
      f"GPUs: {[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}")
PY

section "gpu-marked tests"
timed 110 "gpu tests" $PY -m pytest -q -m gpu -p no:cacheprovider tests/gpu tests/noise tests/cbs

# The CPU reference runs beside the CUDA study, on the cores the GPU workers leave free.
# Job control on: a background job then keeps SIGINT, which its time limit sends.
set -m
section "default study: on the CPU (the reference) and on CUDA with 2 workers, side by side"
cores=$(nproc)
cpu_workers=$(((cores - 4) / 2 > 0 ? (cores - 4) / 2 : 1))
timed 200 "cpu study ($cpu_workers workers, 2 threads each)" $PY -m batchlab study run \
  examples/mnist1d-cnn.toml --out "$OUT/cpu" --device cpu --workers "$cpu_workers" --threads 2 \
  >"$OUT/cpu.txt" 2>"$OUT/cpu.log" &
cpu_job=$!
timed 200 "cuda study (2 workers)" $PY -m batchlab study run examples/mnist1d-cnn.toml \
  --out "$OUT/cuda" --device cuda --workers 2 >"$OUT/cuda.txt" 2>"$OUT/cuda.log"
wait "$cpu_job"
tail -n 1 "$OUT/cpu.txt"  # its time line (the CPU study's summary is in cpu.txt)
tail -n 22 "$OUT/cuda.txt"
[ -s "$OUT/cuda.txt" ] || tail -n 30 "$OUT/cuda.log"

section "CPU vs CUDA"
$PY benchmarks/gpu_compare.py "$OUT/cpu" "$OUT/cuda" || tail -n 30 "$OUT/cuda.log"

section "noise-scale tracker overhead on CUDA, bf16"
timed 60 "gns overhead" $PY benchmarks/gns_overhead.py --device cuda --precision bf16 \
  --workloads shakespeare-char mnist1d-cnn --steps 20 --repeats 5

section "done"
