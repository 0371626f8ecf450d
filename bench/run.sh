#!/usr/bin/env bash
# The benchmark side by side: every case of `mmkd bench` and of reference/bench.py (PyTorch) in
# fresh processes, alternating mmkd / PyTorch, ROUNDS times, at the same thread count; then the
# medians, the ratios mmkd / PyTorch and the peak memories go to
# bench/results/<machine>-<preset>.json (reference/bench.py --aggregate).
#
#   bench/run.sh [PRESET=small] [THREADS=2] [ROUNDS=3] [STEPS=5]
#   env: PYTHON (a Python with torch, numpy, safetensors; see reference/README.md),
#        MACHINE (name in the result file; default: hostname-<cores>cpu), MMKD (binary),
#        CASES (e.g. "student-infer:1:10 teacher-infer:1"; CASE:BATCH[:STEPS], STEPS defaulting to
#        the fourth argument; default: all six, training at batch 64).
# The numbers in bench/README.md (paper preset) came from
#   CASES="student-infer:1:10 teacher-infer:1:10 student-infer:64:2 teacher-infer:64:2 student-train:64:1 teacher-train:64:1" bench/run.sh paper 2 1
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-small}
threads=${2:-2}
rounds=${3:-3}
steps=${4:-5}
python=${PYTHON:-python3}
machine=${MACHINE:-$(hostname)-$(nproc)cpu}
if [ -z "${MMKD:-}" ]; then
  cargo build -p mmkd --quiet
  MMKD=target/debug/mmkd # the dev profile: dependencies at opt-level 3, mmkd at 2 (Cargo.toml)
fi
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
# The machine's anchor first (issue 21): the backend's f32 GEMM peak at this thread count; every
# mmkd line then carries gflops and fraction_of_peak.
MMKD_PEAK_GFLOPS=$(RAYON_NUM_THREADS=$threads "$MMKD" bench --case gemm --steps 10 | "$python" -c 'import json, sys; print(json.load(sys.stdin)["gflops"])')
export MMKD_PEAK_GFLOPS
echo "f32 GEMM peak at $threads threads: $MMKD_PEAK_GFLOPS GFLOP/s" >&2
read -r -a cases <<< "${CASES:-teacher-train:64 student-train:64 teacher-infer:1 student-infer:1 teacher-infer:64 student-infer:64}"
for round in $(seq 1 "$rounds"); do
  for c in "${cases[@]}"; do
    IFS=: read -r name batch case_steps <<< "$c"
    case_steps=${case_steps:-$steps}
    echo "round $round/$rounds: $name batch $batch, $case_steps steps" >&2
    RAYON_NUM_THREADS=$threads "$MMKD" bench --case "$name" --preset "$preset" --batch "$batch" --steps "$case_steps" >> "$lines"
    (cd reference && "$python" bench.py --case "$name" --preset "$preset" --batch "$batch" --steps "$case_steps" --threads "$threads") >> "$lines"
  done
done
mkdir -p bench/results
out=bench/results/$machine-$preset.json
(cd reference && "$python" bench.py --aggregate "$lines" --out "../$out" --machine "$machine")
echo "wrote $out" >&2
