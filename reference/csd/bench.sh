#!/usr/bin/env bash
# mmkd data csd against CMU-MultimodalSDK 0.0.6's alignment on the same MOSEI-sized files, one after the
# other on this machine: wall time and peak RSS (GNU time), and agreement of what each produced (clip counts,
# true frame counts and the sums of the cut float32 features). Not used by CI.
#
#   reference/csd/bench.sh DIR RESULT.json [MODES]
#
# DIR holds {labels,text,audio,video}.csd (reference/csd/make_mosei_sized.py writes them); MODES is
# "none words" by default. Needs: python with h5py, numpy and cmu-multimodal-sdk==0.0.6 (PYTHON, default
# python3), and a built mmkd (MMKD, default target/release/mmkd). SDK_TIMEOUT (seconds, default 4 h) stops the SDK. Each mmkd run writes DIR/mmkd-MODE, which
# is deleted after it is summed.
set -euo pipefail
dir=$1; result=$2; modes=${3:-none words}
PYTHON=${PYTHON:-python3}; MMKD=${MMKD:-target/release/mmkd}
# The SDK may take hours at full size: stop it after SDK_TIMEOUT seconds (then its entry says so, and the
# ratio is a lower bound).
SDK_TIMEOUT=${SDK_TIMEOUT:-14400}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# Both tools start with the four files in the page cache (read once just before), so neither
# pays for the other's evictions: what is timed is the conversion, not this VM's disk.
warm() { cat "$dir"/{labels,text,audio,video}.csd > /dev/null; }
peak() { awk -F': ' '/Maximum resident set size/ {print $2/1024}' "$1"; }
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$1"; }
echo "{" > "$tmp/out.json"
first=1
for mode in $modes; do
  out="$dir/mmkd-$mode"; rm -rf "$out"
  warm
  /usr/bin/time -v "$MMKD" data csd --labels "$dir/labels.csd" --text "$dir/text.csd" --audio "$dir/audio.csd" \
    --video "$dir/video.csd" --align "$mode" --out "$out" > "$tmp/mmkd-$mode.out" 2> "$tmp/mmkd-$mode.time"
  "$PYTHON" - "$out" > "$tmp/mmkd-$mode.sums" <<'PY'
import json, struct, sys
import numpy as np
out = sys.argv[1]
res = {m: {"clips": 0, "cut_rows": 0, "cut_sum": 0.0} for m in ("text", "audio", "video")}
for split in ("train", "valid", "test"):
    raw = open(f"{out}/{split}.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n]); base = 8 + n
    def arr(name, dtype):
        h = header[name]; a, b = h["data_offsets"]
        return np.frombuffer(raw[base + a: base + b], dtype=dtype).reshape(h["shape"])
    for m in res:
        res[m]["clips"] += arr(m, np.float32).shape[0]
        res[m]["cut_rows"] += int(arr(f"lengths_{m}", np.int64).sum())
        res[m]["cut_sum"] += float(arr(m, np.float32).sum(dtype=np.float64))
print(json.dumps(res))
PY
  rm -rf "$out"
  warm
  /usr/bin/time -v timeout "$SDK_TIMEOUT" "$PYTHON" "$here/sdk_align.py" "$dir" --mode "$mode" > "$tmp/sdk-$mode.out" 2> "$tmp/sdk-$mode.time" || true
  [ $first = 1 ] || echo "," >> "$tmp/out.json"; first=0
  "$PYTHON" - "$mode" "$(wall "$tmp/mmkd-$mode.time")" "$(peak "$tmp/mmkd-$mode.time")" "$tmp/mmkd-$mode.sums" \
     "$(wall "$tmp/sdk-$mode.time")" "$(peak "$tmp/sdk-$mode.time")" "$tmp/sdk-$mode.out" "$tmp/mmkd-$mode.out" >> "$tmp/out.json" <<'PY'
import json, sys
mode, mw, mp, msums, sw, sp, sout, mout = sys.argv[1:]
mmkd = json.load(open(msums))
lines = [l for l in open(sout) if l.startswith("{")]
sdk = json.loads(lines[-1]) if lines else None
entry = {"mmkd": {"wall_s": float(mw), "peak_rss_mb": round(float(mp), 1), "printed": open(mout).read().strip(), "written": mmkd},
         "sdk": {"wall_s": float(sw), "peak_rss_mb": round(float(sp), 1), "summary": sdk, "completed": sdk is not None}}
if not sdk:
    entry["speedup_at_least"] = round(float(sw) / float(mw), 2)
if sdk:
    entry["speedup"] = round(float(sw) / float(mw), 2)
    entry["memory_ratio"] = round(float(sp) / float(mp), 2)
    entry["agree"] = {m: {"clips": mmkd[m]["clips"] == sdk["clips"], "cut_rows": mmkd[m]["cut_rows"] == sdk["modalities"][m]["cut_rows"],
                          "cut_sum_rel_diff": abs(mmkd[m]["cut_sum"] - sdk["modalities"][m]["cut_sum"]) / max(1.0, abs(sdk["modalities"][m]["cut_sum"]))}
                      for m in ("text", "audio", "video")}
print(json.dumps(mode) + ": " + json.dumps(entry, indent=1))
PY
done
echo "}" >> "$tmp/out.json"
"$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); d['machine']=sys.argv[2]; d['data']=sys.argv[3]; json.dump(d, open(sys.argv[4],'w'), indent=1)" \
  "$tmp/out.json" "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB" "$(du -sb "$dir"/*.csd | awk '{s+=$1} END {printf "%.0f", s}') bytes of .csd in $dir, read into the page cache before each run" "$result"
cat "$result"
