#!/usr/bin/env bash
# One prepared GPU check, well under 10 minutes on one H100-class GPU: the CUDA-marked tests, a short
# distill with bf16 autocast, the benchmark table on CUDA and FID with the Inception extractor on 10k
# samples. Prints the table last. Usage: bash scripts/gpu_check.sh  (after `make setup`)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$BIN/python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"

echo "== CUDA-marked tests"
$BIN/pytest -q -m cuda tests/test_cuda.py 2>&1 | tail -5

TEACHER=${TEACHER:-pretrained/dcgan-fmnist}
[ -d "$TEACHER" ] || TEACHER=""
echo "== short distill, bf16 autocast (teacher: ${TEACHER:-random DCGAN})"
if [ -z "$TEACHER" ]; then
  $BIN/python -c "
from gandistill import build_generator, build_discriminator, save_gan
save_gan(build_generator('dcgan', base_channels=64), build_discriminator('dcgan', base_channels=64), '$OUT/teacher')"
  TEACHER=$OUT/teacher
fi
rm -rf "$OUT/distill"
/usr/bin/time -v $BIN/gandistill distill --teacher "$TEACHER" --out "$OUT/distill" --steps 1000 --device cuda \
  --amp --sample-every 0 2>&1 | grep -E "done|Elapsed|Maximum resident" | tee "$OUT/distill.txt"

echo "== DDP launch (torchrun, NCCL, as many GPUs as visible)"
NGPU=$($BIN/python -c "import torch; print(torch.cuda.device_count())")
rm -rf "$OUT/ddp"
$BIN/torchrun --standalone --nproc-per-node "$NGPU" -m gandistill distill --teacher "$TEACHER" --out "$OUT/ddp" \
  --steps 100 --device cuda --amp --sample-every 0 2>&1 | tail -2

echo "== FID with the Inception extractor, 10k samples, on the GPU"
$BIN/gandistill eval "$TEACHER" "$OUT/distill/student" --extractor inception --num-samples 10000 --device cuda \
  --out "$OUT/eval-inception.json" 2>&1 | tail -8

echo "== benchmark table on CUDA (torch.compile time-boxed; onnxruntime is CPU-only and reported as skipped)"
$BIN/python scripts/bench.py --device cuda --teacher "$TEACHER" --data fashion-mnist --compile-timeout 180 \
  --eval-samples 10000 --eval-inception-samples 2000 --out "$OUT/bench-cuda.json" 2>"$OUT/bench-cuda.log"
