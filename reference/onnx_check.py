#!/usr/bin/env python3
"""`mmkd export` checked by ONNX Runtime (issue 20): every student configuration (1-5) with both
stream modes, and the complete teacher, trained briefly on synthetic data, exported to ONNX, run by
ONNX Runtime on the held-out test split, and compared with `mmkd predict` on the same clips.

Usage:  python reference/onnx_check.py [--mmkd target/debug/mmkd] [--work DIR] [--preset smoke]
                                       [--epochs 1] [--out reference/results/onnx-check.json]
Needs:  onnx, onnxruntime, numpy (PyPI). Like the rest of reference/, never needed to build or
        test mmkd; CI checks the exported graph from Rust (crates/mmkd/tests/export.rs).

For each network: the ONNX checker (full_check), ONNX Runtime's probabilities for every test clip
at batch size N (all clips at once) and 1 (clip by clip), against the probabilities `mmkd predict
--format jsonl` writes; the max abs difference of each. Then the latency at batch size 1 with one
thread each (median of 200 runs after 20 warm-up runs): ONNX Runtime on the config-5 student and
`mmkd bench --case student-infer` with RAYON_NUM_THREADS=1, for bench/README.md.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]


def run(cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def run_env(cmd, env):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env={**os.environ, **env})
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def read_split(path):
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n

    def tensor(name):
        h = header[name]
        a, b = h["data_offsets"]
        dtype = {"F32": np.float32, "I64": np.int64}[h["dtype"]]
        return np.frombuffer(raw[base + a:base + b], dtype=dtype).reshape(h["shape"])

    return tensor, header


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mmkd", default=str(ROOT / "target/debug/mmkd"))
    ap.add_argument("--work")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "reference/results/onnx-check.json"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="mmkd-onnx-"))
    mmkd = args.mmkd
    data = work / "data"
    if not (data / "manifest.json").exists():
        run([mmkd, "data", "synth", "--preset", args.preset, "--seed", "1", "--out", data])
    tensor, _ = read_split(data / "test.safetensors")
    inputs_all = {"video": tensor("video"), "audio": tensor("audio"), "text": tensor("text")}

    networks = [(f"student-c{c}-{s}", ["train", "student", "--config", str(c), "--streams", s]) for c in range(1, 6) for s in ("downsampled", "full-length")]
    networks.append(("teacher-complete", ["train", "teacher", "--branch", "complete"]))
    results = {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__, "preset": args.preset,
               "epochs": args.epochs, "data": "mmkd data synth --preset %s --seed 1 (synthetic, test split)" % args.preset, "networks": {}}
    for name, train in networks:
        rundir = work / name
        if not (rundir / "best.safetensors").exists():
            run([mmkd, *train, "--data", data, "--preset", args.preset, "--epochs", args.epochs, "--seed", "1", "--out", rundir, "--force"])
        path = work / f"{name}.onnx"
        run([mmkd, "export", rundir, "--format", "onnx", "--out", path])
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        pred = work / f"{name}.jsonl"
        run([mmkd, "predict", rundir, "--data", data, "--split", "test", "--format", "jsonl", "--out", pred])
        rows = [json.loads(line) for line in pred.read_text().splitlines()]
        mmkd_probs = np.array([[r[f"p_{k}"] for k in range(-3, 4)] for r in rows], dtype=np.float64)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {i.name: inputs_all[i.name] for i in sess.get_inputs()}
        logits, probs = sess.run(["logits", "probs"], feeds)
        one = np.concatenate([sess.run(["probs"], {k: v[i:i + 1] for k, v in feeds.items()})[0] for i in range(len(mmkd_probs))])
        batch_diff = float(np.abs(probs - mmkd_probs).max())
        single_diff = float(np.abs(one - mmkd_probs).max())
        x1 = {k: v[:1] for k, v in feeds.items()}
        for _ in range(20):
            sess.run(["probs"], x1)
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            sess.run(["probs"], x1)
            times.append(time.perf_counter() - t0)
        entry = {"clips": len(mmkd_probs), "inputs": {i.name: i.shape for i in sess.get_inputs()}, "nodes": len(model.graph.node),
                 "max_abs_diff_probs_batch": batch_diff, "max_abs_diff_probs_one_by_one": single_diff,
                 "ort_latency_b1_ms_median": 1000 * float(np.median(times))}
        results["networks"][name] = entry
        print(f"{name:32s} {len(mmkd_probs)} clips  max|ORT - mmkd predict| batch {batch_diff:.2e}  one by one {single_diff:.2e}  ORT B=1 {entry['ort_latency_b1_ms_median']:.3f} ms", flush=True)
    # Latency side by side at batch size 1, one thread each: ONNX Runtime on the exported config-5
    # student (downsampled streams, the `mmkd bench` case's network) and `mmkd bench` itself.
    bench = json.loads(run_env([mmkd, "bench", "--case", "student-infer", "--preset", args.preset, "--batch", "1", "--steps", "200"], {"RAYON_NUM_THREADS": "1"}))
    results["latency_b1_one_thread_ms"] = {"onnxruntime_student_c5": results["networks"]["student-c5-downsampled"]["ort_latency_b1_ms_median"],
                                           "mmkd_bench_student_infer": bench["median_ms"], "mmkd_bench": {k: bench[k] for k in ("case", "preset", "batch", "threads", "attention", "device")}}
    print(f"B=1, one thread: ONNX Runtime {results['latency_b1_one_thread_ms']['onnxruntime_student_c5']:.3f} ms, mmkd {bench['median_ms']:.3f} ms")
    worst = max(max(e["max_abs_diff_probs_batch"], e["max_abs_diff_probs_one_by_one"]) for e in results["networks"].values())
    results["worst_max_abs_diff"] = worst
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"worst max abs difference {worst:.2e} (issue 20 asks <= 1e-5); wrote {args.out}")
    sys.exit(0 if worst <= 1e-5 else 1)


if __name__ == "__main__":
    main()
