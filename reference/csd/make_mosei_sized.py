#!/usr/bin/env python3
"""Writes four synthetic computational sequences (.csd, HDF5) at CMU-MOSEI's shapes, for benchmarking mmkd's
.csd reader/aligner against the SDK (reference/csd/sdk_align.py). Not used by CI.

Usage:  python reference/csd/make_mosei_sized.py --out DIR [--videos 3228] [--seed 0] [--covarep-dtype float32]
Needs:  h5py, numpy.

Writes DIR/{labels,text,audio,video}.csd in the layout of the SDK's file_ops.writeCSD (h5py defaults: old-style
groups, contiguous datasets): one root group <root>/data/<video id>/{features [N,D], intervals [N,2] float64}
and <root>/metadata/<key> as (1,) variable-length str datasets with every key of the SDK's
featuresetMetadataTemplate. Files are written video by video (never the whole set in memory).

Shapes (MOSEI: 3,228 videos, ~23,000 labelled segments, ~66 hours):
  labels.csd  "All Labels"     [S,7] float32 (sentiment in [-3,3], 6 emotions in [0,3]); S = 1 + Poisson(6.125)
              segments per video (capped at 18), each 3-15 s, gaps ~Exp(1 s); so ~7.1 per video.
  text.csd    "glove_vectors"  [W,300] float32, ~2.5 words/s over the whole video (0.2-0.5 s words, some gaps).
  audio.csd   "COVAREP"        [F,74] at 100 Hz, intervals [k/100, (k+1)/100]. dtype: float32 by default; I
              could not confirm whether the released CMU_MOSEI_COVAREP.csd stores float32 or float64, so
              --covarep-dtype float64 writes the other (twice the bytes: ~14 GB at full size).
  video.csd   "FACET 4.2"      [F,35] float32 at 30 Hz, intervals [k/30, (k+1)/30].
Video length: the end of the last segment plus 0-5 s, at least 40 s (so ~40-200 s, ~75 s on average).
Ids: the standard MOSEI fold ids (crates/mmkd/data/mosei_folds.json, train+valid+test), the first --videos of
a seeded permutation. Full size is about 7.5 GB (float32 COVAREP) + 1.2 GB (FACET) + 0.7 GB (text).
"""

import argparse
import json
import time
from pathlib import Path

import h5py
import numpy as np

ROOTS = {"labels": "All Labels", "text": "glove_vectors", "audio": "COVAREP", "video": "FACET 4.2"}
TEMPLATE = [  # mmsdk.mmdatasdk.configurations.metadataconfigs.featuresetMetadataTemplate (SDK 0.0.6)
    "root name", "computational sequence description", "computational sequence version", "alignment compatible",
    "dataset name", "dataset version", "creator", "contact", "featureset bib citation", "dataset bib citation",
]
FOLDS = Path(__file__).resolve().parents[2] / "crates/mmkd/data/mosei_folds.json"


def video_plan(rng):
    n = min(18, 1 + rng.poisson(6.125))
    t = rng.uniform(0.0, 3.0)
    segs = []
    for _ in range(n):
        d = rng.uniform(3.0, 15.0)
        segs.append((t, t + d))
        t += d + rng.exponential(1.0)
    length = max(40.0, segs[-1][1] + rng.uniform(0.0, 5.0))
    return length, np.array(segs, np.float64)


def words(rng, length):
    n = int(length * 3) + 8
    d = rng.uniform(0.2, 0.5, n)
    gap = np.where(rng.random(n) < 0.15, rng.uniform(0.1, 0.4, n), 0.0)
    start = rng.uniform(0.0, 0.5) + np.concatenate([[0.0], np.cumsum(d + gap)[:-1]]) + gap
    end = start + d
    keep = end <= length
    return np.round(np.stack([start[keep], end[keep]], axis=1), 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--videos", type=int, default=3228)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--covarep-dtype", choices=["float32", "float64"], default="float32")
    args = ap.parse_args()

    folds = json.loads(FOLDS.read_text())
    ids = folds["train"] + folds["valid"] + folds["test"]
    rng = np.random.default_rng(args.seed)
    ids = [ids[i] for i in rng.permutation(len(ids))][: args.videos]
    if len(ids) < args.videos:
        raise SystemExit(f"only {len(ids)} standard ids")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    adt = np.dtype(args.covarep_dtype)

    t0 = time.time()
    files = {m: h5py.File(out / f"{m}.csd", "w") for m in ROOTS}
    data = {m: files[m].create_group(ROOTS[m]).create_group("data") for m in ROOTS}
    n_seg = n_words = n_audio = n_video = 0
    total_len = 0.0
    for vi, vid in enumerate(ids):
        length, segs = video_plan(rng)
        total_len += length
        lab = np.empty((len(segs), 7), np.float32)
        lab[:, 0] = rng.integers(-9, 10, len(segs)) / 3.0
        lab[:, 1:] = rng.integers(0, 10, (len(segs), 6)) / 3.0
        w = words(rng, length)
        ka = np.arange(int(length * 100))
        kv = np.arange(int(length * 30))
        rows = {
            "labels": (lab, segs),
            "text": (rng.standard_normal((len(w), 300), dtype=np.float32), w),
            "audio": (rng.standard_normal((len(ka), 74), dtype=np.float64 if adt == np.float64 else np.float32),
                      np.stack([ka / 100.0, (ka + 1) / 100.0], axis=1)),
            "video": (rng.standard_normal((len(kv), 35), dtype=np.float32),
                      np.stack([kv / 30.0, (kv + 1) / 30.0], axis=1)),
        }
        for m, (f, i) in rows.items():
            g = data[m].create_group(vid)
            g.create_dataset("features", data=f)
            g.create_dataset("intervals", data=i)
        n_seg += len(segs)
        n_words += len(w)
        n_audio += len(ka)
        n_video += len(kv)
        if (vi + 1) % 200 == 0:
            print(f"{vi + 1}/{len(ids)} videos, {time.time() - t0:.0f} s", flush=True)
    for m, f in files.items():
        md = f[ROOTS[m]].create_group("metadata")
        vals = {k: "none" for k in TEMPLATE}
        vals.update({"root name": ROOTS[m], "dataset name": "CMU-MOSEI (synthetic, MOSEI-sized)",
                     "computational sequence description": f"synthetic {m}", "alignment compatible": "True",
                     "creator": "mmkd reference/csd/make_mosei_sized.py", "computational sequence version": "1.0",
                     "dataset version": "1.0"})
        for k in TEMPLATE:
            md.create_dataset(k, (1,), dtype=h5py.special_dtype(vlen=str))
            md[k][0] = vals[k]
        f.close()
    sizes = {m: (out / f"{m}.csd").stat().st_size for m in ROOTS}
    print(json.dumps({
        "videos": len(ids), "segments": n_seg, "words": n_words, "audio_frames": n_audio,
        "video_frames": n_video, "hours": round(total_len / 3600, 2), "covarep_dtype": args.covarep_dtype,
        "bytes": sizes, "total_bytes": sum(sizes.values()), "wall_s": round(time.time() - t0, 1),
    }))


if __name__ == "__main__":
    main()
