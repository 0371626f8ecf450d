#!/usr/bin/env bash
# The GPU check, one script, under 8 minutes on one NVIDIA GPU: parity of mmkd on CUDA against
# the PyTorch reference (float64 on the CPU), then the benchmark of mmkd and PyTorch on the GPU
# side by side (paper preset), printed as one table and written to
# bench/results/<machine>-gpu-paper.json.
#
#   bench/gpu.sh
#   env: MMKD   an mmkd built with --features cuda (default: bench/bin/mmkd-cuda.xz if present,
#               made by `bench/cuda-offline.sh --pack` on a machine with Debian's apt, since a
#               GPU machine without a network cannot build it; else build it here)
#        PYTHON a Python with torch (CUDA), numpy, safetensors (default: python3)
#        MACHINE name in the result file (default: the GPU's name)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ -z "${MMKD:-}" ]; then
  if [ -f bench/bin/mmkd-cuda.xz ]; then
    # Built and packed elsewhere (bench/cuda-offline.sh --pack), carried here.
    xz -dc bench/bin/mmkd-cuda.xz > /tmp/mmkd-cuda && chmod +x /tmp/mmkd-cuda
    MMKD=/tmp/mmkd-cuda
  else
    bench/cuda-offline.sh >&2
    MMKD=target/cuda/debug/mmkd
  fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
"$python" -c "import torch; assert torch.cuda.is_available(), 'PyTorch sees no GPU'; print('torch', torch.__version__, torch.cuda.get_device_name(0))" >&2
machine=${MACHINE:-$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -cd 'A-Za-z0-9-')}
export MMKD_DEVICE=cuda
start=$(date +%s)

echo "== parity: mmkd on cuda vs the reference (small shapes)" >&2
timeout 240 "$python" reference/parity.py --mmkd "$MMKD" --json /tmp/mmkd-gpu-parity.json | tail -25

echo "== benchmark: paper preset on the GPU" >&2
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
for c in student-infer:1:20 teacher-infer:1:20 student-infer:64:5 teacher-infer:64:5 student-train:64:3 teacher-train:64:3; do
  IFS=: read -r name batch steps <<< "$c"
  echo "$(( $(date +%s) - start )) s: $name batch $batch" >&2
  timeout 120 "$MMKD" bench --case "$name" --preset paper --batch "$batch" --steps "$steps" >> "$lines" || echo "mmkd $name failed or timed out" >&2
  (cd reference && timeout 120 "$python" bench.py --case "$name" --preset paper --batch "$batch" --steps "$steps" --device cuda) >> "$lines" || echo "pytorch $name failed or timed out" >&2
done
mkdir -p bench/results
out=bench/results/$machine-gpu-paper.json
(cd reference && "$python" bench.py --aggregate "$lines" --out "../$out" --machine "$machine") > /dev/null
"$python" - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["medians_ms"]
print(f"\n{r['machine']}, paper preset: median ms (mmkd on cuda / PyTorch on cuda)")
print(f"{'case':28} {'mmkd':>10} {'PyTorch':>10} {'ratio':>7}")
for case in ["student-infer/b1", "teacher-infer/b1", "student-infer/b64", "teacher-infer/b64", "student-train/b64", "teacher-train/b64"]:
    a, b = m.get("mmkd/" + case), m.get("pytorch/" + case)
    ratio = f"{a / b:.2f}x" if a and b else "-"
    print(f"{case:28} {a or float('nan'):10.1f} {b or float('nan'):10.1f} {ratio:>7}")
PY
echo "total $(( $(date +%s) - start )) s; wrote $out" >&2
