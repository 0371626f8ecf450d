#!/usr/bin/env bash
# Peak memory of a few `paper` teacher training steps on a native dataset (issue 21, item 5): how
# much of it is anonymous (the process's own: decoded data, the network, the step) and how much is
# mapped file pages (page cache the kernel can reclaim). Runs `mmkd train teacher --preset paper
# --dry-run STEPS` (a warm-up step, STEPS timed steps and two validation batches, at the real
# shapes), samples /proc/PID/status every 0.2 s and keeps the maxima of RssAnon and RssFile plus
# the last VmHWM (the kernel's own peak of RssAnon + RssFile + RssShmem; a sampled maximum can
# miss a peak shorter than 0.2 s, VmHWM cannot). Appends one JSON line to OUT.
#
#   bench/rss.sh DATA_DIR OUT.jsonl LABEL [STEPS=2] [BATCH=64]
#   env: MMKD (binary; default target/debug/mmkd after `cargo build`), COMMIT (the binary's commit;
#        default this checkout's HEAD), MACHINE, RAYON_NUM_THREADS
#
# The step's own peak comes from the same command on a tiny dataset of the same shapes
# (`make_mosei_sized.py --scale 0.01`, converted): its peak RssAnon is the network, the optimizer
# and the step with next to no data. Results of 2026-12-04: bench/NOTES.md, "Data out of anonymous
# memory".
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?DATA_DIR}
out=${2:?OUT.jsonl}
label=${3:?LABEL}
steps=${4:-2}
batch=${5:-64}
machine=${MACHINE:-$(hostname)-$(nproc)cpu}
commit=${COMMIT:-$(git rev-parse --short HEAD)}
if [ -z "${MMKD:-}" ]; then
  cargo build -p mmkd --quiet
  MMKD=target/debug/mmkd
fi
run=$(mktemp -d); samples=$(mktemp)
trap 'rm -rf "$run" "$samples"' EXIT
start=$(date +%s.%N)
"$MMKD" train teacher --data "$data" --preset paper --batch-size "$batch" --dry-run "$steps" --force --out "$run/run" > "$run/stdout" 2> "$run/stderr" &
pid=$!
# One line per sample: VmHWM RssAnon RssFile (kB), while the process lives.
while kill -0 "$pid" 2> /dev/null; do
  awk '/^VmHWM:/ {h=$2} /^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} END {if (h != "") print h, a, f}' "/proc/$pid/status" >> "$samples" 2> /dev/null || true
  sleep 0.2
done
status=0; wait "$pid" || status=$?
end=$(date +%s.%N)
if [ "$status" -ne 0 ]; then
  echo "mmkd failed ($status):" >&2; tail -20 "$run/stderr" >&2; exit "$status"
fi
mkdir -p "$(dirname "$out")"
python3 - "$samples" "$run/run/dry-run.json" "$out" "$label" "$data" "$machine" "$steps" "$batch" "$start" "$end" "$commit" <<'PY'
import json, os, sys
samples, report, out, label, data, machine, steps, batch, start, end, commit = sys.argv[1:]
rows = [tuple(int(x) * 1024 for x in l.split()) for l in open(samples) if len(l.split()) == 3]
dry = json.load(open(report))
size = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data) if f.endswith(".safetensors"))
manifest = json.load(open(os.path.join(data, "manifest.json")))
row = {
    "date": "2026-12-04", "machine": machine, "label": label, "commit": commit,
    "data": data, "data_name": manifest["name"], "split_files_bytes": size,
    "clips": [manifest["shape"][k] for k in ("n_train", "n_valid", "n_test")],
    "preset": "paper", "model": "complete teacher", "batch": int(batch), "timed_steps": int(steps),
    "samples": len(rows), "sample_interval_s": 0.2,
    "vm_hwm_bytes": max(r[0] for r in rows), "max_rss_anon_bytes": max(r[1] for r in rows), "max_rss_file_bytes": max(r[2] for r in rows),
    "median_step_s": dry["median_step_s"], "wall_s": round(float(end) - float(start), 1),
}
with open(out, "a") as f:
    f.write(json.dumps(row) + "\n")
gb = lambda b: f"{b / 1e9:.2f} GB"
print(f"{label}: VmHWM {gb(row['vm_hwm_bytes'])}, max RssAnon {gb(row['max_rss_anon_bytes'])}, max RssFile {gb(row['max_rss_file_bytes'])}; step {row['median_step_s']:.1f} s, wall {row['wall_s']} s")
PY
