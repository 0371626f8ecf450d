#!/usr/bin/env bash
# Where a benchmark case's time goes, by operation kind (issue 21, item 1): a flat self-time
# profile of one `mmkd bench` case with perf (999 Hz), each symbol put in the first kind whose
# pattern it matches (case-insensitive), printed as one JSON line. The process is profiled whole:
# network set-up and the warm-up step are included, so use enough steps to make them small.
# Usage: bench/profile.sh MMKD CASE PRESET BATCH STEPS   (needs perf: Debian's linux-perf)
set -euo pipefail
MMKD=$1; CASE=$2; PRESET=$3; BATCH=$4; STEPS=$5
DATA=$(mktemp); trap 'rm -f "$DATA"' EXIT
perf record -q -F 999 -o "$DATA" "$MMKD" bench --case "$CASE" --preset "$PRESET" --batch "$BATCH" --steps "$STEPS" > /dev/null 2>&1
perf report -i "$DATA" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^#' | grep '%' | awk -v c="$CASE" -v p="$PRESET" -v b="$BATCH" -v s="$STEPS" '
BEGIN {
  n = split("matmul (gemm)|attention kernel (fused op)|random numbers (dropout masks)|memory: page zeroing, copies, allocation|convolution (front end)|element-wise and reductions (burn_flex, macerator)|autodiff bookkeeping (burn_autodiff)|threads: scheduling, waking, spinning|unattributed closures (FnOnce::call_once)", kind, "|")
  pat[1] = "gemm|matmul"
  pat[2] = "mmkd::model::fused_attention"
  pat[3] = "distribution|chacha|tensordata::random|rand::|rand_core|bernoulli|model::dropout"
  pat[4] = "clear_page|memmove|memcpy|memset|mi_|malloc|free|alloc|page_fault|folio|do_huge_pmd|zap_|release_pages|copy_page"
  pat[5] = "conv"
  pat[6] = "burn_flex|macerator"
  pat[7] = "burn_autodiff"
  pat[8] = "sched|futex|wake|rayon|crossbeam|switch|yield|spin|_raw_"
  pat[9] = "fnonce::call_once"
}
{
  pct = $1; sub(/%/, "", pct); sym = tolower($0); k = "other"
  for (i = 1; i <= n; i++) if (sym ~ pat[i]) { k = kind[i]; break }
  total[k] += pct
}
END {
  printf "{\"case\": \"%s\", \"preset\": \"%s\", \"batch\": %s, \"steps\": %s, \"by_kind_percent\": {", c, p, b, s
  sep = ""
  for (i = 1; i <= n; i++) { printf "%s\"%s\": %.2f", sep, kind[i], total[kind[i]] + 0; sep = ", " }
  printf ", \"other\": %.2f}}\n", total["other"] + 0
}'
