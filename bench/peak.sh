#!/usr/bin/env bash
# How far each benchmark case is from the machine's limit (issue 21, item 2), mmkd alone (no
# PyTorch needed): the backend's f32 GEMM peak (`mmkd bench --case gemm`, 1024 x 1024 products),
# then every case at both presets with its FLOPs per step, GFLOP/s and fraction of that peak.
# Cases run one after the other in fresh processes; run it on an otherwise idle machine.
#
#   bench/peak.sh [THREADS=2] [OUT=bench/results/<machine>-peak.json]
#   env: MMKD (binary; default target/debug/mmkd after `cargo build`), MACHINE
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
machine=${MACHINE:-$(hostname)-$(nproc)cpu}
out=${2:-bench/results/$machine-peak.json}
if [ -z "${MMKD:-}" ]; then
  cargo build -p mmkd --quiet
  MMKD=target/debug/mmkd
fi
tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT
gemm=$(RAYON_NUM_THREADS=$threads "$MMKD" bench --case gemm --steps 10)
echo "$gemm" >> "$tmp"
MMKD_PEAK_GFLOPS=$(echo "$gemm" | python3 -c 'import json, sys; print(json.load(sys.stdin)["gflops"])')
export MMKD_PEAK_GFLOPS
echo "GEMM peak at $threads threads: $MMKD_PEAK_GFLOPS GFLOP/s" >&2
# CASE:PRESET:BATCH:STEPS
for c in teacher-train:small:64:5 student-train:small:64:5 teacher-infer:small:64:5 student-infer:small:64:5 student-infer:small:1:50 \
         teacher-train:paper:64:1 student-train:paper:64:1 teacher-infer:paper:64:1 student-infer:paper:64:2 student-infer:paper:1:10; do
  IFS=: read -r name preset batch steps <<< "$c"
  echo "$name $preset B=$batch" >&2
  RAYON_NUM_THREADS=$threads "$MMKD" bench --case "$name" --preset "$preset" --batch "$batch" --steps "$steps" >> "$tmp"
done
mkdir -p "$(dirname "$out")"
python3 - "$tmp" "$out" "$machine" "$threads" <<'PY'
import json, subprocess, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    r.pop("times_ms", None)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
json.dump({"machine": sys.argv[3], "threads": int(sys.argv[4]), "commit": commit, "gemm_peak_gflops": rows[0]["gflops"], "cases": rows[1:]}, open(sys.argv[2], "w"), indent=1)
for r in rows[1:]:
    print(f"{r['case']:14s} {r['preset']:6s} B={r['batch']:<3d} {r['median_ms']:10.2f} ms  {r['flops_per_step']/1e9:8.3f} GFLOP  {r['gflops']:6.1f} GFLOP/s  {100*r['fraction_of_peak']:5.1f} % of peak")
PY
echo "wrote $out" >&2
