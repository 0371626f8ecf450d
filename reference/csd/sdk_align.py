#!/usr/bin/env python3
"""Runs CMU-MultimodalSDK's alignment on DIR/{labels,text,audio,video}.csd and prints a one-line JSON summary
(for benchmarking mmkd's .csd aligner against the SDK; not used by CI).

Usage:  python reference/csd/sdk_align.py DIR --mode none|words [--out summary.json]
Needs:  the SDK (PyPI `cmu-multimodal-sdk` 0.0.6, `import mmsdk`), h5py, numpy. torch is not needed:
        mmsdk.mmdatasdk is imported without mmsdk/__init__.py (which would import mmsdk.mmmodelsdk and torch).

Modes (as tests/fixtures/make_csd_fixtures.py, which writes expected_{none,words}.json from the same recipe):
  none   mmdataset({"labels","text","audio","video"}).align("labels")
  words  mmdataset({"text","audio","video"}).align("text", collapse_functions=[avg]) with
         avg(intervals, features) = numpy.average(features, axis=0); then
         add_computational_sequences({"labels": DIR/labels.csd}, destination=None); align("labels")

The SDK's progress output goes to stderr; stdout gets one JSON line:
  {"mode", "videos" (videos in all four files), "clips" (labels keys "vid[i]" present in all four aligned
   sequences), "dropped_clips" (labels keys some modality lacks), "wall_s" (loading + alignment),
   "peak_rss_mb" (ru_maxrss / 1024, i.e. MiB on Linux), "summary_s",
   "modalities": {m: {"dtype", "rows" (rows over the counted clips), "sum" (sum of every aligned feature value
   over the counted clips: float64 np.sum per clip, math.fsum over clips; compare at ~1e-9 relative),
   "interval_sum" (the same over the aligned intervals), and for text/audio/video "cut", "cut_rows" and
   "cut_sum": the same over each clip's first --lengths rows as float32, what `mmkd data csd` writes}}}
Nothing aligned is written; --out writes the same summary to a file.
"""

import argparse
import contextlib
import importlib
import importlib.util
import json
import math
import resource
import sys
import time
import types
from pathlib import Path

import h5py
import numpy as np

MODS = ["labels", "text", "audio", "video"]


def load_sdk():
    if "mmsdk" not in sys.modules:
        spec = importlib.util.find_spec("mmsdk")
        if spec is None:
            raise SystemExit("the SDK is not installed: pip install cmu-multimodal-sdk==0.0.6")
        pkg = types.ModuleType("mmsdk")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["mmsdk"] = pkg
    return importlib.import_module("mmsdk.mmdatasdk")


def avg(intervals, features):
    return np.average(features, axis=0)


def file_videos(path):
    with h5py.File(path, "r") as f:
        return set(f[list(f.keys())[0]]["data"].keys())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--mode", choices=["none", "words"], required=True)
    ap.add_argument("--out")
    ap.add_argument("--lengths", default="50,500,500",
                    help="TEXT,AUDIO,VIDEO: also sum each clip's first rows only (cut_rows, cut_sum), as mmkd data csd writes them")
    args = ap.parse_args()
    cut = dict(zip(["text", "audio", "video"], (int(x) for x in args.lengths.split(","))))
    d = Path(args.dir)
    p = {m: str(d / f"{m}.csd") for m in MODS}
    for m in MODS:
        if not Path(p[m]).is_file():
            raise SystemExit(f"missing {p[m]}")

    mmdatasdk = load_sdk()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        if args.mode == "none":
            ds = mmdatasdk.mmdataset({m: p[m] for m in MODS})
            ds.align("labels")
        else:
            ds = mmdatasdk.mmdataset({m: p[m] for m in ("text", "audio", "video")})
            ds.align("text", collapse_functions=[avg])
            ds.add_computational_sequences({"labels": p["labels"]}, destination=None)
            ds.align("labels")
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    t1 = time.perf_counter()
    data = {m: ds[m].data for m in MODS}
    keys = [k for k in data["labels"] if all(k in data[m] for m in MODS)]
    mods = {}
    for m in MODS:
        sums, isums, rows, dtypes, cut_sums, cut_rows = [], [], 0, set(), [], 0
        for k in keys:
            f = np.asarray(data[m][k]["features"])
            i = np.asarray(data[m][k]["intervals"])
            dtypes.add(str(f.dtype))
            rows += f.shape[0]
            sums.append(float(np.sum(f, dtype=np.float64)))
            isums.append(float(np.sum(i, dtype=np.float64)))
            if m in cut:
                # mmkd stores float32: sum the float32 values it would write.
                c = f[: cut[m]].astype(np.float32)
                cut_rows += c.shape[0]
                cut_sums.append(float(np.sum(c, dtype=np.float64)))
        mods[m] = {"dtype": ",".join(sorted(dtypes)), "rows": rows, "sum": math.fsum(sums),
                   "interval_sum": math.fsum(isums)}
        if m in cut:
            mods[m].update({"cut": cut[m], "cut_rows": cut_rows, "cut_sum": math.fsum(cut_sums)})
    in_all = set.intersection(*(file_videos(p[m]) for m in MODS))
    summary = {
        "mode": args.mode, "videos": len(in_all), "clips": len(keys),
        "dropped_clips": len(data["labels"]) - len(keys),
        "wall_s": round(wall, 3), "peak_rss_mb": round(rss, 1),
        "summary_s": round(time.perf_counter() - t1, 3), "modalities": mods,
        "sdk": "cmu-multimodal-sdk 0.0.6",
    }
    line = json.dumps(summary)
    print(line, flush=True)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
