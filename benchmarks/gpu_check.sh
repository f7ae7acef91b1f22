#!/usr/bin/env bash
# GPU checks, for a machine with CUDA and PyTorch (run from a checkout):
#   1. the core tests, CUDA-marked ones included (CPU and CUDA give the same predictions);
#   2. the ensemble speed table on CUDA, every formulation against the per-member loop, at the
#      default sizes and at a larger pool;
#   3. one demo round (M=5, 300 labels) through the worker's code on the GPU;
#   4. the label-efficiency grid at M=5 on the GPU: BALD, random and entropy to 620 labels,
#      BatchBALD to 400, 3 repeats each (as many rounds as fit in the time limits; rows are
#      written as they finish).
# Logs and tables go to ${OUT:-gpu-out}. Exits non-zero when a test or benchmark fails.
#     PYTHON=python3 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
PY=${PYTHON:-python3}
SIM_SECONDS=${SIM_SECONDS:-240}
BATCHBALD_SECONDS=${BATCHBALD_SECONDS:-120}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
failed=()

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')" 2>&1 | tee -a "$OUT/gpu.txt"

echo "== core tests"
timeout 300 $PY -m pytest -q -p no:cacheprovider -rs tests/core > "$OUT/core_tests.log" 2>&1 \
  || failed+=(core-tests)
tail -n 6 "$OUT/core_tests.log"

echo "== ensemble speed, default sizes"
timeout 300 $PY benchmarks/ensemble_speed.py --device cuda --epochs 5 --repeats 3 \
  --formulations auto grouped-eager vmap hybrid loop loop-eager 2>&1 \
  | tee "$OUT/ensemble_speed.txt" || failed+=(ensemble-speed)

echo "== ensemble speed, 4,096 training images, 65,536-image pool"
timeout 300 $PY benchmarks/ensemble_speed.py --device cuda --members 5 10 --epochs 3 \
  --train-n 4096 --pool-n 65536 --formulations auto grouped-eager loop-eager --repeats 3 2>&1 \
  | tee "$OUT/ensemble_speed_large.txt" || failed+=(ensemble-speed-large)

echo "== one demo round on the GPU"
timeout 300 $PY benchmarks/round_time.py --dir "$(mktemp -d)" 2>&1 | tee "$OUT/round_time.txt" \
  || failed+=(round-time)

SIM="$PY -m activelearn simulate --demo --init 20 --batch 10 --members 5 --epochs 10 --seed 0"
echo "== label efficiency, M=5: bald, random, entropy to 620 labels (${SIM_SECONDS} s at most)"
timeout "$SIM_SECONDS" $SIM --strategy bald --strategy random --strategy entropy --budget 620 \
  --repeats 3 --out "$OUT/simulate_gpu.csv" > "$OUT/simulate_gpu.log" 2>&1
tail -n 5 "$OUT/simulate_gpu.log"
echo "== label efficiency, M=5: batchbald to 400 labels (${BATCHBALD_SECONDS} s at most)"
timeout "$BATCHBALD_SECONDS" $SIM --strategy batchbald --budget 400 --repeats 3 \
  --out "$OUT/simulate_gpu_batchbald.csv" >> "$OUT/simulate_gpu.log" 2>&1
tail -n 4 "$OUT/simulate_gpu.log"

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all GPU checks passed"
